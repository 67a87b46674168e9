//! Delivery attempts (`delivery_attempts` table): every attempt of a job, written with the
//! job's outcome, listed with a parked job or a ticket.

use std::borrow::Borrow;

use chrono::{DateTime, Utc};
use entities::delivery_attempts::{ActiveModel, Column, Entity, Model};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QueryTrait, Statement};

use super::{Db, StorageError, now};

/// One attempt to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAttempt {
    pub delivery_id: i64,
    pub connector_id: String,
    pub attempt: i32,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
}

/// A recorded attempt, shaped for the API.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub attempt: i32,
    pub status: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

impl From<Model> for Attempt {
    fn from(m: Model) -> Self {
        Self { attempt: m.attempt, status: m.status, latency_ms: m.latency_ms, error: m.error, at: m.at }
    }
}

/// Inserts `attempts` on `c` (inside the writer's batch transaction).
pub(crate) async fn insert_in<C: ConnectionTrait>(c: &C, attempts: &[impl Borrow<NewAttempt>]) -> Result<(), StorageError> {
    for stmt in insert_statements(c.get_database_backend(), attempts) {
        c.execute_raw(stmt).await?;
    }
    Ok(())
}

/// The `INSERT`s of [`insert_in`] (for both writers, see `deliveries::insert_statements`).
pub(crate) fn insert_statements(backend: DbBackend, attempts: &[impl Borrow<NewAttempt>]) -> Vec<Statement> {
    let t = now();
    attempts
        .chunks(200)
        .map(|chunk| {
            let rows = chunk.iter().map(Borrow::borrow).map(|a: &NewAttempt| ActiveModel {
                delivery_id: Set(a.delivery_id),
                connector_id: Set(a.connector_id.clone()),
                attempt: Set(a.attempt),
                status: Set(a.status.map(i32::from)),
                latency_ms: Set(i64::try_from(a.latency_ms).unwrap_or(i64::MAX)),
                error: Set(a.error.clone()),
                at: Set(t),
                ..Default::default()
            });
            Entity::insert_many(rows).build(backend)
        })
        .collect()
}

/// How many attempts failed since `since`, per connector (every instance's: the cluster's
/// alert evaluation reads them here).
pub async fn failures_since(db: &Db, since: DateTime<Utc>) -> Result<Vec<(String, i64)>, StorageError> {
    use sea_orm::QuerySelect;
    use sea_orm::sea_query::{Expr, ExprTrait};
    Ok(Entity::find()
        .select_only()
        .column(Column::ConnectorId)
        .column_as(Expr::col(Column::Id).count(), "n")
        .filter(Column::Error.is_not_null())
        .filter(Column::At.gt(super::micros(since)))
        .group_by(Column::ConnectorId)
        .into_tuple::<(String, i64)>()
        .all(db)
        .await?)
}

/// Every attempt of delivery job `delivery_id`, first first.
pub async fn list_attempts(db: &Db, delivery_id: i64) -> Result<Vec<Attempt>, StorageError> {
    let rows = Entity::find().filter(Column::DeliveryId.eq(delivery_id)).order_by_asc(Column::Id).all(db).await?;
    Ok(rows.into_iter().map(Attempt::from).collect())
}
