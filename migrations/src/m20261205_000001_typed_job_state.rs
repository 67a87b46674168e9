//! A job's state in columns of its own instead of prefixes of its `last_error` text (issue
//! 12: "state is typed"): `deliveries.panics`, how many of its attempts panicked (a poison
//! job is parked after its second); a parked conflict is known by its `conflict` column and
//! a two-way write in flight by its `in_flight` column alone. Likewise a record link's mark
//! of a side that holds a change that lost a conflict: `record_links.hms_lost` and
//! `external_lost`, where it was a `lost:` prefix of that side's hash. Rows written before
//! keep their meaning: their prefixes are read once, here, into those columns. Expand only:
//! a binary of the version before still runs on it (it would read a lost side's link, rare,
//! as synced).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000001_typed_job_state"
    }
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Panics,
}

#[derive(DeriveIden)]
enum RecordLinks {
    Table,
    HmsLost,
    ExternalLost,
}

/// The rows of before, read into the columns (each statement can run again harmlessly).
const BACKFILL: [&str; 6] = [
    // A pending job whose last attempt panicked has had one panic.
    "UPDATE deliveries SET panics = 1 WHERE status = 'pending' AND panics = 0 AND last_error LIKE 'panicked: %'",
    // A conflict parked before conflicts kept their records: a conflict all the same.
    "UPDATE deliveries SET conflict = '{}' WHERE status = 'parked' AND conflict IS NULL AND last_error LIKE 'conflict: %'",
    // A note of a write in flight that is not the job's last word any more is stale.
    "UPDATE deliveries SET in_flight = NULL WHERE in_flight IS NOT NULL AND NOT (status = 'pending' AND last_error LIKE 'in flight: %')",
    // A write in flight noted without its content (a create, a delete) is in flight all the same.
    "UPDATE deliveries SET in_flight = '{}' WHERE in_flight IS NULL AND status = 'pending' AND last_error LIKE 'in flight: %'",
    // A side's hash `lost:HASH`: the side holds its change of content HASH, which lost.
    "UPDATE record_links SET hms_lost = TRUE, hms_hash = substr(hms_hash, 6) WHERE hms_hash LIKE 'lost:%'",
    "UPDATE record_links SET external_lost = TRUE, external_hash = substr(external_hash, 6) WHERE external_hash LIKE 'lost:%'",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !manager.has_column("deliveries", "panics").await? {
            manager.alter_table(Table::alter().table(Deliveries::Table).add_column(integer(Deliveries::Panics).default(0)).to_owned()).await?;
        }
        for column in [RecordLinks::HmsLost, RecordLinks::ExternalLost] {
            let name = column.to_string();
            if !manager.has_column("record_links", &name).await? {
                manager.alter_table(Table::alter().table(RecordLinks::Table).add_column(boolean(column).default(false)).to_owned()).await?;
            }
        }
        let db = manager.get_connection();
        for sql in BACKFILL {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [RecordLinks::HmsLost, RecordLinks::ExternalLost] {
            manager.alter_table(Table::alter().table(RecordLinks::Table).drop_column(column).to_owned()).await?;
        }
        manager.alter_table(Table::alter().table(Deliveries::Table).drop_column(Deliveries::Panics).to_owned()).await
    }
}
