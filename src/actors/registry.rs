//! Registry: knows every connector by id, topic and webhook path; registers, replaces and
//! removes them at run time; fans governance changes out to every supervisor.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use actix::prelude::*;
use serde::Serialize;
use serde_json::json;

use super::governance::GovernanceChanged;
use super::messages::{ChildKind, Fault};
use super::shared::{ConnectorShared, Counters, Runtime};
use super::status::ConnectorStatus;
use super::bus::RoutingTable;
use super::supervisor::{self, ConnectorSupervisor, GetStatus, InjectChildFault};
use crate::mapping::CompiledConnector;
use crate::spec::{ConnectorSpec, LoadedSpec};
use crate::storage::{self, StorageError};

pub mod reload;

/// Where a connector came from: files are owned by the file system, the API may not
/// replace or delete them (edit the file and reload instead, see [`reload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    File,
    Api,
}

struct Entry {
    shared: Arc<ConnectorShared>,
    origin: Origin,
    origin_path: String,
    /// The document as written (a reload compares it with the file's text now).
    source: String,
    addr: Addr<ConnectorSupervisor>,
    /// Paused by an operator, as this instance last applied it.
    paused: bool,
}

pub struct Registry {
    rt: Runtime,
    governance_enabled: bool,
    connectors: BTreeMap<String, Entry>,
    by_topic: HashMap<String, Vec<String>>,
    /// The same routing, shared with the event intake: publishers read it directly instead
    /// of asking this actor for every event (one thread hand-off less per event).
    routes: RoutingTable,
    /// When this instance last changed each connector through its API (registered,
    /// replaced, removed, paused or resumed; the time its write was committed). A reconcile
    /// whose read of the database began before that is older than the change, and leaves
    /// the connector alone: applying it would undo the change until the next round.
    local_changes: HashMap<String, std::time::Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("connector `{0}` already exists")]
    Exists(String),
    #[error("connector `{0}` does not exist")]
    NotFound(String),
    #[error("connector `{id}` comes from the file {path}; change the file instead (then reload: SIGHUP, `up --watch` or POST /reload)")]
    FileOwned { id: String, path: String },
    #[error("webhook path {path} is already used by connector `{other}`")]
    PathTaken { path: String, other: String },
    #[error("connector `{id}` cannot be compiled: {reason}")]
    Compile { id: String, reason: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn paused_key(id: &str) -> String {
    format!("connector.{id}.paused")
}


impl Registry {
    pub fn new(rt: Runtime, governance_enabled: bool, routes: RoutingTable) -> Self {
        Self { rt, governance_enabled, connectors: BTreeMap::new(), by_topic: HashMap::new(), routes, local_changes: HashMap::new() }
    }

    fn reindex(&mut self) {
        self.by_topic.clear();
        let mut table: HashMap<String, Vec<Arc<ConnectorShared>>> = HashMap::new();
        for (id, e) in &self.connectors {
            for topic in e.shared.spec.topics() {
                self.by_topic.entry(topic.clone()).or_default().push(id.clone());
                table.entry(topic).or_default().push(e.shared.clone());
            }
        }
        // A poisoned lock only means a reader panicked; the table itself is replaced whole.
        match self.routes.write() {
            Ok(mut t) => *t = table,
            Err(poisoned) => *poisoned.into_inner() = table,
        }
    }

    fn check_paths(&self, spec: &ConnectorSpec) -> Result<(), RegistryError> {
        for path in spec.webhook_paths() {
            if let Some((other, _)) =
                self.connectors.iter().find(|(id, e)| **id != spec.id && e.shared.spec.webhook_paths().contains(&path))
            {
                return Err(RegistryError::PathTaken { path, other: other.clone() });
            }
        }
        Ok(())
    }

    fn build_shared(spec: ConnectorSpec, counters: Arc<Counters>) -> Result<Arc<ConnectorShared>, RegistryError> {
        let spec = Arc::new(spec);
        let compiled = CompiledConnector::lazy(spec.clone())
            .map_err(|e| RegistryError::Compile { id: spec.id.clone(), reason: e.to_string() })?;
        let (spec_rate, spec_breaker, spec_auth) = (spec.rate_limit, spec.circuit_breaker, spec.auth.clone());
        let tls = spec.tls.as_deref().map(crate::delivery::tls::client_config).transpose().map_err(|reason| RegistryError::Compile { id: spec.id.clone(), reason })?;
        Ok(Arc::new(ConnectorShared {
            spec,
            compiled: Arc::new(compiled),
            paused: Arc::new(AtomicBool::new(false)),
            inbox: Default::default(),
            counters,
            limiter: Arc::new(crate::delivery::rate::RateLimiter::new(spec_rate)),
            breaker: Arc::new(crate::delivery::breaker::Breaker::new(spec_breaker)),
            auth: Arc::new(crate::delivery::auth::Authenticator::new(spec_auth.map(|a| *a))),
            tls,
            live: Default::default(),
        }))
    }

    /// Hot-replaces running connector `id` with `spec` written as `source`: the same
    /// supervisor, its queued work and its counters kept. (The caller reindexes.)
    fn replace(&mut self, id: &str, spec: ConnectorSpec, source: String) -> Result<(), RegistryError> {
        let entry = self.connectors.get_mut(id).ok_or_else(|| RegistryError::NotFound(id.to_string()))?;
        let shared = Self::build_shared(spec, entry.shared.counters.clone())?;
        entry.shared = shared.clone();
        entry.source = source;
        entry.addr.do_send(supervisor::Replace(shared));
        Ok(())
    }

    /// Stops connector `id` for good and forgets it; its queued jobs stay in the database.
    /// (The caller reindexes.)
    fn drop_connector(&mut self, id: &str) -> Option<Entry> {
        let entry = self.connectors.remove(id)?;
        entry.addr.do_send(supervisor::Shutdown);
        self.rt.metrics.forget_connector(id);
        Some(entry)
    }

    fn start(&mut self, loaded: LoadedSpec, origin: Origin, paused: bool) -> Result<(), RegistryError> {
        let shared = Self::build_shared(loaded.spec, Arc::new(Counters::default()))?;
        let id = shared.id().to_string();
        let addr = ConnectorSupervisor::new(self.rt.clone(), shared.clone(), paused, self.governance_enabled).start();
        self.rt.metrics.register_connector(&id);
        // Said at once, not at the first event that needs it (which parks).
        for name in self.rt.egress.missing(&shared.spec) {
            tracing::warn!(connector = %id, secret = %name, "the environment variable ${{{name}}} is not set: requests that need it fail (their jobs park) and webhooks verified with it are refused, until the service runs with it set");
        }
        self.connectors.insert(id, Entry { shared, origin, origin_path: loaded.origin, source: loaded.source, addr, paused });
        self.reindex();
        Ok(())
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

/// One connector as listed by the API.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorInfo {
    pub id: String,
    pub origin: Origin,
    pub source: String,
    pub config: serde_json::Value,
}

/// Register connectors loaded at start-up (files and the database), each with its persisted
/// pause flag.
#[derive(Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct Boot(pub Vec<(LoadedSpec, Origin, bool)>);

impl Handler<Boot> for Registry {
    type Result = Result<(), RegistryError>;
    fn handle(&mut self, msg: Boot, _: &mut Context<Self>) -> Self::Result {
        for (loaded, origin, paused) in msg.0 {
            self.check_paths(&loaded.spec)?;
            self.start(loaded, origin, paused)?;
        }
        Ok(())
    }
}

/// Register (or, with `replace`, hot-reload) a connector from the API. The spec is stored
/// before the connector runs, so it survives a restart of the service.
#[derive(Message)]
#[rtype(result = "Result<bool, RegistryError>")]
pub struct Register {
    pub loaded: LoadedSpec,
    pub replace: bool,
}

impl Handler<Register> for Registry {
    type Result = ResponseActFuture<Self, Result<bool, RegistryError>>;
    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        let id = msg.loaded.spec.id.clone();
        let pre = match self.connectors.get(&id) {
            Some(e) if e.origin == Origin::File => Err(RegistryError::FileOwned { id: id.clone(), path: e.origin_path.clone() }),
            Some(_) if !msg.replace => Err(RegistryError::Exists(id.clone())),
            _ => self.check_paths(&msg.loaded.spec),
        };
        let db = self.rt.db.clone();
        let source = msg.loaded.source.clone();
        let store_id = id.clone();
        Box::pin(
            async move {
                pre?;
                storage::save_connector(&db, &store_id, &source).await?;
                Ok(())
            }
            .into_actor(self)
            .map(move |res: Result<(), RegistryError>, act, _| {
                res?;
                act.local_changes.insert(id.clone(), std::time::Instant::now());
                if act.connectors.contains_key(&id) {
                    act.replace(&id, msg.loaded.spec, msg.loaded.source)?;
                    act.reindex();
                    tracing::info!(connector = %id, "connector replaced");
                    Ok(false)
                } else {
                    act.start(msg.loaded, Origin::Api, false)?;
                    tracing::info!(connector = %id, "connector registered");
                    Ok(true)
                }
            }),
        )
    }
}

/// Remove a connector registered over the API. Its queued jobs stay in the database.
#[derive(Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct Remove(pub String);

impl Handler<Remove> for Registry {
    type Result = ResponseActFuture<Self, Result<(), RegistryError>>;
    fn handle(&mut self, msg: Remove, _: &mut Context<Self>) -> Self::Result {
        let pre = match self.connectors.get(&msg.0) {
            None => Err(RegistryError::NotFound(msg.0.clone())),
            Some(e) if e.origin == Origin::File => Err(RegistryError::FileOwned { id: msg.0.clone(), path: e.origin_path.clone() }),
            Some(_) => Ok(()),
        };
        let db = self.rt.db.clone();
        let id = msg.0.clone();
        Box::pin(
            async move {
                pre?;
                storage::delete_connector(&db, &id).await?;
                // A connector registered again under this id starts unpaused.
                storage::put_setting(&db, &paused_key(&id), &json!(false)).await?;
                Ok(())
            }
            .into_actor(self)
            .map(move |res: Result<(), RegistryError>, act, _| {
                res?;
                act.local_changes.insert(msg.0.clone(), std::time::Instant::now());
                act.drop_connector(&msg.0);
                act.reindex();
                tracing::info!(connector = %msg.0, "connector removed");
                Ok(())
            }),
        )
    }
}

#[derive(Message)]
#[rtype(result = "Vec<ConnectorInfo>")]
pub struct List;

impl Handler<List> for Registry {
    type Result = Vec<ConnectorInfo>;
    fn handle(&mut self, _: List, _: &mut Context<Self>) -> Self::Result {
        self.connectors
            .iter()
            .map(|(id, e)| ConnectorInfo {
                id: id.clone(),
                origin: e.origin,
                source: e.origin_path.clone(),
                config: serde_json::to_value(&*e.shared.spec).unwrap_or_else(|_| json!(null)),
            })
            .collect()
    }
}

/// The file connector `id` comes from, if it is a file connector.
#[derive(Message)]
#[rtype(result = "Option<String>")]
pub struct FileOf(pub String);

impl Handler<FileOf> for Registry {
    type Result = Option<String>;
    fn handle(&mut self, msg: FileOf, _: &mut Context<Self>) -> Self::Result {
        self.connectors.get(&msg.0).filter(|e| e.origin == Origin::File).map(|e| e.origin_path.clone())
    }
}

/// The connectors this instance runs from files, each with a short hash of its document
/// (so the instances of a cluster can tell they run the same files).
#[derive(Message)]
#[rtype(result = "Vec<(String, String)>")]
pub struct FileVersions;

impl Handler<FileVersions> for Registry {
    type Result = Vec<(String, String)>;
    fn handle(&mut self, _: FileVersions, _: &mut Context<Self>) -> Self::Result {
        self.connectors.iter().filter(|(_, e)| e.origin == Origin::File).map(|(id, e)| (id.clone(), super::cluster::file_version(&e.source))).collect()
    }
}

/// The supervisor address of one connector.
#[derive(Message)]
#[rtype(result = "Option<Addr<ConnectorSupervisor>>")]
pub struct Lookup(pub String);

impl Handler<Lookup> for Registry {
    type Result = Option<Addr<ConnectorSupervisor>>;
    fn handle(&mut self, msg: Lookup, _: &mut Context<Self>) -> Self::Result {
        self.connectors.get(&msg.0).map(|e| e.addr.clone())
    }
}

/// One connector's spec and compiled mapping (for dry runs).
#[derive(Message)]
#[rtype(result = "Option<Arc<ConnectorShared>>")]
pub struct GetShared(pub String);

impl Handler<GetShared> for Registry {
    type Result = Option<Arc<ConnectorShared>>;
    fn handle(&mut self, msg: GetShared, _: &mut Context<Self>) -> Self::Result {
        self.connectors.get(&msg.0).map(|e| e.shared.clone())
    }
}

/// The connector (and which side) receiving webhooks at a path.
#[derive(Message)]
#[rtype(result = "Option<(Arc<ConnectorShared>, crate::spec::model::Side)>")]
pub struct WebhookTarget(pub String);

impl Handler<WebhookTarget> for Registry {
    type Result = Option<(Arc<ConnectorShared>, crate::spec::model::Side)>;
    fn handle(&mut self, msg: WebhookTarget, _: &mut Context<Self>) -> Self::Result {
        self.connectors.values().find_map(|e| {
            e.shared.spec.webhooks().into_iter().find(|(_, w)| w.path == msg.0).map(|(side, _)| (e.shared.clone(), side))
        })
    }
}

/// The ids of every connector.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct ConnectorIds;

impl Handler<ConnectorIds> for Registry {
    type Result = Vec<String>;
    fn handle(&mut self, _: ConnectorIds, _: &mut Context<Self>) -> Self::Result {
        self.connectors.keys().cloned().collect()
    }
}

/// The ids of connectors that pull (for the pull-lag gauge).
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct Pullers;

impl Handler<Pullers> for Registry {
    type Result = Vec<String>;
    fn handle(&mut self, _: Pullers, _: &mut Context<Self>) -> Self::Result {
        self.connectors.iter().filter(|(_, e)| e.shared.spec.pulls()).map(|(id, _)| id.clone()).collect()
    }
}

/// Wake the pushers of these connectors (jobs were just stored for them).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WakeConnectors(pub Vec<String>);

impl Handler<WakeConnectors> for Registry {
    type Result = ();
    fn handle(&mut self, msg: WakeConnectors, _: &mut Context<Self>) {
        for id in msg.0 {
            if let Some(e) = self.connectors.get(&id) {
                e.shared.jobs_stored(None);
            }
        }
    }
}

/// Another instance asked for something of one connector (see `cluster::Signal`).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum ForConnector {
    Restart(String),
    /// Pull now; only the holder of the pull's lease does (the others' try finds it held).
    Sync(String),
}

