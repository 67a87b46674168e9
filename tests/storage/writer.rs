//! SQLite's own writer (`storage::SqliteWriter`): it writes exactly what the pool's writer
//! (`storage::write_batch`) writes, answers the same, and a batch it cannot write leaves
//! nothing behind.

use chrono::{DateTime, TimeZone, Utc};
use hms_sync::mapping::Payload;
use hms_sync::storage::{self, BatchEntry, ClaimToken, Db, Direction, EntryWritten, JobUpdate, LinkUpdate, NewAttempt, NewDelivery, NewTicket, SqliteWriter, TicketStatus};
use hms_sync::sync::Origin;
use hms_sync::sync::engine::Synced;
use rusqlite::types::Value;
use serde_json::json;

use super::queue::ME;

/// Columns whose value is the time of the write (different on each database): compared by
/// form, not by value. A rescheduled job's `next_attempt_at` is given, and compared exactly
/// on its own.
const WRITE_TIMES: [&str; 4] = ["created_at", "updated_at", "at", "next_attempt_at"];

fn job(event: &str, key: &str, origin: Origin, deleted: bool) -> NewDelivery {
    NewDelivery { connector_id: "w".into(), event_id: event.into(), topic: "permit.updated".into(), record_key: key.into(), payload: Payload::shared(json!({"permitId": key, "event": event, "n": [1, 2.5, null]})), origin, deleted }
}

fn ticket(job: i64, status: TicketStatus, detail: Option<serde_json::Value>) -> NewTicket {
    NewTicket {
        connector_id: "w".into(),
        event_id: Some(format!("e{job}")),
        delivery_id: Some(job),
        hms_id: Some(format!("h{job}")),
        external_id: None,
        direction: Direction::Outbound,
        status,
        reason: Some("because".into()),
        attempts: 1,
        last_error: None,
        detail,
    }
}

fn attempt(job: i64, status: Option<u16>, error: Option<&str>) -> NewAttempt {
    NewAttempt { delivery_id: job, connector_id: "w".into(), attempt: 1, status, latency_ms: 12, error: error.map(str::to_owned) }
}

fn outcome(update: JobUpdate) -> BatchEntry {
    BatchEntry::Outcome { update, jobs: Vec::new(), link: None, attempt: None, ticket: None }
}

