//! Operations: Prometheus metrics, the tamper-evident ticket chain (API and `hms-sync audit
//! verify`), ticket retention with its anchor (also while a chain check runs), fail-rate and
//! parked-job alerts, JSON logs of the real binary, and the `hms-sync status` table.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value as PromValue};
use serde_json::{json, Value};

use crate::helpers::*;

fn write_connector(dir: &std::path::Path, id: &str, yaml: &str) {
    std::fs::write(dir.join("connectors").join(format!("{id}.yaml")), yaml).unwrap();
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("expected a string, found {v}"))
}

// ---------------------------------------------------------------------------------------
// Metrics

/// What one exposition text says about its families, checked line by line.
struct Families {
    /// Family name → its `# TYPE`.
    types: BTreeMap<String, String>,
}

/// Checks the exposition text's shape: one HELP and one TYPE per family, both before the
/// family's samples, and each family's lines in one contiguous group.
fn check_exposition(text: &str) -> Families {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut helps: BTreeMap<String, usize> = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut type_lines: BTreeMap<String, usize> = BTreeMap::new();
    for l in &lines {
        let words: Vec<&str> = l.split_whitespace().collect();
        match words.as_slice() {
            ["#", "HELP", name, ..] => *helps.entry(name.to_string()).or_default() += 1,
            ["#", "TYPE", name, kind] => {
                *type_lines.entry(name.to_string()).or_default() += 1;
                types.insert(name.to_string(), kind.to_string());
            }
            ["#", ..] => panic!("unexpected comment line {l:?}"),
            _ => {}
        }
    }
    for (name, n) in &helps {
        assert_eq!(*n, 1, "family {name} has {n} `# HELP` lines:\n{text}");
        assert!(type_lines.contains_key(name), "family {name} has a HELP but no TYPE line:\n{text}");
    }
    for (name, n) in &type_lines {
        assert_eq!(*n, 1, "family {name} has {n} `# TYPE` lines:\n{text}");
        assert!(helps.contains_key(name), "family {name} has a TYPE but no HELP line:\n{text}");
    }
    let family_of = |sample: &str| -> String {
        if types.contains_key(sample) {
            return sample.to_string();
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix)
                && matches!(types.get(base).map(String::as_str), Some("histogram" | "summary"))
            {
                return base.to_string();
            }
        }
        panic!("sample {sample} belongs to no declared family:\n{text}")
    };
    // The family of every line, in order; runs of one family collapsed.
    let mut runs: Vec<String> = Vec::new();
    let mut first_sample: BTreeMap<String, usize> = BTreeMap::new();
    let mut doc_at: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        let family = if let Some(rest) = l.strip_prefix("# HELP ").or_else(|| l.strip_prefix("# TYPE ")) {
            let name = rest.split_whitespace().next().unwrap().to_string();
            doc_at.entry(name.clone()).or_default().push(i);
            name
        } else {
            let name: String = l.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
            let family = family_of(&name);
            first_sample.entry(family.clone()).or_insert(i);
            family
        };
        if runs.last() != Some(&family) {
            runs.push(family);
        }
    }
    let mut seen = BTreeSet::new();
    for f in &runs {
        assert!(seen.insert(f.clone()), "the lines of family {f} are not one contiguous group:\n{text}");
    }
    for (family, at) in &first_sample {
        let docs = doc_at.get(family).cloned().unwrap_or_default();
        assert!(docs.len() == 2 && docs.iter().all(|d| d < at), "HELP and TYPE of {family} must come before its samples:\n{text}");
    }
    for (name, kind) in &types {
        if kind == "counter" {
            assert!(name.ends_with("_total"), "counter {name} does not end in _total");
        }
    }
    Families { types }
}

fn scrape(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("the exposition text parses")
}

/// The samples of `metric` whose labels include all of `labels`.
fn samples<'a>(s: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    s.samples.iter().filter(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))).collect()
}

/// The value of the one sample of `metric` with `labels`; `None` when there is none.
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found = samples(s, metric, labels);
    assert!(found.len() <= 1, "more than one sample of {metric} {labels:?}: {found:?}");
    found.first().map(|x| match &x.value {
        PromValue::Counter(v) | PromValue::Gauge(v) | PromValue::Untyped(v) => *v,
        other => panic!("{metric} is not a single value: {other:?}"),
    })
}

async fn metrics_text(base: &str) -> String {
    let (code, content_type, body) = get_open(base, "/metrics").await;
    assert_eq!(code, 200, "GET /metrics: {body}");
    assert!(content_type.starts_with("text/plain"), "content type {content_type:?}");
    body
}

/// Reads of the delivery queue by `connector`'s lane so far (`sync_queue_reads_total`).
async fn queue_reads(app: &TestApp, connector: &str) -> f64 {
    value(&scrape(&metrics_text(&app.base).await), "sync_queue_reads_total", &[("connector", connector)]).unwrap_or_default()
}

/// Waits for the lane's first read of the queue, at its start; the reads so far.
async fn after_first_queue_read(app: &TestApp, connector: &str) -> f64 {
    poll_until("the lane's first read of the queue", Duration::from_secs(10), || async { (queue_reads(app, connector).await >= 1.0).then_some(()) }).await;
    queue_reads(app, connector).await
}

/// Publishes `events` on `connector`'s topic (`{connector}.t`) once its lane has read the
/// queue at its start, the target holding the first request until the others are stored (and
/// handed to the lane); waits until every one is delivered and ticketed. What the target
/// received, in order, and the lane's reads of the queue meanwhile.
async fn held_first_of(app: &TestApp, fake: &FakeSystem, connector: &str, events: Vec<Value>) -> (Vec<Received>, f64) {
    let (topic, n) = (format!("{connector}.t"), events.len());
    let before = after_first_queue_read(app, connector).await;
    fake.script([Reply::Stall(Duration::from_secs(2))]);
    let mut events = events.into_iter();
    if let Some(first) = events.next() {
        app.publish(&topic, first).await;
        fake.wait_for(1).await;
    }
    for event in events {
        app.publish(&topic, event).await;
    }
    let received = fake.wait_for(n).await;
    app.wait_tickets(&format!("connector={connector}&status=completed"), n).await;
    (received, queue_reads(app, connector).await - before)
}

