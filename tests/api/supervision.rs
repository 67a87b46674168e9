//! OTP-style supervision: crashed children restart with their state from the database,
//! intensity turns a crash loop into `failed`, an operator restart recovers, and one
//! connector's crash leaves the others alone.

use serde_json::json;

use crate::helpers::*;

async fn app_with(connectors: &[(&str, String)]) -> (TestApp, FakeSystem) {
    app_on(connectors, false).await
}

/// [`app_with`]; `dedicated`: each connector on a thread of its own (`runtime.dedicated_threads`).
async fn app_on(connectors: &[(&str, String)], dedicated: bool) -> (TestApp, FakeSystem) {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("sup");
    for (name, yaml) in connectors {
        std::fs::write(dir.join("connectors").join(name), yaml.replace("{FAKE}", &fake.base)).unwrap();
    }
    let mut settings = test_settings(&dir);
    settings.runtime.dedicated_threads = dedicated;
    let app = TestApp::spawn(settings).await;
    (app, fake)
}

fn gis(id: &str, extra: &str) -> String {
    format!(
        "id: {id}\ntype: outbound\ntrigger: {{ topic: permit.updated }}\nkey: \"{{{{ permitId }}}}\"\nmap:\n  to:\n    url: \"{{FAKE}}/{id}/{{permitId}}\"\n    method: PATCH\nretry: {{ max: 3, backoffMs: 20 }}\n{extra}"
    )
}

async fn child(app: &TestApp, id: &str, kind: &str) -> serde_json::Value {
    let s = app.status(id).await;
    s["children"].as_array().unwrap().iter().find(|c| c["kind"] == kind).cloned().expect("child listed")
}

#[actix_web::test]
async fn a_panicking_pusher_is_restarted_and_work_resumes() {
    let (app, fake) = app_with(&[("gis.yaml", gis("gis", ""))]).await;
    app.wait_state("gis", "running").await;
    app.fault("gis", "pusher", "panic").await;
    let status = poll_until("a restart to be counted", WAIT, || async {
        let s = app.status("gis").await;
        (s["restarts"] == 1 && s["state"] == "running").then_some(s)
    })
    .await;
    assert!(status["last_error"]["message"].as_str().unwrap().contains("pusher panicked: injected fault"), "{status}");
    assert_eq!(child(&app, "gis", "pusher").await["restarts"], 1);
    assert_eq!(child(&app, "gis", "retrier").await["restarts"], 0, "one-for-one: the retrier was not touched");
    app.publish("permit.updated", json!({"permitId": "RW-1", "status": "APPROVED"})).await;
    let got = fake.wait_for(1).await;
    assert_eq!(got[0].path, "/gis/RW-1");
}

#[actix_web::test]
async fn a_stopped_child_and_a_dead_arbiter_are_restarted() {
    let (app, fake) = app_with(&[("gis.yaml", gis("gis", ""))]).await;
    app.wait_state("gis", "running").await;
    app.fault("gis", "retrier", "stop").await;
    poll_until("retrier restarted", WAIT, || async {
        let c = child(&app, "gis", "retrier").await;
        (c["restarts"] == 1 && c["state"] == "running").then_some(())
    })
    .await;
    let before = app.status("gis").await["children"][0]["worker"].clone();
    app.fault("gis", "pusher", "arbiter").await;
    let s = poll_until("both children restarted on a new worker", WAIT, || async {
        let s = app.status("gis").await;
        (s["restarts"] == 3 && s["state"] == "running").then_some(s)
    })
    .await;
    assert_ne!(s["children"][0]["worker"], before, "children moved to a fresh arbiter: {s}");
    app.publish("permit.updated", json!({"permitId": "RW-2"})).await;
    fake.wait_for(1).await;
}

#[actix_web::test]
async fn past_the_intensity_the_connector_fails_until_restarted() {
    let extra = "supervision: { maxRestarts: 2, withinSecs: 60, backoffMs: 10 }\n";
    let (app, fake) = app_with(&[("gis.yaml", gis("gis", extra))]).await;
    app.wait_state("gis", "running").await;
    for n in 1..=2u64 {
        app.fault("gis", "pusher", "panic").await;
        poll_until("restart", WAIT, || async {
            let s = app.status("gis").await;
            (s["restarts"] == n && s["state"] == "running").then_some(())
        })
        .await;
    }
    app.fault("gis", "pusher", "panic").await;
    let failed = app.wait_state("gis", "failed").await;
    let why = failed["last_error"]["message"].as_str().unwrap();
    assert!(why.contains("restart intensity exceeded (2 restarts in 60 s)"), "{why}");
    assert!(failed["children"].as_array().unwrap().iter().all(|c| c["state"] == "stopped"), "{failed}");

    // Work accepted while failed waits in the database…
    app.publish("permit.updated", json!({"permitId": "RW-3"})).await;
    poll_until("the job to be queued", WAIT, || async { (app.status("gis").await["queue_depth"] == 1).then_some(()) }).await;
    assert!(fake.received().is_empty(), "a failed connector sends nothing");
    // …and an operator's restart brings the connector back and drains it.
    let (code, _) = app.call("POST", "/connectors/gis/restart", None).await;
    assert_eq!(code, 202);
    app.wait_state("gis", "running").await;
    let got = fake.wait_for(1).await;
    assert_eq!(got[0].path, "/gis/RW-3");
}

