//! Integration test of `hms_sync::storage`: one suite, run on a SQLite temp file and on a
//! throw-away PostgreSQL database.
//!
//! PostgreSQL: the admin URL is `postgres://postgres@127.0.0.1:5432/postgres` unless
//! `HMS_SYNC_TEST_PG_ADMIN` says otherwise. When it is unreachable the test fails if `CI` is
//! set (a missing service must not pass silently there) and is skipped with a message on
//! stderr otherwise.
//!
//! The suite itself lives in `tests/storage/` (one file per area), run in order on one
//! database by [`suite`].

#[path = "storage/queue.rs"]
mod queue;
#[path = "storage/state.rs"]
mod state;
#[path = "storage/tickets.rs"]
mod tickets;
#[path = "storage/writer.rs"]
mod writer;
#[path = "common/poll.rs"]
mod poll;
#[path = "common/pg.rs"]
mod pg;

use std::time::Duration;

use hms_sync::storage::{self, Db};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend, Statement};

const DEFAULT_PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_suite() {
    let dir = tempfile::tempdir().unwrap();
    // A missing sub-directory checks that `connect` creates it.
    let path = dir.path().join("nested/dir/hms.db");
    let url = format!("sqlite://{}", path.display());
    let db = storage::connect(&url).await.unwrap();
    assert!(path.exists(), "database file created");
    assert_eq!(storage::backend_name(&db), "sqlite");

    let mode = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA journal_mode",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<String>(0)
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal", "SQLite must run in WAL mode");
    let fk = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA foreign_keys",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i32>(0)
        .unwrap();
    assert_eq!(fk, 1, "foreign keys on");

    // Re-opening (which migrates again) is a no-op.
    let again = storage::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    again.close().await.unwrap();

    suite(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_suite() {
    let admin_url =
        std::env::var("HMS_SYNC_TEST_PG_ADMIN").unwrap_or_else(|_| DEFAULT_PG_ADMIN.to_owned());
    let mut opts = ConnectOptions::new(admin_url.clone());
    opts.max_connections(1)
        .connect_timeout(Duration::from_secs(3))
        .sqlx_logging(false);
    let admin = match Database::connect(opts).await {
        Ok(db) => db,
        Err(e) => {
            let shown = storage::redact_url(&admin_url);
            if std::env::var_os("CI").is_some() {
                panic!("PostgreSQL not reachable at {shown} (required because CI is set): {e}");
            }
            eprintln!("SKIPPED: PostgreSQL not reachable at {shown}: {e}");
            return;
        }
    };
    // A database left by a run that died (its process id can never be running: pids are
    // below pid_max) is dropped; ours and those of live processes stay.
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|t| t.trim().parse().ok()).unwrap_or(4_194_304);
    let dead = format!("hms_test_{pid_max}_0");
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {dead}")).await.unwrap();
    admin.execute_unprepared(&format!("CREATE DATABASE {dead}")).await.unwrap();
    pg::drop_leftovers(&admin).await;
    let left = admin
        .query_one_raw(Statement::from_string(DbBackend::Postgres, format!("SELECT count(*)::bigint AS n FROM pg_database WHERE datname = '{dead}'")))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(left, 0, "the leftover {dead} was dropped");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("hms_test_{}_{nanos}", std::process::id());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = with_database(&admin_url, &name);

    // Run the suite in its own task so the database is dropped even when it panics.
    let run = tokio::spawn(async move {
        let db = storage::connect(&url).await.unwrap();
        assert_eq!(storage::backend_name(&db), "postgres");
        let again = storage::connect(&url).await.unwrap();
        again.close().await.unwrap();
        suite(&db).await;
        db.close().await.unwrap();
    })
    .await;

    let dropped = admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    if let Err(panic) = run {
        std::panic::resume_unwind(panic.into_panic());
    }
    dropped.unwrap();
}

/// `admin_url` with its database name replaced by `name`.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin_url, String::new()),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(i) => &base[..authority_end + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}

/// Everything, against one freshly migrated database.
async fn suite(db: &Db) {
    state::migrations_are_idempotent(db).await;
    state::connectors(db).await;
    state::settings(db).await;
    state::cursors(db).await;
    queue::enqueue_dedupes(db).await;
    queue::heads_and_retries(db).await;
    tickets::tickets(db).await;
    queue::settles_are_fenced_by_the_claim_token(db).await;
    queue::claims_are_shared_between_instances(db).await;
    queue::claims_follow_the_instances_shares(db).await;
    queue::a_replayed_job_waits_for_its_keys_flight(db).await;
    queue::a_lapsed_lease_is_fenced_off(db).await;
}

#[test]
fn database_name_replaced_in_admin_url() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
}

/// A connection error names the URL, hides the password and says why.
#[tokio::test]
async fn connect_errors_are_explained() {
    let err = storage::connect("postgres://app:hunter2@127.0.0.1:1/hms")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("postgres://app:***@127.0.0.1:1/hms"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(
        !msg.contains("pool timed out"),
        "the real reason is given: {msg}"
    );
    let err = storage::connect("mysql://x@h/db").await.unwrap_err();
    assert!(
        err.to_string().contains("unsupported database URL"),
        "{err}"
    );
}

/// Rolling upgrades (issue "hms-sync as a cluster", item 7): a database migrated by a newer
/// binary (a migration this one does not know) still serves this binary while its schema says
/// it does (`compatible_from` is a migration this binary knows): it starts, without migrating.
/// Once a contract migration raises the floor past it, it refuses to start, naming its own
/// version and the one that wrote the schema.
#[tokio::test]
async fn a_binary_older_than_the_schema_runs_while_the_schema_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hms.db").display());
    let db = storage::connect(&url).await.unwrap();
    let recorded = storage::get_setting(&db, "schema").await.unwrap().expect("the migrating binary records the schema");
    assert_eq!(recorded["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(recorded["compatible_from"], migrations::COMPATIBLE_FROM);
    // A newer binary migrated: one more migration, and its record.
    db.execute_unprepared("INSERT INTO seaql_migrations (version, applied_at) VALUES ('m20991231_000001_future', 0)").await.unwrap();
    let newer = |floor: &str| serde_json::json!({ "newest": "m20991231_000001_future", "compatible_from": floor, "version": "9.9.9" });
    storage::put_setting(&db, "schema", &newer(migrations::COMPATIBLE_FROM)).await.unwrap();
    db.close().await.unwrap();
    let db = storage::connect(&url).await.expect("the schema still serves this binary");
    assert_eq!(storage::get_setting(&db, "schema").await.unwrap(), Some(newer(migrations::COMPATIBLE_FROM)), "not migrated, not re-recorded");
    storage::put_setting(&db, "schema", &newer("m20991231_000001_future")).await.unwrap();
    db.close().await.unwrap();
    let err = storage::connect(&url).await.unwrap_err().to_string();
    for part in ["m20991231_000001_future", "9.9.9", env!("CARGO_PKG_VERSION"), "upgrade this binary"] {
        assert!(err.contains(part), "{err}");
    }
}
