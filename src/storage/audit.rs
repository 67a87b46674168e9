//! The audit log (`audit_log` table): who changed what through the API, the CLI or the
//! console (connectors, governance, parked jobs), and when. Tickets say what happened to a
//! record; this says who steered the service.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Value};

use super::{Db, StorageError, now, stmt};

/// One recorded change.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// A token's name (`admin` for `server.admin_token`, `local` without tokens).
    pub actor: String,
    /// `connector.pause`, `governance.set`, `parked.replay`, …
    pub action: String,
    /// A connector id, a job id, `sync_enabled`.
    pub target: String,
    pub detail: Option<serde_json::Value>,
}

/// Records one change.
pub async fn record_audit(db: &Db, actor: &str, action: &str, target: &str, detail: Option<&serde_json::Value>) -> Result<(), StorageError> {
    let values: Vec<Value> = vec![now().into(), actor.into(), action.into(), target.into(), detail.map(super::to_json_text).into()];
    db.execute_raw(stmt(db, "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)", values)).await?;
    Ok(())
}

/// The newest entries first, older than id `before` when given, at most `limit`;
/// only `target`'s when given.
pub async fn list_audit(db: &Db, target: Option<&str>, before: Option<i64>, limit: u64) -> Result<Vec<AuditEntry>, StorageError> {
    let mut sql = String::from("SELECT id, at, actor, action, target, detail FROM audit_log WHERE 1 = 1");
    let mut values: Vec<Value> = Vec::new();
    if let Some(t) = target {
        sql.push_str(" AND target = ?");
        values.push(t.into());
    }
    if let Some(b) = before {
        sql.push_str(" AND id < ?");
        values.push(b.into());
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit.min(1000)));
    let rows = db.query_all_raw(stmt(db, &sql, values)).await?;
    rows.into_iter()
        .map(|r| {
            let detail: Option<String> = r.try_get("", "detail")?;
            Ok(AuditEntry {
                id: r.try_get("", "id")?,
                at: r.try_get("", "at")?,
                actor: r.try_get("", "actor")?,
                action: r.try_get("", "action")?,
                target: r.try_get("", "target")?,
                detail: detail.map(|d| super::from_json_text(&d, "audit detail")).transpose()?,
            })
        })
        .collect()
}
