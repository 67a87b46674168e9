//! The console's pages: each reads what it shows (the database, the registry) and renders
//! one template. Nothing here changes anything: buttons call the admin API.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Console, ConsoleError, User, chart};
use crate::actors::registry::{AllSummaries, GetShared, Lookup, SourceOf};
use crate::actors::status::ConnectorStatus;
use crate::actors::supervisor::GetStatus;
use crate::admin::AppState;
use crate::storage::{self, ParkedFilter, TicketFilter};

/// Overview rows per page.
const ROWS_PER_PAGE: usize = 50;
/// Tickets per page.
const TICKETS_PER_PAGE: u64 = 50;
/// Most rows of a CSV export.
const CSV_MAX: u64 = 100_000;

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `3 s`, `4 min`, `2 h`: how long ago, for people.
fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    span((now - t).num_seconds().max(0))
}

fn span(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} d", s / 86_400),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// A connector's state as the overview shows it: the word, and the class that colours it.
fn state_of(s: &ConnectorStatus) -> (&'static str, &'static str) {
    use crate::actors::status::ConnectorState::*;
    match s.state {
        Failed => ("failed", "bad"),
        Restarting => ("restarting", "warn"),
        Paused if s.governance_paused && !s.paused => ("held (governance)", "muted"),
        Paused => ("paused", "muted"),
        Running => ("running", "good"),
    }
}

#[derive(Debug, Deserialize)]
pub struct RowsQuery {
    /// Part of an id, a type or a state.
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: usize,
}

/// One page of the overview's table, filtered.
async fn rows_view(console: &Console, state: &AppState, q: &RowsQuery) -> Result<Value, ConsoleError> {
    let now = Utc::now();
    let mut all = state.registry.send(AllSummaries).await?;
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let needle = q.q.trim().to_lowercase();
    let shown: Vec<&ConnectorStatus> = all
        .iter()
        .filter(|s| needle.is_empty() || s.id.to_lowercase().contains(&needle) || s.direction.contains(&needle) || state_of(s).0.contains(&needle) || (needle == "open" && s.circuit != crate::delivery::breaker::Circuit::Closed))
        .collect();
    let pages = shown.len().div_ceil(ROWS_PER_PAGE).max(1);
    let page = q.page.min(pages - 1);
    let slice = &shown[(page * ROWS_PER_PAGE).min(shown.len())..((page + 1) * ROWS_PER_PAGE).min(shown.len())];
    // One query each for the queue depths and the last five minutes, whatever the page.
    let mut depth: HashMap<String, (i64, i64)> = HashMap::new();
    for (c, status, n) in storage::queue_stats(&state.db).await? {
        let e = depth.entry(c).or_default();
        if status == "pending" { e.0 = n } else { e.1 = n }
    }
    let recent = console.rollup.recent(&state.db, now, 5).await?;
    let rows: Vec<Value> = slice
        .iter()
        .map(|s| {
            let (word, class) = state_of(s);
            let (pending, parked) = depth.get(&s.id).copied().unwrap_or_default();
            let counts = recent.get(&s.id).copied().unwrap_or_default();
            let pulls = s.children.iter().any(|c| c.kind == "puller");
            let error = s.last_error.as_ref().or(s.last_delivery_error.as_ref());
            json!({
                "id": s.id, "type": s.direction, "state": word, "state_class": class, "paused": s.paused,
                "circuit": s.circuit, "circuit_open": s.circuit != crate::delivery::breaker::Circuit::Closed,
                "restarts": s.restarts, "pending": pending, "parked": parked,
                "delivered": counts.delivered, "failed": counts.failed,
                "last_error": error.map(|e| e.message.chars().take(160).collect::<String>()),
                "last_error_ago": error.map(|e| ago(e.at, now)),
                "pulls": pulls,
                "pull_lag": pulls.then(|| span(state.metrics.pull_lag(&s.id).as_secs() as i64)),
            })
        })
        .collect();
    Ok(json!({
        "rows": rows, "q": q.q, "page": page, "pages": pages, "total": all.len(), "matching": shown.len(),
        "first": if shown.is_empty() { 0 } else { page * ROWS_PER_PAGE + 1 }, "last": page * ROWS_PER_PAGE + slice.len(),
        "prev": page.checked_sub(1), "next": (page + 1 < pages).then_some(page + 1),
    }))
}