#[actix_web::test]
async fn metrics_count_deliveries_failures_parked_jobs_queues_and_restarts() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("ops-metrics");
    write_connector(&dir, "m", &numbered_connector("m", "metrics.m", &fake.base, "{ max: 3, backoffMs: 10 }"));
    write_connector(&dir, "q", &numbered_connector("q", "metrics.q", &fake.base, "{ max: 3, backoffMs: 10 }"));
    let mut settings = test_settings(&dir);
    settings.server.admin_token = Some("ops-metrics-token".into());
    let app = TestApp::spawn(settings).await;
    app.wait_state("m", "running").await;
    // The token is in force: an admin route refuses a request without it.
    assert_eq!(get_open(&app.base, "/connectors").await.0, 401, "admin routes need the token");

    // m: one slow success (300 ms, for the latency unit), one failure then a success, one
    // permanent failure (parked).
    fake.script_path("/m/1", [Reply::Stall(Duration::from_millis(300))]);
    fake.script_path("/m/2", [Reply::Status(503)]);
    fake.script_path("/m/3", [Reply::Status(400)]);
    for n in 1..=3 {
        app.publish("metrics.m", json!({"n": n})).await;
    }
    // q: paused, three jobs waiting.
    assert_eq!(app.call("PUT", "/connectors/q/pause", None).await.0, 202);
    app.wait_state("q", "paused").await;
    for n in 1..=3 {
        app.publish("metrics.q", json!({"n": n})).await;
    }
    app.wait_tickets("connector=m&status=completed", 2).await;
    app.wait_tickets("connector=m&status=parked", 1).await;
    let s = app.status("q").await;
    assert_eq!(s["queue_depth"], 3, "{s}");

    // A crash of m's pusher, restarted by its supervisor.
    app.fault("m", "pusher", "panic").await;
    poll_until("m's pusher to be restarted", WAIT, || async {
        let s = app.status("m").await;
        (s["restarts"] == 1 && s["state"] == "running").then_some(())
    })
    .await;

    let body = metrics_text(&app.base).await;
    let families = check_exposition(&body);
    for f in ["sync_ok_total", "sync_fail_total", "sync_parked_total", "sync_restarts_total", "sync_events_accepted_total"] {
        assert_eq!(families.types.get(f).map(String::as_str), Some("counter"), "{f} is a counter:\n{body}");
    }
    for f in ["sync_queue_depth", "sync_parked_jobs"] {
        assert_eq!(families.types.get(f).map(String::as_str), Some("gauge"), "{f} is a gauge:\n{body}");
    }
    assert_eq!(families.types.get("sync_latency_seconds").map(String::as_str), Some("histogram"), "{body}");

    let scrape = scrape(&body);
    let m = [("connector", "m")];
    let q = [("connector", "q")];
    assert_eq!(value(&scrape, "sync_ok_total", &m), Some(2.0), "two deliveries succeeded:\n{body}");
    assert_eq!(value(&scrape, "sync_fail_total", &m), Some(2.0), "one 503, one 400:\n{body}");
    assert_eq!(value(&scrape, "sync_parked_total", &m), Some(1.0), "{body}");
    assert_eq!(value(&scrape, "sync_events_accepted_total", &m), Some(3.0), "{body}");
    assert_eq!(value(&scrape, "sync_events_accepted_total", &q), Some(3.0), "{body}");
    assert_eq!(value(&scrape, "sync_restarts_total", &m), Some(1.0), "the injected fault:\n{body}");
    assert!(matches!(value(&scrape, "sync_restarts_total", &q), None | Some(0.0)), "q never crashed:\n{body}");
    assert!(matches!(value(&scrape, "sync_ok_total", &q), None | Some(0.0)), "q sent nothing while paused:\n{body}");
    assert_eq!(value(&scrape, "sync_queue_depth", &q), Some(3.0), "q's three waiting jobs:\n{body}");
    assert!(matches!(value(&scrape, "sync_queue_depth", &m), None | Some(0.0)), "m's queue is empty:\n{body}");
    assert_eq!(value(&scrape, "sync_parked_jobs", &m), Some(1.0), "m's parked job:\n{body}");
    assert!(matches!(value(&scrape, "sync_parked_jobs", &q), None | Some(0.0)), "{body}");

    // The latency histogram, in seconds: four attempts, one of them at least 300 ms.
    let hist = samples(&scrape, "sync_latency_seconds", &m);
    assert_eq!(hist.len(), 1, "one histogram for m: {hist:?}");
    let PromValue::Histogram(buckets) = &hist[0].value else { panic!("not a histogram: {:?}", hist[0]) };
    assert!(buckets.len() >= 2, "{buckets:?}");
    let inf = buckets.iter().find(|b| b.less_than.is_infinite()).expect("a +Inf bucket");
    assert_eq!(inf.count, 4.0, "four attempts observed: {buckets:?}");
    let count = value(&scrape, "sync_latency_seconds_count", &m).expect("sync_latency_seconds_count");
    let sum = value(&scrape, "sync_latency_seconds_sum", &m).expect("sync_latency_seconds_sum");
    assert_eq!(count, 4.0, "{body}");
    assert!((0.3..10.0).contains(&sum), "the sum is in seconds (one attempt took >= 0.3 s, all together far less than 10 s): {sum}");
    let under_quarter = buckets.iter().find(|b| (b.less_than - 0.25).abs() < 1e-9).expect("a 0.25 s bucket");
    assert!(under_quarter.count <= 3.0, "the 300 ms attempt is above the 0.25 s bucket: {buckets:?}");
    let mut last = 0.0;
    for b in buckets {
        assert!(b.count >= last, "buckets are cumulative: {buckets:?}");
        last = b.count;
    }
}

