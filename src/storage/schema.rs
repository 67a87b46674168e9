//! Which binaries a database's schema serves, for rolling upgrades: migrations only expand
//! the schema (new tables, new nullable or defaulted columns) for one version, so a binary of
//! the version before keeps running on it while its instances are replaced one by one; a
//! later contract migration (dropping what old binaries still use) raises the floor.
//!
//! The binary that migrates records, in the `settings` row `schema`, the newest migration, the
//! oldest migration a binary must know to run on it ([`migrations::COMPATIBLE_FROM`]), and its
//! own version. A binary that finds migrations it does not know (a newer one migrated) runs
//! without migrating if it knows that floor, and refuses to start, naming both versions, if
//! not.

use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use super::{Db, StorageError, get_setting, put_setting};

const KEY: &str = "schema";

/// The advisory lock key the migrating instance holds (PostgreSQL).
const MIGRATION_LOCK: i64 = 0x686d_735f_6d69_6772; // "hms_migr"

/// On PostgreSQL: a session advisory lock on a connection of its own (not the pool's, whose
/// connections the migrations use in turn), held while one instance checks and migrates the
/// schema; the lock goes with the connection. Nothing on SQLite (one process per file).
pub struct MigrationLock(Option<sea_orm::sqlx::postgres::PgConnection>);

impl MigrationLock {
    pub async fn take(url: &str) -> Result<Self, sea_orm::DbErr> {
        use sea_orm::sqlx::{Connection, postgres::PgConnection};
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Ok(Self(None));
        }
        let sqlx_err = |e: sea_orm::sqlx::Error| sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(e)));
        let mut conn = PgConnection::connect(url).await.map_err(sqlx_err)?;
        sea_orm::sqlx::query("SELECT pg_advisory_lock($1)").bind(MIGRATION_LOCK).execute(&mut conn).await.map_err(sqlx_err)?;
        Ok(Self(Some(conn)))
    }

    pub async fn release(self) {
        use sea_orm::sqlx::Connection;
        if let Some(conn) = self.0 {
            let _ = conn.close().await;
        }
    }
}

/// The migrations this binary knows, oldest first.
fn known() -> Vec<String> {
    use migrations::MigratorTrait;
    migrations::Migrator::migrations().iter().map(|m| m.name().to_string()).collect()
}

/// `true`: this binary knows every migration applied (or the database is new), and migrates.
/// `false`: a newer binary migrated, and its schema still serves this one (a rolling
/// upgrade). An error when the schema no longer serves this binary.
pub async fn ours_is_current(db: &Db, url: &str) -> Result<bool, StorageError> {
    let applied = applied(db).await;
    let known = known();
    if applied.iter().all(|m| known.contains(m)) {
        return Ok(true);
    }
    let newest = applied.iter().max().cloned().unwrap_or_default();
    let recorded = get_setting(db, KEY).await.ok().flatten().unwrap_or_default();
    let field = |k: &str| recorded.get(k).and_then(|v| v.as_str()).unwrap_or("unknown").to_string();
    let floor = field("compatible_from");
    if known.contains(&floor) {
        tracing::info!(schema = %newest, written_by = %field("version"), "the database's schema is newer than this binary and still serves it (a rolling upgrade); not migrating");
        return Ok(false);
    }
    Err(StorageError::SchemaTooNew {
        url: url.to_string(),
        schema: newest,
        written_by: field("version"),
        binary: env!("CARGO_PKG_VERSION").to_string(),
        known: known.last().cloned().unwrap_or_default(),
        compatible_from: floor,
    })
}

/// The migrations applied to the database (none on a new one).
async fn applied(db: &Db) -> Vec<String> {
    let sql = Statement::from_string(db.get_database_backend(), "SELECT version FROM seaql_migrations".to_string());
    match db.query_all_raw(sql).await {
        Ok(rows) => rows.iter().filter_map(|r| r.try_get::<String>("", "version").ok()).collect(),
        // No table yet: a new database.
        Err(_) => Vec::new(),
    }
}

/// Records what this binary migrated the schema to (after `Migrator::up`).
pub async fn record(db: &Db) -> Result<(), StorageError> {
    let value = json!({
        "newest": known().last(),
        "compatible_from": migrations::COMPATIBLE_FROM,
        "version": env!("CARGO_PKG_VERSION"),
    });
    if get_setting(db, KEY).await?.as_ref() != Some(&value) {
        put_setting(db, KEY, &value).await?;
    }
    Ok(())
}