/// The same batches, written through the pool on one database and by SQLite's own writer on
/// another: the same answers, the same rows (times by form), a valid ticket chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_writer_writes_what_the_pool_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (url_a, url_b) = (format!("sqlite:{}/a.db", dir.path().display()), format!("sqlite:{}/b.db", dir.path().display()));
    let (pool, other) = (storage::connect(&url_a).await.unwrap(), storage::connect(&url_b).await.unwrap());
    let mut writer = SqliteWriter::open(&url_b).unwrap().expect("a SQLite file has a writer");

    async fn both(pool: &Db, writer: &mut SqliteWriter, batch: Vec<BatchEntry>) -> Vec<EntryWritten> {
        let rows: Vec<&BatchEntry> = batch.iter().collect();
        let by_pool = storage::write_batch(pool, &rows).await.unwrap();
        let by_writer = writer.write(&rows).unwrap();
        // The new jobs that head their keys, and a settled key's next job: known to SQLite's
        // writer only.
        let unknown = |w: &EntryWritten| match w {
            EntryWritten::Queued(_) => EntryWritten::Queued(None),
            EntryWritten::Settled { ticket, key_waits, .. } => EntryWritten::Settled { ticket: *ticket, key_waits: *key_waits, next: None },
            other => other.clone(),
        };
        assert_eq!(by_pool, by_writer.iter().map(unknown).collect::<Vec<_>>(), "the same answers");
        by_writer
    }
    let events = |w: &EntryWritten| match w {
        EntryWritten::Queued(Some(heads)) => heads.iter().map(|j| j.event_id.clone()).collect::<Vec<_>>(),
        other => panic!("not new jobs with their heads: {other:?}"),
    };

    // New jobs: one entry (one statement), two entries with an event id twice (kept once),
    // more than one statement holds (a transaction).
    let first = both(&pool, &mut writer, vec![BatchEntry::Jobs(vec![job("e1", "k1", Origin::Event, false), job("e2", "k2", Origin::Inbound, true), job("e3", "k3", Origin::Event, false), job("e4", "k4", Origin::Event, false)])]).await;
    assert_eq!(events(&first[0]), ["e1", "e2", "e3", "e4"], "each heads its key");
    // The jobs handed over are the rows as a claim reads them.
    let EntryWritten::Queued(Some(handed)) = &first[0] else { unreachable!() };
    assert_eq!(handed, &storage::due_heads(&other, "w", Utc::now(), 10).await.unwrap(), "handed over as read");
    let second = both(&pool, &mut writer, vec![BatchEntry::Jobs(vec![job("e5", "k5", Origin::Event, false)]), BatchEntry::Jobs(vec![job("e5", "k5", Origin::Event, false), job("e6", "k1", Origin::Event, false)])]).await;
    assert_eq!((events(&second[0]), events(&second[1])), (vec!["e5".to_string()], vec![]), "an event id twice is handed over once; e6 waits behind e1 of its key");
    let many: Vec<NewDelivery> = (0..450).map(|i| job(&format!("m{i}"), &format!("m{}", i % 40), Origin::Event, false)).collect();
    let third = both(&pool, &mut writer, vec![BatchEntry::Jobs(many)]).await;
    assert_eq!(events(&third[0]), (0..40).map(|i| format!("m{i}")).collect::<Vec<_>>(), "the first job of each key, in a transaction of three statements");

    let claims = storage::claim(&pool, "w", Utc::now(), 5, &[], ME).await.unwrap();
    let tokens: Vec<ClaimToken> = claims.iter().map(|c| c.token).collect();
    let same: Vec<ClaimToken> = storage::claim(&other, "w", Utc::now(), 5, &[], ME).await.unwrap().iter().map(|c| c.token).collect();
    assert_eq!(tokens, same, "the same jobs on both");
    let [t1, t2, t3, t4, t5] = tokens[..] else { panic!("five heads: {tokens:?}") };
    let later = Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap() + chrono::Duration::microseconds(120_000);
    let synced = |n: u8| Synced {
        base: Some(json!({"status": "open", "n": n})),
        hms_hash: Some(format!("hh{n}")),
        external_hash: None,
        hms_version: Some(json!(7)),
        external_version: Some(json!("2026-12-01T10:00:00Z")),
        hms_written: vec!["one".into(), "two".into()],
        external_written: Vec::new(),
        hms_version_ours: true,
        external_version_ours: false,
        hms_lost: false,
        external_lost: n % 2 == 0,
    };
    let link = |hms: &str, replaces: Option<&str>, n: u8| LinkUpdate { connector_id: "w".into(), hms_id: hms.into(), external_id: format!("x-{hms}"), synced: synced(n), replaces: replaces.map(str::to_owned) };
    let written = both(
        &pool,
        &mut writer,
        vec![
            BatchEntry::Outcome {
                update: JobUpdate::Complete { token: t1, attempts: 1 },
                jobs: vec![job("merged-1", "k1", Origin::Merged(hms_sync::spec::model::Side::Hms), false)],
                link: Some(link("h1", None, 1)),
                attempt: Some(attempt(t1.job, Some(200), None)),
                ticket: Some(ticket(t1.job, TicketStatus::Completed, Some(json!({"z": 1, "a": [true, "ü\n"]})))),
            },
            // The same job settled twice in one batch: the second is stale.
            outcome(JobUpdate::Complete { token: t1, attempts: 1 }),
            BatchEntry::Outcome {
                update: JobUpdate::Reschedule { token: t2, attempts: 1, at: later, error: "503 Service Unavailable".into() },
                jobs: Vec::new(),
                link: None,
                attempt: Some(attempt(t2.job, Some(503), Some("503"))),
                ticket: None,
            },
            BatchEntry::Outcome {
                update: JobUpdate::Park { token: t3, attempts: 1, error: "422: no".into() },
                jobs: Vec::new(),
                link: None,
                attempt: Some(attempt(t3.job, None, Some("refused"))),
                ticket: Some(ticket(t3.job, TicketStatus::Parked, None)),
            },
            BatchEntry::Ticket(NewTicket { delivery_id: None, ..ticket(0, TicketStatus::Skipped, None) }),
            BatchEntry::Outcome {
                update: JobUpdate::Conflict { token: t4, attempts: 1, error: "conflict: both changed".into(), records: json!({"base": {}, "hms": {"a": 1}, "external": {"a": 2}}) },
                jobs: Vec::new(),
                link: Some(link("h4", None, 4)),
                attempt: None,
                ticket: Some(ticket(t4.job, TicketStatus::Conflict, None)),
            },
        ],
    )
    .await;
    // Settled, with whether the job's key has a pending job: k1 has e6 and the merge's new
    // job, k2's job stays (rescheduled), k3 and k4 have no other.
    assert!(
        matches!(
            written[..],
            [
                EntryWritten::Settled { ticket: Some(_), key_waits: true, next: Some(_) },
                EntryWritten::Stale,
                EntryWritten::Settled { ticket: None, key_waits: true, next: None },
                EntryWritten::Settled { ticket: Some(_), key_waits: false, next: None },
                EntryWritten::Written(Some(_)),
                EntryWritten::Settled { ticket: Some(_), key_waits: false, next: None },
            ]
        ),
        "{written:?}"
    );
    // k1's next job, handed with the settle: e6, stored before this batch, due, and the row
    // as a claim reads it (the merge's new job, stored by this batch, goes to its lane as a
    // new job instead). k2's is the job itself, rescheduled: not due, so not handed.
    let EntryWritten::Settled { next: Some(next), .. } = &written[0] else { unreachable!() };
    assert_eq!(next.event_id, "e6");
    assert!(storage::due_heads(&other, "w", Utc::now(), 50).await.unwrap().contains(next), "handed as read: {next:?}");
    // Later: a stale outcome (settled already), a link renamed (HMS numbered the record
    // anew), a completion with a claim's fence of one attempt more.
    let later = both(&pool, &mut writer, vec![outcome(JobUpdate::Complete { token: t1, attempts: 1 }), BatchEntry::Outcome { update: JobUpdate::Complete { token: t5, attempts: 3 }, jobs: Vec::new(), link: Some(link("h1b", Some("h1"), 5)), attempt: None, ticket: Some(ticket(t5.job, TicketStatus::Completed, None)) }]).await;
    assert!(matches!(later[..], [EntryWritten::Stale, EntryWritten::Settled { ticket: Some(_), key_waits: false, next: None }]), "{later:?}");
    // New jobs in a batch with other entries (one transaction): k3's job was parked (its
    // key is free), k2's waits for its retry.
    let mixed = both(&pool, &mut writer, vec![BatchEntry::Ticket(NewTicket { delivery_id: None, ..ticket(0, TicketStatus::Skipped, None) }), BatchEntry::Jobs(vec![job("n1", "k3", Origin::Event, false), job("n2", "k2", Origin::Event, false)])]).await;
    assert_eq!(events(&mixed[1]), ["n1"], "{mixed:?}");

    for table in ["deliveries", "delivery_attempts", "record_links", "sync_tickets"] {
        let (a, b) = (rows(&url_a, table), rows(&url_b, table));
        assert_eq!(a.0, b.0, "{table}: the same columns");
        assert_eq!(a.1.len(), b.1.len(), "{table}: the same number of rows");
        assert!(!a.1.is_empty(), "{table}: written");
        for (ra, rb) in a.1.iter().zip(&b.1) {
            for ((column, va), vb) in a.0.iter().zip(ra).zip(rb) {
                match (va, vb) {
                    (Value::Text(ta), Value::Text(tb)) if WRITE_TIMES.contains(&column.as_str()) && ta != tb => {
                        let (pa, pb) = (DateTime::parse_from_rfc3339(ta).unwrap(), DateTime::parse_from_rfc3339(tb).unwrap());
                        assert!(ta.ends_with("+00:00") && tb.ends_with("+00:00") && ta.len().abs_diff(tb.len()) <= 7, "{table}.{column}: {ta} and {tb}");
                        assert!((pa - pb).num_seconds().abs() < 60, "{table}.{column}: {ta} and {tb}");
                    }
                    (Value::Text(ta), Value::Text(tb)) if column.ends_with("hash") && column != "hms_hash" && column != "external_hash" => {
                        assert!(ta.len() == 64 && tb.len() == 64, "{table}.{column}: {ta} and {tb}");
                    }
                    _ => assert_eq!(va, vb, "{table}.{column}"),
                }
            }
        }
    }
    let retry_at = |url: &str| rows(url, "deliveries").1.into_iter().find(|r| r[0] == Value::Integer(t2.job)).unwrap()[8].clone();
    assert_eq!(rows(&url_a, "deliveries").0[8], "next_attempt_at");
    assert_eq!(retry_at(&url_a), retry_at(&url_b), "a given time is written exactly as the pool writes it");
    let chain = storage::verify_chain(&other).await.unwrap();
    assert!(chain.ok && chain.first_broken.is_none() && chain.checked == 6, "{chain:?}");
    // What is due reads the same from the rows each wrote (times compare as the pool's do):
    // the rescheduled job is not, its key's next one is.
    let due = |db: Db| async move { storage::claim(&db, "w", Utc::now(), 100, &[], ME).await.unwrap().iter().map(|c| c.job.event_id.clone()).collect::<Vec<_>>() };
    let (due_a, due_b) = (due(pool.clone()).await, due(other.clone()).await);
    assert_eq!(due_a, due_b);
    assert!(due_b.contains(&"e6".to_owned()) && !due_b.contains(&"e2".to_owned()), "{due_b:?}");
}