#[actix_web::test]
async fn a_crash_in_one_connector_leaves_the_others_untouched() {
    let (app, fake) = app_with(&[("a.yaml", gis("a", "")), ("b.yaml", gis("b", ""))]).await;
    app.wait_state("a", "running").await;
    app.wait_state("b", "running").await;
    app.fault("a", "pusher", "arbiter").await;
    poll_until("a restarted", WAIT, || async {
        let s = app.status("a").await;
        (s["restarts"].as_u64().unwrap() >= 1 && s["state"] == "running").then_some(())
    })
    .await;
    let b = app.status("b").await;
    assert_eq!(b["restarts"], 0, "{b}");
    assert!(b["last_error"].is_null());
    app.publish("permit.updated", json!({"permitId": "RW-4"})).await;
    let got = fake.wait_for(2).await;
    let mut paths: Vec<_> = got.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, ["/a/RW-4", "/b/RW-4"]);
}

#[actix_web::test]
async fn pending_work_survives_a_restart_of_the_service() {
    let (app, fake) = app_with(&[("gis.yaml", gis("gis", ""))]).await;
    let (code, _) = app.call("PUT", "/connectors/gis/pause", None).await;
    assert_eq!(code, 202);
    app.wait_state("gis", "paused").await;
    app.publish("permit.updated", json!({"permitId": "RW-5"})).await;
    poll_until("queued", WAIT, || async { (app.status("gis").await["queue_depth"] == 1).then_some(()) }).await;
    let settings = app.stop().await;
    assert!(fake.received().is_empty());

    let app = TestApp::spawn(settings).await;
    let s = app.wait_state("gis", "paused").await;
    assert_eq!(s["queue_depth"], 1, "the job was reloaded from the database: {s}");
    app.call("PUT", "/connectors/gis/resume", None).await;
    let got = fake.wait_for(1).await;
    assert_eq!(got[0].path, "/gis/RW-5");
    app.wait_queue_empty("gis").await;
}

