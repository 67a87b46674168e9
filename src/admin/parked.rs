//! `/parked`: jobs that failed past their retries (or for good at once), kept for a human:
//! list, look at, replay (optionally with an edited payload), discard.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Principal, audit};
use super::error::ApiError;
use crate::actors::registry::{GetShared, WakeConnectors};
use crate::storage::{self, Delivery, JobStatus, NewTicket};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkedQuery {
    pub connector: Option<String>,
    /// Only jobs whose error contains this text.
    pub reason: Option<String>,
    /// The `next` cursor of the previous page.
    pub cursor: Option<String>,
    pub limit: Option<u64>,
}

pub async fn list(state: web::Data<AppState>, q: Result<web::Query<ParkedQuery>, actix_web::Error>) -> Result<HttpResponse, ApiError> {
    let q = q.map_err(|e| ApiError::bad_request(format!("bad query: {e}")))?.into_inner();
    super::tickets::connector_filter(&q.connector)?;
    let limit = super::tickets::page_limit(q.limit)?;
    let after = super::tickets::page_cursor(&q.cursor)?;
    super::tickets::text_filter("reason", &q.reason)?;
    let filter = storage::ParkedFilter { connector_id: q.connector, reason: q.reason, after_id: after, limit, ..Default::default() };
    let jobs = storage::list_parked(&state.db, &filter).await?;
    let next = (jobs.len() as u64 == limit).then(|| jobs.last().map(|j| j.id.to_string())).flatten();
    Ok(HttpResponse::Ok().json(json!({ "parked": jobs, "next": next })))
}

async fn parked_job(state: &AppState, id: i64) -> Result<Delivery, ApiError> {
    match storage::get_delivery(&state.db, id).await? {
        Some(job) if job.status == JobStatus::Parked => Ok(job),
        Some(job) => Err(ApiError::new(actix_web::http::StatusCode::CONFLICT, format!("job {id} is {}, not parked", job.status.as_str()))),
        None => Err(ApiError::not_found(format!("parked job {id} does not exist"))),
    }
}

/// One parked job, with every attempt made (`attemptLog`).
pub async fn get(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let job = parked_job(&state, *id).await?;
    let log = storage::list_attempts(&state.db, job.id).await?;
    let mut body = serde_json::to_value(&job).unwrap_or_default();
    body["attemptLog"] = serde_json::to_value(log).unwrap_or_default();
    Ok(HttpResponse::Ok().json(body))
}

/// Optional body: `{"payload": {…}}` replaces the event before it is sent again;
/// `{"force": true}` sends a job older than the record's last delivered one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    pub payload: Option<Value>,
    #[serde(default)]
    pub force: bool,
}

pub async fn replay(state: web::Data<AppState>, who: Principal, id: web::Path<i64>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let edit: ReplayBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayBody { payload: None, force: false }
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("expected nothing or {{\"payload\": {{…}}, \"force\": true}}: {e}")))?
    };
    let parked = parked_job(&state, *id).await?;
    if let Some(why) = too_old(&state, &parked, edit.force).await? {
        return Err(ApiError::new(actix_web::http::StatusCode::CONFLICT, why));
    }
    let job = storage::replay_parked(&state.db, *id, edit.payload.as_ref(), &who.name)
        .await?
        .ok_or_else(|| ApiError::new(actix_web::http::StatusCode::CONFLICT, format!("job {id} is no longer parked")))?;
    state.registry.do_send(WakeConnectors(vec![job.connector_id.clone()]));
    audit(&state, &who, "parked.replay", &job.id.to_string(), Some(json!({ "connector": job.connector_id, "edited": edit.payload.is_some(), "force": edit.force }))).await;
    Ok(HttpResponse::Accepted().json(job))
}