// ---------------------------------------------------------------------------------------
// Tamper evidence

#[actix_web::test]
async fn an_edited_ticket_breaks_the_chain_and_audit_verify_names_it() {
    use sea_orm::ConnectionTrait;

    let fake = FakeSystem::start().await;
    let dir = temp_dir("ops-tamper");
    write_connector(&dir, "t", &numbered_connector("t", "tamper.test", &fake.base, "{ max: 3, backoffMs: 10 }"));
    let app = TestApp::spawn(test_settings(&dir)).await;
    app.wait_state("t", "running").await;
    for n in 1..=3 {
        app.publish("tamper.test", json!({"n": n})).await;
    }
    let tickets = app.wait_tickets("connector=t&status=completed", 3).await;
    assert_eq!(tickets.len(), 3, "{tickets:?}");

    let (code, report) = app.call("GET", "/tickets/verify", None).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checked"], 3, "{report}");
    let out = run_client(&app.base, &["audit", "verify"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "an intact chain: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ok") && stdout.contains('3'), "{stdout}");
    assert!(!stdout.contains("BROKEN"), "{stdout}");

    // Someone edits the middle ticket straight in the database.
    let victim = tickets[1]["id"].as_i64().unwrap();
    assert_eq!(tickets[1]["status"], "completed");
    let db = sea_orm::Database::connect(app.settings.database_url()).await.expect("the app's SQLite file opens");
    let res = db.execute_unprepared(&format!("UPDATE sync_tickets SET status = 'parked' WHERE id = {victim}")).await.unwrap();
    assert_eq!(res.rows_affected(), 1);
    db.close().await.unwrap();
    let (_, edited) = app.call("GET", &format!("/tickets/SYNC-{victim}"), None).await;
    assert_eq!(edited["status"], "parked", "the edit is real: {edited}");

    let (code, report) = app.call("GET", "/tickets/verify", None).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["ok"], false, "{report}");
    let broken = format!("SYNC-{victim}");
    assert_eq!(report["firstBroken"]["ticketId"], broken.as_str(), "{report}");
    assert_eq!(report["checked"], 2, "the first ticket held, the second is broken: {report}");
    assert!(text(&report["firstBroken"]["reason"]).contains("edited"), "{report}");

    let out = run_client(&app.base, &["audit", "verify"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "a broken chain: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("BROKEN") && stdout.contains(&broken), "{stdout}");
}

// ---------------------------------------------------------------------------------------
// Retention

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[actix_web::test]
async fn retention_prunes_old_tickets_and_the_anchored_chain_still_verifies() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("ops-retention");
    write_connector(&dir, "r", &numbered_connector("r", "retention.test", &fake.base, "{ max: 3, backoffMs: 10 }"));
    let mut settings = test_settings(&dir);
    settings.tickets.retention_days = 0;
    settings.tickets.prune_every_secs = 1;
    let app = TestApp::spawn(settings).await;
    app.wait_state("r", "running").await;
    for n in 1..=5 {
        app.publish("retention.test", json!({"n": n})).await;
    }
    // Five tickets were written (ids 1..5 in a fresh database); all but the newest go.
    let left = poll_until("only the newest ticket to remain", WAIT, || async {
        let t = app.tickets("").await;
        (t.len() == 1 && t[0]["ticketId"] == "SYNC-5").then_some(t)
    })
    .await;
    assert_eq!(fake.received().len(), 5, "five deliveries");
    let (_, report) = app.call("GET", "/tickets/verify", None).await;
    assert_eq!(report["ok"], true, "pruning keeps the chain verifiable: {report}");
    assert_eq!(report["checked"], 1, "{report}");
    assert_ne!(report["anchor"], GENESIS, "the anchor is the last pruned ticket's hash: {report}");
    assert_eq!(report["anchor"], left[0]["prevHash"], "the oldest ticket chains to the anchor: {report} {}", left[0]);

    // The chain continues from the kept ticket, and the next prune moves the anchor.
    let kept_hash = left[0]["hash"].clone();
    app.publish("retention.test", json!({"n": 6})).await;
    let left = poll_until("the sixth ticket to be the only one", WAIT, || async {
        let t = app.tickets("").await;
        (t.len() == 1 && t[0]["ticketId"] == "SYNC-6").then_some(t)
    })
    .await;
    assert_eq!(left[0]["prevHash"], kept_hash, "{}", left[0]);
    let (_, report) = app.call("GET", "/tickets/verify", None).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["anchor"], kept_hash, "{report}");
}

// ---------------------------------------------------------------------------------------
// Alerts

/// The alerts the receiver got for `connector` of `kind`, as JSON bodies.
fn alerts_of(receiver: &FakeSystem, connector: &str, kind: &str) -> Vec<Value> {
    receiver.received().into_iter().filter(|r| r.body["connector"] == connector && r.body["kind"] == kind).map(|r| r.body).collect()
}

/// Waits until `connector`'s status lists an alert of `kind` and every alert it lists went
/// out (its POST answered); returns the listed alerts.
async fn settled_alerts(app: &TestApp, connector: &str, kind: &str) -> Vec<Value> {
    poll_until(&format!("a delivered {kind} alert of {connector}"), WAIT, || async {
        let s = app.status(connector).await;
        let list = s["alerts"].as_array().cloned().unwrap_or_default();
        let done = list.iter().any(|a| a["kind"] == kind) && list.iter().all(|a| a["delivered"] == true);
        done.then_some(list)
    })
    .await
}

