//! `instances`: every running hms-sync process on this database, with its heartbeat (the
//! cluster view; issue "hms-sync as a cluster").

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261130_000003_instances"
    }
}

#[derive(DeriveIden)]
enum Instances {
    Table,
    Id,
    Address,
    Version,
    Pid,
    StartedAt,
    LastBeat,
    Holds,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Instances::Table)
                    .if_not_exists()
                    .col(string(Instances::Id).primary_key())
                    .col(string(Instances::Address))
                    .col(string(Instances::Version))
                    .col(big_integer(Instances::Pid))
                    .col(timestamp_with_time_zone(Instances::StartedAt))
                    .col(timestamp_with_time_zone(Instances::LastBeat))
                    .col(text(Instances::Holds))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Instances::Table).if_exists().to_owned()).await
    }
}
