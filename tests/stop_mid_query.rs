//! A connector removed while one of its children's queries waits in PostgreSQL stops
//! without a panic. In a test binary of its own: it counts panics through the process-wide
//! panic hook, and in the shared binary other tests shutting down would be counted too.

#[path = "api/helpers/mod.rs"]
#[allow(dead_code, unused_imports)]
mod helpers;
#[path = "common/pg.rs"]
mod pg;

use helpers::*;

fn gis(id: &str) -> String {
    format!(
        "id: {id}\ntype: outbound\ntrigger: {{ topic: permit.updated }}\nkey: \"{{{{ permitId }}}}\"\nmap:\n  to:\n    url: \"{{FAKE}}/{id}/{{permitId}}\"\n    method: PATCH\nretry: {{ max: 3, backoffMs: 20 }}\n"
    )
}

/// Panics anywhere in this test process whose message says sqlx found no runtime.
static NO_RUNTIME_PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn count_no_runtime_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if hms_sync::actors::panics::message(info.payload()).is_some_and(|m| m.contains("requires a Tokio context")) {
                NO_RUNTIME_PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

// A connector removed while one of its children's queries waits inside the database: its
// thread goes away without a panic. (sqlx panics when a pooled connection is dropped
// outside a runtime, which is where a thread's unfinished tasks are dropped if it is simply
// stopped.) PostgreSQL, because a table lock there holds a read for as long as we like.
#[actix_web::test]
async fn a_connector_removed_while_its_query_waits_stops_cleanly() {
    use sea_orm::{ConnectionTrait, Database, TransactionTrait};
    count_no_runtime_panics();
    let admin_url = std::env::var("HMS_SYNC_TEST_PG_ADMIN").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let Ok(admin) = Database::connect(&admin_url).await else {
        assert!(std::env::var_os("CI").is_none(), "PostgreSQL is unreachable at {admin_url}");
        eprintln!("skipped: PostgreSQL is unreachable at {admin_url}");
        return;
    };
    pg::drop_leftovers(&admin).await;
    let name = format!("hms_sync_stop_{}", std::process::id());
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}")).await.unwrap();
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);

    let fake = FakeSystem::start().await;
    let mut settings = test_settings(&temp_dir("stop-mid-query"));
    settings.database.url = Some(url.clone());
    // Each connector on a thread of its own: that thread stops when the connector is
    // deleted, which is where a query could be dropped outside a runtime (pool workers
    // outlive the connectors on them).
    settings.runtime.dedicated_threads = true;
    let app = TestApp::spawn(settings).await;
    let (code, body) = app.call("POST", "/connectors", Some(&gis("gone").replace("{FAKE}", &fake.base))).await;
    assert_eq!(code, 201, "{body}");
    app.wait_state("gone", "running").await;

    // Hold the queue table, then wake the lane (a resume does): its look at the queue
    // waits in PostgreSQL.
    let locker = Database::connect(&url).await.unwrap();
    let txn = locker.begin().await.unwrap();
    txn.execute_unprepared("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE").await.unwrap();
    assert_eq!(app.call("PUT", "/connectors/gone/resume", None).await.0, 202);
    let waiting = format!("SELECT count(*)::bigint AS n FROM pg_stat_activity WHERE datname = '{name}' AND wait_event_type = 'Lock'");
    let count = |sql: String| {
        let admin = admin.clone();
        async move { admin.query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql)).await.unwrap().unwrap().try_get::<i64>("", "n").unwrap() }
    };
    poll_until("a query of the connector waiting for the lock", WAIT, || async { (count(waiting.clone()).await > 0).then_some(()) }).await;

    assert_eq!(app.call("DELETE", "/connectors/gone", None).await.0, 204);
    txn.rollback().await.unwrap();
    poll_until("no query left waiting", WAIT, || async { (count(waiting.clone()).await == 0).then_some(()) }).await;
    // The connector's thread is gone by now; a panic would have been counted.
    let still = format!("SELECT count(*)::bigint AS n FROM pg_stat_activity WHERE datname = '{name}' AND state = 'active' AND pid <> pg_backend_pid()");
    poll_until("the database to be quiet", WAIT, || async { (count(still.clone()).await == 0).then_some(()) }).await;
    assert_eq!(NO_RUNTIME_PANICS.load(std::sync::atomic::Ordering::SeqCst), 0, "a connection was dropped outside a runtime");

    // Issue 11, item 2: a pulling connector deleted while its Puller loads its cursor (the
    // query waits for a lock). The Puller used to wait for the cursor with its mailbox
    // closed, so its StopChild came too late and the query was dropped with the thread.
    let pulling = format!(
        "id: pulling\ntype: inbound\nkey: \"{{{{ id }}}}\"\nmap:\n  hms: {{ url: \"{fake}/hms/{{{{ id }}}}\", method: PATCH }}\nsource:\n  pull: {{ url: \"{fake}/changes?since={{{{ cursor }}}}\", every: 1h, records: \"$.changes\", idField: id, cursorField: v, initialCursor: 0 }}\n",
        fake = fake.base
    );
    for round in 0..3 {
        let txn = locker.begin().await.unwrap();
        txn.execute_unprepared("LOCK TABLE cursors IN ACCESS EXCLUSIVE MODE").await.unwrap();
        let (code, body) = app.call("POST", "/connectors", Some(&pulling)).await;
        assert_eq!(code, 201, "{body}");
        poll_until("the Puller's cursor query waiting for the lock", WAIT, || async { (count(waiting.clone()).await > 0).then_some(()) }).await;
        assert_eq!(app.call("DELETE", "/connectors/pulling", None).await.0, 204, "round {round}");
        // The thread goes while the query still waits; then the lock goes.
        poll_until("the connector gone", WAIT, || async { (app.call("GET", "/connectors/pulling", None).await.0 == 404).then_some(()) }).await;
        txn.rollback().await.unwrap();
        poll_until("no query left waiting", WAIT, || async { (count(waiting.clone()).await == 0).then_some(()) }).await;
        poll_until("the database to be quiet", WAIT, || async { (count(still.clone()).await == 0).then_some(()) }).await;
    }
    assert_eq!(NO_RUNTIME_PANICS.load(std::sync::atomic::Ordering::SeqCst), 0, "a Puller's cursor query was dropped outside a runtime");

    app.stop().await;
    drop(locker);
    let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

