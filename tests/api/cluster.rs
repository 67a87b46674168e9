//! Several instances on one database (issue "hms-sync as a cluster", item 1): each instance
//! registers with a heartbeat and `GET /cluster` lists them all; a second process on one
//! SQLite file is refused, since SQLite is single-node.

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::*;

/// A fresh PostgreSQL database for one test, named like the suite's others (`hms_test_<pid>_…`,
/// so a leftover is dropped by a later run once this process is gone): the admin connection,
/// the database's URL and its name. `None` (the test skips) when PostgreSQL is unreachable
/// outside CI; under `CI` that fails the test instead.
pub async fn fresh_pg(tag: &str) -> Option<(sea_orm::DatabaseConnection, String, String)> {
    use sea_orm::{ConnectionTrait, Database};
    let admin_url = std::env::var("HMS_SYNC_TEST_PG_ADMIN").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let Ok(admin) = Database::connect(&admin_url).await else {
        assert!(std::env::var_os("CI").is_none(), "PostgreSQL is unreachable at {admin_url}");
        eprintln!("skipped: PostgreSQL is unreachable at {admin_url}");
        return None;
    };
    let name = format!("hms_test_{}_{tag}", std::process::id());
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}")).await.unwrap();
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    Some((admin, url, name))
}

/// A test folder whose connectors folder holds `CONNECTOR.yaml` with `yaml`.
fn dir_with(tag: &str, connector: &str, yaml: &str) -> std::path::PathBuf {
    let dir = temp_dir(tag);
    std::fs::write(dir.join(format!("connectors/{connector}.yaml")), yaml).unwrap();
    dir
}