impl Handler<ForConnector> for Registry {
    type Result = ();
    fn handle(&mut self, msg: ForConnector, ctx: &mut Context<Self>) {
        let id = match &msg {
            ForConnector::Restart(id) | ForConnector::Sync(id) => id,
        };
        let Some(e) = self.connectors.get(id) else { return };
        let addr = e.addr.clone();
        match msg {
            ForConnector::Restart(_) => addr.do_send(super::supervisor::Restart),
            ForConnector::Sync(id) => {
                ctx.spawn(async move { addr.send(super::supervisor::SyncNow).await }.into_actor(self).map(move |res, _, _| match res {
                    Ok(Ok(report)) => tracing::info!(connector = %id, records = report.records, stored = report.stored, "pulled at another instance's request"),
                    Ok(Err(super::puller::NotPulled::Elsewhere(_))) => {}
                    Ok(Err(e)) => tracing::warn!(connector = %id, error = %e, "the pull another instance asked for failed"),
                    Err(_) => {}
                }));
            }
        }
    }
}

/// An instance of the cluster is gone (died or stopped): every connector's retry timer reads
/// the database again, for the retries that instance had scheduled (its timers went with it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RescanRetries;

impl Handler<RescanRetries> for Registry {
    type Result = ();
    fn handle(&mut self, _: RescanRetries, _: &mut Context<Self>) {
        for e in self.connectors.values() {
            e.shared.rescan_retries();
        }
    }
}