/// Why `parked` must not be replayed without `force`: sent now, an older change would land
/// after a newer one of the same record, and undo it. (A two-way job needs no guard: it is
/// decided again against both sides first.)
async fn too_old(state: &AppState, parked: &Delivery, force: bool) -> Result<Option<String>, ApiError> {
    let two_way = state.registry.send(GetShared(parked.connector_id.clone())).await?.is_some_and(|s| s.spec.two_way());
    if force || two_way {
        return Ok(None);
    }
    let id = parked.id;
    Ok(storage::newer_delivered(&state.db, &parked.connector_id, &parked.record_key, parked.id).await?.map(|newer| {
        format!(
            "job {id} is older than job {} of the same record ({}), accepted at {} and delivered: replayed, it would send older data after newer; send it anyway with {{\"force\": true}} (hms-sync replay {id} --force), or discard it",
            newer.id,
            parked.record_key,
            newer.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }))
}

/// `POST /parked/replay`: which parked jobs to send again.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkReplayBody {
    pub connector: String,
    /// Parked at or after: RFC 3339, a date or an age (`1h`).
    pub since: String,
    /// Parked before: the same forms.
    pub until: Option<String>,
    /// Only jobs whose error contains this text.
    pub reason: Option<String>,
    #[serde(default)]
    pub force: bool,
}

/// Most jobs one bulk replay puts back (the answer lists each).
const BULK_MAX: u64 = 10_000;

/// Bulk replay: every parked job of a connector parked in a time range, each by the rules
/// of a single replay (a job older than its record's last delivered one stays parked and is
/// listed under `refused`, unless `force`).
pub async fn replay_many(state: web::Data<AppState>, who: Principal, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let b: BulkReplayBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"connector\": \"ID\", \"since\": \"1h\", \"until\"?, \"reason\"?, \"force\"?}}: {e}")))?;
    super::tickets::connector_filter(&Some(b.connector.clone()))?;
    super::tickets::text_filter("reason", &b.reason)?;
    if state.registry.send(GetShared(b.connector.clone())).await?.is_none() {
        return Err(ApiError::not_found(format!("connector `{}` does not exist", b.connector)));
    }
    let now = chrono::Utc::now();
    let since = super::tickets::instant("since", &b.since, now)?;
    let until = b.until.as_deref().map(|u| super::tickets::instant("until", u, now)).transpose()?;
    let filter = storage::ParkedFilter { connector_id: Some(b.connector.clone()), reason: b.reason.clone(), since: Some(since), until, after_id: None, limit: BULK_MAX };
    let (mut replayed, mut refused) = (Vec::new(), Vec::new());
    for job in storage::list_parked(&state.db, &filter).await? {
        if let Some(why) = too_old(&state, &job, b.force).await? {
            refused.push(json!({ "id": job.id, "reason": why }));
        } else if storage::replay_parked(&state.db, job.id, None, &who.name).await?.is_some() {
            replayed.push(job.id);
        } else {
            refused.push(json!({ "id": job.id, "reason": "no longer parked" }));
        }
    }
    if !replayed.is_empty() {
        state.registry.do_send(WakeConnectors(vec![b.connector.clone()]));
    }
    let detail = json!({ "since": since, "until": until, "reason": b.reason, "force": b.force, "replayed": replayed.len(), "refused": refused.len() });
    audit(&state, &who, "parked.replay_bulk", &b.connector, Some(detail)).await;
    Ok(HttpResponse::Ok().json(json!({ "replayed": replayed, "refused": refused })))
}

pub async fn discard(state: web::Data<AppState>, who: Principal, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let job = parked_job(&state, *id).await?;
    close(&state, &who, &job, &[], &format!("discarded by {}", who.name)).await?;
    audit(&state, &who, "parked.discard", &job.id.to_string(), Some(json!({ "connector": job.connector_id }))).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Closes a parked job with its ticket (`skipped`, with `reason`) and the jobs that replace
/// it, in one transaction.
async fn close(state: &AppState, who: &Principal, job: &Delivery, replacements: &[crate::storage::NewDelivery], reason: &str) -> Result<(), ApiError> {
    let ticket = NewTicket {
        connector_id: job.connector_id.clone(),
        event_id: Some(job.event_id.clone()),
        delivery_id: Some(job.id),
        hms_id: Some(job.record_key.clone()),
        external_id: None,
        direction: crate::actors::two_way::direction(job.origin.target()),
        status: crate::storage::TicketStatus::Skipped,
        reason: Some(reason.to_string()),
        attempts: job.attempts,
        last_error: job.last_error.clone(),
        detail: Some(json!({ "by": who.name })),
    };
    if !storage::close_parked(&state.db, job.id, replacements, &ticket).await? {
        return Err(ApiError::new(actix_web::http::StatusCode::CONFLICT, format!("job {} is no longer parked", job.id)));
    }
    if !replacements.is_empty() {
        state.registry.do_send(WakeConnectors(vec![job.connector_id.clone()]));
    }
    Ok(())
}

/// `{"side": "hms" | "legacy"}` (which side's version wins) or `{"record": {…}}` (a merged
/// record, applied to both sides).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    pub side: Option<String>,
    pub record: Option<Value>,
}

