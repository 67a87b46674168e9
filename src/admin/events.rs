//! `POST /events/{topic}`: accept an HMS event, match it to connectors (topic + filter),
//! store one delivery job per connector, and answer 202 only once they are stored.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;
use crate::actors::registry::{Route, WakeConnectors};
use crate::actors::shared::Counters;
use crate::storage::{self, NewDelivery};

pub async fn publish(state: web::Data<AppState>, req: HttpRequest, topic: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let payload: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the event is not valid JSON: {e}")))?;
    let event_id = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let (jobs, matched) = match_event(&state, &topic, &event_id, &payload).await?;
    storage::enqueue(&state.db, &jobs).await?;
    state.registry.do_send(WakeConnectors(matched.clone()));
    Ok(HttpResponse::Accepted().json(json!({ "event_id": event_id, "topic": *topic, "connectors": matched })))
}

/// The jobs this event makes: one per connector whose topic and filter it passes.
async fn match_event(state: &AppState, topic: &str, event_id: &str, payload: &Value) -> Result<(Vec<NewDelivery>, Vec<String>), ApiError> {
    let routes = state.registry.send(Route(topic.to_string())).await?;
    let mut jobs = Vec::new();
    let mut matched = Vec::new();
    for shared in routes {
        let compiled = &shared.compiled;
        match compiled.matches(topic, payload) {
            Ok(true) => {}
            Ok(false) => {
                Counters::inc(&shared.counters.filtered);
                continue;
            }
            Err(e) => return Err(ApiError::bad_request(format!("connector `{}`: {e}", shared.id()))),
        }
        let record_key = compiled
            .record_key(payload, event_id)
            .map_err(|e| ApiError::bad_request(format!("connector `{}`: record key: {e}", shared.id())))?;
        jobs.push(NewDelivery {
            connector_id: shared.id().to_string(),
            event_id: event_id.to_string(),
            topic: topic.to_string(),
            record_key,
            payload: payload.clone(),
        });
        matched.push(shared.id().to_string());
    }
    Ok((jobs, matched))
}
