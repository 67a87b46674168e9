//! Notifications between the instances of a cluster: `NOTIFY hms_sync, '…'` on PostgreSQL
//! (the channel the database's triggers use too; see `actors::cluster::Signals`). On SQLite
//! there is one instance, and nothing to tell.

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::{Db, StorageError};

/// The channel every instance listens on.
pub const CHANNEL: &str = "hms_sync";

/// Sends `payload` to every instance listening (itself included), once the statement
/// commits. A no-op on SQLite.
pub async fn notify(db: &Db, payload: &str) -> Result<(), StorageError> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    db.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, "SELECT pg_notify($1, $2)", [CHANNEL.into(), payload.into()])).await?;
    Ok(())
}
