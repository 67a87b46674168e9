//! The admin HTTP API (actix-web): routes, shared state and bearer-token auth. One file per
//! resource; every handler is a few steps, errors go through [`error::ApiError`].

pub mod audit;
pub mod auth;
pub mod cluster;
pub mod connectors;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod governance;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod parked;
pub mod tickets;
pub mod webhooks;

use actix::Addr;
use actix_web::web;

use crate::actors::{Committer, Governance, Registry};
use crate::actors::bus::Bus;
use crate::storage::Db;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    /// Event intake (matching, durable group-committed store).
    pub bus: Bus,
    pub registry: Addr<Registry>,
    pub governance: Addr<Governance>,
    pub tickets: Addr<Committer>,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Test hooks are routed only when on.
    pub fault_injection: bool,
    /// The connectors folder (`POST /reload`).
    pub connectors_dir: std::path::PathBuf,
    /// Every token accepted, with its name and role (empty: loopback only, nobody asked).
    pub tokens: auth::Tokens,
    /// The demo target, served only with `--demo`.
    pub demo: Option<web::Data<crate::demo::DemoSink>>,
    /// This instance in the cluster view.
    pub cluster: ClusterView,
}

/// What `GET /cluster` needs to know of this instance.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub instance_id: String,
    /// An instance whose heartbeat is older is not alive (`cluster.lease_secs`).
    pub lease: std::time::Duration,
    /// The NATS intake's state, when `bus.nats.url` is set.
    pub nats: Option<std::sync::Arc<crate::actors::nats::NatsHealth>>,
}

/// Registers every route (from the [`endpoints`] table). Admin routes sit behind the
/// bearer token when one is set; probes, metrics and the document stay open.
pub fn routes(cfg: &mut web::ServiceConfig, state: &AppState) {
    if let Some(sink) = &state.demo {
        crate::demo::routes(cfg, sink.clone());
    }
    endpoints::register(cfg, state.fault_injection);
}
