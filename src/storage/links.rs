//! Record links of two-way connectors (`record_links` table): per record, the content hash
//! and version last synced on each side. They are what makes an echo recognisable.

use entities::record_links::{ActiveModel, Column, Entity, Model};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryTrait};

use super::{Db, StorageError, now};

/// What is known of one record on both sides.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    pub hms_id: String,
    pub external_id: String,
    pub hms_hash: Option<String>,
    pub external_hash: Option<String>,
    pub hms_version: Option<String>,
    pub external_version: Option<String>,
}

impl From<Model> for Link {
    fn from(m: Model) -> Self {
        Self {
            hms_id: m.hms_id,
            external_id: m.external_id,
            hms_hash: m.hms_hash,
            external_hash: m.external_hash,
            hms_version: m.hms_version,
            external_version: m.external_version,
        }
    }
}

/// A change synced to both sides: both now hold content `hash` at `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkUpdate {
    pub connector_id: String,
    pub hms_id: String,
    pub external_id: String,
    pub hash: String,
    pub version: Option<String>,
}

/// The link of record `hms_id` of `connector_id`.
pub async fn get_link(db: &Db, connector_id: &str, hms_id: &str) -> Result<Option<Link>, StorageError> {
    Ok(Entity::find().filter(Column::ConnectorId.eq(connector_id)).filter(Column::HmsId.eq(hms_id)).one(db).await?.map(Link::from))
}

/// Records a change synced to both sides (upsert by connector and HMS id).
pub async fn save_link<C: ConnectionTrait>(c: &C, u: &LinkUpdate) -> Result<(), StorageError> {
    let row = ActiveModel {
        connector_id: Set(u.connector_id.clone()),
        hms_id: Set(u.hms_id.clone()),
        external_id: Set(u.external_id.clone()),
        hms_hash: Set(Some(u.hash.clone())),
        external_hash: Set(Some(u.hash.clone())),
        hms_version: Set(u.version.clone()),
        external_version: Set(u.version.clone()),
        updated_at: Set(now()),
        ..Default::default()
    };
    let stmt = Entity::insert(row)
        .on_conflict(
            OnConflict::columns([Column::ConnectorId, Column::HmsId])
                .update_columns([Column::ExternalId, Column::HmsHash, Column::ExternalHash, Column::HmsVersion, Column::ExternalVersion, Column::UpdatedAt])
                .to_owned(),
        )
        .into_query();
    c.execute(&stmt).await?;
    Ok(())
}
