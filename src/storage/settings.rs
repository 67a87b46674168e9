//! Persisted settings (`settings` table): small JSON values that must survive restarts,
//! such as the governance toggle.

use entities::settings::{ActiveModel, Column, Entity};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, QueryTrait};

use super::{StorageError, from_json_text, now, to_json_text};

/// The value stored under `key`, or `None` if it was never set.
pub async fn get_setting<C: ConnectionTrait>(db: &C, key: &str) -> Result<Option<serde_json::Value>, StorageError> {
    match Entity::find_by_id(key.to_owned()).one(db).await? {
        Some(row) => Ok(Some(from_json_text(
            &row.value,
            &format!("setting {key:?}"),
        )?)),
        None => Ok(None),
    }
}

/// Stores `value` under `key`, replacing any previous value (one atomic upsert).
pub async fn put_setting<C: ConnectionTrait>(
    db: &C,
    key: &str,
    value: &serde_json::Value,
) -> Result<(), StorageError> {
    let row = ActiveModel {
        key: Set(key.to_owned()),
        value: Set(to_json_text(value)),
        updated_at: Set(now()),
    };
    let stmt = Entity::insert(row)
        .on_conflict(
            OnConflict::column(Column::Key)
                .update_columns([Column::Value, Column::UpdatedAt])
                .to_owned(),
        )
        .into_query();
    db.execute(&stmt).await?;
    Ok(())
}

/// Every setting whose key starts with `prefix`, with its value.
pub async fn settings_with_prefix<C: ConnectionTrait>(db: &C, prefix: &str) -> Result<Vec<(String, serde_json::Value)>, StorageError> {
    use sea_orm::{ColumnTrait, QueryFilter};
    let rows = Entity::find().filter(Column::Key.starts_with(prefix)).all(db).await?;
    rows.into_iter().map(|r| Ok((r.key.clone(), from_json_text(&r.value, &format!("setting {:?}", r.key))?))).collect()
}