/// Resolves a parked conflict of a two-way connector (policy `manual`). The winner goes
/// through the normal path again without the conflict check:
/// - the side that made the parked change: that change is applied to the other side;
/// - the other side: its current record is read (`resolve.fetch`) and applied back;
/// - a merged `record`: applied to both sides.
///
/// The parked job is closed as `skipped` in the same transaction.
pub async fn resolve(state: web::Data<AppState>, who: Principal, id: web::Path<i64>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    use crate::spec::model::Side;
    use crate::sync::Origin;
    let choice: ResolveBody = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("expected {{\"side\": \"hms\"|\"legacy\"}} or {{\"record\": {{…}}}}: {e}")))?;
    let job = parked_job(&state, *id).await?;
    if !job.is_conflict() {
        return Err(ApiError::new(actix_web::http::StatusCode::CONFLICT, format!("job {id} is parked for a failure, not a conflict: replay or discard it")));
    }
    let shared = state.registry.send(GetShared(job.connector_id.clone())).await?.ok_or_else(|| ApiError::not_found(format!("connector `{}` does not exist", job.connector_id)))?;
    let source = crate::sync::engine::other(job.origin.target());
    let new_job = |origin: Origin, payload: Value, n: u8, deleted: bool| crate::storage::NewDelivery {
        connector_id: job.connector_id.clone(),
        event_id: format!("resolved:{}:{n}", job.id),
        topic: job.topic.clone(),
        record_key: job.record_key.clone(),
        payload: crate::mapping::Payload::shared(payload),
        origin,
        deleted,
    };
    let side_of = |s: &str| if s == "hms" { Side::Hms } else { Side::Legacy };
    let (jobs, reason) = match (choice.side.as_deref(), choice.record) {
        (Some(side @ ("hms" | "legacy")), None) if side_of(side) == source => {
            // The parked change itself, a delete included.
            (vec![new_job(Origin::Resolved(job.origin.target()), job.payload.value().clone(), 1, job.deleted)], format!("conflict resolved: {side} wins"))
        }
        (Some(side @ ("hms" | "legacy")), None) => {
            let fetch = shared.spec.resolve.as_ref().and_then(|r| if side == "hms" { r.fetch_hms.as_ref() } else { r.fetch_legacy.as_ref() });
            if fetch.is_none() {
                return Err(ApiError::bad_request(format!("to take {side}'s version its current record must be read: configure resolve.fetch.{side}, or pass the merged `record`")));
            }
            (vec![new_job(Origin::Take(side_of(side)), job.payload.value().clone(), 1, false)], format!("conflict resolved: {side} wins"))
        }
        (None, Some(record)) => (
            vec![new_job(Origin::Resolved(Side::Hms), record.clone(), 1, false), new_job(Origin::Resolved(Side::Legacy), record, 2, false)],
            "conflict resolved with a merged record".to_string(),
        ),
        _ => return Err(ApiError::bad_request("expected exactly one of `side` (hms or legacy) or `record`")),
    };
    close(&state, &who, &job, &jobs, &reason).await?;
    audit(&state, &who, "parked.resolve", &job.id.to_string(), Some(json!({ "connector": job.connector_id, "resolution": reason }))).await;
    Ok(HttpResponse::Accepted().json(json!({ "id": job.id, "resolution": reason })))
}