fn check_alert_shape(alert: &Value, connector: &str, kind: &str) {
    assert_eq!(alert["connector"], connector, "{alert}");
    assert_eq!(alert["kind"], kind, "{alert}");
    assert!(!text(&alert["message"]).is_empty(), "{alert}");
    let at = text(&alert["at"]);
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "`at` is an RFC 3339 time: {alert}");
}

#[actix_web::test]
async fn a_failure_burst_raises_one_rate_limited_alert_and_a_parked_job_raises_its_own() {
    let receiver = FakeSystem::start().await;
    let failing = FakeSystem::start().await;
    failing.answer_always(Reply::Status(503));
    let refusing = FakeSystem::start().await;
    refusing.answer_always(Reply::Status(400));
    let dir = temp_dir("ops-alerts");
    write_connector(&dir, "flaky", &numbered_connector("flaky", "alert.flaky", &failing.base, "{ max: 10, backoffMs: 10, maxBackoffMs: 50 }"));
    write_connector(&dir, "strict", &numbered_connector("strict", "alert.strict", &refusing.base, "{ max: 10, backoffMs: 10 }"));
    let mut settings = test_settings(&dir);
    settings.alerts.url = Some(format!("{}/alerts", receiver.base));
    settings.alerts.rule = "rate(sync.fail) > 2 per 1m".into();
    settings.alerts.min_interval_secs = 60;
    let app = TestApp::spawn(settings).await;
    app.wait_state("flaky", "running").await;
    app.wait_state("strict", "running").await;

    app.publish("alert.flaky", json!({"n": 1})).await;
    poll_until("flaky to have failed at least 6 times", WAIT, || async {
        (app.status("flaky").await["counters"]["failed_attempts"].as_u64().unwrap_or(0) >= 6).then_some(())
    })
    .await;
    let listed = settled_alerts(&app, "flaky", "fail-rate").await;
    let listed_rate: Vec<_> = listed.iter().filter(|a| a["kind"] == "fail-rate").collect();
    assert_eq!(listed_rate.len(), 1, "one fail-rate alert in a minute: {listed:#?}");
    let sent = alerts_of(&receiver, "flaky", "fail-rate");
    assert_eq!(sent.len(), 1, "the receiver got exactly one fail-rate alert: {sent:#?}");
    let alert = &sent[0];
    check_alert_shape(alert, "flaky", "fail-rate");
    assert!(text(&alert["message"]).starts_with("3 failed"), "raised at the third failure (more than 2): {alert}");
    let posts: Vec<_> = receiver.received();
    assert!(posts.iter().all(|r| r.method == "POST" && r.path == "/alerts"), "{posts:#?}");
    assert!(posts.iter().all(|r| r.header("content-type").is_some_and(|c| c.starts_with("application/json"))), "{posts:#?}");

    // All ten attempts failed and the job is parked: still one fail-rate alert, and a parked
    // alert naming the job.
    let parked = app.wait_parked("flaky", 1).await;
    let job = parked[0]["id"].as_i64().unwrap();
    let listed = settled_alerts(&app, "flaky", "parked").await;
    assert_eq!(listed.iter().filter(|a| a["kind"] == "fail-rate").count(), 1, "rate limited: {listed:#?}");
    assert_eq!(alerts_of(&receiver, "flaky", "fail-rate").len(), 1, "rate limited: {:#?}", receiver.received());
    let sent = alerts_of(&receiver, "flaky", "parked");
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert!(text(&sent[0]["message"]).contains(&format!("job {job}")), "{}", sent[0]);

    // A 400 parks at once: a parked alert naming the job, no fail-rate alert (one failure).
    app.publish("alert.strict", json!({"n": 7})).await;
    let parked = app.wait_parked("strict", 1).await;
    let job = parked[0]["id"].as_i64().unwrap();
    let listed = settled_alerts(&app, "strict", "parked").await;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    check_alert_shape(&listed[0], "strict", "parked");
    assert!(text(&listed[0]["message"]).contains(&format!("job {job}")), "{}", listed[0]);
    let sent = alerts_of(&receiver, "strict", "parked");
    assert_eq!(sent.len(), 1, "{:#?}", receiver.received());
    check_alert_shape(&sent[0], "strict", "parked");
    assert!(text(&sent[0]["message"]).contains(&format!("job {job}")), "the alert names the parked job: {}", sent[0]);
    assert!(alerts_of(&receiver, "strict", "fail-rate").is_empty(), "{:#?}", receiver.received());

    let body = metrics_text(&app.base).await;
    let scrape = scrape(&body);
    assert_eq!(value(&scrape, "sync_alerts_total", &[("connector", "flaky"), ("kind", "fail-rate")]), Some(1.0), "{body}");
    assert_eq!(value(&scrape, "sync_alerts_total", &[("connector", "strict"), ("kind", "parked")]), Some(1.0), "{body}");
}

// ---------------------------------------------------------------------------------------
// JSON logs