/// Wake every connector's lane: what changed in the queue is not known (another instance's
/// notifications may have been missed while the listening connection was down).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WakeAll;

impl Handler<WakeAll> for Registry {
    type Result = ();
    fn handle(&mut self, _: WakeAll, _: &mut Context<Self>) {
        for e in self.connectors.values() {
            e.shared.jobs_stored(None);
        }
    }
}

/// Every connector's status (for `GET /connectors?expand=status` and `hms-sync status`).
#[derive(Message)]
#[rtype(result = "Vec<ConnectorStatus>")]
pub struct AllStatus;

impl Handler<AllStatus> for Registry {
    type Result = ResponseFuture<Vec<ConnectorStatus>>;
    fn handle(&mut self, _: AllStatus, _: &mut Context<Self>) -> Self::Result {
        let addrs: Vec<_> = self.connectors.values().map(|e| e.addr.clone()).collect();
        Box::pin(async move {
            let mut out = Vec::with_capacity(addrs.len());
            for a in addrs {
                if let Ok(s) = a.send(GetStatus).await {
                    out.push(s);
                }
            }
            out
        })
    }
}

/// Every connector's status without what needs the database (queue depth, alerts, pull
/// holder, leases: left empty), asked of every supervisor at once: the console's overview of
/// a thousand connectors costs a thousand mailbox round trips, not four thousand queries.
#[derive(Message)]
#[rtype(result = "Vec<ConnectorStatus>")]
pub struct AllSummaries;

