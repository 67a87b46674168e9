//! Entity of `cursors`: the durable `since` position of each connector's ETL pull.

use sea_orm::entity::prelude::*;

/// One cursor per connector. `cursor` is JSON text because feeds disagree on what a
/// position is (a timestamp string, a sequence number, an opaque token object).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cursors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub connector_id: String,
    #[sea_orm(column_type = "Text")]
    pub cursor: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
