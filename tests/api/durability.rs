//! What is accepted is not lost: across a clean restart, across `kill -9` of the real
//! binary; and secrets never leak into the API, the log or the database.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

/// How many requests answered 200 each `n` got.
fn delivered_counts(got: &[Received]) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for r in got.iter().filter(|r| r.status == 200) {
        *counts.entry(r.body["n"].as_i64().unwrap_or(-1)).or_insert(0) += 1;
    }
    counts
}

// 16
#[actix_web::test]
async fn nothing_accepted_is_lost_across_a_restart() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("durable-restart");
    std::fs::write(dir.join("connectors/d.yaml"), numbered_connector("d", "durable.test", &fake.base, "{ max: 3, backoffMs: 10 }")).unwrap();
    let app = TestApp::spawn(test_settings(&dir)).await;
    assert_eq!(app.call("PUT", "/connectors/d/pause", None).await.0, 202);
    app.wait_state("d", "paused").await;
    for n in 0..30 {
        app.publish("durable.test", json!({"n": n})).await;
    }
    let s = app.status("d").await;
    assert_eq!(s["queue_depth"], 30, "{s}");
    let settings = app.stop().await;
    assert!(fake.received().is_empty(), "nothing is sent while paused");

    let app = TestApp::spawn(settings).await;
    let s = app.wait_state("d", "paused").await;
    assert_eq!(s["queue_depth"], 30, "every job was reloaded: {s}");
    assert_eq!(app.call("PUT", "/connectors/d/resume", None).await.0, 202);
    let tickets = app.wait_tickets("connector=d&status=completed", 30).await;
    assert_eq!(tickets.len(), 30);
    app.wait_queue_empty("d").await;
    let got = fake.received();
    let counts = delivered_counts(&got);
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), (0..30).collect::<Vec<_>>(), "every event delivered");
    assert!(counts.values().all(|c| *c == 1), "each exactly once: {counts:?}");
    assert_eq!(got.len(), 30, "no other request: {got:#?}");
    assert!(app.tickets("connector=d&status=parked").await.is_empty());
}

// 16: the database refuses writes (a full disk, say) while a backlog drains.
#[actix_web::test]
async fn when_outcomes_cannot_be_stored_the_pusher_holds_back_and_loses_nothing() {
    use sea_orm::ConnectionTrait;
    let fake = FakeSystem::start().await;
    let dir = temp_dir("durable-refused");
    let yaml = numbered_connector("d", "refused.test", &fake.base, "{ max: 3, backoffMs: 10 }") + "concurrency: 2\n";
    std::fs::write(dir.join("connectors/d.yaml"), yaml).unwrap();
    let app = TestApp::spawn(test_settings(&dir)).await;
    assert_eq!(app.call("PUT", "/connectors/d/pause", None).await.0, 202);
    app.wait_state("d", "paused").await;
    for n in 0..10 {
        app.publish("refused.test", json!({"n": n})).await;
    }
    // From now on no ticket can be written, so no outcome can be stored; reads still work.
    let db = &app.state().db;
    db.execute_unprepared("CREATE TRIGGER refuse_tickets BEFORE INSERT ON sync_tickets BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END")
        .await
        .unwrap();
    // Slow answers, so that each failed write is known long before the next answer comes.
    fake.answer_always(Reply::Stall(Duration::from_millis(500)));
    assert_eq!(app.call("PUT", "/connectors/d/resume", None).await.0, 202);
    // A job whose outcome was not stored is sent again after its hold...
    let got = fake.wait_until("a job sent a second time", |r| delivered_counts(r).values().any(|c| *c >= 2)).await;
    // ...and until then the Pusher took no new job: it did not run through the backlog
    // sending jobs it could not record. (Two slots: the first two jobs, the two taken while
    // their outcomes were being refused, and at most one more pair on a slow machine; a
    // Pusher that kept going would have sent all ten by then.)
    let sent = delivered_counts(&got).len();
    assert!(sent <= 6, "{sent} of 10 jobs sent while no outcome could be stored");
    let s = app.status("d").await;
    assert_eq!(s["queue_depth"], 10, "nothing recorded, nothing lost: {s}");

    db.execute_unprepared("DROP TRIGGER refuse_tickets").await.unwrap();
    fake.answer_normally();
    app.wait_tickets("connector=d&status=completed", 10).await;
    app.wait_queue_empty("d").await;
    let counts = delivered_counts(&fake.received());
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), (0..10).collect::<Vec<_>>(), "every event delivered");
    assert_eq!(app.tickets("connector=d").await.len(), 10, "one ticket per job");
}

