//! Initial schema: connectors, deliveries, sync_tickets, cursors, record_links, settings.
//!
//! Portability rules followed here: JSON is stored as `text` (SQLite has no `jsonb`),
//! timestamps are `timestamp with time zone` (RFC 3339 text on SQLite, which sorts
//! correctly as long as every writer uses UTC, as `hms_sync::storage` does), and big-integer
//! auto-increment keys become `integer PRIMARY KEY AUTOINCREMENT` on SQLite, so ids are never
//! reused (the ticket hash chain and the queue order rely on that).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Connectors {
    Table,
    Id,
    Source,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Id,
    ConnectorId,
    EventId,
    Topic,
    RecordKey,
    Payload,
    Status,
    Attempts,
    NextAttemptAt,
    LastError,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SyncTickets {
    Table,
    Id,
    ConnectorId,
    EventId,
    DeliveryId,
    HmsId,
    ExternalId,
    Direction,
    Status,
    Reason,
    Attempts,
    LastError,
    Detail,
    CreatedAt,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum Cursors {
    Table,
    ConnectorId,
    Cursor,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RecordLinks {
    Table,
    Id,
    ConnectorId,
    HmsId,
    ExternalId,
    HmsHash,
    ExternalHash,
    HmsVersion,
    ExternalVersion,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Settings {
    Table,
    Key,
    Value,
    UpdatedAt,
}

/// An index named `name` on `table(cols…)`, created only if missing.
fn index<T: IntoIden + 'static, C: IntoIden + 'static>(
    name: &str,
    table: T,
    cols: impl IntoIterator<Item = C>,
) -> IndexCreateStatement {
    let mut ix = Index::create();
    ix.name(name).table(table).if_not_exists();
    for c in cols {
        ix.col(c);
    }
    ix
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Connectors::Table)
                    .if_not_exists()
                    .col(string(Connectors::Id).primary_key())
                    .col(text(Connectors::Source))
                    .col(timestamp_with_time_zone(Connectors::CreatedAt))
                    .col(timestamp_with_time_zone(Connectors::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Deliveries::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Deliveries::Id))
                    .col(string(Deliveries::ConnectorId))
                    .col(string(Deliveries::EventId))
                    .col(string(Deliveries::Topic))
                    .col(string(Deliveries::RecordKey))
                    .col(text(Deliveries::Payload))
                    .col(string(Deliveries::Status))
                    .col(integer(Deliveries::Attempts))
                    .col(timestamp_with_time_zone(Deliveries::NextAttemptAt))
                    .col(text_null(Deliveries::LastError))
                    .col(timestamp_with_time_zone(Deliveries::CreatedAt))
                    .col(timestamp_with_time_zone(Deliveries::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // Idempotency: an event id is accepted once per connector (ON CONFLICT DO NOTHING).
        manager
            .create_index(
                index(
                    "ux_deliveries_connector_event",
                    Deliveries::Table,
                    [Deliveries::ConnectorId, Deliveries::EventId],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        // Head-of-key lookups: "is there an older pending job of this key?".
        manager
            .create_index(index(
                "ix_deliveries_connector_status_key_id",
                Deliveries::Table,
                [
                    Deliveries::ConnectorId,
                    Deliveries::Status,
                    Deliveries::RecordKey,
                    Deliveries::Id,
                ],
            ))
            .await?;
        // Due-job scans and "when is the next one due".
        manager
            .create_index(index(
                "ix_deliveries_connector_status_next",
                Deliveries::Table,
                [
                    Deliveries::ConnectorId,
                    Deliveries::Status,
                    Deliveries::NextAttemptAt,
                ],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SyncTickets::Table)
                    .if_not_exists()
                    .col(big_pk_auto(SyncTickets::Id))
                    .col(string(SyncTickets::ConnectorId))
                    .col(string_null(SyncTickets::EventId))
                    .col(big_integer_null(SyncTickets::DeliveryId))
                    .col(string_null(SyncTickets::HmsId))
                    .col(string_null(SyncTickets::ExternalId))
                    .col(string(SyncTickets::Direction))
                    .col(string(SyncTickets::Status))
                    .col(text_null(SyncTickets::Reason))
                    .col(integer(SyncTickets::Attempts))
                    .col(text_null(SyncTickets::LastError))
                    .col(text_null(SyncTickets::Detail))
                    .col(timestamp_with_time_zone(SyncTickets::CreatedAt))
                    .col(string(SyncTickets::PrevHash))
                    .col(string(SyncTickets::Hash))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_sync_tickets_connector_id",
                SyncTickets::Table,
                [SyncTickets::ConnectorId, SyncTickets::Id],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_sync_tickets_status_id",
                SyncTickets::Table,
                [SyncTickets::Status, SyncTickets::Id],
            ))
            .await?;
        // Retention (delete older than 30 days) and time-window queries.
        manager
            .create_index(index(
                "ix_sync_tickets_created_at",
                SyncTickets::Table,
                [SyncTickets::CreatedAt],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Cursors::Table)
                    .if_not_exists()
                    .col(string(Cursors::ConnectorId).primary_key())
                    .col(text(Cursors::Cursor))
                    .col(timestamp_with_time_zone(Cursors::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RecordLinks::Table)
                    .if_not_exists()
                    .col(big_pk_auto(RecordLinks::Id))
                    .col(string(RecordLinks::ConnectorId))
                    .col(string(RecordLinks::HmsId))
                    .col(string(RecordLinks::ExternalId))
                    .col(string_null(RecordLinks::HmsHash))
                    .col(string_null(RecordLinks::ExternalHash))
                    .col(string_null(RecordLinks::HmsVersion))
                    .col(string_null(RecordLinks::ExternalVersion))
                    .col(timestamp_with_time_zone(RecordLinks::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_record_links_connector_hms",
                    RecordLinks::Table,
                    [RecordLinks::ConnectorId, RecordLinks::HmsId],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_record_links_connector_external",
                    RecordLinks::Table,
                    [RecordLinks::ConnectorId, RecordLinks::ExternalId],
                )
                .unique()
                .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Settings::Table)
                    .if_not_exists()
                    .col(string(Settings::Key).primary_key())
                    .col(text(Settings::Value))
                    .col(timestamp_with_time_zone(Settings::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Dropping a table drops its indexes on both backends.
        manager
            .drop_table(Table::drop().table(Settings::Table).if_exists().to_owned())
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(RecordLinks::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Cursors::Table).if_exists().to_owned())
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(SyncTickets::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(Deliveries::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(Connectors::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
