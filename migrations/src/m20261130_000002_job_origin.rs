//! `deliveries` gets typed state: `origin` (where a job comes from: `event`, `inbound`,
//! `resolved:SIDE`, `take:SIDE`, `merged:SIDE`), `deleted` (the change deletes the record)
//! and `conflict` (a parked conflict's base, HMS and external records, JSON). Existing rows
//! move from the topic prefixes that carried this before.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261130_000002_job_origin"
    }
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Origin,
    Deleted,
    Conflict,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let add = |col: ColumnDef| Table::alter().table(Deliveries::Table).add_column(col).to_owned();
        if !manager.has_column("deliveries", "origin").await? {
            manager.alter_table(add(ColumnDef::new(Deliveries::Origin).string().not_null().default("event").to_owned())).await?;
        }
        if !manager.has_column("deliveries", "deleted").await? {
            manager.alter_table(add(ColumnDef::new(Deliveries::Deleted).boolean().not_null().default(false).to_owned())).await?;
        }
        if !manager.has_column("deliveries", "conflict").await? {
            manager.alter_table(add(ColumnDef::new(Deliveries::Conflict).text().null().to_owned())).await?;
        }
        // The topic prefixes of before, as origins (the direction they wrote).
        let db = manager.get_connection();
        for (origin, topic) in [
            ("inbound", "inbound"),
            ("resolved:hms", "resolved:inbound"),
            ("take:legacy", "resolved:take:legacy"),
            ("take:hms", "resolved:take:hms"),
            ("merged:hms", "merged:inbound"),
            ("merged:legacy", "merged:outbound"),
        ] {
            db.execute_unprepared(&format!("UPDATE deliveries SET origin = '{origin}' WHERE topic = '{topic}'")).await?;
        }
        db.execute_unprepared("UPDATE deliveries SET origin = 'resolved:legacy' WHERE topic LIKE 'resolved:%' AND origin = 'event'").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in ["origin", "deleted", "conflict"] {
            if manager.has_column("deliveries", col).await? {
                manager.alter_table(Table::alter().table(Deliveries::Table).drop_column(Alias::new(col)).to_owned()).await?;
            }
        }
        Ok(())
    }
}
