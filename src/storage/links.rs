//! Record links of two-way connectors (`record_links` table): per record, the ids on both
//! sides and what two-way sync decides by ([`Synced`]: the record last synced, each side's
//! content hash and version, our recent writes). They are what makes an echo recognisable.

use entities::record_links::{ActiveModel, Column, Entity, Model};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryTrait, Statement};
use serde_json::Value;

use super::{Db, StorageError, now};
use crate::sync::engine::Synced;
use crate::sync::inbound::scalar_text;

/// What is known of one record on both sides.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub hms_id: String,
    pub external_id: String,
    pub synced: Synced,
}

fn list(text: Option<String>) -> Vec<String> {
    text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

impl From<Model> for Link {
    fn from(m: Model) -> Self {
        let synced = Synced {
            base: m.base.and_then(|b| serde_json::from_str(&b).ok()),
            hms_hash: m.hms_hash,
            external_hash: m.external_hash,
            hms_version: m.hms_version.map(Value::String),
            external_version: m.external_version.map(Value::String),
            hms_written: list(m.hms_written),
            external_written: list(m.external_written),
            hms_version_ours: m.hms_version_ours,
            external_version_ours: m.external_version_ours,
            hms_lost: m.hms_lost,
            external_lost: m.external_lost,
        };
        Self { hms_id: m.hms_id, external_id: m.external_id, synced }
    }
}

/// A record's link as it is after a sync.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkUpdate {
    pub connector_id: String,
    pub hms_id: String,
    pub external_id: String,
    pub synced: Synced,
    /// The HMS id the record was linked under before HMS numbered it anew (a record
    /// created there again): that row goes.
    pub replaces: Option<String>,
}

/// The link of record `hms_id` of `connector_id`.
pub async fn get_link(db: &Db, connector_id: &str, hms_id: &str) -> Result<Option<Link>, StorageError> {
    Ok(Entity::find().filter(Column::ConnectorId.eq(connector_id)).filter(Column::HmsId.eq(hms_id)).one(db).await?.map(Link::from))
}

/// The link of `connector_id` whose external id is `external_id`, if any.
pub async fn link_by_external(db: &Db, connector_id: &str, external_id: &str) -> Result<Option<Link>, StorageError> {
    Ok(Entity::find().filter(Column::ConnectorId.eq(connector_id)).filter(Column::ExternalId.eq(external_id)).one(db).await?.map(Link::from))
}

/// Saves a record's link (upsert by connector and HMS id).
pub async fn save_link<C: ConnectionTrait>(c: &C, u: &LinkUpdate) -> Result<(), StorageError> {
    for stmt in save_statements(c.get_database_backend(), u) {
        c.execute_raw(stmt).await?;
    }
    Ok(())
}

/// The statements of [`save_link`] (for both writers, see `deliveries::insert_statements`):
/// the old link's removal when the record's HMS id changed, then the upsert.
pub(crate) fn save_statements(backend: DbBackend, u: &LinkUpdate) -> Vec<Statement> {
    let mut statements = Vec::with_capacity(2);
    if let Some(old) = u.replaces.as_deref().filter(|old| *old != u.hms_id) {
        statements.push(Entity::delete_many().filter(Column::ConnectorId.eq(&u.connector_id)).filter(Column::HmsId.eq(old)).build(backend));
    }
    let s = &u.synced;
    let written = |l: &Vec<String>| (!l.is_empty()).then(|| serde_json::to_string(l).unwrap_or_default());
    let row = ActiveModel {
        connector_id: Set(u.connector_id.clone()),
        hms_id: Set(u.hms_id.clone()),
        external_id: Set(u.external_id.clone()),
        hms_hash: Set(s.hms_hash.clone()),
        external_hash: Set(s.external_hash.clone()),
        hms_version: Set(s.hms_version.as_ref().map(scalar_text)),
        external_version: Set(s.external_version.as_ref().map(scalar_text)),
        base: Set(s.base.as_ref().map(|b| crate::sync::inbound::no_nul(b.to_string()))),
        hms_written: Set(written(&s.hms_written)),
        external_written: Set(written(&s.external_written)),
        hms_version_ours: Set(s.hms_version_ours),
        external_version_ours: Set(s.external_version_ours),
        hms_lost: Set(s.hms_lost),
        external_lost: Set(s.external_lost),
        updated_at: Set(now()),
        ..Default::default()
    };
    statements.push(
        Entity::insert(row)
            .on_conflict(
                OnConflict::columns([Column::ConnectorId, Column::HmsId])
                    .update_columns([
                        Column::ExternalId,
                        Column::HmsHash,
                        Column::ExternalHash,
                        Column::HmsVersion,
                        Column::ExternalVersion,
                        Column::Base,
                        Column::HmsWritten,
                        Column::ExternalWritten,
                        Column::HmsVersionOurs,
                        Column::ExternalVersionOurs,
                        Column::HmsLost,
                        Column::ExternalLost,
                        Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .build(backend),
    );
    statements
}
