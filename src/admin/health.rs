//! Liveness and readiness probes.

use actix_web::{web, HttpResponse};
use sea_orm::ConnectionTrait;
use serde_json::json;

use super::AppState;
use crate::actors::registry::List;

/// The process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The database answers and the registry runs: the service can accept work. The NATS
/// intake's state is shown (`nats`, when `bus.nats.url` is set) but does not make the
/// instance unready: HTTP intake goes on while NATS is down, and a probe that failed would
/// take it out of a load balancer for nothing.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db_ok = state.db.execute_unprepared("SELECT 1").await.is_ok();
    let registry = state.registry.send(List).await;
    let ready = db_ok && registry.is_ok();
    let mut body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "database": db_ok,
        "connectors": registry.map(|l| l.len()).unwrap_or(0),
    });
    if let Some(nats) = &state.cluster.nats {
        let n = nats.state();
        body["nats"] = json!({ "status": if n.connected { "up" } else { "down" }, "taking": n.taking, "error": n.error });
    }
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}
