//! Jobs shared by several instances: `deliveries` gets the lease of the instance that claimed
//! a job (`lease_owner`, `lease_until`, a time of the database's clock) and `claims`, a count
//! of claims that is the job's fencing token; on PostgreSQL, triggers tell every instance of
//! new jobs and of control-plane changes (`NOTIFY hms_sync`).
//!
//! Expand only: the columns are nullable or defaulted, so a binary of the version before,
//! which knows nothing of them, runs on this schema unchanged (a rolling upgrade).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000001_job_leases"
    }
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    LeaseOwner,
    LeaseUntil,
    Claims,
}

/// PostgreSQL only: `NOTIFY hms_sync` with `jobs C1,C2,…` for the connectors of newly stored
/// jobs (and of a parked job put back in the queue), and `control` when a connector or a
/// setting (pause flags, governance) changes. Payloads stay under NOTIFY's 8,000 bytes: a
/// longer list becomes `jobs *` (every connector).
const PG_TRIGGERS: &str = r#"
CREATE OR REPLACE FUNCTION hms_sync_jobs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE ids text;
BEGIN
  SELECT string_agg(DISTINCT connector_id, ',') INTO ids FROM new_jobs;
  IF ids IS NOT NULL THEN
    PERFORM pg_notify('hms_sync', 'jobs ' || CASE WHEN length(ids) > 7000 THEN '*' ELSE ids END);
  END IF;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS hms_sync_jobs_inserted ON deliveries;
CREATE TRIGGER hms_sync_jobs_inserted AFTER INSERT ON deliveries
  REFERENCING NEW TABLE AS new_jobs FOR EACH STATEMENT EXECUTE FUNCTION hms_sync_jobs_inserted();

CREATE OR REPLACE FUNCTION hms_sync_job_requeued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('hms_sync', 'jobs ' || NEW.connector_id);
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS hms_sync_job_requeued ON deliveries;
CREATE TRIGGER hms_sync_job_requeued AFTER UPDATE OF status ON deliveries
  FOR EACH ROW WHEN (OLD.status <> 'pending' AND NEW.status = 'pending') EXECUTE FUNCTION hms_sync_job_requeued();

CREATE OR REPLACE FUNCTION hms_sync_control_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('hms_sync', 'control');
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS hms_sync_connectors_changed ON connectors;
CREATE TRIGGER hms_sync_connectors_changed AFTER INSERT OR UPDATE OR DELETE ON connectors
  FOR EACH STATEMENT EXECUTE FUNCTION hms_sync_control_changed();
DROP TRIGGER IF EXISTS hms_sync_settings_changed ON settings;
CREATE TRIGGER hms_sync_settings_changed AFTER INSERT OR UPDATE OR DELETE ON settings
  FOR EACH STATEMENT EXECUTE FUNCTION hms_sync_control_changed();
"#;

const PG_DROP_TRIGGERS: &str = r#"
DROP TRIGGER IF EXISTS hms_sync_jobs_inserted ON deliveries;
DROP TRIGGER IF EXISTS hms_sync_job_requeued ON deliveries;
DROP TRIGGER IF EXISTS hms_sync_connectors_changed ON connectors;
DROP TRIGGER IF EXISTS hms_sync_settings_changed ON settings;
DROP FUNCTION IF EXISTS hms_sync_jobs_inserted();
DROP FUNCTION IF EXISTS hms_sync_job_requeued();
DROP FUNCTION IF EXISTS hms_sync_control_changed();
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER: SQLite takes one change at a time.
        let add = |col: ColumnDef| Table::alter().table(Deliveries::Table).add_column(col).to_owned();
        if !manager.has_column("deliveries", "lease_owner").await? {
            manager.alter_table(add(ColumnDef::new(Deliveries::LeaseOwner).string().null().to_owned())).await?;
        }
        if !manager.has_column("deliveries", "lease_until").await? {
            manager.alter_table(add(ColumnDef::new(Deliveries::LeaseUntil).timestamp_with_time_zone().null().to_owned())).await?;
        }
        if !manager.has_column("deliveries", "claims").await? {
            manager.alter_table(add(ColumnDef::new(Deliveries::Claims).integer().not_null().default(0).to_owned())).await?;
        }
        let db = manager.get_connection();
        // The jobs in flight somewhere (few): the keys a claim must leave alone, and the sweep
        // that finds lapsed leases.
        db.execute_unprepared("CREATE INDEX IF NOT EXISTS idx_deliveries_leased ON deliveries (connector_id, record_key) WHERE lease_owner IS NOT NULL").await?;
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DbBackend::Postgres {
            db.execute_unprepared(PG_TRIGGERS).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DbBackend::Postgres {
            db.execute_unprepared(PG_DROP_TRIGGERS).await?;
        }
        db.execute_unprepared("DROP INDEX IF EXISTS idx_deliveries_leased").await?;
        for col in ["lease_owner", "lease_until", "claims"] {
            if manager.has_column("deliveries", col).await? {
                manager.alter_table(Table::alter().table(Deliveries::Table).drop_column(Alias::new(col)).to_owned()).await?;
            }
        }
        Ok(())
    }
}
