//! `POST /webhooks/NAME` and `POST /webhook/NAME`: a webhook for a connector. Verified by
//! the connector's scheme (401 and nothing stored when it fails), parsed (400), then
//! stored durably before the 200: HMS's pushes are published on the connector's topic, the
//! external system's become inbound jobs (mapping table read right to left). A replayed
//! webhook id answers 200 and changes nothing.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::webhook::verify::{self, Headers, Rejection};
use crate::actors::registry::{WakeConnectors, WebhookTarget};
use super::AppState;
use super::error::ApiError;
use crate::actors::bus::PublishError;
use crate::mapping::selector;
use crate::spec::model::{Side, WebhookSpec};
use crate::storage;
use crate::actors::two_way::{inbound_job, key_by_links};

/// The sender's id for this delivery: Standard Webhooks' `webhook-id`, GitHub's
/// `X-GitHub-Delivery`, or an `Idempotency-Key`.
fn change_id(headers: &actix_web::http::header::HeaderMap) -> Option<String> {
    ["webhook-id", "x-github-delivery", "idempotency-key"].iter().find_map(|h| Headers::get(headers, h)).map(str::to_string)
}

fn refused(state: &AppState, connector: &str, r: &Rejection) -> ApiError {
    state.metrics.webhook_rejections.with_label_values(&[connector, r.label()]).inc();
    tracing::warn!(connector, reason = %r, "webhook refused");
    ApiError::new(actix_web::http::StatusCode::UNAUTHORIZED, format!("webhook refused: {r}"))
}

pub async fn receive(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let path = req.path().to_string();
    let (shared, side) = state
        .registry
        .send(WebhookTarget(path.clone()))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no connector receives webhooks at {path}")))?;
    let id = shared.id().to_string();
    let hook: WebhookSpec = shared.spec.webhooks().into_iter().find(|(s, _)| *s == side).map(|(_, w)| w.clone()).ok_or_else(|| ApiError::not_found(format!("no webhook at {path}")))?;
    let secret = hook.verify.secret.as_deref().and_then(|name| std::env::var(name).ok());
    verify::verify(hook.verify.scheme, secret.as_deref(), req.headers(), &body, chrono::Utc::now().timestamp(), hook.verify.tolerance_secs)
        .map_err(|r| refused(&state, &id, &r))?;
    let payload: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the webhook body is not valid JSON: {e}")))?;
    let change = change_id(req.headers());
    match side {
        Side::Hms => {
            let topic = shared.spec.topics().into_iter().next().ok_or_else(|| ApiError::internal("connector has no topic"))?;
            let accepted = state.bus.publish(&topic, payload, change).await.map_err(|e| match e {
                PublishError::Invalid(m) => ApiError::bad_request(m),
                PublishError::Unavailable(m) => ApiError::new(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, m),
            })?;
            Ok(HttpResponse::Ok().json(json!({ "ok": true, "event_id": accepted.event_id, "connectors": accepted.connectors })))
        }
        Side::Legacy => {
            let records = selector::records(&payload, &hook.records);
            let many = records.len() > 1;
            let mut jobs: Vec<_> = records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let cid = change.as_ref().map(|c| if many { format!("{c}#{i}") } else { c.clone() });
                    inbound_job(&shared, r, hook.id_field.as_deref(), None, "webhook", cid.as_deref())
                })
                .collect();
            key_by_links(&state.db, &shared, &mut jobs, hook.id_field.as_deref(), &records).await.map_err(|e| ApiError::new(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, format!("cannot read the record links: {e}")))?;
            // Stored in a transaction of its own (not the group commit) so the answer can say
            // exactly what was new: concurrent replays of one webhook id store it once, and
            // only one of them is told so.
            let stored = storage::enqueue(&state.db, &jobs).await.map_err(|e| ApiError::new(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, format!("cannot store the webhook: {e}")))?;
            if stored > 0 {
                state.registry.do_send(WakeConnectors(vec![id]));
            }
            Ok(HttpResponse::Ok().json(json!({ "ok": true, "duplicate": stored == 0 && !records.is_empty(), "stored": stored })))
        }
    }
}