/// Connector threads counted by the thread-start hook.
static CONNECTOR_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// The binary turns the allocator's per-thread cache off on dedicated connector threads
// (`runtime.dedicated_threads`) through this hook (main.rs); here it counts them: each
// connector's thread runs it, also a thread started anew after its arbiter died.
#[actix_web::test]
async fn every_connector_thread_runs_the_thread_start_hook() {
    let _ = hms_sync::actors::supervisor::CONNECTOR_THREAD_STARTED.set(|| {
        CONNECTOR_THREADS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    let before = CONNECTOR_THREADS.load(std::sync::atomic::Ordering::SeqCst);
    let (app, _fake) = app_on(&[("h1.yaml", gis("h1", "")), ("h2.yaml", gis("h2", ""))], true).await;
    app.wait_state("h1", "running").await;
    app.wait_state("h2", "running").await;
    poll_until("both connector threads to run the hook", WAIT, || async {
        (CONNECTOR_THREADS.load(std::sync::atomic::Ordering::SeqCst) >= before + 2).then_some(())
    })
    .await;
    app.fault("h1", "pusher", "arbiter").await;
    poll_until("the new thread to run it too", WAIT, || async {
        (CONNECTOR_THREADS.load(std::sync::atomic::Ordering::SeqCst) >= before + 3).then_some(())
    })
    .await;
}

/// Issue 12, item 2: a job whose attempt panics is tried once more, then parked as a poison
/// job with the panic's message; the Pusher is not restarted, the connector never
/// crash-loops into `failed`, and its other keys are delivered meanwhile.
#[actix_web::test]
async fn a_poison_job_is_parked_after_its_second_panic_and_the_others_go_on() {
    let (app, fake) = app_with(&[("gis.yaml", gis("gis", ""))]).await;
    app.wait_state("gis", "running").await;
    app.publish("permit.updated", json!({"permitId": "RW-P", "__hms_sync_panic": "a render bug"})).await;
    app.publish("permit.updated", json!({"permitId": "RW-OK"})).await;
    let got = fake.wait_for(1).await;
    assert_eq!(got[0].path, "/gis/RW-OK", "the other key went on");
    let parked = app.wait_parked("gis", 1).await;
    let reason = parked[0]["lastError"].as_str().unwrap_or_default();
    assert!(reason.contains("poison job") && reason.contains("a render bug"), "{}", parked[0]);
    assert_eq!(parked[0]["attempts"], 2, "one retry, then parked: {}", parked[0]);
    let s = app.status("gis").await;
    assert_eq!((s["restarts"].as_u64(), s["state"].as_str()), (Some(0), Some("running")), "no restart, no crash loop: {s}");
    let tickets = app.wait_tickets("connector=gis&status=parked", 1).await;
    assert!(tickets[0]["reason"].as_str().is_some_and(|r| r.contains("poison job")), "{tickets:?}");
    assert_eq!(fake.received().len(), 1, "the poison job never reached the target");
}

/// The `sync_restarts_total` of each connector, read from `GET /metrics`.
async fn restarts_by_connector(app: &TestApp) -> std::collections::HashMap<String, f64> {
    let (_, _, text) = get_open(&app.base, "/metrics").await;
    text.lines()
        .filter(|l| l.starts_with("sync_restarts_total{"))
        .filter_map(|l| {
            let id = l.split("connector=\"").nth(1)?.split('"').next()?.to_string();
            Some((id, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// Issue 12: 1,000 connectors share the worker pool, and one of them panics in a loop: it
/// is restarted again and again, while the other 999 deliver every event and none of them
/// is restarted (a panic takes no worker thread, nor anyone else's child, down with it).
#[actix_web::test]
async fn a_connector_panicking_in_a_loop_leaves_999_others_on_time() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("sup-1000");
    let folder = dir.join("connectors");
    for n in 0..999 {
        std::fs::write(folder.join(format!("c{n:03}.yaml")), gis(&format!("c{n:03}"), "").replace("{FAKE}", &fake.base)).unwrap();
    }
    let crashy = "supervision: { maxRestarts: 1000, withinSecs: 60, backoffMs: 1, maxBackoffMs: 1 }\n";
    std::fs::write(folder.join("crashy.yaml"), gis("crashy", crashy).replace("{FAKE}", &fake.base)).unwrap();
    let app = TestApp::spawn(test_settings(&dir)).await;
    app.wait_state("crashy", "running").await;
    let others = |got: &[Received]| got.iter().filter(|r| !r.path.starts_with("/crashy/")).count();
    for round in 1..=3u64 {
        // A panic, and an event for all 1,000 while the crashed child comes back.
        app.fault("crashy", "pusher", "panic").await;
        app.publish("permit.updated", json!({"permitId": format!("RW-{round}")})).await;
        poll_until("the crashed child back", WAIT, || async {
            let s = app.status("crashy").await;
            (s["restarts"] == round && s["state"] == "running").then_some(())
        })
        .await;
    }
    poll_until("every event delivered by the 999 others", WAIT * 3, || async { (others(&fake.received()) >= 3 * 999).then_some(()) }).await;
    assert_eq!(others(&fake.received()), 3 * 999, "each exactly once");
    let restarts = restarts_by_connector(&app).await;
    assert_eq!(restarts.len(), 1000, "every connector has its counter");
    assert_eq!(restarts["crashy"], 3.0);
    let touched: Vec<_> = restarts.iter().filter(|(id, n)| id.as_str() != "crashy" && **n != 0.0).collect();
    assert!(touched.is_empty(), "no other connector was restarted: {touched:?}");
    // The crashing connector delivered its own too: each event once in its tickets. (A request
    // on the wire when its lane crashed is sent again by the next lane: at least once.)
    let tickets = app.wait_tickets("connector=crashy&status=completed", 3).await;
    let mut events: Vec<&str> = tickets.iter().filter_map(|t| t["eventId"].as_str()).collect();
    events.sort();
    events.dedup();
    assert_eq!((tickets.len(), events.len()), (3, 3), "one completed ticket per event: {tickets:?}");
    let sent: std::collections::BTreeSet<String> = fake.received().iter().filter(|r| r.path.starts_with("/crashy/")).map(|r| r.path.clone()).collect();
    assert_eq!(sent.len(), 3, "{sent:?}");
}

/// Issue 12: a connector whose target stalls holds its own attempts (each waits for the
/// target within its timeout), never a worker thread: another connector keeps delivering
/// meanwhile, on the same pool.
#[actix_web::test]
async fn a_stalled_target_does_not_slow_the_other_connectors() {
    let slow = "timeoutMs: 30000\nconcurrency: 4\n";
    let (app, fake) = app_with(&[("slow.yaml", gis("slow", slow)), ("fast.yaml", gis("fast", ""))]).await;
    app.wait_state("slow", "running").await;
    app.wait_state("fast", "running").await;
    fake.script_path("/slow/", std::iter::repeat_n(Reply::Stall(std::time::Duration::from_secs(25)), 8));
    for n in 0..8 {
        app.publish("permit.updated", json!({"permitId": format!("RW-{n}")})).await;
    }
    poll_until("the fast connector to deliver all 8", WAIT, || async {
        (fake.received().iter().filter(|r| r.path.starts_with("/fast/")).count() == 8).then_some(())
    })
    .await;
    let got = fake.received();
    let slow_sent = got.iter().filter(|r| r.path.starts_with("/slow/")).count();
    assert_eq!(slow_sent, 4, "the stalled connector has its 4 requests hanging, no more: {got:?}");
    let s = app.status("slow").await;
    assert_eq!((s["restarts"].as_u64(), s["counters"]["delivered"].as_u64()), (Some(0), Some(0)), "{s}");
    // The target logs a request before it answers: the last answers may still be on their way.
    poll_until("the fast connector to count all 8", WAIT, || async { (app.status("fast").await["counters"]["delivered"].as_u64() >= Some(8)).then_some(()) }).await;
    let f = app.status("fast").await;
    assert_eq!(f["counters"]["delivered"], 8, "{f}");
}
