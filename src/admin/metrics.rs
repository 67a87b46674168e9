//! `GET /metrics`: Prometheus text exposition format (version 0.0.4). Open like the probes,
//! so a scraper needs no admin token; it shows counts, never payloads or secrets.

use actix_web::{HttpResponse, web};

use super::AppState;
use super::error::ApiError;
use crate::actors::registry::Pullers;

pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let pullers = state.registry.send(Pullers).await?;
    let text = state.metrics.render(&state.db, &pullers).await?;
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text))
}
