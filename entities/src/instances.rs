//! Entity of `instances`: the hms-sync processes running on this database, and their heartbeat.

use sea_orm::entity::prelude::*;

/// One row per running process (removed when it stops cleanly; a killed one stays, its
/// heartbeat getting older).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "instances")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Where its HTTP API listens (`host:port`).
    pub address: String,
    /// The hms-sync version it runs.
    pub version: String,
    pub pid: i64,
    pub started_at: DateTimeUtc,
    /// Its latest heartbeat, from the database's clock.
    pub last_beat: DateTimeUtc,
    /// What it holds, as JSON text (`{"connectors": N}`).
    #[sea_orm(column_type = "Text")]
    pub holds: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
