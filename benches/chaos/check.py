"""The chaos run's checks on the database file DB after the queue drained, for EVENTS events:
every event stored once and done, one completed ticket per job, and each record key's jobs
completed in job order. Prints what it found; exits 1 if a check fails.

    python3 check.py DB EVENTS
"""
import collections
import sqlite3
import sys

db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
events = int(sys.argv[2])
failed = []
status = dict(db.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall())
print(f"jobs by status: {status}")
if status != {"done": events}:
    failed.append(f"expected {events} jobs, all done")
key = dict(db.execute("SELECT id, record_key FROM deliveries"))
completed = [row[0] for row in db.execute("SELECT delivery_id FROM sync_tickets WHERE status = 'completed' ORDER BY id")]
print(f"completed tickets: {len(completed)} for {len(set(completed))} jobs")
if len(completed) != events or len(set(completed)) != events:
    failed.append("expected one completed ticket per job")
by_key = collections.defaultdict(list)
for job in completed:
    by_key[key[job]].append(job)
out_of_order = [k for k, jobs in by_key.items() if jobs != sorted(jobs)]
print(f"record keys: {len(by_key)}, completed out of job order: {len(out_of_order)}")
if out_of_order:
    failed.append(f"keys out of order: {out_of_order[:5]}")
for f in failed:
    print(f"FAILED: {f}")
sys.exit(1 if failed else 0)
