//! An index on the failed attempts by time: the cluster's alert evaluation counts them per
//! connector over the alert rule's window (see `actors::alerter`). Expand only.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000002_failed_attempts_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("CREATE INDEX IF NOT EXISTS idx_delivery_attempts_failed ON delivery_attempts (at) WHERE error IS NOT NULL").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP INDEX IF EXISTS idx_delivery_attempts_failed").await?;
        Ok(())
    }
}
