#!/usr/bin/env bash
# Chaos: kill -9 the service mid-publish, again and again, against a target that refuses a
# tenth of the requests, and check that nothing accepted was lost, duplicated in the audit
# trail or reordered within its record key. On 127.0.0.1 only:
#
#   benches/chaos/run.sh [--events N] [--kills K] BINARY
#
# N events (default 100,000) go out in K chunks (default 10), one per life of the service
# (`BINARY up` on a SQLite file kept across lives, with the connector of connectors/: 500
# record keys, 100 attempts, 64 in flight). Each life is killed with SIGKILL 0.3–1.5 s into
# its chunk. Events not answered 202 are published again at the end with their
# Idempotency-Keys (stored once). Once the queue is empty: the target (sink.py, 10% 503s) must
# have answered every event 200, the database must hold every event as one job, done, with
# one completed ticket each, completed in job order within each key (check.py), and
# `BINARY audit verify` must verify the whole ticket chain. Exits 1 when a check fails.
# Needs python3 and curl.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
events=100000 kills=10
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events="$2"; shift 2 ;;
    --kills) kills="$2"; shift 2 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: $0 [--events N] [--kills K] BINARY" >&2; exit 2; }
bin="$(realpath "$1")"
port=17600 sink_port=18181
work="$(mktemp -d /tmp/hms-sync-chaos.XXXXXX)"
service="" sink=""
cleanup() {
  [ -n "$service" ] && kill -9 "$service" 2>/dev/null || true
  [ -n "$sink" ] && kill "$sink" 2>/dev/null || true
}
trap cleanup EXIT
mkdir -p "$work/connectors"
sed "s/@SINK@/$sink_port/" "$here/connectors/chaos.yaml" > "$work/connectors/chaos.yaml"
python3 "$here/sink.py" "$sink_port" "$work/sink.txt" & sink=$!

start() {
  "$bin" up --connectors "$work/connectors" --port "$port" --database "sqlite:$work/db.sqlite" >>"$work/service.log" 2>&1 &
  service=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && return; sleep 0.1; done
  echo "the service did not start:" >&2; tail "$work/service.log" >&2; exit 1
}

: >"$work/unanswered.txt"
chunk=$(( (events + kills - 1) / kills ))
for life in $(seq 0 $((kills - 1))); do
  lo=$((life * chunk)); hi=$((lo + chunk)); [ "$hi" -gt "$events" ] && hi=$events
  start
  python3 "$here/publish.py" "$port" "$lo" "$hi" >>"$work/unanswered.txt" &
  publisher=$!
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.3 + 1.2 * r / 32767 }')"
  kill -9 "$service"; wait "$service" 2>/dev/null || true; service=""
  wait "$publisher"
  echo "life $((life + 1)) killed; events not answered 202 so far: $(wc -w <"$work/unanswered.txt")"
done
start
# The unanswered ones again, with their keys: what a life stored before it died is not stored twice.
left=$(python3 "$here/publish.py" "$port" --from "$work/unanswered.txt")
[ -z "$left" ] || { echo "FAILED: events still not accepted: $left" >&2; exit 1; }
echo "published again: $(wc -w <"$work/unanswered.txt")"
pending() { curl -sf "http://127.0.0.1:$port/metrics" | awk '/^sync_queue_depth/ {s += $2} END {printf "%d", s}'; }
for _ in $(seq 1 600); do [ "$(pending)" = "0" ] && break; sleep 1; done
sleep 1.5   # the sink's report is written every second
read -r distinct answers <"$work/sink.txt"
echo "the target answered 200 for $distinct distinct events ($answers answers: at least once across the kills)"
status=0
[ "$distinct" -eq "$events" ] || { echo "FAILED: expected $events distinct events at the target"; status=1; }
python3 "$here/check.py" "$work/db.sqlite" "$events" || status=1
"$bin" audit verify --url "http://127.0.0.1:$port" || status=1
if grep -q "panicked" "$work/service.log"; then echo "FAILED: a panic in the service's log"; status=1; fi
[ "$status" -eq 0 ] && rm -rf "$work" || echo "kept for a look: $work"
exit "$status"
