//! `record_links` keeps what two-way sync decides by: the record last synced (the base of a
//! three-way merge), per side the contents of our recent writes there (their echoes), and
//! whether the version last seen from a side was the stamp it put on our own write.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261130_000001_link_state"
    }
}

#[derive(DeriveIden)]
enum RecordLinks {
    Table,
    Base,
    HmsWritten,
    ExternalWritten,
    HmsVersionOurs,
    ExternalVersionOurs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for col in [RecordLinks::Base, RecordLinks::HmsWritten, RecordLinks::ExternalWritten] {
            if !manager.has_column("record_links", &col.to_string()).await? {
                manager.alter_table(Table::alter().table(RecordLinks::Table).add_column(ColumnDef::new(col).text().null()).to_owned()).await?;
            }
        }
        for col in [RecordLinks::HmsVersionOurs, RecordLinks::ExternalVersionOurs] {
            if !manager.has_column("record_links", &col.to_string()).await? {
                manager.alter_table(Table::alter().table(RecordLinks::Table).add_column(ColumnDef::new(col).boolean().not_null().default(false)).to_owned()).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [RecordLinks::Base, RecordLinks::HmsWritten, RecordLinks::ExternalWritten, RecordLinks::HmsVersionOurs, RecordLinks::ExternalVersionOurs] {
            if manager.has_column("record_links", &col.to_string()).await? {
                manager.alter_table(Table::alter().table(RecordLinks::Table).drop_column(col).to_owned()).await?;
            }
        }
        Ok(())
    }
}
