//! Entity of `record_links`: per record, the ids on both sides and what was last synced.

use sea_orm::entity::prelude::*;

/// One linked record of a two-way connector. The hashes and versions last written to each
/// side let the engine recognise its own echo (no ping-pong) and detect concurrent edits.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "record_links")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub connector_id: String,
    pub hms_id: String,
    pub external_id: String,
    pub hms_hash: Option<String>,
    pub external_hash: Option<String>,
    pub hms_version: Option<String>,
    pub external_version: Option<String>,
    /// The record last synced, in HMS fields (JSON): the base of a three-way merge.
    pub base: Option<String>,
    /// Contents we wrote to HMS lately (a JSON array of content hashes): their echoes.
    pub hms_written: Option<String>,
    /// Contents we wrote to the external system lately.
    pub external_written: Option<String>,
    /// The HMS version last seen is the stamp HMS put on our own write.
    pub hms_version_ours: bool,
    pub external_version_ours: bool,
    /// The side holds a change that lost a conflict, not overwritten yet (its hash is that
    /// change's content, never synced).
    pub hms_lost: bool,
    pub external_lost: bool,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