/// A SQLite file in a folder of its own (kept while the test holds it), its pool and its
/// writer.
async fn one_database() -> (tempfile::TempDir, Db, SqliteWriter) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}/w.db", dir.path().display());
    let db = storage::connect(&url).await.unwrap();
    let writer = SqliteWriter::open(&url).unwrap().unwrap();
    (dir, db, writer)
}

/// A batch the database refuses (here a trigger, as a full disk would) fails whole: its
/// outcome is not written without its ticket. The writer goes on: the same batch is written
/// once the database takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_leaves_nothing_and_the_writer_goes_on() {
    use sea_orm::ConnectionTrait;
    let (_dir, db, mut writer) = one_database().await;
    writer.write(&[&BatchEntry::Jobs(vec![job("e1", "k1", Origin::Event, false)])]).unwrap();
    let claim = storage::claim(&db, "w", Utc::now(), 1, &[], ME).await.unwrap().remove(0);
    db.execute_unprepared("CREATE TRIGGER refuse BEFORE INSERT ON sync_tickets BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END").await.unwrap();
    let batch = BatchEntry::Outcome { update: JobUpdate::Complete { token: claim.token, attempts: 1 }, jobs: Vec::new(), link: None, attempt: Some(attempt(claim.job.id, Some(200), None)), ticket: Some(ticket(claim.job.id, TicketStatus::Completed, None)) };
    let err = writer.write(&[&batch]).unwrap_err().to_string();
    assert!(err.contains("disk full (test)"), "{err}");
    let job = storage::get_delivery(&db, claim.job.id).await.unwrap().unwrap();
    assert_eq!((job.status.as_str(), job.attempts), ("pending", 0), "nothing of the batch was written");
    assert!(storage::list_attempts(&db, claim.job.id).await.unwrap().is_empty());
    db.execute_unprepared("DROP TRIGGER refuse").await.unwrap();
    let written = writer.write(&[&batch]).unwrap();
    assert!(matches!(written[..], [EntryWritten::Settled { ticket: Some(_), key_waits: false, next: None }]), "{written:?}");
    assert_eq!(storage::get_delivery(&db, claim.job.id).await.unwrap().unwrap().status, storage::JobStatus::Done);
}

