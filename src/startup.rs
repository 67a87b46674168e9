//! Builds the whole service (database, actors, HTTP server) and runs it until a signal.
//! Tests build it on port 0 with a fresh database, exactly as `hms-sync up` does.

use std::net::{IpAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use actix_web::{web, App, HttpServer};

use crate::actors::governance::{self, SetListener};
use crate::actors::bus::RoutingTable;
use crate::actors::registry::{self, Boot, Origin, StopAll};
use crate::actors::shared::Runtime;
use crate::actors::committer::{FlushTickets, Retention};
use crate::actors::{panics, Committer, Governance, Registry};
use crate::actors::alerter::{Alerter, FailRule};
use crate::actors::cluster::{self, Heartbeat, Leave, Reconciler, Signals};
use crate::actors::messages::Halt;
use crate::actors::nats::NatsIntake;
use crate::admin::{self, AppState};
use crate::actors::bus::Bus;
use crate::delivery::Egress;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::spec::{self, LoadedSpec, SpecErrors};
use crate::storage;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("refusing to listen on {0} without an admin token: set server.admin_token (HMS_SYNC__SERVER__ADMIN_TOKEN) or listen on 127.0.0.1")]
    OpenAdmin(String),
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("invalid connectors; nothing was started:\n{0}")]
    Specs(SpecErrors),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error("cannot start connectors: {0}")]
    Registry(#[from] registry::RegistryError),
    #[error("runtime error: {0}")]
    Mailbox(#[from] actix::MailboxError),
    #[error("cannot join the cluster: {0}")]
    Join(#[from] cluster::JoinError),
}

/// A built service, listening, not yet serving.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    state: AppState,
    tickets: Addr<Committer>,
    heartbeat: Addr<Heartbeat>,
    /// Applies the control plane's state from the database (PostgreSQL: several instances).
    /// On PostgreSQL: the Reconciler and the Signals actor (see `actors::cluster`).
    cluster: Option<(Addr<Reconciler>, Addr<Signals>)>,
    /// The NATS JetStream intake, when `bus.nats.url` is set.
    nats: Option<Addr<NatsIntake>>,
    /// The SQLite file's lock, held while the service runs (`None` on PostgreSQL).
    _lock: Option<std::fs::File>,
}

/// The tokens accepted; refuses a non-loopback address when the admin API has none.
fn check_exposure(settings: &Settings) -> Result<admin::auth::Tokens, StartupError> {
    let host = &settings.server.host;
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let token = settings.server.admin_token.as_deref().unwrap_or("");
    // Blanks are no secret: a token of spaces (a template left unfilled) is refused.
    if !token.is_empty() && token.trim().is_empty() {
        return Err(StartupError::Settings("server.admin_token is only blanks: set a real token, or leave it unset to listen on 127.0.0.1 only".into()));
    }
    let tokens = admin::auth::Tokens::from_settings(settings, |var| std::env::var(var).ok()).map_err(StartupError::Settings)?;
    if tokens.is_empty() && !loopback {
        return Err(StartupError::OpenAdmin(host.clone()));
    }
    Ok(tokens)
}

/// The connector files (valid already), then connectors registered over the API earlier;
/// every error of the stored ones at once.
async fn load_connectors(files: Vec<LoadedSpec>, db: &storage::Db) -> Result<Vec<(LoadedSpec, Origin)>, StartupError> {
    let mut errors = Vec::new();
    let mut all: Vec<(LoadedSpec, Origin)> = files.into_iter().map(|l| (l, Origin::File)).collect();
    for stored in storage::list_connectors(db).await? {
        let origin = format!("<database:{}>", stored.id);
        match spec::parse(&origin, &stored.source) {
            Ok(spec) if all.iter().any(|(l, _)| l.spec.id == spec.id) => errors.push(spec::SpecError {
                file: origin.clone(),
                line: 1,
                column: 1,
                path: "id".into(),
                message: format!("`{}` is registered over the API and also defined by a file; delete one", spec.id),
            }),
            Ok(spec) => all.push((LoadedSpec { spec, source: stored.source, origin }, Origin::Api)),
            Err(e) => errors.extend(e.0),
        }
    }
    if errors.is_empty() { Ok(all) } else { Err(StartupError::Specs(SpecErrors(errors))) }
}

/// Secrets and redirect in force: `--demo` sends everything to the built-in demo target on
/// this port and fills in missing secrets, unless a redirect is configured.
fn egress(settings: &Settings, port: u16) -> Egress {
    let demo = settings.demo.enabled;
    let redirect = match &settings.delivery.redirect_to {
        Some(url) if !url.trim().is_empty() => Some(url.trim().to_string()),
        _ if demo => Some(format!("http://127.0.0.1:{port}{}", crate::demo::SINK_PATH)),
        _ => None,
    };
    Egress { redirect_to: redirect.map(Into::into), demo_secrets: demo }
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        panics::install_hook();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tokens = check_exposure(&settings)?;
        // Bound first: the demo's redirect target is this very port.
        let addr = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&addr).map_err(|source| StartupError::Bind { addr: addr.clone(), source })?;
        let port = listener.local_addr().map_err(|source| StartupError::Bind { addr, source })?.port();
        // Connector files are checked before the database is opened (or created): a bad
        // file stops the start with nothing made.
        let files = spec::load_dir(&settings.connectors.dir).map_err(StartupError::Specs)?;
        let lock = storage::lock_sqlite(&settings.database_url())?;
        let db = storage::connect(&settings.database_url()).await?;
        if db.get_database_backend() != sea_orm::DbBackend::Postgres {
            storage::forget_other_instances(&db).await?;
        }
        let connectors = load_connectors(files, &db).await?;
        if db.get_database_backend() == sea_orm::DbBackend::Postgres {
            let versions = connectors.iter().filter(|(_, o)| *o == Origin::File).map(|(l, _)| (l.spec.id.clone(), cluster::file_version(&l.source))).collect();
            cluster::check_files(&db, &versions, Duration::from_secs(settings.cluster.lease_secs.max(1))).await?;
        }
        let enabled = governance::load_enabled(&db).await?;
        // This process in the cluster: its id (new at each start) owns its leases.
        let instance_id = uuid::Uuid::now_v7().to_string();
        let lease = Duration::from_secs(settings.cluster.lease_secs.max(1));
        let retention = Retention {
            keep: chrono::Duration::days(i64::from(settings.tickets.retention_days)),
            every: Duration::from_secs(settings.tickets.prune_every_secs.max(1)),
        };
        let writer = storage::SqliteWriter::open(&settings.database_url())?;
        // With SQLite's writer, the Committer has a thread of its own (see `default_threads`).
        let committer_thread = writer.is_some();
        let tickets = Committer::new(db.clone(), settings.tickets.batch_size, Duration::from_millis(settings.tickets.flush_ms))
            .with_writer(writer)
            .with_retention(retention, &instance_id)
            .start();
        let metrics = Arc::new(Metrics::new());
        let rule = FailRule::parse(&settings.alerts.rule).map_err(StartupError::Settings)?;
        let alert_url = settings.alerts.url.clone().filter(|u| !u.trim().is_empty());
        let mut alerter = Alerter::new(rule, alert_url, Duration::from_secs(settings.alerts.min_interval_secs), metrics.clone());
        if db.get_database_backend() == sea_orm::DbBackend::Postgres {
            alerter = alerter.for_cluster(db.clone(), instance_id.clone(), lease);
        }
        let alerts = alerter.start();
        let bus_slot = Arc::new(std::sync::OnceLock::new());
        let share = Arc::new(crate::storage::CurrentShare::default());
        let rt = Runtime {
            db: db.clone(),
            tickets: tickets.clone(),
            supervision: settings.supervision,
            fault_injection: settings.server.fault_injection,
            egress: egress(&settings, port),
            metrics: metrics.clone(),
            alerts,
            bus: bus_slot.clone(),
            workers: crate::actors::pool::Workers::new(settings.runtime, committer_thread),
            instance: instance_id.clone().into(),
            lease,
            share: share.clone(),
            claim_gap: Duration::from_millis(settings.cluster.claim_gap_ms),
        };
        let mut boot = Vec::with_capacity(connectors.len());
        for (loaded, origin) in connectors {
            let paused = registry::load_paused(&db, &loaded.spec.id).await?;
            boot.push((loaded, origin, paused));
        }
        let routes = RoutingTable::default();
        // The Bus exists before any connector starts: a lane publishing an inbound backlog
        // (map.publish) must find it.
        let bus = Bus::new(routes.clone(), tickets.clone(), metrics.clone());
        let _ = bus_slot.set(bus.clone());
        let registry = Registry::new(rt, enabled, routes).start();
        registry.send(Boot(boot)).await??;
        let governance = Governance::new(db.clone(), enabled).start();
        governance.send(SetListener(registry.clone().recipient())).await?;
        let address = format!("{}:{port}", settings.server.host);
        cluster::join(&db, &instance_id, &address, &registry, lease).await?;
        let heartbeat = Heartbeat::new(db.clone(), instance_id.clone(), address, registry.clone(), lease, share).start();
        let cluster_actors = (db.get_database_backend() == sea_orm::DbBackend::Postgres).then(|| {
            let reconciler = Reconciler::new(db.clone(), registry.clone(), governance.clone()).start();
            let signals = Signals::new(db.clone(), instance_id.clone(), registry.clone(), reconciler.clone(), heartbeat.clone()).start();
            (reconciler, signals)
        });
        let nats_health = settings.bus.nats.url.as_ref().map(|_| Arc::new(crate::actors::nats::NatsHealth::default()));
        let nats = nats_health.clone().and_then(|health| NatsIntake::new(&settings.bus.nats, bus.clone(), db.clone(), instance_id.clone().into(), lease, health)).map(Actor::start);
        let cluster = admin::ClusterView { instance_id, lease, nats: nats_health };
        let state = AppState { db, bus, registry, governance, tickets: tickets.clone(), metrics, cluster, fault_injection: settings.server.fault_injection, connectors_dir: settings.connectors.dir.clone(), tokens,
            demo: settings.demo.enabled.then(|| web::Data::new(crate::demo::DemoSink::default())),
        };
        let http_workers = crate::actors::pool::threads(settings.server.workers, committer_thread);
        let server = Self::server(listener, state.clone(), &settings, http_workers)?;
        tracing::info!(port, "hms-sync listening");
        Ok(Self { port, server, state, tickets, heartbeat, cluster: cluster_actors, nats, _lock: lock })
    }

    fn server(listener: TcpListener, state: AppState, settings: &Settings, workers: usize) -> Result<actix_web::dev::Server, StartupError> {
        let limit = settings.server.max_body_bytes;
        let routes_state = state.clone();
        let console = crate::console::Console::new().map_err(|e| StartupError::Settings(format!("the console's templates: {e}")))?;
        console.warm(state.db.clone());
        let http = HttpServer::new(move || {
            let st = routes_state.clone();
            App::new()
                .app_data(web::Data::new(st.clone()))
                .app_data(web::PayloadConfig::new(limit))
                .app_data(admin::error::BodyLimit(limit))
                .app_data(web::JsonConfig::default().limit(limit))
                .wrap(actix_web::middleware::ErrorHandlers::new().default_handler(admin::error::json_error_body))
                .configure(|cfg| crate::console::routes(cfg, console.clone()))
                .configure(move |cfg| admin::routes(cfg, &st))
                .default_service(web::to(admin::error::no_route))
        })
        // Signals are handled by the caller (`hms-sync up`), so an embedding program or a
        // test decides itself what stops the service.
        .disable_signals()
        .shutdown_timeout(10)
        .workers(workers);
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        Ok(http.listen(listener).map_err(|source| StartupError::Bind { addr, source })?.run())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server as a signal would (tests, embedding).
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGINT/SIGTERM (actix-web stops accepting and finishes open requests),
    /// then stops every connector and writes the tickets still buffered. Jobs in flight
    /// stay `pending` in the database and are sent again after the next start.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        tracing::info!("shutting down: stopping connectors, flushing tickets");
        if let Some(nats) = &self.nats {
            let _ = nats.send(Halt).await;
        }
        if let Some((reconciler, signals)) = &self.cluster {
            let _ = reconciler.send(Halt).await;
            let _ = signals.send(Halt).await;
        }
        let _ = self.state.registry.send(StopAll).await;
        let _ = self.tickets.send(FlushTickets).await;
        let _ = self.heartbeat.send(Leave).await;
        // Close the pool while the runtime still runs: queries in flight finish and hand
        // their connections back here, instead of being dropped after the runtime is gone
        // (sqlx panics when a pooled connection is dropped outside a runtime).
        if tokio::time::timeout(Duration::from_secs(5), self.state.db.clone().close()).await.is_err() {
            tracing::warn!("database connections still busy after 5 s; closing anyway");
        }
        result
    }
}
