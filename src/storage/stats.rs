//! Counts over the stored tickets and attempts, per connector and per minute: what the
//! console shows. Read from the database, so they survive restarts and cover every
//! instance of a cluster; nothing is counted on the delivery path for them.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend};

use super::{Db, StorageError, stmt};

/// Deliveries and failed attempts of one connector over a span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Jobs delivered (tickets `completed`).
    pub delivered: i64,
    /// Attempts that failed (retried or parked).
    pub failed: i64,
    /// Jobs parked (tickets `parked`).
    pub parked: i64,
}

/// The minute a time column falls in, as `YYYY-MM-DD HH:MM` (UTC) on either backend
/// (SQLite keeps times as RFC 3339 text: its first 16 characters, `T` made a blank).
fn minute_of(db: &Db, col: &str) -> String {
    match db.get_database_backend() {
        DbBackend::Postgres => format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')"),
        _ => format!("replace(substr({col}, 1, 16), 'T', ' ')"),
    }
}

/// One ticket as the console's counts need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketMark {
    pub id: i64,
    pub connector_id: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// Where to start reading tickets to see every one created at or after `since`: the
/// first such ticket's id, or the id the next ticket will get when none is that recent.
pub async fn ticket_cursor_since(db: &Db, since: DateTime<Utc>) -> Result<i64, StorageError> {
    let sql = "SELECT COALESCE((SELECT MIN(id) FROM sync_tickets WHERE created_at >= ?), (SELECT MAX(id) FROM sync_tickets) + 1, 1) AS first";
    let row = db.query_one_raw(stmt(db, sql, vec![since.into()])).await?;
    Ok(row.map(|r| r.try_get::<i64>("", "first")).transpose()?.unwrap_or(1))
}

/// Tickets with an id of at least `from`, oldest first, at most `limit`: read by the
/// primary key, so following new tickets costs what they are, whatever the table holds.
/// (Tickets are appended under the chain's lock, so their ids commit in order: a reader
/// that went past an id never misses a ticket below it.)
pub async fn tickets_from(db: &Db, from: i64, limit: u64) -> Result<Vec<TicketMark>, StorageError> {
    let sql = format!("SELECT id, connector_id, status, created_at FROM sync_tickets WHERE id >= ? ORDER BY id LIMIT {limit}");
    let rows = db.query_all_raw(stmt(db, &sql, vec![from.into()])).await?;
    rows.into_iter()
        .map(|r| Ok(TicketMark { id: r.try_get("", "id")?, connector_id: r.try_get("", "connector_id")?, status: r.try_get("", "status")?, created_at: r.try_get("", "created_at")? }))
        .collect()
}

/// Failed attempts since `since` per connector and minute (`YYYY-MM-DD HH:MM`, UTC), read
/// from the partial index of failed attempts: a failure costs nothing to count until
/// someone looks.
pub async fn failures_per_minute(db: &Db, since: DateTime<Utc>) -> Result<Vec<(String, String, i64)>, StorageError> {
    let sql = format!("SELECT connector_id, {m} AS minute, COUNT(*) AS n FROM delivery_attempts WHERE error IS NOT NULL AND at >= ? GROUP BY connector_id, {m}", m = minute_of(db, "at"));
    let rows = db.query_all_raw(stmt(db, &sql, vec![since.into()])).await?;
    rows.into_iter().map(|r| Ok((r.try_get("", "connector_id")?, r.try_get("", "minute")?, r.try_get("", "n")?))).collect()
}
