//! The `instances` table: each running process on this database and its heartbeat. Times
//! come from the database's clock (PostgreSQL's `now()`), so instances on machines whose
//! clocks disagree still agree on who is alive.

use chrono::{DateTime, Utc};
use entities::instances::{ActiveModel, Column, Entity};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, Statement};
use serde::Serialize;

use super::{Db, StorageError};

/// One instance as listed by `GET /cluster`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Instance {
    pub id: String,
    pub address: String,
    pub version: String,
    pub pid: i64,
    pub started_at: DateTime<Utc>,
    pub last_beat: DateTime<Utc>,
    /// Its last heartbeat is within the lease time.
    pub alive: bool,
    /// What it said it holds at its last heartbeat.
    pub holds: serde_json::Value,
}

/// The database's clock: `now()` on PostgreSQL; on SQLite, which one process at a time
/// uses, this process's clock.
pub async fn db_now(db: &Db) -> Result<DateTime<Utc>, StorageError> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(Utc::now());
    }
    let row = db.query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT now() AS t")).await?;
    Ok(row.map(|r| r.try_get::<DateTime<Utc>>("", "t")).transpose()?.unwrap_or_else(Utc::now))
}

/// Registers this process (`id`, fresh at each start) with a first heartbeat.
pub async fn register_instance(db: &Db, id: &str, address: &str, version: &str, holds: &serde_json::Value) -> Result<(), StorageError> {
    let now = db_now(db).await?;
    let row = ActiveModel {
        id: Set(id.to_owned()),
        address: Set(address.to_owned()),
        version: Set(version.to_owned()),
        pid: Set(i64::from(std::process::id())),
        started_at: Set(now),
        last_beat: Set(now),
        holds: Set(holds.to_string()),
    };
    Entity::insert(row).exec(db).await?;
    Ok(())
}

/// A heartbeat of instance `id`, with what it holds now. Registers it again when its row
/// is gone (another instance pruned it after a long pause, say).
pub async fn beat(db: &Db, id: &str, address: &str, version: &str, holds: &serde_json::Value) -> Result<(), StorageError> {
    let now = db_now(db).await?;
    let updated = Entity::update_many()
        .col_expr(Column::LastBeat, sea_orm::sea_query::Expr::value(now))
        .col_expr(Column::Holds, sea_orm::sea_query::Expr::value(holds.to_string()))
        .filter(Column::Id.eq(id))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        register_instance(db, id, address, version, holds).await?;
    }
    Ok(())
}

/// Every instance, oldest first, alive when its last heartbeat is at most `lease` old by the
/// database's clock. Instances silent for a day are removed on the way.
pub async fn list_instances(db: &Db, lease: chrono::Duration) -> Result<Vec<Instance>, StorageError> {
    let now = db_now(db).await?;
    Entity::delete_many().filter(Column::LastBeat.lt(now - chrono::Duration::days(1))).exec(db).await?;
    let rows = Entity::find().order_by_asc(Column::StartedAt).order_by_asc(Column::Id).all(db).await?;
    Ok(rows
        .into_iter()
        .map(|r| Instance {
            alive: now - r.last_beat <= lease,
            holds: serde_json::from_str(&r.holds).unwrap_or(serde_json::Value::Null),
            id: r.id,
            address: r.address,
            version: r.version,
            pid: r.pid,
            started_at: r.started_at,
            last_beat: r.last_beat,
        })
        .collect())
}

/// Removes instance `id` (it stops cleanly).
pub async fn remove_instance(db: &Db, id: &str) -> Result<(), StorageError> {
    Entity::delete_by_id(id.to_owned()).exec(db).await?;
    Ok(())
}