pub async fn overview(console: web::Data<Console>, state: web::Data<AppState>, user: User, q: web::Query<RowsQuery>) -> Result<HttpResponse, ConsoleError> {
    let table = rows_view(&console, &state, &q).await?;
    let enabled = state.governance.send(crate::actors::governance::GetEnabled).await?;
    let cluster = storage::list_instances(&state.db, storage::lease_ttl(state.cluster.lease)).await?;
    let alive = cluster.iter().filter(|i| i.alive).count();
    console.page("overview.html", json!({ "user": user, "nav": "overview", "table": table, "sync_enabled": enabled, "instances": cluster.len(), "alive": alive, "self": state.cluster.instance_id }))
}

/// The overview's table alone (the page refreshes it every 2 s).
pub async fn rows(console: web::Data<Console>, state: web::Data<AppState>, user: User, q: web::Query<RowsQuery>) -> Result<HttpResponse, ConsoleError> {
    let table = rows_view(&console, &state, &q).await?;
    console.page("rows.html", json!({ "user": user, "table": table }))
}

/// The connector's live block: state, children, counters, alerts.
async fn panel_view(state: &AppState, id: &str) -> Result<Value, ConsoleError> {
    let addr = state.registry.send(Lookup(id.to_string())).await?.ok_or_else(|| ConsoleError::not_found(format!("connector `{id}` does not exist")))?;
    let s = addr.send(GetStatus).await.map_err(|_| ConsoleError::not_found(format!("connector `{id}` was removed")))?;
    let (word, class) = state_of(&s);
    let now = Utc::now();
    let mut v = serde_json::to_value(&s).unwrap_or_default();
    v["state_word"] = json!(word);
    v["state_class"] = json!(class);
    v["circuit_open"] = json!(s.circuit != crate::delivery::breaker::Circuit::Closed);
    v["pulls"] = json!(s.children.iter().any(|c| c.kind == "puller"));
    v["counters_pretty"] = json!(pretty(&s.counters));
    v["last_error_ago"] = json!(s.last_error.as_ref().map(|e| ago(e.at, now)));
    v["last_delivery_error_ago"] = json!(s.last_delivery_error.as_ref().map(|e| ago(e.at, now)));
    v["restart_history"] = json!(s.restart_history.iter().map(|r| json!({ "message": r.message, "at": time(r.at), "ago": ago(r.at, now) })).collect::<Vec<_>>());
    Ok(v)
}

pub async fn panel(console: web::Data<Console>, state: web::Data<AppState>, user: User, id: web::Path<String>) -> Result<HttpResponse, ConsoleError> {
    let status = panel_view(&state, &id).await?;
    console.page("panel.html", json!({ "user": user, "s": status }))
}

pub async fn connector(console: web::Data<Console>, state: web::Data<AppState>, user: User, id: web::Path<String>) -> Result<HttpResponse, ConsoleError> {
    let status = panel_view(&state, &id).await?;
    let now = Utc::now();
    let (source, origin) = state.registry.send(SourceOf(id.to_string())).await?.unwrap_or_default();
    let topics = state.registry.send(GetShared(id.to_string())).await?.map(|s| s.spec.topics()).unwrap_or_default();
    let counts = console.rollup.per_minute(&state.db, now, &id).await?;
    let minutes = chart::minutes(&counts, now);
    let hour: storage::Counts = minutes.iter().fold(Default::default(), |a, (_, c)| storage::Counts { delivered: a.delivered + c.delivered, failed: a.failed + c.failed, parked: a.parked + c.parked });
    let tickets = storage::list_tickets(&state.db, &TicketFilter { connector_id: Some(id.to_string()), newest_first: true, limit: 20, ..Default::default() }).await?;
    let parked = storage::list_parked(&state.db, &ParkedFilter { connector_id: Some(id.to_string()), limit: 50, ..Default::default() }).await?;
    let history = storage::list_audit(&state.db, Some(&id), None, 20).await?;
    let example = json!({ "id": "P-1", "status": "approved" });
    console.page(
        "connector.html",
        json!({
            "user": user, "nav": "overview", "id": *id, "s": status, "source": source, "from_file": !origin.starts_with('<'), "origin": origin, "topics": topics,
            "chart": chart::svg(&minutes), "hour": hour,
            "tickets": tickets.iter().map(|t| ticket_row(t, now)).collect::<Vec<_>>(),
            "parked": parked.iter().map(|j| job_row(j, now)).collect::<Vec<_>>(),
            "history": history.iter().map(|e| audit_row(e, now)).collect::<Vec<_>>(),
            "example": pretty(&example),
        }),
    )
}

