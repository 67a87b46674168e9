//! `/parked`: jobs that failed past their retries (or for good at once), kept for a human:
//! list, look at, replay (optionally with an edited payload), discard.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::actors::registry::WakeConnectors;
use crate::actors::ticket_writer::WriteTicket;
use crate::storage::{self, Delivery, NewTicket};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkedQuery {
    pub connector: Option<String>,
    /// The `next` cursor of the previous page.
    pub cursor: Option<String>,
    pub limit: Option<u64>,
}

pub async fn list(state: web::Data<AppState>, q: Result<web::Query<ParkedQuery>, actix_web::Error>) -> Result<HttpResponse, ApiError> {
    let q = q.map_err(|e| ApiError::bad_request(format!("bad query: {e}")))?.into_inner();
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let after = match &q.cursor {
        Some(c) => Some(c.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid cursor `{c}`: pass the `next` value of the previous page")))?),
        None => None,
    };
    let jobs = storage::list_parked(&state.db, q.connector.as_deref(), after, limit).await?;
    let next = (jobs.len() as u64 == limit).then(|| jobs.last().map(|j| j.id.to_string())).flatten();
    Ok(HttpResponse::Ok().json(json!({ "parked": jobs, "next": next })))
}

async fn parked_job(state: &AppState, id: i64) -> Result<Delivery, ApiError> {
    match storage::get_delivery(&state.db, id).await? {
        Some(job) if job.status == "parked" => Ok(job),
        Some(job) => Err(ApiError::new(actix_web::http::StatusCode::CONFLICT, format!("job {id} is {}, not parked", job.status))),
        None => Err(ApiError::not_found(format!("parked job {id} does not exist"))),
    }
}

pub async fn get(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(parked_job(&state, *id).await?))
}

/// Optional body: `{"payload": {…}}` replaces the event before it is sent again.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    pub payload: Option<Value>,
}

pub async fn replay(state: web::Data<AppState>, id: web::Path<i64>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let edit: ReplayBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayBody { payload: None }
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("expected nothing or {{\"payload\": {{…}}}}: {e}")))?
    };
    parked_job(&state, *id).await?;
    let job = storage::replay_parked(&state.db, *id, edit.payload.as_ref())
        .await?
        .ok_or_else(|| ApiError::new(actix_web::http::StatusCode::CONFLICT, format!("job {id} is no longer parked")))?;
    state.registry.do_send(WakeConnectors(vec![job.connector_id.clone()]));
    tracing::info!(connector = %job.connector_id, job = job.id, edited = edit.payload.is_some(), "parked job replayed");
    Ok(HttpResponse::Accepted().json(job))
}

pub async fn discard(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    parked_job(&state, *id).await?;
    let job = storage::discard_parked(&state.db, *id)
        .await?
        .ok_or_else(|| ApiError::new(actix_web::http::StatusCode::CONFLICT, format!("job {id} is no longer parked")))?;
    state.tickets.do_send(WriteTicket(NewTicket {
        connector_id: job.connector_id.clone(),
        event_id: Some(job.event_id.clone()),
        delivery_id: Some(job.id),
        hms_id: Some(job.record_key.clone()),
        external_id: None,
        direction: if job.topic == crate::sync::inbound::INBOUND_TOPIC { "inbound" } else { "outbound" }.into(),
        status: "skipped".into(),
        reason: Some("discarded by an operator".into()),
        attempts: job.attempts,
        last_error: job.last_error.clone(),
        detail: None,
    }));
    tracing::info!(connector = %job.connector_id, job = job.id, "parked job discarded");
    Ok(HttpResponse::NoContent().finish())
}

/// `{"side": "hms" | "legacy"}` (which side's version wins) or `{"record": {…}}` (a merged
/// record, applied to both sides).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    pub side: Option<String>,
    pub record: Option<Value>,
}

/// Resolves a parked conflict of a two-way connector. The winning change goes through the
/// normal path again, without the conflict check; the parked job is closed as `skipped`.
pub async fn resolve(state: web::Data<AppState>, id: web::Path<i64>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    use crate::actors::pusher::RESOLVED;
    use crate::actors::ticket_writer::StoreJobs;
    use crate::sync::inbound::INBOUND_TOPIC;
    let choice: ResolveBody = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("expected {{\"side\": \"hms\"|\"legacy\"}} or {{\"record\": {{…}}}}: {e}")))?;
    let job = parked_job(&state, *id).await?;
    let inbound = job.topic == INBOUND_TOPIC || job.topic == format!("{RESOLVED}{INBOUND_TOPIC}");
    let source = if inbound { "legacy" } else { "hms" };
    let outbound_topic = if inbound { None } else { Some(job.topic.trim_start_matches(RESOLVED).to_string()) };
    let new_job = |topic: String, payload: Value, n: u8| crate::storage::NewDelivery {
        connector_id: job.connector_id.clone(),
        event_id: format!("resolved:{}:{n}", job.id),
        topic: format!("{RESOLVED}{topic}"),
        record_key: job.record_key.clone(),
        payload,
    };
    let (jobs, reason) = match (choice.side.as_deref(), choice.record) {
        (Some(side), None) if side == source => (vec![new_job(if inbound { INBOUND_TOPIC.into() } else { outbound_topic.clone().unwrap_or_default() }, job.payload.clone(), 1)], format!("conflict resolved: {side} wins")),
        (Some(side @ ("hms" | "legacy")), None) => (Vec::new(), format!("conflict resolved: {side} keeps its version")),
        (None, Some(record)) => {
            // A merged record goes to both sides. An outbound job needs an HMS topic: the
            // connector's first.
            let shared = state.registry.send(crate::actors::registry::GetShared(job.connector_id.clone())).await?;
            let topic = outbound_topic.or_else(|| shared.and_then(|s| s.spec.topics().into_iter().next())).unwrap_or_default();
            (vec![new_job(INBOUND_TOPIC.into(), record.clone(), 1), new_job(topic, record, 2)], "conflict resolved with a merged record".to_string())
        }
        _ => return Err(ApiError::bad_request("expected exactly one of `side` (hms or legacy) or `record`")),
    };
    storage::discard_parked(&state.db, job.id).await?.ok_or_else(|| ApiError::new(actix_web::http::StatusCode::CONFLICT, format!("job {id} is no longer parked")))?;
    if !jobs.is_empty() {
        state.tickets.send(StoreJobs(jobs)).await?.map_err(|e| ApiError::new(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, e))?;
        state.registry.do_send(WakeConnectors(vec![job.connector_id.clone()]));
    }
    state.tickets.do_send(WriteTicket(NewTicket {
        connector_id: job.connector_id.clone(),
        event_id: Some(job.event_id.clone()),
        delivery_id: Some(job.id),
        hms_id: Some(job.record_key.clone()),
        external_id: Some(job.record_key.clone()),
        direction: if inbound { "inbound" } else { "outbound" }.into(),
        status: "skipped".into(),
        reason: Some(reason.clone()),
        attempts: job.attempts,
        last_error: job.last_error.clone(),
        detail: None,
    }));
    tracing::info!(connector = %job.connector_id, job = job.id, reason = %reason, "conflict resolved");
    Ok(HttpResponse::Accepted().json(json!({ "id": job.id, "resolution": reason })))
}
