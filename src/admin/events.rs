//! `POST /events/{topic}`: accept an HMS event through the [`Bus`](crate::actors::bus::Bus): matched
//! to connectors (topic + filter), stored durably, and only then answered with 202.

use tracing::Instrument;
use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::error::ApiError;
use crate::actors::bus::PublishError;

pub async fn publish(state: web::Data<AppState>, req: HttpRequest, topic: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let payload = crate::actors::bus::parse_event(&body).map_err(ApiError::bad_request)?;
    let event_id = req.headers().get("idempotency-key").map(|v| v.to_str().map(str::to_string)).transpose().map_err(|_| ApiError::bad_request("the Idempotency-Key header is not printable ASCII"))?;
    let accept = tracing::debug_span!("accept", topic = %topic);
    let accepted = state.bus.publish(&topic, payload, event_id).instrument(accept).await.map_err(|e| match e {
        PublishError::Invalid(m) => ApiError::bad_request(m),
        PublishError::Unavailable(m) => ApiError::new(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, format!("cannot store the event: {m}")),
    })?;
    Ok(HttpResponse::Accepted().json(accepted))
}