fn ticket_row(t: &storage::Ticket, now: DateTime<Utc>) -> Value {
    json!({
        "id": t.id, "ticket_id": t.ticket_id, "connector": t.connector_id, "status": t.status, "direction": t.direction,
        "hms_id": t.hms_id, "external_id": t.external_id, "reason": t.reason, "attempts": t.attempts,
        "last_error": t.last_error, "at": time(t.created_at), "ago": ago(t.created_at, now), "delivery_id": t.delivery_id,
        "by": t.detail.as_ref().and_then(|d| d.get("by").or_else(|| d.get("replayed_by"))).and_then(Value::as_str),
    })
}

fn job_row(j: &storage::Delivery, now: DateTime<Utc>) -> Value {
    json!({
        "id": j.id, "connector": j.connector_id, "record_key": j.record_key, "topic": j.topic, "status": j.status,
        "attempts": j.attempts, "last_error": j.last_error.as_deref().map(|e| e.chars().take(200).collect::<String>()),
        "conflict": j.is_conflict(),
        "at": time(j.created_at), "ago": ago(j.created_at, now), "origin": j.origin.as_text(),
    })
}

fn audit_row(e: &storage::AuditEntry, now: DateTime<Utc>) -> Value {
    json!({ "id": e.id, "at": time(e.at), "ago": ago(e.at, now), "actor": e.actor, "action": e.action, "target": e.target, "detail": e.detail.as_ref().map(|d| d.to_string()) })
}

