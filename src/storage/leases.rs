//! The `leases` table: a named lease (`pull:ID`, …) is held by one instance at a time, until
//! a time of the database's clock; its holder renews it, and anyone may take it once it has
//! run out. One conditional upsert decides, so two instances can never both hold it.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use super::{Db, StorageError, db_now};

/// `cluster.lease_secs` as a span of the database's clock (10 s if it is beyond chrono's
/// range), for [`take_lease`] and `list_instances`.
pub fn lease_ttl(lease: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::seconds(10))
}

/// Takes or renews lease `name` for `owner` for `ttl`. `None`: `owner` holds it now;
/// `Some(holder)`: another instance holds it and it has not run out.
pub async fn take_lease(db: &Db, name: &str, owner: &str, ttl: chrono::Duration) -> Result<Option<String>, StorageError> {
    let now = db_now(db).await?;
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "INSERT INTO leases (name, owner, until) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until \
             WHERE leases.owner = excluded.owner OR leases.until < $4 RETURNING owner"
        }
        _ => {
            "INSERT INTO leases (name, owner, until) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until \
             WHERE leases.owner = excluded.owner OR leases.until < ? RETURNING owner"
        }
    };
    let values: Vec<Value> = vec![name.into(), owner.into(), (now + ttl).into(), now.into()];
    if db.query_one_raw(Statement::from_sql_and_values(backend, sql, values)).await?.is_some() {
        return Ok(None);
    }
    Ok(Some(holder(db, name).await?.map_or_else(|| "another instance".to_string(), |(h, _)| h)))
}

/// Who holds lease `name` and until when, if anyone does (run out or not).
pub async fn holder(db: &Db, name: &str) -> Result<Option<(String, DateTime<Utc>)>, StorageError> {
    let backend = db.get_database_backend();
    let sql = if backend == DbBackend::Postgres { "SELECT owner, until FROM leases WHERE name = $1" } else { "SELECT owner, until FROM leases WHERE name = ?" };
    let row = db.query_one_raw(Statement::from_sql_and_values(backend, sql, [name.into()])).await?;
    Ok(match row {
        Some(r) => Some((r.try_get("", "owner")?, r.try_get("", "until")?)),
        None => None,
    })
}

/// The names of the leases `owner` holds now (not run out).
pub async fn leases_held(db: &Db, owner: &str) -> Result<Vec<String>, StorageError> {
    let now = db_now(db).await?;
    let backend = db.get_database_backend();
    let sql = if backend == DbBackend::Postgres { "SELECT name FROM leases WHERE owner = $1 AND until >= $2 ORDER BY name" } else { "SELECT name FROM leases WHERE owner = ? AND until >= ? ORDER BY name" };
    let rows = db.query_all_raw(Statement::from_sql_and_values(backend, sql, [owner.into(), now.into()])).await?;
    rows.into_iter().map(|r| r.try_get::<String>("", "name").map_err(StorageError::from)).collect()
}

/// Forgets every instance and lease: on SQLite, where the file's lock lets one process in at
/// a time, the rows left are a dead process's (killed with -9), and its leases must not make
/// the next start wait for them to run out.
pub async fn forget_other_instances(db: &Db) -> Result<(), StorageError> {
    db.execute_unprepared("DELETE FROM leases").await?;
    db.execute_unprepared("DELETE FROM instances").await?;
    Ok(())
}

/// Gives back every lease of `owner` (it stops cleanly: the others need not wait for them
/// to run out).
pub async fn release_leases(db: &Db, owner: &str) -> Result<(), StorageError> {
    let backend = db.get_database_backend();
    let sql = if backend == DbBackend::Postgres { "DELETE FROM leases WHERE owner = $1" } else { "DELETE FROM leases WHERE owner = ?" };
    db.execute_raw(Statement::from_sql_and_values(backend, sql, [owner.into()])).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One holder at a time: another is refused (and told who holds it) until the lease runs
    /// out or is given back; the holder renews it.
    #[tokio::test]
    async fn one_holder_at_a_time() {
        let db = crate::storage::connect("sqlite::memory:").await.unwrap();
        let secs = chrono::Duration::seconds;
        assert_eq!(take_lease(&db, "pull:x", "a", secs(10)).await.unwrap(), None, "free: taken");
        assert_eq!(take_lease(&db, "pull:x", "b", secs(10)).await.unwrap().as_deref(), Some("a"), "held by a");
        assert_eq!(take_lease(&db, "pull:x", "a", secs(10)).await.unwrap(), None, "a renews");
        assert_eq!(leases_held(&db, "a").await.unwrap(), ["pull:x"]);
        // Run out (renewed with no time left): b takes it.
        assert_eq!(take_lease(&db, "pull:x", "a", secs(-1)).await.unwrap(), None);
        assert_eq!(take_lease(&db, "pull:x", "b", secs(10)).await.unwrap(), None, "run out: b takes it");
        assert!(leases_held(&db, "a").await.unwrap().is_empty());
        release_leases(&db, "b").await.unwrap();
        assert_eq!(take_lease(&db, "pull:x", "c", secs(10)).await.unwrap(), None, "given back: free");
    }
}
