//! `GET/PUT /governance`: the global `sync.enabled` toggle.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Principal, audit};
use super::error::ApiError;
use super::AppState;
use crate::actors::governance::{GetEnabled, SetEnabled};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceBody {
    pub sync_enabled: bool,
}

pub async fn get(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let enabled = state.governance.send(GetEnabled).await?;
    Ok(HttpResponse::Ok().json(json!({ "sync_enabled": enabled })))
}

pub async fn put(state: web::Data<AppState>, who: Principal, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let body: GovernanceBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"sync_enabled\": true|false}}: {e}")))?;
    let enabled = state.governance.send(SetEnabled(body.sync_enabled)).await??;
    audit(&state, &who, "governance.set", "sync_enabled", Some(json!({ "sync_enabled": enabled }))).await;
    Ok(HttpResponse::Ok().json(json!({ "sync_enabled": enabled })))
}
