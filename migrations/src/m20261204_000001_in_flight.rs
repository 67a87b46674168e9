//! `deliveries.in_flight`: what a two-way job's write in flight was writing (the side and
//! the content hash, JSON), stored beside its `in flight: …` note before the request goes.
//! After a restart that lost the write's outcome, the next attempt reads that side and
//! knows whether the write landed, whichever side it went to (a lost conflict writes the
//! winner back to the change's own source, a content the job itself does not carry).
//! Expand only.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000001_in_flight"
    }
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    InFlight,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !manager.has_column("deliveries", "in_flight").await? {
            manager.alter_table(Table::alter().table(Deliveries::Table).add_column(text_null(Deliveries::InFlight)).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(Deliveries::Table).drop_column(Deliveries::InFlight).to_owned()).await
    }
}