#[actix_web::test]
async fn the_binary_logs_json_lines_with_the_delivery_and_its_span() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("ops-jsonlog");
    write_connector(&dir, "j", &numbered_connector("j", "json.log", &fake.base, "{ max: 3, backoffMs: 10 }"));
    let log_path = dir.join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut service = Service::up(&dir, &[("HMS_SYNC__LOG__FORMAT", "json"), ("RUST_LOG", "info")], Stdio::from(log)).await;
    let (code, accepted) = service.call("POST", "/events/json.log", Some(r#"{"n": 42}"#)).await;
    assert_eq!(code, 202, "{accepted}");
    let event_id = text(&accepted["event_id"]).to_string();
    fake.wait_for(1).await;
    poll_until("the ticket", WAIT, || async {
        let (_, t) = service.call("GET", "/tickets?connector=j", None).await;
        (t["tickets"].as_array().map_or(0, Vec::len) == 1).then_some(())
    })
    .await;
    let status = service.terminate();
    assert!(status.success(), "{status:?}");

    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {l:?}\n{log}")))
        .collect();
    assert!(lines.iter().all(Value::is_object), "{log}");
    let url = format!("{}/j/42", fake.base);
    let delivery = lines
        .iter()
        .find(|l| l["message"].as_str().is_some_and(|m| m.contains("POST") && m.contains(&url) && m.contains("200")))
        .unwrap_or_else(|| panic!("no JSON line shows `POST {url} 200`:\n{log}"));
    assert_eq!(delivery["level"], "INFO", "{delivery}");
    let span = &delivery["span"];
    assert_eq!(span["name"], "delivery", "the line is inside the delivery span: {delivery}");
    assert_eq!(span["connector"], "j", "{delivery}");
    assert_eq!(span["event"], event_id.as_str(), "{delivery}");
    let spans = delivery["spans"].as_array().unwrap_or_else(|| panic!("no span list: {delivery}"));
    assert!(spans.iter().any(|s| s["name"] == "delivery" && s["connector"] == "j" && s["event"] == event_id.as_str()), "{delivery}");
}

// ---------------------------------------------------------------------------------------
// `hms-sync status`

#[actix_web::test]
async fn status_prints_a_table_with_one_row_per_connector() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("ops-status");
    write_connector(&dir, "alpha", &numbered_connector("alpha", "status.alpha", &fake.base, "{ max: 3, backoffMs: 10 }"));
    write_connector(&dir, "beta", &numbered_connector("beta", "status.beta", &fake.base, "{ max: 3, backoffMs: 10 }"));
    let app = TestApp::spawn(test_settings(&dir)).await;
    app.wait_state("alpha", "running").await;
    // alpha: one failed attempt, then one OK delivery; then a crash of its pusher.
    fake.fail_next(&[503]);
    app.publish("status.alpha", json!({"n": 1})).await;
    app.wait_tickets("connector=alpha&status=completed", 1).await;
    app.fault("alpha", "pusher", "panic").await;
    poll_until("alpha restarted", WAIT, || async {
        let s = app.status("alpha").await;
        (s["restarts"] == 1 && s["state"] == "running").then_some(())
    })
    .await;
    // beta: paused with one job waiting.
    assert_eq!(app.call("PUT", "/connectors/beta/pause", None).await.0, 202);
    app.wait_state("beta", "paused").await;
    app.publish("status.beta", json!({"n": 2})).await;

    let out = run_client(&app.base, &["status"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    let header_at = lines.iter().position(|l| l.contains("CONNECTOR")).unwrap_or_else(|| panic!("no header line:\n{stdout}"));
    let header = lines[header_at];
    for col in ["CONNECTOR", "STATE", "RESTARTS", "QUEUE", "OK", "FAIL", "LAST ERROR"] {
        assert!(header.contains(col), "header lacks {col}: {header}");
    }
    let names: Vec<&str> = header.split_whitespace().collect();
    let col = |name: &str| names.iter().position(|n| *n == name).unwrap_or_else(|| panic!("no {name} column: {header}"));
    // A connector's row, then indented lines (its older error, secrets not set).
    let rows: Vec<Vec<&str>> = lines[header_at + 1..].iter().filter(|l| !l.trim().is_empty() && !l.starts_with(' ')).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "one row per connector:\n{stdout}");
    let row = |id: &str| rows.iter().find(|r| r[col("CONNECTOR")] == id).unwrap_or_else(|| panic!("no row for {id}:\n{stdout}"));
    let alpha = row("alpha");
    assert_eq!(alpha[col("STATE")], "running", "{stdout}");
    assert_eq!(alpha[col("RESTARTS")], "1", "{stdout}");
    assert_eq!(alpha[col("QUEUE")], "0", "{stdout}");
    assert_eq!(alpha[col("OK")], "1", "{stdout}");
    assert_eq!(alpha[col("FAIL")], "1", "{stdout}");
    let at = lines.iter().position(|l| l.split_whitespace().next() == Some("alpha")).unwrap();
    let block: Vec<&str> = std::iter::once(lines[at]).chain(lines[at + 1..].iter().copied().take_while(|l| l.starts_with(' '))).collect();
    let block = block.join("\n");
    // Both the crash and the failed delivery, each with its time (issue 11, item 11: a
    // failed delivery showed `-`).
    assert!(block.contains("crash ") && block.contains("pusher panicked"), "the last crash is shown: {block}");
    assert!(block.contains("delivery ") && block.contains("HTTP 503"), "the last delivery error is shown: {block}");
    let beta = row("beta");
    assert_eq!(beta[col("STATE")], "paused", "{stdout}");
    assert_eq!(beta[col("RESTARTS")], "0", "{stdout}");
    assert_eq!(beta[col("QUEUE")], "1", "{stdout}");
    assert_eq!(beta[col("OK")], "0", "{stdout}");
    assert_eq!(beta[col("FAIL")], "0", "{stdout}");
}

/// A chain check that overlaps a retention prune must not report a broken chain: nothing
/// was tampered with, the prune only moved the anchor. Many tickets (several pages of the
/// check) are appended, then the check runs again and again while the next prune happens.
#[actix_web::test]
async fn a_chain_check_during_a_prune_reports_no_false_break() {
    use hms_sync::storage::{append_tickets, ticket_count, NewTicket};

    let dir = temp_dir("ops-verify-prune");
    let mut settings = test_settings(&dir);
    settings.tickets.retention_days = 0;
    settings.tickets.prune_every_secs = 1;
    let app = TestApp::spawn(settings).await;
    let db = app.state().db.clone();
    let ticket = |n: usize| NewTicket {
        connector_id: "audit".into(),
        event_id: Some(format!("e-{n}")),
        delivery_id: None,
        hms_id: None,
        external_id: None,
        direction: hms_sync::storage::Direction::Outbound,
        status: hms_sync::storage::TicketStatus::Completed,
        reason: None,
        attempts: 1,
        last_error: None,
        detail: Some(json!({"n": n})),
    };
    let mut false_breaks: Vec<Value> = Vec::new();
    let mut checks = 0;
    for round in 0..3 {
        let batch: Vec<NewTicket> = (0..2500).map(|i| ticket(round * 10_000 + i)).collect();
        append_tickets(&db, &batch).await.expect("tickets appended");
        let (_, report) = app.call("GET", "/tickets/verify", None).await;
        checks += 1;
        if report["ok"] != true {
            false_breaks.push(report);
        }
        // Check, four at a time and back to back, until the prune has run (only the newest
        // ticket left).
        let reports = std::cell::RefCell::new(Vec::new());
        let pruned = try_poll_until(WAIT, std::time::Duration::ZERO, || async {
            let calls: Vec<_> = (0..4).map(|_| app.call("GET", "/tickets/verify", None)).collect();
            for (code, report) in futures_util::future::join_all(calls).await {
                assert_eq!(code, 200, "{report}");
                reports.borrow_mut().push(report);
            }
            if ticket_count(&db).await.unwrap() <= 1 { Ok(()) } else { Err(()) }
        });
        let pruned = pruned.await;
        for report in reports.into_inner() {
            checks += 1;
            if report["ok"] != true {
                false_breaks.push(report);
            }
        }
        assert!(pruned.is_ok(), "round {round}: the prune did not run within {WAIT:?}");
    }
    let (_, report) = app.call("GET", "/tickets/verify", None).await;
    assert_eq!(report["ok"], true, "at rest the pruned chain verifies: {report}");
    assert!(
        false_breaks.is_empty(),
        "{} of {checks} chain checks that overlapped a prune reported a break although nothing was tampered with; first: {}",
        false_breaks.len(),
        false_breaks[0]
    );
}

/// Issue 11, item 7: a registered connector's series exist at 0 before anything happens,
/// and go when it is deleted.
#[actix_web::test]
async fn every_registered_connector_has_its_series_from_the_start_until_deleted() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("ops-metrics-zero");
    let app = TestApp::spawn(test_settings(&dir)).await;
    assert_eq!(app.call("POST", "/connectors", Some(&outbound_yaml("quiet", "quiet.t", &fake, ""))).await.0, 201);
    let s = scrape(&metrics_text(&app.base).await);
    let quiet = [("connector", "quiet")];
    for m in ["sync_ok_total", "sync_fail_total", "sync_parked_total", "sync_events_accepted_total", "sync_filtered_total", "sync_restarts_total", "sync_queue_depth", "sync_parked_jobs", "sync_latency_seconds_count"] {
        assert_eq!(value(&s, m, &quiet), Some(0.0), "{m} at 0 for a connector that did nothing yet");
    }
    assert_eq!(app.call("DELETE", "/connectors/quiet", None).await.0, 204);
    let s = scrape(&metrics_text(&app.base).await);
    assert!(s.samples.iter().all(|x| x.labels.get("connector") != Some("quiet")), "a deleted connector's series are gone");
}

