//! Entity of `connectors`: connector specs registered at run time over the admin API.

use sea_orm::entity::prelude::*;

/// One registered connector. `source` is the YAML/JSON text exactly as submitted, so what
/// the API returns (and what is re-validated after an upgrade) is what the user wrote.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "connectors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    #[sea_orm(column_type = "Text")]
    pub source: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
