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