/// Issue 12: a new job that heads its record key is handed to its lane as it is committed;
/// the lane does not read the queue for it (that read was one per event at a light load).
/// Events of keys of their own, one at a time: each is delivered, and the queue is read only
/// at the lane's start (and, rarely, at its idle poll). With the lane reading the queue at
/// every wake, as before, the reads were one per event (tried).
#[actix_web::test]
async fn new_jobs_reach_their_lane_without_a_read_of_the_queue() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("ops-handed");
    let app = TestApp::spawn(test_settings(&dir)).await;
    assert_eq!(app.call("POST", "/connectors", Some(&outbound_yaml("handed", "handed.t", &fake, ""))).await.0, 201);
    let before = after_first_queue_read(&app, "handed").await;
    for n in 1..=20 {
        app.publish("handed.t", json!({"permitId": format!("H-{n}"), "status": "issued"})).await;
        fake.wait_for(n).await;
    }
    app.wait_tickets("connector=handed&status=completed", 20).await;
    let during = queue_reads(&app, "handed").await - before;
    assert!(during <= 2.0, "{during} reads of the queue for 20 new jobs, each the head of its key");
}

/// Issue 12: new jobs that find every slot taken wait in their lane for a slot; the lane does
/// not read them back from the queue one freed slot at a time (at saturation those reads,
/// each row's payload parsed again, were a quarter of a lane worker's time). One slot, its
/// request held by the target while ten more events arrive: all eleven are delivered in
/// order of arrival, with no read of the queue but the lane's first. Before, each freed
/// slot read the queue: twelve reads (tried).
#[actix_web::test]
async fn jobs_waiting_for_a_slot_are_not_read_back_from_the_queue() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("ops-ready");
    let app = TestApp::spawn(test_settings(&dir)).await;
    let yaml = outbound_yaml("ready", "ready.t", &fake, "concurrency: 1\ntimeoutMs: 30000\n");
    assert_eq!(app.call("POST", "/connectors", Some(&yaml)).await.0, 201);
    let events = (0..=10).map(|n| json!({"permitId": format!("R-{n}"), "status": "issued"})).collect();
    let (received, during) = held_first_of(&app, &fake, "ready", events).await;
    let paths: Vec<String> = received.iter().map(|r| r.path.clone()).collect();
    let expected: Vec<String> = (0..=10).map(|n| format!("/roadwork/R-{n}")).collect();
    assert_eq!(paths, expected, "one slot: sent one at a time, in order of arrival");
    assert!(during <= 1.0, "{during} reads of the queue for 10 jobs that waited for the one slot");
}

