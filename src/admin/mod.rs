//! The admin HTTP API (actix-web): routes, shared state and bearer-token auth. One file per
//! resource; every handler is a few steps, errors go through [`error::ApiError`].

pub mod auth;
pub mod connectors;
pub mod error;
pub mod events;
pub mod governance;
pub mod health;
pub mod metrics;
pub mod parked;
pub mod tickets;

use actix::Addr;
use actix_web::web;

use crate::actors::{Governance, Registry, TicketWriter};
use crate::bus::Bus;
use crate::storage::Db;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    /// Event intake (matching, durable group-committed store).
    pub bus: Bus,
    pub registry: Addr<Registry>,
    pub governance: Addr<Governance>,
    pub tickets: Addr<TicketWriter>,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Test hooks are routed only when on.
    pub fault_injection: bool,
    /// The demo target, served only with `--demo`.
    pub demo: Option<web::Data<crate::demo::DemoSink>>,
}

/// Registers every route. Admin routes sit behind the bearer token when one is set;
/// probes stay open so an orchestrator can call them.
pub fn routes(cfg: &mut web::ServiceConfig, state: &AppState, token: Option<String>) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::metrics));
    if let Some(sink) = &state.demo {
        crate::demo::routes(cfg, sink.clone());
    }
    let mut admin = web::scope("")
        .wrap(actix_web::middleware::from_fn(auth::require_token))
        .app_data(web::Data::new(auth::AdminToken(token)))
        .route("/connectors", web::get().to(connectors::list))
        .route("/connectors", web::post().to(connectors::create))
        .route("/connectors/{id}", web::get().to(connectors::get))
        .route("/connectors/{id}", web::put().to(connectors::replace))
        .route("/connectors/{id}", web::delete().to(connectors::delete))
        .route("/connectors/{id}/status", web::get().to(connectors::status))
        .route("/connectors/{id}/pause", web::put().to(connectors::pause))
        .route("/connectors/{id}/resume", web::put().to(connectors::resume))
        .route("/connectors/{id}/restart", web::post().to(connectors::restart))
        .route("/connectors/{id}/test", web::post().to(connectors::test))
        .route("/governance", web::get().to(governance::get))
        .route("/governance", web::put().to(governance::put))
        .route("/events/{topic}", web::post().to(events::publish))
        .route("/tickets", web::get().to(tickets::list))
        .route("/tickets/verify", web::get().to(tickets::verify))
        .route("/tickets/{id}", web::get().to(tickets::get))
        .route("/parked", web::get().to(parked::list))
        .route("/parked/{id}", web::get().to(parked::get))
        .route("/parked/{id}", web::delete().to(parked::discard))
        .route("/parked/{id}/replay", web::post().to(parked::replay));
    if state.fault_injection {
        admin = admin.route("/connectors/{id}/faults", web::post().to(connectors::fault));
    }
    cfg.service(admin);
}