#[derive(Debug, Deserialize)]
pub struct ParkedQuery {
    connector: Option<String>,
    reason: Option<String>,
    cursor: Option<i64>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

pub async fn parked(console: web::Data<Console>, state: web::Data<AppState>, user: User, q: web::Query<ParkedQuery>) -> Result<HttpResponse, ConsoleError> {
    let now = Utc::now();
    let (connector, reason) = (nonempty(&q.connector), nonempty(&q.reason));
    crate::admin::tickets::connector_filter(&connector)?;
    crate::admin::tickets::text_filter("reason", &reason)?;
    let filter = ParkedFilter { connector_id: connector.clone(), reason: reason.clone(), after_id: q.cursor, limit: 100, ..Default::default() };
    let jobs = storage::list_parked(&state.db, &filter).await?;
    let next = (jobs.len() == 100).then(|| jobs.last().map(|j| j.id)).flatten();
    let mut ids: Vec<String> = state.registry.send(crate::actors::registry::List).await?.into_iter().map(|i| i.id).collect();
    ids.sort();
    console.page(
        "parked.html",
        json!({ "user": user, "nav": "parked", "jobs": jobs.iter().map(|j| job_row(j, now)).collect::<Vec<_>>(), "connector": connector, "reason": reason, "next": next, "connectors": ids }),
    )
}

/// The fields of a conflict's three records, each side's changes against the base marked.
fn conflict_view(conflict: &Value) -> Value {
    let (base, hms, ext) = (&conflict["base"], &conflict["hms"], &conflict["external"]);
    let mut keys: Vec<String> = Vec::new();
    for r in [base, hms, ext] {
        if let Some(o) = r.as_object() {
            for k in o.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    let show = |v: &Value| if v.is_null() { String::new() } else { v.to_string() };
    let fields: Vec<Value> = keys
        .iter()
        .map(|k| {
            let (b, h, e) = (&base[k.as_str()], &hms[k.as_str()], &ext[k.as_str()]);
            json!({ "name": k, "base": show(b), "hms": show(h), "external": show(e), "hms_changed": h != b, "external_changed": e != b })
        })
        .collect();
    json!({ "fields": fields, "rule": conflict.get("rule"), "merged": pretty(if hms.is_object() { hms } else { ext }) })
}

pub async fn job(console: web::Data<Console>, state: web::Data<AppState>, user: User, id: web::Path<i64>) -> Result<HttpResponse, ConsoleError> {
    let now = Utc::now();
    let job = storage::get_delivery(&state.db, *id).await?.ok_or_else(|| ConsoleError::not_found(format!("job {id} does not exist")))?;
    let attempts = storage::list_attempts(&state.db, job.id).await?;
    let history = storage::list_audit(&state.db, Some(&job.id.to_string()), None, 20).await?;
    let conflict = job.conflict.as_ref().map(conflict_view);
    let can_fetch = state.registry.send(GetShared(job.connector_id.clone())).await?.and_then(|s| s.spec.resolve.as_ref().map(|r| (r.fetch_hms.is_some(), r.fetch_legacy.is_some())));
    console.page(
        "job.html",
        json!({
            "user": user, "nav": "parked", "job": job_row(&job, now), "full_error": job.last_error, "parked": job.status == crate::storage::JobStatus::Parked,
            "payload": pretty(&job.payload), "deleted": job.deleted,
            "attempts": attempts.iter().map(|a| json!({ "attempt": a.attempt, "status": a.status, "latency_ms": a.latency_ms, "error": a.error, "at": time(a.at), "ago": ago(a.at, now) })).collect::<Vec<_>>(),
            "conflict": conflict, "fetch": can_fetch,
            "history": history.iter().map(|e| audit_row(e, now)).collect::<Vec<_>>(),
        }),
    )
}

#[derive(Debug, Deserialize, Default)]
pub struct TicketsQuery {
    connector: Option<String>,
    status: Option<String>,
    direction: Option<String>,
    record: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<i64>,
}

/// The search, checked as `GET /tickets` checks it (a bad value is a 400 page, not a query
/// the database refuses).
fn ticket_filter(q: &TicketsQuery, limit: u64) -> Result<TicketFilter, ConsoleError> {
    use crate::admin::tickets::{DIRECTIONS, STATUSES, connector_filter, instant, one_of, text_filter};
    let now = Utc::now();
    let (connector, status, direction, record) = (nonempty(&q.connector), nonempty(&q.status), nonempty(&q.direction), nonempty(&q.record));
    connector_filter(&connector)?;
    one_of("status", &status, STATUSES)?;
    one_of("direction", &direction, DIRECTIONS)?;
    text_filter("record", &record)?;
    let since = nonempty(&q.since).map(|v| instant("since", &v, now)).transpose()?;
    let until = nonempty(&q.until).map(|v| instant("until", &v, now)).transpose()?;
    Ok(TicketFilter {
        connector_id: connector,
        status,
        direction,
        record,
        since,
        until,
        after_id: q.cursor,
        newest_first: true,
        limit,
    })
}

pub async fn tickets(console: web::Data<Console>, state: web::Data<AppState>, user: User, q: web::Query<TicketsQuery>) -> Result<HttpResponse, ConsoleError> {
    let now = Utc::now();
    let filter = ticket_filter(&q, TICKETS_PER_PAGE)?;
    let tickets = storage::list_tickets(&state.db, &filter).await?;
    let next = (tickets.len() as u64 == TICKETS_PER_PAGE).then(|| tickets.last().map(|t| t.id)).flatten();
    let query = |cursor: Option<i64>| {
        let mut pairs = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("connector", &q.connector), ("status", &q.status), ("direction", &q.direction), ("record", &q.record), ("since", &q.since), ("until", &q.until)] {
            if let Some(v) = nonempty(v) {
                pairs.append_pair(k, &v);
            }
        }
        if let Some(c) = cursor {
            pairs.append_pair("cursor", &c.to_string());
        }
        pairs.finish()
    };
    console.page(
        "tickets.html",
        json!({
            "user": user, "nav": "tickets", "tickets": tickets.iter().map(|t| ticket_row(t, now)).collect::<Vec<_>>(),
            "q": { "connector": q.connector, "status": q.status, "direction": q.direction, "record": q.record, "since": q.since, "until": q.until },
            "statuses": storage::TicketStatus::NAMES, "directions": storage::Direction::NAMES,
            "next": next.map(|n| query(Some(n))), "csv": query(None),
        }),
    )
}

/// A CSV field: quoted when it must be, and a leading `=`, `+`, `-` or `@` defused so a
/// spreadsheet does not run it as a formula.
fn csv_field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@']) { format!("'{v}") } else { v.to_string() };
    if v.contains([',', '"', '\n', '\r']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v }
}

pub async fn tickets_csv(state: web::Data<AppState>, _user: User, q: web::Query<TicketsQuery>) -> Result<HttpResponse, ConsoleError> {
    let filter = ticket_filter(&q, CSV_MAX)?;
    let tickets = storage::list_tickets(&state.db, &filter).await?;
    let mut out = String::from("ticket_id,created_at,connector_id,direction,status,hms_id,external_id,event_id,delivery_id,attempts,reason,last_error,prev_hash,hash\n");
    for t in &tickets {
        let cells = [
            t.ticket_id.clone(),
            time(t.created_at),
            t.connector_id.clone(),
            t.direction.clone(),
            t.status.clone(),
            t.hms_id.clone().unwrap_or_default(),
            t.external_id.clone().unwrap_or_default(),
            t.event_id.clone().unwrap_or_default(),
            t.delivery_id.map(|d| d.to_string()).unwrap_or_default(),
            t.attempts.to_string(),
            t.reason.clone().unwrap_or_default(),
            t.last_error.clone().unwrap_or_default(),
            t.prev_hash.clone(),
            t.hash.clone(),
        ];
        out.push_str(&cells.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CONTENT_DISPOSITION, "attachment; filename=\"tickets.csv\""))
        .body(out))
}

