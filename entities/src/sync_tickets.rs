//! Entity of `sync_tickets`: the hash-chained audit record of every mirrored change.

use sea_orm::entity::prelude::*;

/// One sync ticket. `prev_hash`/`hash` chain the rows in `id` order so that a deleted or
/// edited ticket is detectable; how `hash` is computed is documented on
/// `hms_sync::storage::append_tickets`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sync_tickets")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub connector_id: String,
    pub event_id: Option<String>,
    pub delivery_id: Option<i64>,
    pub hms_id: Option<String>,
    pub external_id: Option<String>,
    /// `outbound` | `inbound`.
    pub direction: String,
    /// `completed` | `parked` | `skipped` | `conflict`.
    pub status: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub reason: Option<String>,
    pub attempts: i32,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    /// Canonical JSON text (sorted keys, no whitespace), hashed verbatim.
    #[sea_orm(column_type = "Text", nullable)]
    pub detail: Option<String>,
    pub created_at: DateTimeUtc,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