/// The key's next job handed with a settle is read in the settle's commit; one that does not
/// read (its payload not JSON, its due time not a time) is left to the lane's read of the
/// queue, which reports it: the settle is written all the same, `key_waits` without `next`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_job_that_does_not_read_does_not_fail_the_settle() {
    use sea_orm::ConnectionTrait;
    let (_dir, db, mut writer) = one_database().await;
    for (column, bad) in [("payload", "{not json"), ("next_attempt_at", "soon")] {
        let key = format!("k-{column}");
        writer.write(&[&BatchEntry::Jobs(vec![job(&format!("{column}-1"), &key, Origin::Event, false), job(&format!("{column}-2"), &key, Origin::Event, false)])]).unwrap();
        let claim = storage::claim(&db, "w", Utc::now(), 1, &[], ME).await.unwrap().remove(0);
        db.execute_unprepared(&format!("UPDATE deliveries SET {column} = '{bad}' WHERE event_id = '{column}-2'")).await.unwrap();
        let settle = BatchEntry::Outcome { update: JobUpdate::Complete { token: claim.token, attempts: 1 }, jobs: Vec::new(), link: None, attempt: None, ticket: Some(ticket(claim.job.id, TicketStatus::Completed, None)) };
        let written = writer.write(&[&settle]).unwrap();
        assert!(matches!(written[..], [EntryWritten::Settled { ticket: Some(_), key_waits: true, next: None }]), "{column}: {written:?}");
        assert_eq!(storage::get_delivery(&db, claim.job.id).await.unwrap().unwrap().status, storage::JobStatus::Done, "{column}");
        db.execute_unprepared(&format!("DELETE FROM deliveries WHERE event_id = '{column}-2'")).await.unwrap();
    }
}