impl Handler<AllSummaries> for Registry {
    type Result = ResponseFuture<Vec<ConnectorStatus>>;
    fn handle(&mut self, _: AllSummaries, _: &mut Context<Self>) -> Self::Result {
        let asks: Vec<_> = self.connectors.values().map(|e| e.addr.send(super::supervisor::GetSummary)).collect();
        Box::pin(async move { futures_util::future::join_all(asks).await.into_iter().filter_map(Result::ok).collect() })
    }
}

/// A connector's document as written, and where it comes from (a file's path, or the
/// database's `<database:ID>` / `<api>`).
#[derive(Message)]
#[rtype(result = "Option<(String, String)>")]
pub struct SourceOf(pub String);

impl Handler<SourceOf> for Registry {
    type Result = Option<(String, String)>;
    fn handle(&mut self, msg: SourceOf, _: &mut Context<Self>) -> Self::Result {
        self.connectors.get(&msg.0).map(|e| (e.source.clone(), e.origin_path.clone()))
    }
}

/// Pause or resume one connector; persisted so it survives a restart of the service.
#[derive(Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct PauseConnector {
    pub id: String,
    pub paused: bool,
}

impl Handler<PauseConnector> for Registry {
    type Result = ResponseActFuture<Self, Result<(), RegistryError>>;
    fn handle(&mut self, msg: PauseConnector, _: &mut Context<Self>) -> Self::Result {
        let addr = self.connectors.get(&msg.id).map(|e| e.addr.clone());
        let db = self.rt.db.clone();
        let id = msg.id.clone();
        Box::pin(
            async move {
                let addr = addr.ok_or_else(|| RegistryError::NotFound(msg.id.clone()))?;
                storage::put_setting(&db, &paused_key(&msg.id), &json!(msg.paused)).await?;
                addr.do_send(supervisor::SetPaused(msg.paused));
                Ok(msg.paused)
            }
            .into_actor(self)
            .map(move |res: Result<bool, RegistryError>, act, _| {
                let paused = res?;
                act.local_changes.insert(id.clone(), std::time::Instant::now());
                if let Some(e) = act.connectors.get_mut(&id) {
                    e.paused = paused;
                }
                Ok(())
            }),
        )
    }
}

