//! Schema migrations of hms-sync, portable between SQLite and PostgreSQL 15.
//!
//! Each migration is a frozen snapshot: it names its tables and columns itself instead of
//! borrowing from `entities`, so a later change to an entity can never rewrite history.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_initial;
mod m20261123_000001_due_index;
mod m20261123_000002_delivery_attempts;
mod m20261130_000001_link_state;

/// Runs every migration in order; `Migrator::up(&db, None)` is idempotent.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261122_000001_initial::Migration), Box::new(m20261123_000001_due_index::Migration), Box::new(m20261123_000002_delivery_attempts::Migration), Box::new(m20261130_000001_link_state::Migration)]
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
            "settings",
            "sync_tickets",
        ] {
            assert!(names.iter().any(|n| n == t), "missing table {t}: {names:?}");
        }
        Migrator::down(&db, None).await.unwrap();
        Migrator::up(&db, None).await.unwrap();
    }
}