/// Only a SQLite file has a writer of its own: a database in memory is another connection's
/// alone, and PostgreSQL takes its writes through the pool.
#[test]
fn only_a_sqlite_file_has_a_writer() {
    assert!(SqliteWriter::open("sqlite::memory:").unwrap().is_none());
    assert!(SqliteWriter::open("sqlite:file:x?mode=memory").unwrap().is_none());
    assert!(SqliteWriter::open("postgres://postgres@127.0.0.1:5432/test").unwrap().is_none());
    let err = SqliteWriter::open("sqlite:/nonexistent-dir/x.db").unwrap_err().to_string();
    assert!(err.contains("/nonexistent-dir/x.db"), "{err}");
}

/// A table's columns and rows, as SQLite holds them, in id order.
fn rows(url: &str, table: &str) -> (Vec<String>, Vec<Vec<Value>>) {
    let conn = rusqlite::Connection::open(url.trim_start_matches("sqlite:")).unwrap();
    let mut s = conn.prepare(&format!("SELECT * FROM {table} ORDER BY id")).unwrap();
    let columns: Vec<String> = s.column_names().into_iter().map(str::to_owned).collect();
    let n = columns.len();
    let rows = s.query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect::<Result<Vec<_>, _>>()).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    (columns, rows)
}

/// A job's state has columns of its own: a note of a write in flight (with what it writes,
/// or without) reads back as noted and is cleared by the job's settle, whichever writer
/// settles it (SQLite's own completion, the pool's batched one, the builder's statements);
/// a panicked attempt is counted, the job tried again like a reschedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_clears_the_write_in_flight_and_a_panic_is_counted() {
    use hms_sync::spec::model::Side;
    use hms_sync::storage::{InFlight, JobStatus};
    use hms_sync::sync::engine::Written;
    let (_dir, db, mut writer) = one_database().await;
    let jobs = (1..=4).map(|i| job(&format!("f{i}"), &format!("fk{i}"), Origin::Event, false)).collect();
    writer.write(&[&BatchEntry::Jobs(jobs)]).unwrap();
    let claims = storage::claim(&db, "w", Utc::now(), 4, &[], ME).await.unwrap();
    assert_eq!(claims.len(), 4);
    let update = InFlight { written: Some(Written { to: Side::Legacy, content: "abc".into() }) };
    for (i, c) in claims.iter().enumerate() {
        let noted = if i % 2 == 0 { update.clone() } else { InFlight::default() };
        storage::note_in_flight(&db, c.job.id, "in flight: PUT http://127.0.0.1/x", &noted).await.unwrap();
    }
    let read = |i: usize| {
        let (db, id) = (db.clone(), claims[i].job.id);
        async move { storage::get_delivery(&db, id).await.unwrap().unwrap() }
    };
    assert_eq!(read(0).await.in_flight, Some(update), "noted with what it writes");
    assert_eq!(read(1).await.in_flight, Some(InFlight::default()), "noted without (a create): in flight all the same");
    assert_eq!(read(1).await.panics, 0);

    let later = Utc::now() + chrono::Duration::seconds(60);
    writer
        .write(&[&outcome(JobUpdate::Complete { token: claims[0].token, attempts: 1 }), &outcome(JobUpdate::Panicked { token: claims[1].token, attempts: 1, at: later, error: "panicked: boom".into() })])
        .unwrap();
    storage::write_batch(&db, &[&outcome(JobUpdate::Complete { token: claims[2].token, attempts: 1 })]).await.unwrap();
    storage::apply_update(&db, &JobUpdate::Reschedule { token: claims[3].token, attempts: 1, at: later, error: "HTTP 503".into() }).await.unwrap();
    let mut state = Vec::new();
    for i in 0..4 {
        let j = read(i).await;
        state.push((j.status, j.in_flight, j.panics, j.next_attempt_at > Utc::now()));
    }
    assert_eq!(
        state,
        [(JobStatus::Done, None, 0, false), (JobStatus::Pending, None, 1, true), (JobStatus::Done, None, 0, false), (JobStatus::Pending, None, 0, true)],
        "settled: nothing in flight; the panic counted and the job due again later"
    );
    // Parked at its second panic and put back by an operator: a fresh start, two tries again.
    let second = storage::claim(&db, "w", later + chrono::Duration::seconds(1), 4, &[], ME).await.unwrap().into_iter().find(|c| c.job.id == claims[1].job.id).expect("due again");
    assert_eq!(second.job.panics, 1);
    storage::apply_update(&db, &JobUpdate::Park { token: second.token, attempts: 2, error: "poison job".into() }).await.unwrap();
    let replayed = storage::replay_parked(&db, claims[1].job.id, None, "ops").await.unwrap().expect("parked");
    assert_eq!((replayed.status, replayed.attempts, replayed.panics), (JobStatus::Pending, 0, 0));
}