/// What the database says the connectors should be, read by every instance of a cluster (see
/// `cluster::Reconciler`): the connectors registered over the API, and the pause flags.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconcile {
    pub api: Vec<storage::StoredConnector>,
    pub paused: HashMap<String, bool>,
    /// When the read of the database began: a connector changed here since is left alone.
    pub read_at: std::time::Instant,
}

impl Handler<Reconcile> for Registry {
    type Result = ();
    fn handle(&mut self, mut msg: Reconcile, _: &mut Context<Self>) {
        // What this instance changed after the read began is newer than the read.
        let newer: Vec<String> = self.local_changes.iter().filter(|(_, t)| **t >= msg.read_at).map(|(id, _)| id.clone()).collect();
        self.local_changes.retain(|_, t| *t >= msg.read_at);
        msg.api.retain(|c| !newer.contains(&c.id));
        // Pause flags set through another instance.
        for (id, e) in self.connectors.iter_mut().filter(|(id, _)| !newer.contains(id)) {
            let want = msg.paused.get(id).copied().unwrap_or(false);
            if e.paused != want {
                tracing::info!(connector = %id, paused = want, "pause flag changed by another instance");
                e.paused = want;
                e.addr.do_send(supervisor::SetPaused(want));
            }
        }
        // Connectors registered, replaced or deleted over the API of another instance.
        let stored: HashMap<&str, &str> = msg.api.iter().map(|c| (c.id.as_str(), c.source.as_str())).collect();
        let gone: Vec<String> = self
            .connectors
            .iter()
            .filter(|(id, e)| e.origin == Origin::Api && !stored.contains_key(id.as_str()) && !newer.contains(id))
            .map(|(id, _)| id.clone())
            .collect();
        let mut changed = !gone.is_empty();
        for id in gone {
            if self.drop_connector(&id).is_some() {
                tracing::info!(connector = %id, "connector removed through another instance");
            }
        }
        for (id, source) in stored {
            let known = self.connectors.get(id).map(|e| (e.origin, e.source == source));
            if matches!(known, Some((Origin::File, _)) | Some((Origin::Api, true))) {
                continue;
            }
            let origin = format!("<database:{id}>");
            let spec = match crate::spec::parse(&origin, source) {
                Ok(spec) => spec,
                Err(e) => {
                    tracing::warn!(connector = %id, error = %e, "a connector stored by another instance does not load here; left as it was");
                    continue;
                }
            };
            let loaded = LoadedSpec { spec, source: source.to_string(), origin };
            let paused = msg.paused.get(id).copied().unwrap_or(false);
            let result = self.check_paths(&loaded.spec).and_then(|()| {
                if self.connectors.contains_key(id) {
                    self.replace(id, loaded.spec, loaded.source).map(|()| "replaced")
                } else {
                    self.start(loaded, Origin::Api, paused).map(|()| "registered")
                }
            });
            match result {
                Ok(what) => {
                    changed = true;
                    tracing::info!(connector = %id, "connector {what} through another instance");
                }
                Err(e) => tracing::warn!(connector = %id, error = %e, "a connector stored by another instance cannot start here"),
            }
        }
        if changed {
            self.reindex();
        }
    }
}