pub async fn ticket(console: web::Data<Console>, state: web::Data<AppState>, user: User, id: web::Path<String>) -> Result<HttpResponse, ConsoleError> {
    let n = crate::admin::tickets::parse_ticket_id(&id).ok_or_else(|| ConsoleError::not_found(format!("`{id}` is not a ticket id (SYNC-12 or 12)")))?;
    let t = storage::get_ticket(&state.db, n).await?.ok_or_else(|| ConsoleError::not_found(format!("ticket SYNC-{n} does not exist")))?;
    let now = Utc::now();
    console.page(
        "ticket.html",
        json!({ "user": user, "nav": "tickets", "t": ticket_row(&t, now), "hash": t.hash, "prev_hash": t.prev_hash, "event_id": t.event_id, "detail": t.detail.as_ref().map(pretty) }),
    )
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    cursor: Option<i64>,
}

pub async fn audit(console: web::Data<Console>, state: web::Data<AppState>, user: User, q: web::Query<AuditQuery>) -> Result<HttpResponse, ConsoleError> {
    let now = Utc::now();
    let entries = storage::list_audit(&state.db, None, q.cursor, 100).await?;
    let next = (entries.len() == 100).then(|| entries.last().map(|e| e.id)).flatten();
    console.page("audit.html", json!({ "user": user, "nav": "audit", "entries": entries.iter().map(|e| audit_row(e, now)).collect::<Vec<_>>(), "next": next }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1"), "'-1");
    }

    #[test]
    fn a_conflicts_changes_are_marked_per_side() {
        let c = json!({ "base": { "a": 1, "b": "x" }, "hms": { "a": 2, "b": "x" }, "external": { "a": 1, "b": "y", "c": true } });
        let v = conflict_view(&c);
        let f = v["fields"].as_array().unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!((f[0]["hms_changed"].as_bool(), f[0]["external_changed"].as_bool()), (Some(true), Some(false)));
        assert_eq!((f[1]["hms_changed"].as_bool(), f[1]["external_changed"].as_bool()), (Some(false), Some(true)));
        assert_eq!(f[2]["base"], "", "absent in the base");
        assert_eq!(f[2]["external_changed"], true);
    }

    #[test]
    fn spans_read_as_people_say_them() {
        assert_eq!(span(5), "5 s");
        assert_eq!(span(600), "10 min");
        assert_eq!(span(10_800), "3 h");
        assert_eq!(span(400_000), "4 d");
    }
}
