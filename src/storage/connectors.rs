//! Connectors registered at run time over the admin API (`connectors` table).

use chrono::{DateTime, Utc};
use entities::connectors::{ActiveModel, Column, Entity, Model};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QueryTrait};

use super::{Db, StorageError, now};
use sea_orm::ConnectionTrait;

/// A registered connector as stored. `source` is the document exactly as submitted (YAML or
/// JSON), so it is re-parsed and re-validated on every start rather than trusted.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredConnector {
    pub id: String,
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Model> for StoredConnector {
    fn from(m: Model) -> Self {
        Self {
            id: m.id,
            source: m.source,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// Registers or replaces connector `id`. Returns `true` when it was created, `false` when an
/// existing one was replaced (its `created_at` is kept).
///
/// Insert-then-update rather than read-then-write, so two concurrent saves of a new id
/// cannot both "create" it or fail on the primary key.
pub async fn save_connector(db: &Db, id: &str, source: &str) -> Result<bool, StorageError> {
    let t = now();
    let row = ActiveModel {
        id: Set(id.to_owned()),
        source: Set(source.to_owned()),
        created_at: Set(t),
        updated_at: Set(t),
    };
    let insert = Entity::insert(row)
        .on_conflict(OnConflict::column(Column::Id).do_nothing().to_owned())
        .into_query();
    if db.execute(&insert).await?.rows_affected() == 1 {
        return Ok(true);
    }
    Entity::update_many()
        .col_expr(Column::Source, Expr::value(source))
        .col_expr(Column::UpdatedAt, Expr::value(t))
        .filter(Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(false)
}

/// Removes connector `id`; returns whether it existed. Its queued deliveries, tickets and
/// cursor are kept: they are history, and re-registering the id resumes from them.
pub async fn delete_connector(db: &Db, id: &str) -> Result<bool, StorageError> {
    let res = Entity::delete_many()
        .filter(Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}

/// Every registered connector, ordered by id (stable output for the API and for start-up).
pub async fn list_connectors(db: &Db) -> Result<Vec<StoredConnector>, StorageError> {
    let rows = Entity::find().order_by_asc(Column::Id).all(db).await?;
    Ok(rows.into_iter().map(StoredConnector::from).collect())
}
