//! `GET /audit`: who changed connectors, governance and parked jobs, newest first.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::storage;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub target: Option<String>,
    /// The `next` cursor of the previous page (entries older than it).
    pub cursor: Option<String>,
    pub limit: Option<u64>,
}

pub async fn list(state: web::Data<AppState>, q: Result<web::Query<AuditQuery>, actix_web::Error>) -> Result<HttpResponse, ApiError> {
    let q = q.map_err(|e| ApiError::bad_request(format!("bad query: {e}")))?.into_inner();
    super::tickets::text_filter("target", &q.target)?;
    let limit = super::tickets::page_limit(q.limit)?;
    let before = super::tickets::page_cursor(&q.cursor)?;
    let entries = storage::list_audit(&state.db, q.target.as_deref(), before, limit).await?;
    let next = (entries.len() as u64 == limit).then(|| entries.last().map(|e| e.id.to_string())).flatten();
    Ok(HttpResponse::Ok().json(json!({ "entries": entries, "next": next })))
}
