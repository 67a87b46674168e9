//! `POST /events/{topic}`: accept an HMS event through the [`Bus`](crate::actors::bus::Bus): matched
//! to connectors (topic + filter), stored durably, and only then answered with 202.

use tracing::Instrument;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use crate::actors::bus::PublishError;

pub async fn publish(state: web::Data<AppState>, req: HttpRequest, topic: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let payload: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the event is not valid JSON: {e}")))?;
    if !payload.is_object() {
        return Err(ApiError::bad_request(format!("the event must be a JSON object (its fields are what connectors map), found {}", json_kind(&payload))));
    }
    let event_id = req.headers().get("idempotency-key").map(|v| v.to_str().map(str::to_string)).transpose().map_err(|_| ApiError::bad_request("the Idempotency-Key header is not printable ASCII"))?;
    let accept = tracing::debug_span!("accept", topic = %topic);
    let accepted = state.bus.publish(&topic, payload, event_id).instrument(accept).await.map_err(|e| match e {
        PublishError::Invalid(m) => ApiError::bad_request(m),
        PublishError::Unavailable(m) => ApiError::new(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, format!("cannot store the event: {m}")),
    })?;
    Ok(HttpResponse::Accepted().json(accepted))
}

/// "an array", "a string", … for messages.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
