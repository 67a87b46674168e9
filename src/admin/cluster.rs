//! `GET /cluster`: every instance running on this database, alive or not, with what each
//! holds; `self` names the one that answered.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::storage;

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let instances = storage::list_instances(&state.db, storage::lease_ttl(state.cluster.lease)).await?;
    let nats = state.cluster.nats.as_ref().map(|n| n.state());
    Ok(HttpResponse::Ok().json(json!({ "self": state.cluster.instance_id, "lease_secs": state.cluster.lease.as_secs(), "instances": instances, "nats": nats })))
}