/// Reads the persisted per-connector pause flag.
pub async fn load_paused(db: &storage::Db, id: &str) -> Result<bool, StorageError> {
    Ok(storage::get_setting(db, &paused_key(id)).await?.and_then(|v| v.as_bool()).unwrap_or(false))
}

/// Test hook, forwarded to the connector's supervisor.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct FaultConnector {
    pub id: String,
    pub child: ChildKind,
    pub fault: Fault,
}

impl Handler<FaultConnector> for Registry {
    type Result = ResponseFuture<Result<(), String>>;
    fn handle(&mut self, msg: FaultConnector, _: &mut Context<Self>) -> Self::Result {
        let addr = self.connectors.get(&msg.id).map(|e| e.addr.clone());
        Box::pin(async move {
            let addr = addr.ok_or_else(|| format!("connector `{}` does not exist", msg.id))?;
            addr.send(InjectChildFault { child: msg.child, fault: msg.fault }).await.map_err(|e| e.to_string())?
        })
    }
}

impl Handler<GovernanceChanged> for Registry {
    type Result = ();
    fn handle(&mut self, msg: GovernanceChanged, _: &mut Context<Self>) {
        self.governance_enabled = msg.enabled;
        for e in self.connectors.values() {
            e.addr.do_send(supervisor::SetGovernance(msg.enabled));
        }
    }
}

/// Stop every connector (service shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAll;

impl Handler<StopAll> for Registry {
    type Result = ();
    fn handle(&mut self, _: StopAll, _: &mut Context<Self>) {
        for e in self.connectors.values() {
            e.addr.do_send(supervisor::Shutdown);
        }
    }
}