/// Issue 12: a burst of changes to one record: each settle hands the key's next job to the
/// lane with its commit, and the lane starts it without reading the queue. The target holds
/// the first request while ten more changes of the same permit arrive (each waits behind the
/// one before: not the head of its key when stored); all eleven are sent one after another,
/// in order, with no read of the queue but the lane's first. Before, each settle found the
/// key's next job pending and read the queue for it: ten reads (tried), each a round trip
/// through the pool (at 2,000 events/s with keys repeated that way, 70% of a core against
/// 40%).
#[actix_web::test]
async fn a_burst_on_one_key_is_handed_on_by_each_settle() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("ops-burst");
    let app = TestApp::spawn(test_settings(&dir)).await;
    let yaml = outbound_yaml("burst", "burst.t", &fake, "timeoutMs: 30000\n");
    assert_eq!(app.call("POST", "/connectors", Some(&yaml)).await.0, 201);
    let events = (0..=10).map(|n| json!({"permitId": "B-1", "status": format!("s{n}")})).collect();
    let (received, during) = held_first_of(&app, &fake, "burst", events).await;
    let statuses: Vec<String> = received.iter().map(|r| r.body["status"].as_str().unwrap_or_default().to_string()).collect();
    let expected: Vec<String> = (0..=10).map(|n| format!("s{n}")).collect();
    assert_eq!(statuses, expected, "one key: sent one at a time, in order of arrival");
    assert!(received.iter().all(|r| r.path == "/roadwork/B-1"));
    assert!(during <= 1.0, "{during} reads of the queue for 10 jobs of one key, each handed on by the settle before it");
}

/// Issue 12: jobs waiting in the lane for a slot do not start while the connector is paused
/// (a freed slot drops them for the queue's read), and after the resume each is sent once, in
/// order of arrival: the queue's read and the lane's list never both start a job.
#[actix_web::test]
async fn jobs_waiting_for_a_slot_wait_out_a_pause_and_go_once() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("ops-ready-pause");
    let app = TestApp::spawn(test_settings(&dir)).await;
    let yaml = outbound_yaml("held", "held.t", &fake, "concurrency: 1\ntimeoutMs: 30000\n");
    assert_eq!(app.call("POST", "/connectors", Some(&yaml)).await.0, 201);
    fake.script([Reply::Stall(Duration::from_secs(1))]);
    app.publish("held.t", json!({"permitId": "H-0", "status": "issued"})).await;
    fake.wait_for(1).await;
    for n in 1..=5 {
        app.publish("held.t", json!({"permitId": format!("H-{n}"), "status": "issued"})).await;
    }
    assert_eq!(app.call("PUT", "/connectors/held/pause", None).await.0, 202);
    app.wait_state("held", "paused").await;
    // The held request ends; its slot frees while the connector is paused.
    app.wait_tickets("connector=held&status=completed", 1).await;
    app.publish("held.t", json!({"permitId": "H-6", "status": "issued"})).await;
    assert_eq!(fake.received().len(), 1, "nothing more is sent while paused");
    assert_eq!(app.call("PUT", "/connectors/held/resume", None).await.0, 202);
    app.wait_tickets("connector=held&status=completed", 7).await;
    let paths: Vec<String> = fake.received().iter().map(|r| r.path.clone()).collect();
    let expected: Vec<String> = (0..=6).map(|n| format!("/roadwork/H-{n}")).collect();
    assert_eq!(paths, expected, "each job once, in order of arrival");
}

