//! Schema migrations of hms-sync, portable between SQLite and PostgreSQL 15.
//!
//! Each migration is a frozen snapshot: it names its tables and columns itself instead of
//! borrowing from `entities`, so a later change to an entity can never rewrite history.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_initial;
mod m20261123_000001_due_index;
mod m20261123_000002_delivery_attempts;
mod m20261130_000001_link_state;
mod m20261130_000002_job_origin;
mod m20261130_000003_instances;
mod m20261130_000004_leases;
mod m20261201_000001_job_leases;
mod m20261201_000002_failed_attempts_index;
mod m20261202_000001_console;
mod m20261203_000001_pending_key_index;
mod m20261204_000001_in_flight;
mod m20261205_000001_typed_job_state;

/// The oldest migration a binary must know to run on the schema these migrations make: a
/// binary that stops at an earlier one is refused (it would use what a contract migration
/// took away). Every migration up to now only expands the schema, so a binary of the version
/// before (which knows `leases`) still runs on it: a rolling upgrade. Raise this with the
/// migration that contracts.
pub const COMPATIBLE_FROM: &str = "m20261130_000004_leases";

/// Runs every migration in order; `Migrator::up(&db, None)` is idempotent.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261122_000001_initial::Migration), Box::new(m20261123_000001_due_index::Migration), Box::new(m20261123_000002_delivery_attempts::Migration), Box::new(m20261130_000001_link_state::Migration), Box::new(m20261130_000002_job_origin::Migration), Box::new(m20261130_000003_instances::Migration), Box::new(m20261130_000004_leases::Migration), Box::new(m20261201_000001_job_leases::Migration), Box::new(m20261201_000002_failed_attempts_index::Migration), Box::new(m20261202_000001_console::Migration), Box::new(m20261203_000001_pending_key_index::Migration), Box::new(m20261204_000001_in_flight::Migration), Box::new(m20261205_000001_typed_job_state::Migration)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm_migration::sea_orm::{ConnectionTrait, Database, Statement};

    /// The schema applies on SQLite, applying it again is a no-op, and it can be rolled back.
    #[tokio::test]
    async fn up_twice_then_down_on_sqlite() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        Migrator::up(&db, None).await.unwrap();
        Migrator::up(&db, None).await.unwrap();
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
            ))
            .await
            .unwrap();
        let names: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<String>("", "name").unwrap())
            .collect();
        for t in [
            "connectors",
            "cursors",
            "deliveries",
            "delivery_attempts",
            "record_links",
            "instances",
            "leases",
            "settings",
            "sync_tickets",
        ] {
            assert!(names.iter().any(|n| n == t), "missing table {t}: {names:?}");
        }
        Migrator::down(&db, None).await.unwrap();
        Migrator::up(&db, None).await.unwrap();
    }

    /// Jobs stored before origins were typed get the origin their topic prefix meant.
    #[tokio::test]
    async fn job_origins_move_from_topic_prefixes() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        let before = Migrator::migrations().iter().position(|m| m.name() == "m20261130_000002_job_origin").unwrap() as u32;
        Migrator::up(&db, Some(before)).await.unwrap();
        for (i, topic) in ["shift.updated", "inbound", "resolved:inbound", "resolved:shift.updated", "resolved:take:legacy", "merged:outbound"].iter().enumerate() {
            db.execute_unprepared(&format!(
                "INSERT INTO deliveries (connector_id, event_id, topic, record_key, payload, status, attempts, next_attempt_at, created_at, updated_at) \
                 VALUES ('c', 'e{i}', '{topic}', 'k', '{{}}', 'pending', 0, '2026-11-30T00:00:00Z', '2026-11-30T00:00:00Z', '2026-11-30T00:00:00Z')"
            ))
            .await
            .unwrap();
        }
        Migrator::up(&db, None).await.unwrap();
        let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), "SELECT origin, deleted FROM deliveries ORDER BY id")).await.unwrap();
        let origins: Vec<String> = rows.iter().map(|r| r.try_get::<String>("", "origin").unwrap()).collect();
        assert_eq!(origins, ["event", "inbound", "resolved:hms", "resolved:legacy", "take:legacy", "merged:legacy"]);
        assert!(rows.iter().all(|r| !r.try_get::<bool>("", "deleted").unwrap()));
    }

    /// Jobs stored before a job's state had columns of its own keep what their `last_error`
    /// prefixes meant: one panic, a conflict, a write in flight (and a stale note is dropped);
    /// a link's `lost:` hash becomes its side's mark and the plain hash.
    #[tokio::test]
    async fn job_state_moves_from_error_prefixes() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        let before = Migrator::migrations().iter().position(|m| m.name() == "m20261205_000001_typed_job_state").unwrap() as u32;
        Migrator::up(&db, Some(before)).await.unwrap();
        let rows = [
            ("pending", "panicked: injected", None),
            ("parked", "conflict: both sides changed this record since the last sync", None),
            ("pending", "in flight: POST http://127.0.0.1/x", None),
            ("pending", "in flight: PUT http://127.0.0.1/x/1", Some(r#"{"to":"legacy","content":"abc"}"#)),
            ("pending", "HTTP 503", Some(r#"{"to":"legacy","content":"abc"}"#)),
            ("parked", "HTTP 400: panicked: conflict: in flight: ", None),
        ];
        for (i, (status, error, in_flight)) in rows.iter().enumerate() {
            let in_flight = in_flight.map_or("NULL".to_string(), |j| format!("'{j}'"));
            db.execute_unprepared(&format!(
                "INSERT INTO deliveries (connector_id, event_id, topic, record_key, payload, status, attempts, next_attempt_at, last_error, created_at, updated_at, in_flight) \
                 VALUES ('c', 'e{i}', 't', 'k', '{{}}', '{status}', 1, '2026-11-30T00:00:00Z', '{error}', '2026-11-30T00:00:00Z', '2026-11-30T00:00:00Z', {in_flight})"
            ))
            .await
            .unwrap();
        }
        for (i, (hms, external)) in [("'lost:abc'", "'def'"), ("'abc'", "'lost:def'"), ("NULL", "NULL")].iter().enumerate() {
            db.execute_unprepared(&format!(
                "INSERT INTO record_links (connector_id, hms_id, external_id, hms_hash, external_hash, updated_at) VALUES ('c', 'h{i}', 'x{i}', {hms}, {external}, '2026-11-30T00:00:00Z')"
            ))
            .await
            .unwrap();
        }
        Migrator::up(&db, None).await.unwrap();
        let links = db.query_all_raw(Statement::from_string(db.get_database_backend(), "SELECT hms_hash, hms_lost, external_hash, external_lost FROM record_links ORDER BY id")).await.unwrap();
        let links: Vec<(Option<String>, bool, Option<String>, bool)> = links
            .iter()
            .map(|r| (r.try_get("", "hms_hash").unwrap(), r.try_get("", "hms_lost").unwrap(), r.try_get("", "external_hash").unwrap(), r.try_get("", "external_lost").unwrap()))
            .collect();
        let some = |s: &str| Some(s.to_string());
        assert_eq!(links, [(some("abc"), true, some("def"), false), (some("abc"), false, some("def"), true), (None, false, None, false)], "a side's `lost:` mark in its own column");
        let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), "SELECT panics, conflict, in_flight FROM deliveries ORDER BY id")).await.unwrap();
        let state: Vec<(i32, Option<String>, Option<String>)> = rows
            .iter()
            .map(|r| (r.try_get("", "panics").unwrap(), r.try_get("", "conflict").unwrap(), r.try_get("", "in_flight").unwrap()))
            .collect();
        assert_eq!(
            state,
            [
                (1, None, None),
                (0, some("{}"), None),
                (0, None, some("{}")),
                (0, None, some(r#"{"to":"legacy","content":"abc"}"#)),
                (0, None, None),
                (0, None, None),
            ]
        );
    }
}
