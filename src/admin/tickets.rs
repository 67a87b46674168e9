//! `GET /tickets` (filters and cursor pagination) and `GET /tickets/{id}`: the audit trail.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::storage::{self, TicketFilter};

/// Largest page; also the default.
const MAX_PAGE: u64 = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketQuery {
    pub connector: Option<String>,
    /// `completed`, `parked`, `skipped`, `conflict`.
    pub status: Option<String>,
    /// `outbound`, `inbound`.
    pub direction: Option<String>,
    /// RFC 3339; tickets created at or after.
    pub since: Option<DateTime<Utc>>,
    /// RFC 3339; tickets created before.
    pub until: Option<DateTime<Utc>>,
    /// The `next` cursor of the previous page.
    pub cursor: Option<String>,
    pub limit: Option<u64>,
}

const STATUSES: &[&str] = &crate::storage::TicketStatus::NAMES;
const DIRECTIONS: &[&str] = &crate::storage::Direction::NAMES;

fn one_of(what: &str, value: &Option<String>, allowed: &[&str]) -> Result<(), ApiError> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ApiError::bad_request(format!("unknown {what} `{v}`: expected one of {}", allowed.join(", ")))),
        _ => Ok(()),
    }
}

pub async fn list(state: web::Data<AppState>, q: Result<web::Query<TicketQuery>, actix_web::Error>) -> Result<HttpResponse, ApiError> {
    let q = q.map_err(|e| ApiError::bad_request(format!("bad query: {e}")))?.into_inner();
    one_of("status", &q.status, STATUSES)?;
    one_of("direction", &q.direction, DIRECTIONS)?;
    let after_id = match &q.cursor {
        Some(c) => Some(c.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid cursor `{c}`: pass the `next` value of the previous page")))?),
        None => None,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let filter = TicketFilter { connector_id: q.connector, status: q.status, direction: q.direction, since: q.since, until: q.until, after_id, limit };
    let tickets = storage::list_tickets(&state.db, &filter).await?;
    let next = (tickets.len() as u64 == limit).then(|| tickets.last().map(|t| t.id.to_string())).flatten();
    Ok(HttpResponse::Ok().json(json!({ "tickets": tickets, "next": next })))
}

/// Walks the hash chain; `ok: false` names the first broken link. 200 either way: the
/// answer is the report.
pub async fn verify(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(storage::verify_chain(&state.db).await?))
}

/// `SYNC-12` or `12`.
pub fn parse_ticket_id(text: &str) -> Option<i64> {
    text.strip_prefix("SYNC-").unwrap_or(text).parse().ok()
}

pub async fn get(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let n = parse_ticket_id(&id).ok_or_else(|| ApiError::bad_request(format!("invalid ticket id `{id}`: expected SYNC-<number>")))?;
    let ticket = storage::get_ticket(&state.db, n).await?.ok_or_else(|| ApiError::not_found(format!("ticket `{id}` does not exist")))?;
    let log = match ticket.delivery_id {
        Some(d) => storage::list_attempts(&state.db, d).await?,
        None => Vec::new(),
    };
    let mut body = serde_json::to_value(&ticket).unwrap_or_default();
    body["attemptLog"] = serde_json::to_value(log).unwrap_or_default();
    Ok(HttpResponse::Ok().json(body))
}
