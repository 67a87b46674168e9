//! Counts over the stored tickets and attempts, per connector and per minute: what the
//! console shows. Read from the database, so they survive restarts and cover every
//! instance of a cluster; nothing is counted on the delivery path for them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Value};

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

/// Per connector: tickets and failed attempts since `since`.
pub async fn counts_since(db: &Db, since: DateTime<Utc>) -> Result<HashMap<String, Counts>, StorageError> {
    let mut out: HashMap<String, Counts> = HashMap::new();
    let tickets = db
        .query_all_raw(stmt(db, "SELECT connector_id, status, COUNT(*) AS n FROM sync_tickets WHERE created_at >= ? AND status IN ('completed', 'parked') GROUP BY connector_id, status", vec![since.into()]))
        .await?;
    for r in tickets {
        let (c, status, n): (String, String, i64) = (r.try_get("", "connector_id")?, r.try_get("", "status")?, r.try_get("", "n")?);
        let e = out.entry(c).or_default();
        if status == "completed" { e.delivered = n } else { e.parked = n }
    }
    let failed = db
        .query_all_raw(stmt(db, "SELECT connector_id, COUNT(*) AS n FROM delivery_attempts WHERE error IS NOT NULL AND at >= ? GROUP BY connector_id", vec![since.into()]))
        .await?;
    for r in failed {
        out.entry(r.try_get("", "connector_id")?).or_default().failed = r.try_get("", "n")?;
    }
    Ok(out)
}

/// The minute a time column falls in, as `YYYY-MM-DD HH:MM` (UTC) on either backend
/// (SQLite keeps times as RFC 3339 text: its first 16 characters, `T` made a blank).
fn minute_of(db: &Db, col: &str) -> String {
    match db.get_database_backend() {
        DbBackend::Postgres => format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')"),
        _ => format!("replace(substr({col}, 1, 16), 'T', ' ')"),
    }
}

/// Connector `id`'s counts per minute since `since`, keyed `YYYY-MM-DD HH:MM` (UTC);
/// minutes with nothing are absent.
pub async fn counts_per_minute(db: &Db, id: &str, since: DateTime<Utc>) -> Result<HashMap<String, Counts>, StorageError> {
    let mut out: HashMap<String, Counts> = HashMap::new();
    // Tickets are found by id from the first one of the span (ids follow time), so the
    // (connector, id) index serves, with no index added for this.
    let first = db.query_one_raw(stmt(db, "SELECT MIN(id) AS first FROM sync_tickets WHERE created_at >= ?", vec![since.into()])).await?;
    let first: Option<i64> = first.map(|r| r.try_get("", "first")).transpose()?.flatten();
    if let Some(first) = first {
        let sql = format!(
            "SELECT {m} AS minute, status, COUNT(*) AS n FROM sync_tickets WHERE connector_id = ? AND id >= ? AND status IN ('completed', 'parked') GROUP BY {m}, status",
            m = minute_of(db, "created_at")
        );
        let values: Vec<Value> = vec![id.into(), first.into()];
        for r in db.query_all_raw(stmt(db, &sql, values)).await? {
            let (minute, status, n): (String, String, i64) = (r.try_get("", "minute")?, r.try_get("", "status")?, r.try_get("", "n")?);
            let e = out.entry(minute).or_default();
            if status == "completed" { e.delivered = n } else { e.parked = n }
        }
    }
    let sql = format!("SELECT {m} AS minute, COUNT(*) AS n FROM delivery_attempts WHERE error IS NOT NULL AND at >= ? AND connector_id = ? GROUP BY {m}", m = minute_of(db, "at"));
    for r in db.query_all_raw(stmt(db, &sql, vec![since.into(), id.into()])).await? {
        out.entry(r.try_get("", "minute")?).or_default().failed = r.try_get("", "n")?;
    }
    Ok(out)
}
