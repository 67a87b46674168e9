//! `POST /events/{topic}`: accept an HMS event through the [`Bus`](crate::actors::bus::Bus): matched
//! to connectors (topic + filter), stored durably, and only then answered with 202.
//!
//! The route is registered as a scope of its literal prefix, `/events` ([`scope`]), whose
//! one service reads the topic from the rest of the path itself: the router compares a
//! scope's prefix as text, where a `{topic}` pattern is a regular expression that every
//! event's path was run through (regex-lite's matcher: about 15,000 instructions per event,
//! a twenty-fifth of its work under benches/callgrind, 1.2% of the CPU of a saturated service
//! under perf).

use tracing::Instrument;
use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::error::ApiError;
use crate::actors::bus::PublishError;

/// The route of the endpoint table's `POST /events/{topic}` row: everything under `/events`
/// goes to [`route`].
pub fn scope() -> actix_web::Scope {
    web::scope("/events").default_service(web::to(route))
}

/// A request under `/events`: `POST /events/{topic}` is published; another method on such a
/// path is answered `405` (with `Allow`), any other path `404`, as the router answers them
/// elsewhere (see [`super::error::no_route`]).
pub async fn route(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    match topic_of(req.match_info().unprocessed()) {
        Some(topic) if req.method() == actix_web::http::Method::POST => publish(&state, &req, topic, &body).await,
        _ => super::error::no_route(req).await,
    }
}

/// The topic in the rest of the path after `/events`: one non-empty segment (`/{topic}`).
/// The router has decoded what percent-encoding it may already (`%2E` is `.`); a topic that
/// still holds a `%` is refused by the bus's check, as its decoded `/` or `%` would be.
fn topic_of(rest: &str) -> Option<&str> {
    rest.strip_prefix('/').filter(|t| !t.is_empty() && !t.contains('/'))
}

async fn publish(state: &AppState, req: &HttpRequest, topic: &str, body: &[u8]) -> Result<HttpResponse, ApiError> {
    let payload = crate::actors::bus::parse_event(body).map_err(ApiError::bad_request)?;
    let event_id = req.headers().get("idempotency-key").map(|v| v.to_str().map(str::to_string)).transpose().map_err(|_| ApiError::bad_request("the Idempotency-Key header is not printable ASCII"))?;
    let accept = tracing::debug_span!("accept", topic = %topic);
    let accepted = state.bus.publish(topic, payload, event_id).instrument(accept).await.map_err(|e| match e {
        PublishError::Invalid(m) => ApiError::bad_request(m),
        PublishError::Unavailable(m) => ApiError::new(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, format!("cannot store the event: {m}")),
    })?;
    Ok(HttpResponse::Accepted().json(accepted))
}

#[cfg(test)]
mod tests {
    use super::topic_of;

    #[test]
    fn the_topic_is_the_one_segment_after_events() {
        assert_eq!(topic_of("/permit.updated"), Some("permit.updated"));
        for rest in ["", "/", "permit.updated", "/a/b", "/a/", "//a"] {
            assert_eq!(topic_of(rest), None, "{rest:?}");
        }
    }
}