/// Issue 11, items 8 and 9: a mistyped topic was dropped without a word, and a topic with
/// spaces made the CLI say it could not reach the service.
#[actix_web::test]
async fn an_unrouted_event_is_counted_and_the_cli_names_the_likely_topic() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("ops-unrouted");
    let app = TestApp::spawn(test_settings(&dir)).await;
    assert_eq!(app.call("POST", "/connectors", Some(&outbound_yaml("permits", "permit.updated", &fake, ""))).await.0, 201);
    let (code, body) = app.call("POST", "/events/permit.updaetd", Some(r#"{"id": 1}"#)).await;
    assert_eq!(code, 202, "no subscriber is normal: {body}");
    assert_eq!((body["connectors"].clone(), body["did_you_mean"].clone()), (json!([]), json!("permit.updated")), "{body}");
    let out = run_client(&app.base, &["publish", "permit.updaetd", "--data", r#"{"id": 2}"#]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: no connector subscribes to `permit.updaetd`") && err.contains("did you mean permit.updated?"), "{err}");
    let s = scrape(&metrics_text(&app.base).await);
    assert_eq!(value(&s, "sync_events_unrouted_total", &[("topic", "permit.updaetd")]), Some(2.0));

    let out = run_client(&app.base, &["publish", "bad topic!", "--data", "{}"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("HTTP 400") && err.contains("invalid topic `bad topic!`"), "the service's own answer: {err}");
}

/// Issue 11, items 3 and 10: a NUL byte in `connector` answered 503 on PostgreSQL and 200 on
/// SQLite (now 400 before any query, on both); `--since 2026-11-30` and `--since 1h` were
/// refused with a deserializer's words; `limit=0` returned a ticket.
#[actix_web::test]
async fn ticket_and_parked_filters_are_checked_and_name_what_they_take() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("ops-filters");
    let app = TestApp::spawn(test_settings(&dir)).await;
    assert_eq!(app.call("POST", "/connectors", Some(&outbound_yaml("f", "f.t", &fake, ""))).await.0, 201);
    app.publish("f.t", json!({"n": 1})).await;
    app.wait_tickets("connector=f", 1).await;
    for path in ["/tickets?connector=%00", "/parked?connector=%00", "/tickets?connector=a%20b"] {
        let (code, body) = app.call("GET", path, None).await;
        assert_eq!(code, 400, "{path}: {body}");
        assert!(body["message"].as_str().unwrap().contains("`connector` is not a connector id"), "{body}");
    }
    for path in ["/tickets?limit=0", "/parked?limit=0", "/tickets?limit=501"] {
        let (code, body) = app.call("GET", path, None).await;
        assert_eq!(code, 400, "{path}: {body}");
        assert!(body["message"].as_str().unwrap().contains("`limit` must be 1 to 500"), "{body}");
    }
    let (code, body) = app.call("GET", "/tickets?since=yesterday", None).await;
    assert_eq!(code, 400);
    assert!(body["message"].as_str().unwrap().contains("`since` must be an RFC 3339 time (2026-11-30T08:00:00Z), a date (2026-11-30) or an age"), "{body}");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    for (query, n) in [(format!("since={today}"), 1), ("since=1h".into(), 1), ("until=1h".into(), 0), ("since=2d&until=1w".into(), 0)] {
        let (code, body) = app.call("GET", &format!("/tickets?connector=f&{query}"), None).await;
        assert_eq!(code, 200, "{query}: {body}");
        assert_eq!(body["tickets"].as_array().unwrap().len(), n, "{query}: {body}");
    }
    let out = run_client(&app.base, &["tickets", "--since", "1h", "--connector", "f"]).await;
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).lines().count() == 2, "{}", String::from_utf8_lossy(&out.stderr));
    let out = run_client(&app.base, &["tickets", "--limit", "0"]).await;
    assert_eq!(out.status.code(), Some(2), "clap refuses it: {}", String::from_utf8_lossy(&out.stderr));
}

/// Issue 11, item 17: a connector whose secret is not set said nothing until its first
/// event parked.
#[actix_web::test]
async fn secrets_that_are_not_set_are_named_in_status() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("ops-missing-secret");
    let yaml = outbound_yaml("needs", "needs.t", &fake, "").replace("map:\n  to:\n", "map:\n  to:\n    headers: { Authorization: \"Bearer ${OPS_TEST_NEVER_SET_TOKEN}\" }\n");
    assert!(yaml.contains("OPS_TEST_NEVER_SET_TOKEN"), "{yaml}");
    write_connector(&dir, "needs", &yaml);
    let app = TestApp::spawn(test_settings(&dir)).await;
    let s = app.status("needs").await;
    assert_eq!(s["missing_secrets"], json!(["OPS_TEST_NEVER_SET_TOKEN"]), "{s}");
    let out = run_client(&app.base, &["status"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("not set: ${OPS_TEST_NEVER_SET_TOKEN}"), "{stdout}");
}

/// Issue 11, item 12: three jobs parked within the rate limit raised one alert naming one
/// job; the others were never reported. Now the others come in one alert when the
/// interval ends.
#[actix_web::test]
async fn jobs_parked_while_alerts_are_rate_limited_come_in_one_alert_after_the_interval() {
    let receiver = FakeSystem::start().await;
    let refusing = FakeSystem::start().await;
    refusing.answer_always(Reply::Status(400));
    let dir = temp_dir("ops-alert-digest");
    write_connector(&dir, "strict", &numbered_connector("strict", "digest.strict", &refusing.base, "{ max: 3, backoffMs: 10 }"));
    let mut settings = test_settings(&dir);
    settings.alerts.url = Some(format!("{}/alerts", receiver.base));
    settings.alerts.min_interval_secs = 1;
    let app = TestApp::spawn(settings).await;
    app.wait_state("strict", "running").await;
    for n in 1..=3 {
        app.publish("digest.strict", json!({"n": n})).await;
    }
    let parked = app.wait_parked("strict", 3).await;
    let mut ids: Vec<i64> = parked.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    ids.sort();
    let sent = poll_until("two parked alerts", WAIT, || async {
        let sent = alerts_of(&receiver, "strict", "parked");
        (sent.len() >= 2).then_some(sent)
    })
    .await;
    assert_eq!(sent.len(), 2, "{sent:#?}");
    let first = text(&sent[0]["message"]);
    let second = text(&sent[1]["message"]);
    assert!(first.starts_with(&format!("job {} parked", ids[0])), "{first}");
    assert!(second.starts_with(&format!("2 jobs parked since the last alert: jobs {}, {}", ids[1], ids[2])), "{second}");
}

/// Issue 11, item 18: long connector ids and URLs pushed the tickets table out of line.
#[actix_web::test]
async fn the_tickets_table_stays_aligned_with_long_ids_and_urls() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("ops-table");
    let app = TestApp::spawn(test_settings(&dir)).await;
    let long = "ddot.gis.roadwork.permits.outbound.to-the-arcgis-feature-service.v12";
    assert_eq!(app.call("POST", "/connectors", Some(&outbound_yaml(long, "t.long", &fake, ""))).await.0, 201);
    assert_eq!(app.call("POST", "/connectors", Some(&outbound_yaml("s", "t.long", &fake, ""))).await.0, 201);
    app.publish("t.long", json!({"permitId": "RW-481-with-a-rather-long-permit-number-2024-05-10", "status": "OK"})).await;
    app.wait_tickets("status=completed", 2).await;
    let out = run_client(&app.base, &["tickets"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    // Every column starts where its header starts.
    let starts = |line: &str, header: &str| ["CONNECTOR", "DIRECTION", "STATUS", "HMS ID", "EXTERNAL ID", "TRY"].map(|h| (h, header.find(h).unwrap())).map(|(_, at)| line.chars().nth(at.saturating_sub(1)) == Some(' ') && line.chars().nth(at) != Some(' '));
    for row in &lines[1..] {
        assert!(starts(row, lines[0]).iter().all(|ok| *ok), "out of line:\n{stdout}");
    }
}