// 17
#[actix_web::test]
async fn nothing_accepted_is_lost_when_the_process_is_killed() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("durable-kill");
    // Many retries with a short, capped back-off: the jobs are still retrying when killed.
    std::fs::write(dir.join("connectors/k.yaml"), numbered_connector("k", "kill.test", &fake.base, "{ max: 100, backoffMs: 20, maxBackoffMs: 200 }"))
        .unwrap();
    fake.answer_always(Reply::Status(503));
    let mut service = Service::up(&dir, &[], Stdio::null()).await;
    for n in 0..40 {
        let (code, body) = service.call("POST", "/events/kill.test", Some(&json!({"n": n}).to_string())).await;
        assert_eq!(code, 202, "{body}");
        assert_eq!(body["connectors"], json!(["k"]), "{body}");
    }
    // Every job was attempted (and failed) at least once: all of them are mid-retry.
    fake.wait_until("every job to have failed once", |r| r.iter().map(|x| x.body["n"].as_i64()).collect::<BTreeSet<_>>().len() == 40)
        .await;
    service.kill9();
    let failed_before = fake.received().len();
    assert!(fake.received().iter().all(|r| r.status == 503));

    fake.answer_normally();
    let service = Service::up(&dir, &[], Stdio::null()).await;
    let got = poll_until("all 40 delivered after the restart", Duration::from_secs(30), || async {
        let got = fake.received();
        (delivered_counts(&got).len() == 40).then_some(got)
    })
    .await;
    let counts = delivered_counts(&got);
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), (0..40).collect::<Vec<_>>(), "{counts:?}");
    assert!(got.len() > failed_before);
    let (code, parked) = service.call("GET", "/parked?connector=k", None).await;
    assert_eq!(code, 200);
    assert_eq!(parked["parked"], json!([]), "nothing gave up: {parked}");
    drop(service);
}

/// Every file of the data directory (the SQLite file, its -wal and -shm), as bytes.
fn data_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir.join("data")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// 18
#[actix_web::test]
async fn secrets_never_leak_into_the_api_the_log_or_the_database() {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let secret = format!("s3cr3t-value-{nanos:x}{}", std::process::id());
    let fake = FakeSystem::start().await;
    let dir = temp_dir("secrets");
    let yaml = r#"id: sec
type: outbound
trigger: { topic: secret.test }
key: "{{ n }}"
map:
  to:
    url: "@FAKE@/echo/{n}?token=${HMS_SYNC_TEST_SECRET}"
    method: POST
    headers: { Authorization: "Bearer ${HMS_SYNC_TEST_SECRET}" }
    body: { n: "{{ n }}" }
retry: { max: 2, backoffMs: 10 }
"#
    .replace("@FAKE@", &fake.base);
    std::fs::write(dir.join("connectors/sec.yaml"), yaml).unwrap();
    let log_path = dir.join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // A 503 then a 400 whose bodies quote the request URL, so the error text of a retry
    // and of the parked job carry the secret.
    fake.script([Reply::EchoUrl(503), Reply::EchoUrl(400)]);
    let mut service = Service::up(&dir, &[("HMS_SYNC_TEST_SECRET", &secret)], Stdio::from(log)).await;

    let (code, body) = service.call("POST", "/events/secret.test", Some(r#"{"n": 1}"#)).await;
    assert_eq!(code, 202, "{body}");
    let parked = poll_until("the 400 to be parked", WAIT, || async {
        let (_, p) = service.call("GET", "/parked?connector=sec", None).await;
        p["parked"].as_array().filter(|a| !a.is_empty()).cloned()
    })
    .await;
    let why = parked[0]["lastError"].as_str().unwrap_or_default().to_string();
    assert!(why.contains("HTTP 400") && why.contains("token="), "the quoted URL is in the error: {why}");
    assert_eq!(parked[0]["attempts"], 2, "{}", parked[0]);
    let (code, body) = service.call("POST", "/events/secret.test", Some(r#"{"n": 2}"#)).await;
    assert_eq!(code, 202, "{body}");
    poll_until("two tickets", WAIT, || async {
        let (_, t) = service.call("GET", "/tickets?connector=sec", None).await;
        (t["tickets"].as_array().map_or(0, Vec::len) == 2).then_some(())
    })
    .await;

    // The secret was really used.
    let got = fake.received();
    assert_eq!(got.len(), 3, "{got:#?}");
    for r in &got {
        assert!(r.path.ends_with(&format!("?token={secret}")), "{}", r.path);
        assert_eq!(r.header("authorization"), Some(format!("Bearer {secret}").as_str()));
    }
    assert_eq!(got.iter().map(|r| r.status).collect::<Vec<_>>(), [503, 400, 200]);

    // …and it is nowhere the service shows or keeps.
    let mut shown: Vec<(String, String)> = Vec::new();
    for path in ["/tickets", "/tickets?connector=sec", "/parked", "/connectors?expand=status,info", "/connectors/sec", "/connectors/sec/status"] {
        let (code, text) = service.call_text("GET", path, None).await;
        assert_eq!(code, 200, "{path}: {text}");
        shown.push((path.to_string(), text));
    }
    let (code, dry) = service.call_text("POST", "/connectors/sec/test", Some(r#"{"n": 3}"#)).await;
    assert_eq!(code, 200, "{dry}");
    assert!(dry.contains("****"), "the dry run masks the secret: {dry}");
    shown.push(("dry run".into(), dry));
    let tickets: Value = serde_json::from_str(&shown[1].1).unwrap();
    assert!(tickets["tickets"].as_array().unwrap().iter().any(|t| t["status"] == "parked"), "{tickets}");
    for (what, text) in &shown {
        assert!(!text.contains(&secret), "the secret leaks in {what}: {text}");
    }
    let running_files = data_files(&dir);
    assert!(running_files.iter().any(|(p, _)| p.ends_with("hms-sync.db")));

    let status = service.terminate();
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("delivery parked"), "the log was written: {log}");
    assert!(!log.contains(&secret), "the secret leaks in the log:\n{log}");
    for (path, bytes) in running_files.into_iter().chain(data_files(&dir)) {
        assert!(!contains(&bytes, secret.as_bytes()), "the secret is stored in {path}");
    }
}