/// Drops a database made by [`fresh_pg`].
pub async fn drop_pg(admin: &sea_orm::DatabaseConnection, name: &str) {
    use sea_orm::ConnectionTrait;
    let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

#[actix_web::test]
async fn a_second_process_on_the_same_sqlite_file_is_refused() {
    let dir = temp_dir("cluster-sqlite");
    let mut first = Service::up(&dir, &[], Stdio::null()).await;
    let mut second = bin();
    second
        .arg("up")
        .env_remove("RUST_LOG")
        .env_remove("HMS_SYNC_CONFIG")
        .env("HMS_SYNC__SERVER__PORT", "0")
        .env("HMS_SYNC__DATA_DIR", dir.join("data"))
        .env("HMS_SYNC__CONNECTORS__DIR", dir.join("connectors"));
    let out = run_bounded(second, None, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second one must not start: {stderr}");
    assert!(stderr.contains("is in use by another hms-sync (pid "), "{stderr}");
    assert!(stderr.contains("SQLite is single-node") && stderr.contains("PostgreSQL database.url"), "{stderr}");
    // The first one is untouched, and once it is gone (even killed) the file is free again.
    assert_eq!(first.call("GET", "/readyz", None).await.0, 200);
    first.kill9();
    let again = Service::up(&dir, &[], Stdio::null()).await;
    assert_eq!(again.call("GET", "/readyz", None).await.0, 200);
}

#[actix_web::test]
async fn the_cluster_view_lists_this_instance_with_what_it_holds() {
    let dir = temp_dir("cluster-one");
    std::fs::write(dir.join("connectors/gis.yaml"), permit_connector("gis", "permit.updated", "http://127.0.0.1:9", "")).unwrap();
    let app = TestApp::spawn(test_settings(&dir)).await;
    let (code, view) = app.call("GET", "/cluster", None).await;
    assert_eq!(code, 200, "{view}");
    let instances = view["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "{view}");
    let me = &instances[0];
    assert_eq!(me["id"], view["self"]);
    assert_eq!(me["alive"], true);
    assert_eq!(me["holds"]["connectors"], 1);
    assert_eq!(me["pid"], i64::from(std::process::id()));
    assert!(me["address"].as_str().unwrap().starts_with("127.0.0.1:"), "{me}");
    let out = run_client(&app.base, &["cluster"]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && table.contains(view["self"].as_str().unwrap()) && table.contains(" yes "), "{table}");
}

/// Two instances on one PostgreSQL database see each other; one that stops leaves the view.
#[actix_web::test]
async fn instances_on_one_postgresql_database_see_each_other() {
    let Some((admin, url, name)) = fresh_pg("cluster").await else { return };
    let settings = |tag: &str| {
        let mut s = test_settings(&temp_dir(tag));
        s.database.url = Some(url.clone());
        s
    };
    let a = TestApp::spawn(settings("cluster-a")).await;
    let b = TestApp::spawn(settings("cluster-b")).await;
    let ids = |view: &serde_json::Value| view["instances"].as_array().unwrap().iter().map(|i| (i["id"].as_str().unwrap().to_string(), i["alive"].as_bool().unwrap())).collect::<Vec<_>>();
    let (_, from_a) = a.call("GET", "/cluster", None).await;
    let (_, from_b) = b.call("GET", "/cluster", None).await;
    assert_eq!(ids(&from_a), ids(&from_b), "the same view from either");
    assert_eq!(ids(&from_a), vec![(from_a["self"].as_str().unwrap().to_string(), true), (from_b["self"].as_str().unwrap().to_string(), true)], "oldest first, both alive");
    let b_id = from_b["self"].as_str().unwrap().to_string();
    b.stop().await;
    let (_, after) = a.call("GET", "/cluster", None).await;
    assert!(ids(&after).iter().all(|(id, _)| *id != b_id), "a stopped instance leaves: {after}");
    a.stop().await;
    drop_pg(&admin, &name).await;
}

/// A pulling connector on two instances of one PostgreSQL database: one instance pulls it at a
/// time (the holder of its lease, shown in the cluster view); `sync now` on the other is
/// passed on to the holder (202, naming it), which pulls; once the holder stops, the other
/// takes over.
#[actix_web::test]
async fn one_instance_pulls_a_connector_at_a_time() {
    let Some((admin, url, name)) = fresh_pg("pull_lease").await else { return };
    let fake = FakeSystem::start().await;
    let pulling = format!(
        "id: feed\ntype: inbound\nkey: \"{{{{ id }}}}\"\nmap:\n  hms: {{ url: \"{fake}/hms/{{{{ id }}}}\", method: PATCH }}\nsource:\n  pull: {{ url: \"{fake}/changes?since={{{{ cursor }}}}\", every: 1h, records: \"$.changes\", idField: id, cursorField: v, initialCursor: 0 }}\n",
        fake = fake.base
    );
    let settings = |tag: &str| {
        let dir = dir_with(tag, "feed", &pulling);
        let mut s = test_settings(&dir);
        s.database.url = Some(url.clone());
        // Long enough that the holder's lease cannot run out while the test runs on a loaded
        // machine: the hand-over below is the holder stopping, not a lease running out.
        s.cluster.lease_secs = 120;
        s
    };
    let a = TestApp::spawn(settings("pull-a")).await;
    poll_until("a to pull at start", WAIT, || async { fake.received().iter().any(|r| r.path.starts_with("/changes")).then_some(()) }).await;
    let b = TestApp::spawn(settings("pull-b")).await;
    let pulls = || fake.received().iter().filter(|r| r.path.starts_with("/changes")).count();
    let before = pulls();
    let (code, body) = b.call("POST", "/connectors/feed/sync", None).await;
    assert_eq!(code, 202, "{body}");
    let (_, a_view) = a.call("GET", "/cluster", None).await;
    let a_id = a_view["self"].as_str().unwrap().to_string();
    assert_eq!(body["forwarded_to"], a_id.as_str(), "{body}");
    poll_until("a to pull at b's request", WAIT, || async { (pulls() > before).then_some(()) }).await;
    assert_eq!(a.call("POST", "/connectors/feed/sync", None).await.0, 200, "the holder pulls");
    let b_status = b.status("feed").await;
    assert_eq!(b_status["pull_holder"], a_id.as_str(), "b's status names who pulls: {b_status}");
    assert_ne!(b_status["instance"], a_id.as_str());
    poll_until("the holder to show the lease in the cluster view", WAIT, || async {
        let (_, view) = b.call("GET", "/cluster", None).await;
        let holder = view["instances"].as_array()?.iter().find(|i| i["id"] == a_id.as_str())?.clone();
        (holder["holds"]["pullers"] == serde_json::json!(["feed"])).then_some(())
    })
    .await;
    a.stop().await;
    let (code, body) = b.call("POST", "/connectors/feed/sync", None).await;
    assert_eq!(code, 200, "the holder gave its lease back when it stopped: {body}");
    b.stop().await;
    drop_pg(&admin, &name).await;
}

/// The holder of a pull lease killed with -9 (it gives nothing back): another instance takes
/// the pull over once the lease has run out (`cluster.lease_secs`).
#[actix_web::test]
async fn a_killed_puller_is_taken_over_after_its_lease() {
    let Some((admin, url, name)) = fresh_pg("pull_kill").await else { return };
    let fake = FakeSystem::start().await;
    let pulling = format!(
        "id: feed\ntype: inbound\nkey: \"{{{{ id }}}}\"\nmap:\n  hms: {{ url: \"{fake}/hms/{{{{ id }}}}\", method: PATCH }}\nsource:\n  pull: {{ url: \"{fake}/changes?since={{{{ cursor }}}}\", every: 1h, records: \"$.changes\", idField: id, cursorField: v, initialCursor: 0 }}\n",
        fake = fake.base
    );
    let env = [("HMS_SYNC__DATABASE__URL", url.as_str()), ("HMS_SYNC__CLUSTER__LEASE_SECS", "3")];
    let start = |tag: &str| dir_with(tag, "feed", &pulling);
    let (dir_a, dir_b) = (start("kill-a"), start("kill-b"));
    let mut a = Service::up(&dir_a, &env, Stdio::null()).await;
    assert_eq!(a.call("POST", "/connectors/feed/sync", None).await.0, 200, "a pulls");
    let b = Service::up(&dir_b, &env, Stdio::null()).await;
    assert_eq!(b.call("POST", "/connectors/feed/sync", None).await.0, 202, "a holds the lease: passed on to it");
    a.kill9();
    poll_until("b to take the pull over", Duration::from_secs(30), || async { (b.call("POST", "/connectors/feed/sync", None).await.0 == 200).then_some(()) }).await;
    let (_, status) = b.call("GET", "/connectors/feed/status", None).await;
    assert_eq!(status["pull_holder"], status["instance"], "{status}");
    drop(b);
    drop_pg(&admin, &name).await;
}

/// The control plane through any instance (item 4): a connector registered, paused, resumed,
/// replaced and deleted through one instance, and the governance toggle, take effect on the
/// other (within a second: it applies the database's state every second).
#[actix_web::test]
async fn changes_through_one_instance_reach_the_other() {
    let Some((admin, url, name)) = fresh_pg("control").await else { return };
    let settings = |tag: &str| {
        let mut s = test_settings(&temp_dir(tag));
        s.database.url = Some(url.clone());
        s
    };
    let a = TestApp::spawn(settings("control-a")).await;
    let b = TestApp::spawn(settings("control-b")).await;
    let yaml = permit_connector("api1", "permit.updated", "http://127.0.0.1:9", "");
    assert_eq!(a.call("POST", "/connectors", Some(&yaml)).await.0, 201);
    let state_on_b = |want: &'static str| {
        let b = &b;
        async move {
            poll_until(&format!("api1 {want} on b"), WAIT, || async {
                let (code, s) = b.call("GET", "/connectors/api1/status", None).await;
                (code == 200 && s["state"] == want).then_some(())
            })
            .await
        }
    };
    state_on_b("running").await;
    assert_eq!(a.call("PUT", "/connectors/api1/pause", None).await.0, 202);
    state_on_b("paused").await;
    assert_eq!(a.call("PUT", "/connectors/api1/resume", None).await.0, 202);
    state_on_b("running").await;
    let replaced = permit_connector("api1", "permit.updated", "http://127.0.0.1:9", "timeoutMs: 1234\n");
    assert_eq!(a.call("PUT", "/connectors/api1", Some(&replaced)).await.0, 200);
    poll_until("the replacement on b", WAIT, || async {
        let (_, c) = b.call("GET", "/connectors/api1", None).await;
        c.to_string().contains("1234").then_some(())
    })
    .await;
    // A restart through a restarts the connector on b too.
    assert!(b.status("api1").await["restart_requested_at"].is_null());
    assert_eq!(a.call("POST", "/connectors/api1/restart", None).await.0, 202);
    poll_until("the restart on b", WAIT, || async { b.status("api1").await["restart_requested_at"].is_string().then_some(()) }).await;
    assert_eq!(b.call("PUT", "/governance", Some(r#"{"sync_enabled": false}"#)).await.0, 200);
    poll_until("governance off on a", WAIT, || async { (a.call("GET", "/governance", None).await.1["sync_enabled"] == false).then_some(()) }).await;
    assert_eq!(b.call("PUT", "/governance", Some(r#"{"sync_enabled": true}"#)).await.0, 200);
    poll_until("governance on again on a", WAIT, || async { (a.call("GET", "/governance", None).await.1["sync_enabled"] == true).then_some(()) }).await;
    assert_eq!(a.call("DELETE", "/connectors/api1", None).await.0, 204);
    poll_until("api1 gone from b", WAIT, || async { (b.call("GET", "/connectors/api1", None).await.0 == 404).then_some(()) }).await;
    // Gone from b's routing too: an event b accepts no longer makes a job for it.
    let (code, accepted) = b.call("POST", "/events/permit.updated", Some(r#"{"permitId": "RW-9"}"#)).await;
    assert_eq!(code, 202, "{accepted}");
    assert_eq!(accepted["connectors"], serde_json::json!([]), "{accepted}");
    a.stop().await;
    b.stop().await;
    drop_pg(&admin, &name).await;
}

/// Counts in the PostgreSQL database at `url`.
pub async fn count(url: &str, sql: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let db = Database::connect(url).await.unwrap();
    let row = db.query_one_raw(Statement::from_string(sea_orm::DbBackend::Postgres, sql.to_string())).await.unwrap().unwrap();
    let n = row.try_get_by_index::<i64>(0).unwrap();
    db.close().await.unwrap();
    n
}

/// Jobs are shared (item 2): two instances on one database, events sent to either, a target
/// failing every tenth request. Every event is delivered once, both instances deliver, the
/// requests of each key arrive in acceptance order and never two at once, every job has one
/// ticket and the chain verifies.
#[actix_web::test]
async fn two_instances_share_the_jobs_and_keep_each_keys_order() {
    let Some((admin, url, name)) = fresh_pg("shared_jobs").await else { return };
    let sink = KeyedSink::start().await;
    let settings = |tag: &str| {
        let dir = dir_with(tag, "shared", &keyed_connector(&sink.base));
        let mut s = test_settings(&dir);
        s.database.url = Some(url.clone());
        s
    };
    let a = TestApp::spawn(settings("shared-a")).await;
    let b = TestApp::spawn(settings("shared-b")).await;
    const EVENTS: u64 = 300;
    for seq in 0..EVENTS {
        let via = if seq % 2 == 0 { &a } else { &b };
        let body = serde_json::json!({ "key": format!("k{}", seq % 12), "seq": seq.to_string() }).to_string();
        let (code, accepted) = via.call("POST", "/events/cluster.test", Some(&body)).await;
        assert_eq!(code, 202, "{accepted}");
    }
    poll_until("every event delivered", Duration::from_secs(60), || async { (sink.delivered_count() >= EVENTS as usize).then_some(()) }).await;
    {
        let log = sink.log.lock().unwrap();
        assert!(log.overlapped.is_empty(), "two requests of one key in flight at once: {:?}", log.overlapped);
        for (key, seqs) in &log.delivered {
            let k: u64 = key.trim_start_matches('k').parse().unwrap();
            let want: Vec<u64> = (0..EVENTS).filter(|s| s % 12 == k).collect();
            assert_eq!(seqs, &want, "key {key}: each event once, in acceptance order");
        }
        assert!(log.requests > EVENTS as usize, "some requests failed and were retried");
    }
    // The target's answer comes before the outcome's commit: wait for the last tickets.
    let ticketed = "SELECT count(DISTINCT delivery_id) FROM sync_tickets WHERE connector_id = 'shared' AND status = 'completed'";
    poll_until("every outcome committed", Duration::from_secs(60), || async { (count(&url, ticketed).await >= EVENTS as i64).then_some(()) }).await;
    let delivered = |s: serde_json::Value| s["counters"]["delivered"].as_u64().unwrap_or(0);
    let (on_a, on_b) = (delivered(a.call("GET", "/connectors/shared/status", None).await.1), delivered(b.call("GET", "/connectors/shared/status", None).await.1));
    assert_eq!(on_a + on_b, EVENTS, "a delivered {on_a}, b {on_b}");
    assert!(on_a > 0 && on_b > 0, "both instances deliver: a {on_a}, b {on_b}");
    let tickets = count(&url, ticketed).await;
    let all = count(&url, "SELECT count(*) FROM sync_tickets WHERE connector_id = 'shared'").await;
    assert_eq!((tickets, all), (EVENTS as i64, EVENTS as i64), "exactly one ticket per completed job");
    let (_, chain) = a.call("GET", "/tickets/verify", None).await;
    assert_eq!(chain["ok"], true, "{chain}");
    a.stop().await;
    b.stop().await;
    drop_pg(&admin, &name).await;
}

async fn next_notification(listener: &mut sea_orm::sqlx::postgres::PgListener) -> String {
    tokio::time::timeout(WAIT, listener.recv()).await.expect("a notification within the wait").unwrap().payload().to_string()
}

/// Jobs stored through any instance (or any writer) and control-plane changes are notified
/// to every instance at once (item 2 and 4): the database's triggers NOTIFY `hms_sync`.
#[actix_web::test]
async fn stored_jobs_and_control_changes_are_notified() {
    use sea_orm::sqlx::postgres::PgListener;
    let Some((admin, url, name)) = fresh_pg("notify").await else { return };
    let dir = temp_dir("notify");
    std::fs::write(dir.join("connectors/shared.yaml"), keyed_connector("http://127.0.0.1:9")).unwrap();
    let mut s = test_settings(&dir);
    s.database.url = Some(url.clone());
    let app = TestApp::spawn(s).await;
    let mut listener = PgListener::connect(&url).await.unwrap();
    listener.listen("hms_sync").await.unwrap();
    let body = serde_json::json!({ "key": "k1", "seq": "1" }).to_string();
    assert_eq!(app.call("POST", "/events/cluster.test", Some(&body)).await.0, 202);
    assert_eq!(next_notification(&mut listener).await, "jobs shared");
    assert_eq!(app.call("PUT", "/connectors/shared/pause", None).await.0, 202);
    assert_eq!(next_notification(&mut listener).await, "control");
    app.stop().await;
    drop_pg(&admin, &name).await;
}

/// An instance killed with -9 while its requests are on the wire (item 2): once its leases
/// run out (`cluster.lease_secs`), another instance claims its jobs and delivers them, with
/// the same `Idempotency-Key` the first requests carried.
#[actix_web::test]
async fn a_killed_instances_claimed_jobs_are_delivered_by_another() {
    let Some((admin, url, name)) = fresh_pg("failover").await else { return };
    let sink = KeyedSink::start().await;
    sink.stall_ms.store(60_000, std::sync::atomic::Ordering::SeqCst);
    let env = [("HMS_SYNC__DATABASE__URL", url.as_str()), ("HMS_SYNC__CLUSTER__LEASE_SECS", "2")];
    let start = |tag: &str| dir_with(tag, "shared", &keyed_connector(&sink.base));
    let (dir_a, dir_b) = (start("failover-a"), start("failover-b"));
    let mut a = Service::up(&dir_a, &env, Stdio::null()).await;
    for seq in 0..3 {
        let body = serde_json::json!({ "key": format!("k{seq}"), "seq": seq.to_string() }).to_string();
        assert_eq!(a.call("POST", "/events/cluster.test", Some(&body)).await.0, 202);
    }
    poll_until("a's three requests on the wire", WAIT, || async { (sink.log.lock().unwrap().requests >= 3).then_some(()) }).await;
    // b runs beside a, finds every job leased, and waits.
    let b = Service::up(&dir_b, &env, Stdio::null()).await;
    sink.stall_ms.store(0, std::sync::atomic::Ordering::SeqCst);
    let killed = std::time::Instant::now();
    a.kill9();
    poll_until("b delivers a's claimed jobs", WAIT, || async { (sink.delivered_count() >= 3).then_some(()) }).await;
    // A figure for the record (the goal: lease + 1 s), not an assertion: timings vary.
    eprintln!("failover: a's claimed jobs delivered by b {} ms after the kill (lease 2 s)", killed.elapsed().as_millis());
    let log = sink.log.lock().unwrap();
    for seq in 0..3 {
        let keys = &log.keys[&seq];
        assert!(keys.len() >= 2 && keys.iter().all(|k| k == &keys[0]), "job {seq}: sent again with the same Idempotency-Key: {keys:?}");
    }
    drop(log);
    // The target logs a request before it answers: b counts it once the answer is back.
    poll_until("b counts its deliveries", WAIT, || async { (b.call("GET", "/connectors/shared/status", None).await.1["counters"]["delivered"].as_u64() >= Some(3)).then_some(()) }).await;
    let (_, status) = b.call("GET", "/connectors/shared/status", None).await;
    assert_eq!(status["counters"]["delivered"], 3, "{status}");
    drop(b);
    drop_pg(&admin, &name).await;
}

async fn taking(app: &TestApp) -> bool {
    app.call("GET", "/cluster", None).await.1["nats"]["taking"] == true
}

/// Publishes event `seq` (key `n{seq % 8}`) to the test's stream.
async fn publish_nats(nats: &str, s: &hms_sync::settings::Settings, seq: u64) {
    let body = serde_json::json!({ "key": format!("n{}", seq % 8), "seq": seq.to_string() });
    hms_sync::actors::nats::publish(nats, &s.bus.nats.prefix, "cluster.test", body.to_string().into_bytes(), None).await.unwrap();
}

/// HMS events over NATS JetStream on a cluster (item 6): two instances share one durable
/// consumer and one of them takes from it at a time; events over NATS and over HTTP to
/// either instance are delivered once each, every key in order, never two at once; when
/// the taker stops, the other takes over and the events published after are delivered too.
#[actix_web::test]
async fn a_cluster_takes_jetstream_events_once_and_takes_over() {
    let Some(nats) = crate::nats::nats_url() else { return };
    let Some((admin, url, name)) = fresh_pg("nats_cluster").await else { return };
    let sink = KeyedSink::start().await;
    let base = {
        let mut s = crate::nats::with_nats(test_settings(&temp_dir("nats-cluster")), &nats, "cluster");
        s.database.url = Some(url.clone());
        s.cluster.lease_secs = 2;
        s
    };
    let settings = |tag: &str| {
        let dir = dir_with(tag, "shared", &keyed_connector(&sink.base));
        let mut s = base.clone();
        s.data_dir = dir.join("data");
        s.connectors.dir = dir.join("connectors");
        s
    };
    let a = TestApp::spawn(settings("nats-a")).await;
    let b = TestApp::spawn(settings("nats-b")).await;
    let a_takes = poll_until("one instance to take", WAIT, || async {
        match (taking(&a).await, taking(&b).await) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    })
    .await;
    const FIRST: u64 = 200;
    for seq in 0..FIRST {
        publish_nats(&nats, &base, seq).await;
        if seq % 2 == 0 {
            let via = if seq % 4 == 0 { &a } else { &b };
            let body = serde_json::json!({ "key": format!("h{}", seq % 5), "seq": (100_000 + seq).to_string() }).to_string();
            assert_eq!(via.call("POST", "/events/cluster.test", Some(&body)).await.0, 202);
        }
    }
    poll_until("the first events delivered", Duration::from_secs(60), || async { (sink.delivered_count() >= (FIRST + FIRST / 2) as usize).then_some(()) }).await;
    // ...and settled: the sink logs a request before it answers, and a stop drops an attempt
    // whose outcome is not committed yet (its job is sent again: at least once), which would
    // show here as a duplicate.
    let done = "SELECT count(*) FROM deliveries WHERE connector_id = 'shared' AND status = 'done'";
    poll_until("the first events settled", Duration::from_secs(60), || async { (count(&url, done).await >= (FIRST + FIRST / 2) as i64).then_some(()) }).await;
    // The taker stops; the other takes over (its lease given back) and goes on.
    let (stays, stopped_settings) = if a_takes { (b, a.stop().await) } else { (a, b.stop().await) };
    drop(stopped_settings);
    poll_until("the other instance to take over", WAIT, || async { taking(&stays).await.then_some(()) }).await;
    for seq in FIRST..FIRST + 50 {
        publish_nats(&nats, &base, seq).await;
    }
    poll_until("every event delivered", Duration::from_secs(60), || async { (sink.delivered_count() >= (FIRST + 50 + FIRST / 2) as usize).then_some(()) }).await;
    let log = sink.log.lock().unwrap();
    assert!(log.overlapped.is_empty(), "two requests of one key in flight at once: {:?}", log.overlapped);
    for (key, seqs) in &log.delivered {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(seqs, &sorted, "key {key}: each event once, in stream (or acceptance) order");
    }
    assert_eq!(log.delivered.values().map(Vec::len).sum::<usize>(), (FIRST + 50 + FIRST / 2) as usize);
    drop(log);
    stays.stop().await;
    crate::nats::drop_stream(&base).await;
    drop_pg(&admin, &name).await;
}

/// PostgreSQL unreachable (item 7; here: the test's database refuses connections and its
/// open ones are cut): intake answers 503 and stores nothing, `/readyz` says the database is
/// down, and the instance recovers by itself once the database is back.
#[actix_web::test]
async fn a_postgresql_outage_refuses_intake_and_heals_by_itself() {
    use sea_orm::ConnectionTrait;
    let Some((admin, url, name)) = fresh_pg("outage").await else { return };
    let fake = FakeSystem::start().await;
    let dir = temp_dir("pg-outage");
    std::fs::write(dir.join("connectors/gis.yaml"), outbound_yaml("gis", "permit.updated", &fake, "")).unwrap();
    let mut s = test_settings(&dir);
    s.database.url = Some(url.clone());
    let app = TestApp::spawn(s).await;
    admin.execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await.unwrap();
    admin.execute_unprepared(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")).await.unwrap();
    let event = r#"{"permitId": "PG-1", "status": "during"}"#;
    let (code, answer) = poll_until("intake to refuse", WAIT, || async {
        let (code, answer) = app.call("POST", "/events/permit.updated", Some(event)).await;
        (code != 202).then_some((code, answer))
    })
    .await;
    assert_eq!(code, 503, "{answer}");
    let (code, ready) = app.call("GET", "/readyz", None).await;
    assert_eq!((code, &ready["database"]), (503, &serde_json::json!(false)), "{ready}");
    admin.execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await.unwrap();
    poll_until("intake to accept again", Duration::from_secs(30), || async {
        (app.call("POST", "/events/permit.updated", Some(r#"{"permitId": "PG-2", "status": "after"}"#)).await.0 == 202).then_some(())
    })
    .await;
    let got = fake.wait_for(1).await;
    assert!(got.iter().all(|r| r.body["status"] == "after"), "only what was acknowledged is delivered: {got:?}");
    app.stop().await;
    drop_pg(&admin, &name).await;
}

/// The fail-rate rule on a cluster (item 4 and 5): it counts every instance's failed attempts
/// from the database, and one instance (the `alerts` lease holder) evaluates it. Here the
/// failures are written straight into the database, as other instances would store them:
/// exactly one of the two instances raises the alert.
#[actix_web::test]
async fn the_fail_rate_rule_counts_the_whole_cluster_once() {
    use sea_orm::ConnectionTrait;
    let Some((admin, url, name)) = fresh_pg("alerts").await else { return };
    let settings = |tag: &str| {
        let dir = dir_with(tag, "gis", &permit_connector("gis", "permit.updated", "http://127.0.0.1:9", ""));
        let mut s = test_settings(&dir);
        s.database.url = Some(url.clone());
        s.alerts.rule = "rate(sync.fail) > 3 per 1m".into();
        s
    };
    let a = TestApp::spawn(settings("alerts-a")).await;
    let b = TestApp::spawn(settings("alerts-b")).await;
    let db = sea_orm::Database::connect(&url).await.unwrap();
    for i in 0..4 {
        db.execute_unprepared(&format!(
            "INSERT INTO delivery_attempts (delivery_id, connector_id, attempt, status, latency_ms, error, at) VALUES ({i}, 'gis', 1, 503, 5, 'HTTP 503', now())"
        ))
        .await
        .unwrap();
    }
    db.close().await.unwrap();
    let fail_rate = |s: serde_json::Value| s["alerts"].as_array().map_or(0, |l| l.iter().filter(|x| x["kind"] == "fail-rate").count());
    let (on_a, on_b) = poll_until("the cluster's fail-rate alert", WAIT, || async {
        let (on_a, on_b) = (fail_rate(a.status("gis").await), fail_rate(b.status("gis").await));
        (on_a + on_b > 0).then_some((on_a, on_b))
    })
    .await;
    assert_eq!(on_a + on_b, 1, "one instance evaluates: a {on_a}, b {on_b}");
    let (alert_a, alert_b) = (a.status("gis").await, b.status("gis").await);
    let alert = if on_a == 1 { &alert_a } else { &alert_b };
    assert!(alert["alerts"].to_string().contains("4 failed deliveries") && alert["alerts"].to_string().contains("cluster-wide"), "{alert}");
    a.stop().await;
    b.stop().await;
    drop_pg(&admin, &name).await;
}

/// Two instances with different connector FILES for one id (item 7): the second refuses to
/// start, naming the connector and the instance that runs the other version; the same file
/// joins.
#[actix_web::test]
async fn an_instance_with_another_version_of_a_connector_file_is_refused() {
    let Some((admin, url, name)) = fresh_pg("files").await else { return };
    let settings = |tag: &str, extra: &str| {
        let dir = dir_with(tag, "gis", &permit_connector("gis", "permit.updated", "http://127.0.0.1:9", extra));
        let mut s = test_settings(&dir);
        s.database.url = Some(url.clone());
        s
    };
    let a = TestApp::spawn(settings("files-a", "")).await;
    let (_, view) = a.call("GET", "/cluster", None).await;
    let a_id = view["self"].as_str().unwrap().to_string();
    let refused = match hms_sync::startup::Application::build(settings("files-b", "timeoutMs: 999\n")).await {
        Ok(_) => panic!("an instance with another gis.yaml joined"),
        Err(e) => e.to_string(),
    };
    assert!(refused.contains("connector `gis`") && refused.contains(&a_id) && refused.contains("same connector files"), "{refused}");
    let same = TestApp::spawn(settings("files-c", "")).await;
    same.stop().await;
    a.stop().await;
    drop_pg(&admin, &name).await;
}

/// Instances started together on a new database (the walk-through's three `up`s): one
/// migrates while the others wait for it, and all three start.
#[actix_web::test]
async fn instances_started_together_on_a_new_database_all_start() {
    let Some((admin, url, name)) = fresh_pg("together").await else { return };
    let settings = |tag: &str| {
        let mut s = test_settings(&temp_dir(tag));
        s.database.url = Some(url.clone());
        s
    };
    let (a, b, c) = (settings("together-a"), settings("together-b"), settings("together-c"));
    let (a, b, c) = tokio::join!(TestApp::spawn(a), TestApp::spawn(b), TestApp::spawn(c));
    let (_, view) = a.call("GET", "/cluster", None).await;
    assert_eq!(view["instances"].as_array().map(Vec::len), Some(3), "{view}");
    for app in [a, b, c] {
        app.stop().await;
    }
    drop_pg(&admin, &name).await;
}

/// Fencing (item 2): an instance frozen (SIGSTOP) with a request on the wire past its lease.
/// Another instance claims the job and delivers it; when the frozen one wakes and hears its
/// answer, its outcome is fenced off by the claim count: the job has one ticket, written by
/// the instance that holds the claim.
#[actix_web::test]
async fn a_frozen_instance_that_wakes_after_its_lease_cannot_settle() {
    let Some((admin, url, name)) = fresh_pg("fence").await else { return };
    let sink = KeyedSink::start().await;
    // a's request is answered after 4 s, when a is frozen and its 2 s lease is gone.
    sink.stall_ms.store(4_000, std::sync::atomic::Ordering::SeqCst);
    let env = [("HMS_SYNC__DATABASE__URL", url.as_str()), ("HMS_SYNC__CLUSTER__LEASE_SECS", "2")];
    let start = |tag: &str| dir_with(tag, "shared", &keyed_connector(&sink.base));
    let (dir_a, dir_b) = (start("fence-a"), start("fence-b"));
    let a_log = dir_a.join("a.log");
    let a = Service::up(&dir_a, &env, Stdio::from(std::fs::File::create(&a_log).unwrap())).await;
    let body = serde_json::json!({ "key": "k1", "seq": "1" }).to_string();
    assert_eq!(a.call("POST", "/events/cluster.test", Some(&body)).await.0, 202);
    poll_until("a's request on the wire", WAIT, || async { (sink.log.lock().unwrap().requests >= 1).then_some(()) }).await;
    // b starts beside a, which holds the job.
    let b_log = dir_b.join("b.log");
    let b = Service::up(&dir_b, &env, Stdio::from(std::fs::File::create(&b_log).unwrap())).await;
    let signal = |sig: &str, pid: u32| assert!(std::process::Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success());
    signal("-STOP", a.child.id());
    // The sink answers a's request at 4 s (a is frozen and does not hear it). b, once a's
    // lease has run out, claims the job and sends it again; that request is answered after
    // 3 s, so the job is still b's, in flight, when a wakes.
    sink.stall_ms.store(3_000, std::sync::atomic::Ordering::SeqCst);
    try_poll_until(Duration::from_secs(20), Duration::from_millis(20), || async { (sink.log.lock().unwrap().requests >= 2).then_some(()).ok_or(()) })
        .await
        .unwrap_or_else(|()| panic!("b did not send the job; b's log:\n{}", std::fs::read_to_string(&b_log).unwrap_or_default()));
    signal("-CONT", a.child.id());
    // a hears its own 200 and tries to settle: its claim count is out of date, and its
    // outcome is refused as stale (its log says so), though the job is still pending.
    poll_until("a's outcome refused as stale", WAIT, || async { std::fs::read_to_string(&a_log).unwrap_or_default().contains("settled meanwhile").then_some(()) }).await;
    let job = "(SELECT id FROM deliveries WHERE connector_id = 'shared')";
    let settled = poll_until("the job settled", WAIT, || async {
        let done = count(&url, &format!("SELECT count(*) FROM deliveries WHERE id = {job} AND status = 'done'")).await;
        (done == 1).then_some(done)
    })
    .await;
    assert_eq!(settled, 1);
    assert_eq!(count(&url, "SELECT count(*) FROM sync_tickets WHERE connector_id = 'shared'").await, 1, "one ticket: a's late outcome was fenced off");
    assert_eq!(count(&url, &format!("SELECT claims::bigint FROM deliveries WHERE id = {job}")).await, 2, "claimed by a, then by b");
    drop(a);
    drop(b);
    drop_pg(&admin, &name).await;
}

/// A reconcile whose read of the database began before a change made through this instance
/// must not undo it: connectors registered one after the other (each registration notifies
/// every instance, which reconciles) all stay, and a pause stays.
#[actix_web::test]
async fn a_reconcile_older_than_a_change_here_leaves_it_alone() {
    let Some((admin, url, name)) = fresh_pg("reconcile").await else { return };
    let mut s = test_settings(&temp_dir("reconcile"));
    s.database.url = Some(url.clone());
    let app = TestApp::spawn(s).await;
    for i in 0..40 {
        let id = format!("c{i}");
        let yaml = permit_connector(&id, "permit.updated", "http://127.0.0.1:9", "");
        assert_eq!(app.call("POST", "/connectors", Some(&yaml)).await.0, 201);
        assert_eq!(app.call("GET", &format!("/connectors/{id}"), None).await.0, 200, "{id} right after its registration");
        assert_eq!(app.call("PUT", &format!("/connectors/{id}/pause"), None).await.0, 202);
        assert_eq!(app.status(&id).await["paused"], true, "{id} right after its pause");
    }
    let (_, list) = app.call("GET", "/connectors", None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(40), "{list}");
    app.stop().await;
    drop_pg(&admin, &name).await;
}

/// A retry scheduled by an instance that then dies (its retry timer dies with it): another
/// instance notices it is gone within about a second of its lease and reads the retries from
/// the database again, so the job goes at its due time, not at the next 30 s rescan.
#[actix_web::test]
async fn a_dead_instances_scheduled_retry_is_sent_on_time_by_another() {
    let Some((admin, url, name)) = fresh_pg("retry_takeover").await else { return };
    let fake = FakeSystem::start().await;
    fake.script([Reply::RetryAfter(503, 5)]);
    let env = [("HMS_SYNC__DATABASE__URL", url.as_str()), ("HMS_SYNC__CLUSTER__LEASE_SECS", "2")];
    let start = |tag: &str| dir_with(tag, "gis", &outbound_yaml("gis", "permit.updated", &fake, ""));
    let mut instances = [Service::up(&start("retry-a"), &env, Stdio::null()).await, Service::up(&start("retry-b"), &env, Stdio::null()).await];
    assert_eq!(instances[0].call("POST", "/events/permit.updated", Some(r#"{"permitId": "RT-1", "status": "later"}"#)).await.0, 202);
    // Whichever instance tried it (and got the 503) holds its retry timer.
    let tried = poll_until("the first attempt", WAIT, || {
        let instances = &instances;
        async move {
            for (i, s) in instances.iter().enumerate() {
                if s.call("GET", "/connectors/gis/status", None).await.1["counters"]["failed_attempts"] == 1 {
                    return Some(i);
                }
            }
            None
        }
    })
    .await;
    // The counter comes before the commit: kill once the retry is stored, so that it is the
    // stored retry the other instance sends, not the first attempt's claim left behind.
    let rescheduled = "SELECT count(*) FROM deliveries WHERE connector_id = 'gis' AND status = 'pending' AND attempts = 1";
    poll_until("the retry stored", WAIT, || async { (count(&url, rescheduled).await == 1).then_some(()) }).await;
    instances[tried].kill9();
    let killed = std::time::Instant::now();
    let other = &instances[1 - tried];
    // Due 5 s after the first attempt; the other instance's own rescan could be 30 s away.
    poll_until("the retry sent by the other instance", Duration::from_secs(12), || async { (fake.received().len() >= 2).then_some(()) }).await;
    eprintln!("the retry went {} ms after the kill (due about 5 s after the first attempt)", killed.elapsed().as_millis());
    // The target logs a request before it answers: the instance counts it once the answer is back.
    poll_until("the retry counted", WAIT, || async { (other.call("GET", "/connectors/gis/status", None).await.1["counters"]["delivered"].as_u64() >= Some(1)).then_some(()) }).await;
    assert_eq!(other.call("GET", "/connectors/gis/status", None).await.1["counters"]["delivered"], 1);
    drop(instances);
    drop_pg(&admin, &name).await;
}
