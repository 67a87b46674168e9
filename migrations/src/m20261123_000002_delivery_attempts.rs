//! `delivery_attempts`: every attempt of a delivery job (status code, latency, error).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000002_delivery_attempts"
    }
}

#[derive(DeriveIden)]
enum DeliveryAttempts {
    Table,
    Id,
    DeliveryId,
    ConnectorId,
    Attempt,
    Status,
    LatencyMs,
    Error,
    At,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeliveryAttempts::Table)
                    .if_not_exists()
                    .col(big_pk_auto(DeliveryAttempts::Id))
                    .col(big_integer(DeliveryAttempts::DeliveryId))
                    .col(string(DeliveryAttempts::ConnectorId))
                    .col(integer(DeliveryAttempts::Attempt))
                    .col(integer_null(DeliveryAttempts::Status))
                    .col(big_integer(DeliveryAttempts::LatencyMs))
                    .col(text_null(DeliveryAttempts::Error))
                    .col(timestamp_with_time_zone(DeliveryAttempts::At))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_delivery_attempts_delivery")
                    .table(DeliveryAttempts::Table)
                    .col(DeliveryAttempts::DeliveryId)
                    .col(DeliveryAttempts::Attempt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(DeliveryAttempts::Table).if_exists().to_owned()).await
    }
}
