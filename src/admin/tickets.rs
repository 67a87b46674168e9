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
    /// A record's id on either side (HMS or external).
    pub record: Option<String>,
    /// Tickets created at or after (see [`instant`] for the forms).
    pub since: Option<String>,
    /// Tickets created before.
    pub until: Option<String>,
    /// The `next` cursor of the previous page.
    pub cursor: Option<String>,
    pub limit: Option<u64>,
}

pub(crate) const STATUSES: &[&str] = &crate::storage::TicketStatus::NAMES;
pub(crate) const DIRECTIONS: &[&str] = &crate::storage::Direction::NAMES;

pub(crate) fn one_of(what: &str, value: &Option<String>, allowed: &[&str]) -> Result<(), ApiError> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ApiError::bad_request(format!("unknown {what} `{v}`: expected one of {}", allowed.join(", ")))),
        _ => Ok(()),
    }
}

/// A page's `limit`: 1 to 500, 100 when not given.
pub(super) fn page_limit(limit: Option<u64>) -> Result<u64, ApiError> {
    match limit {
        None => Ok(100),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!("`limit` must be 1 to {MAX_PAGE}, found {n}"))),
    }
}

/// A page's `cursor`: the `next` of the previous page, a row id (0 or more).
pub(super) fn page_cursor(cursor: &Option<String>) -> Result<Option<i64>, ApiError> {
    match cursor {
        Some(c) => Some(c.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| ApiError::bad_request(format!("invalid cursor `{c}`: pass the `next` value of the previous page")))).transpose(),
        None => Ok(None),
    }
}

/// A time filter (`since`, `until`): an RFC 3339 time (`2026-11-30T08:00:00Z`), a date
/// (`2026-11-30`, midnight UTC), or an age before `now` (`90s`, `15m`, `1h`, `2d`, `1w`).
pub fn instant(name: &str, value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let v = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    let age = v.char_indices().last().and_then(|(i, unit)| {
        let n: i64 = v[..i].parse().ok().filter(|n| *n >= 0)?;
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        chrono::Duration::try_seconds(n.checked_mul(secs)?)
    });
    match age.and_then(|a| now.checked_sub_signed(a)) {
        Some(t) => Ok(t),
        None => Err(ApiError::bad_request(format!(
            "`{name}` must be an RFC 3339 time (2026-11-30T08:00:00Z), a date (2026-11-30) or an age (90s, 15m, 1h, 2d, 1w); found `{}`",
            v.chars().take(40).collect::<String>()
        ))),
    }
}

/// A free-text filter (a record id, an error's text): printable, at most 200 characters;
/// a NUL byte, say, is refused here, the same on every database.
pub(crate) fn text_filter(name: &str, value: &Option<String>) -> Result<(), ApiError> {
    match value {
        Some(v) if v.chars().count() > 200 || v.chars().any(char::is_control) => Err(ApiError::bad_request(format!("`{name}` must be at most 200 printable characters"))),
        _ => Ok(()),
    }
}

/// A `connector` filter must be a connector id: anything else (a NUL byte, say) is refused
/// here, the same on every database, rather than handed to one that cannot take it.
pub(crate) fn connector_filter(value: &Option<String>) -> Result<(), ApiError> {
    match value {
        Some(c) if !crate::spec::valid_id(c) => Err(ApiError::bad_request(format!(
            "`connector` is not a connector id: expected 1 to 128 letters, digits, `.`, `_` or `-`, found {:?}",
            c.chars().take(40).collect::<String>()
        ))),
        _ => Ok(()),
    }
}

pub async fn list(state: web::Data<AppState>, q: Result<web::Query<TicketQuery>, actix_web::Error>) -> Result<HttpResponse, ApiError> {
    let q = q.map_err(|e| ApiError::bad_request(format!("bad query: {e}")))?.into_inner();
    connector_filter(&q.connector)?;
    one_of("status", &q.status, STATUSES)?;
    one_of("direction", &q.direction, DIRECTIONS)?;
    let after_id = page_cursor(&q.cursor)?;
    let limit = page_limit(q.limit)?;
    let now = Utc::now();
    let since = q.since.as_deref().map(|v| instant("since", v, now)).transpose()?;
    let until = q.until.as_deref().map(|v| instant("until", v, now)).transpose()?;
    text_filter("record", &q.record)?;
    let filter = TicketFilter { connector_id: q.connector, status: q.status, direction: q.direction, record: q.record, since, until, after_id, limit, newest_first: false };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_filters_take_times_dates_and_ages() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z").unwrap().with_timezone(&Utc);
        let at = |v: &str| instant("since", v, now).map(|t| t.to_rfc3339()).map_err(|e| e.to_string());
        assert_eq!(at("2026-11-30T08:00:00+01:00").unwrap(), "2026-11-30T07:00:00+00:00");
        assert_eq!(at("2026-11-30").unwrap(), "2026-11-30T00:00:00+00:00");
        assert_eq!(at("1h").unwrap(), "2026-11-30T11:00:00+00:00");
        assert_eq!(at("2d").unwrap(), "2026-11-28T12:00:00+00:00");
        assert_eq!(at("90s").unwrap(), "2026-11-30T11:58:30+00:00");
        for bad in ["yesterday", "", "h", "-1h", "99999999999999999w"] {
            let e = at(bad).unwrap_err();
            assert!(e.contains("`since` must be an RFC 3339 time"), "{bad}: {e}");
        }
        assert!(page_limit(Some(0)).is_err() && page_limit(Some(501)).is_err());
        assert_eq!(page_limit(None).unwrap(), 100);
    }
}
