//! What the console and the named tokens need: `sessions` (a signed-in person's session,
//! stored so that any instance serves it), `audit_log` (who changed a connector, the
//! governance toggle or a parked job, and when) and `deliveries.replayed_by` (who put a
//! parked job back, carried into its ticket). Expand only.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000001_console"
    }
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    /// SHA-256 (hex) of the cookie's value: a leaked table opens no session.
    IdHash,
    /// The named token it was opened with (its role is read from the settings each time).
    TokenName,
    Csrf,
    CreatedAt,
    LastSeen,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    Actor,
    Action,
    Target,
    Detail,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    ReplayedBy,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .if_not_exists()
                    .col(string(Sessions::IdHash).primary_key())
                    .col(string(Sessions::TokenName))
                    .col(string(Sessions::Csrf))
                    .col(timestamp_with_time_zone(Sessions::CreatedAt))
                    .col(timestamp_with_time_zone(Sessions::LastSeen))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .if_not_exists()
                    .col(big_pk_auto(AuditLog::Id))
                    .col(timestamp_with_time_zone(AuditLog::At))
                    .col(string(AuditLog::Actor))
                    .col(string(AuditLog::Action))
                    .col(string(AuditLog::Target))
                    .col(text_null(AuditLog::Detail))
                    .to_owned(),
            )
            .await?;
        manager.create_index(Index::create().if_not_exists().name("idx_audit_log_at").table(AuditLog::Table).col(AuditLog::At).to_owned()).await?;
        if !manager.has_column("deliveries", "replayed_by").await? {
            manager.alter_table(Table::alter().table(Deliveries::Table).add_column(string_null(Deliveries::ReplayedBy)).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(Deliveries::Table).drop_column(Deliveries::ReplayedBy).to_owned()).await?;
        manager.drop_table(Table::drop().table(AuditLog::Table).if_exists().to_owned()).await?;
        manager.drop_table(Table::drop().table(Sessions::Table).if_exists().to_owned()).await
    }
}
