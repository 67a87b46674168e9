//! Entity of `delivery_attempts`: one row per attempt of a delivery job (status, latency,
//! error), so a job's whole history is kept, not only its last error.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "delivery_attempts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub delivery_id: i64,
    pub connector_id: String,
    /// 1 for the first attempt.
    pub attempt: i32,
    /// The HTTP status, when an answer came.
    pub status: Option<i32>,
    pub latency_ms: i64,
    /// What went wrong (secrets scrubbed), if anything.
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    pub at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
