//! Durable ETL cursors (`cursors` table): where each connector's pull resumes.

use entities::cursors::{ActiveModel, Column, Entity};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, QueryTrait};

use super::{Db, StorageError, from_json_text, now, to_json_text};

/// The saved cursor of `connector_id`, or `None` before its first successful pull.
pub async fn load_cursor(
    db: &Db,
    connector_id: &str,
) -> Result<Option<serde_json::Value>, StorageError> {
    match Entity::find_by_id(connector_id.to_owned()).one(db).await? {
        Some(row) => Ok(Some(from_json_text(
            &row.cursor,
            &format!("cursor of {connector_id:?}"),
        )?)),
        None => Ok(None),
    }
}

/// Saves the cursor of `connector_id` (upsert). Call it only after the records it covers are
/// stored: a crash in between then re-reads them (at-least-once) instead of losing them.
pub async fn save_cursor(
    db: &Db,
    connector_id: &str,
    cursor: &serde_json::Value,
) -> Result<(), StorageError> {
    let row = ActiveModel {
        connector_id: Set(connector_id.to_owned()),
        cursor: Set(to_json_text(cursor)),
        updated_at: Set(now()),
    };
    let stmt = Entity::insert(row)
        .on_conflict(
            OnConflict::column(Column::ConnectorId)
                .update_columns([Column::Cursor, Column::UpdatedAt])
                .to_owned(),
        )
        .into_query();
    db.execute(&stmt).await?;
    Ok(())
}
