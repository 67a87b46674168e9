//! Cluster membership: this process's row in `instances`, its heartbeat (every third of
//! `cluster.lease_secs`, at most 2 s apart; times from the database's clock) and what it holds, so that
//! `GET /cluster` on any instance lists them all.

use std::time::Duration;

use actix::prelude::*;
use serde_json::json;

use super::registry::Registry;
use crate::storage::{self, Db};

pub struct Heartbeat {
    db: Db,
    /// This process's id in `instances` (a UUIDv7, new at each start).
    pub id: String,
    address: String,
    registry: Addr<Registry>,
    every: Duration,
    /// A beat is being written; the next tick skips rather than piling up.
    beating: bool,
    /// A beat was asked for while one ran (see [`BeatNow`]).
    again: bool,
    lease: Duration,
    /// File differences already warned of: (connector, other instance, theirs, ours).
    warned: std::collections::HashSet<(String, String, String, String)>,
    /// The other instances alive at the last beat.
    alive: std::collections::BTreeSet<String>,
    /// This instance's share of the record keys, from the instances alive (see
    /// `storage::Share`): the lanes read it at each claim.
    share: std::sync::Arc<storage::CurrentShare>,
}

impl Heartbeat {
    pub fn new(db: Db, id: String, address: String, registry: Addr<Registry>, lease: Duration, share: std::sync::Arc<storage::CurrentShare>) -> Self {
        Self { db, id, address, registry, every: beat_interval(lease), beating: false, again: false, lease, warned: Default::default(), alive: Default::default(), share }
    }

    fn beat(&mut self, ctx: &mut Context<Self>) {
        if self.beating {
            // Asked while a beat runs (an instance joined): one more after it, which sees it.
            self.again = true;
            return;
        }
        self.beating = true;
        let (db, id, address, registry, lease) = (self.db.clone(), self.id.clone(), self.address.clone(), self.registry.clone(), self.lease);
        ctx.spawn(
            async move {
                let holds = holdings(&db, &id, &registry).await;
                storage::beat(&db, &id, &address, env!("CARGO_PKG_VERSION"), &holds).await?;
                let others: Vec<storage::Instance> = storage::list_instances(&db, storage::lease_ttl(lease)).await?.into_iter().filter(|i| i.id != id).collect();
                let alive = others.iter().filter(|i| i.alive).map(|i| i.id.clone()).collect();
                Ok::<_, storage::StorageError>((file_mismatches(&holds, &others), alive))
            }
            .into_actor(self)
            .map(|res, act, ctx| {
                act.beating = false;
                if std::mem::take(&mut act.again) {
                    act.beat(ctx);
                }
                match res {
                    Ok((mismatches, alive)) => {
                        // Instances gone since the last beat (died, or stopped): their retry
                        // timers went with them, so every retry timer here reads the database
                        // again, for the retries they had scheduled.
                        let gone: Vec<&String> = act.alive.difference(&alive).collect();
                        if !gone.is_empty() {
                            tracing::info!(instances = ?gone, "instances gone; looking for the retries they had scheduled");
                            act.registry.do_send(super::registry::RescanRetries);
                        }
                        act.alive = alive;
                        act.share.set(share_of(&act.id, &act.alive));
                        // Said once per difference (a reload made it; the files are being
                        // changed instance by instance, or one was forgotten).
                        for m in mismatches {
                            if act.warned.insert((m.connector.clone(), m.instance.clone(), m.theirs.clone(), m.ours.clone())) {
                                tracing::warn!(mismatch = %m, "connector files differ between instances");
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot write this instance's heartbeat; will try again"),
                }
            }),
        );
    }
}

/// Beat now (an instance joined or left: see [`Signal::Instances`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct BeatNow;

impl Handler<BeatNow> for Heartbeat {
    type Result = ();
    fn handle(&mut self, _: BeatNow, ctx: &mut Context<Self>) {
        self.beat(ctx);
    }
}

/// This instance's share of the record keys among the instances alive: how many, and its
/// place in their ids' order. Every instance computes the same from the same heartbeats; a beat
/// apart they may disagree for a moment, which costs only some overlap (see `storage::claim`).
fn share_of(id: &str, others: &std::collections::BTreeSet<String>) -> storage::Share {
    let of = u32::try_from(others.len() + 1).unwrap_or(u32::MAX);
    let index = u32::try_from(others.iter().filter(|o| o.as_str() < id).count()).unwrap_or(0);
    storage::Share { of, index }
}

/// How often an instance beats: a third of the lease, and at least every 2 s so the cluster
/// view stays current with a long lease.
fn beat_interval(lease: Duration) -> Duration {
    (lease / 3).clamp(Duration::from_millis(200), Duration::from_secs(2))
}

/// What this instance holds, for the cluster view: the connectors it runs and those it pulls
/// (whose pull lease it holds).
async fn holdings(db: &Db, id: &str, registry: &Addr<Registry>) -> serde_json::Value {
    let connectors = registry.send(super::registry::ConnectorIds).await.unwrap_or_default();
    let files: std::collections::BTreeMap<String, String> = registry.send(super::registry::FileVersions).await.unwrap_or_default().into_iter().collect();
    let leases = storage::leases_held(db, id).await.unwrap_or_default();
    let pullers: Vec<&str> = leases.iter().filter_map(|l| l.strip_prefix(PULL_LEASE)).collect();
    json!({ "connectors": connectors.len(), "pullers": pullers, "files": files })
}

/// A short hash of a connector file's document: equal on two instances when they run the same
/// file.
pub fn file_version(source: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(source.as_bytes())[..6])
}

/// A connector file of this instance that differs from the one a live instance runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMismatch {
    pub connector: String,
    pub instance: String,
    pub address: String,
    pub theirs: String,
    pub ours: String,
}

impl std::fmt::Display for FileMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connector `{}`: this instance's file (version {}) differs from the one instance {} at {} runs (version {}); every instance must run the same connector files",
            self.connector, self.ours, self.instance, self.address, self.theirs
        )
    }
}

/// The connector files of `ours` that differ from those the live instances run.
fn file_mismatches(ours: &serde_json::Value, others: &[storage::Instance]) -> Vec<FileMismatch> {
    let Some(ours) = ours.get("files").and_then(serde_json::Value::as_object) else { return Vec::new() };
    let mut found = Vec::new();
    for other in others.iter().filter(|i| i.alive) {
        let Some(theirs) = other.holds.get("files").and_then(serde_json::Value::as_object) else { continue };
        for (id, hash) in ours {
            if let Some(t) = theirs.get(id).filter(|t| *t != hash) {
                found.push(FileMismatch {
                    connector: id.clone(),
                    instance: other.id.clone(),
                    address: other.address.clone(),
                    theirs: t.as_str().unwrap_or_default().to_string(),
                    ours: hash.as_str().unwrap_or_default().to_string(),
                });
            }
        }
    }
    found
}

/// Why an instance could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Files(Vec<FileMismatch>),
}

/// The lease a connector's Puller holds while it pulls: `pull:ID`.
pub const PULL_LEASE: &str = "pull:";

impl Actor for Heartbeat {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.every, |act, ctx| act.beat(ctx));
    }
}

/// This instance stops cleanly: its row goes (answered once it is gone).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave;

impl Handler<Leave> for Heartbeat {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Leave, _: &mut Context<Self>) -> Self::Result {
        let (db, id) = (self.db.clone(), self.id.clone());
        Box::pin(
            async move {
                if let Err(e) = storage::release_leases(&db, &id).await {
                    tracing::warn!(error = %e, "cannot give this instance's leases back; they run out by themselves");
                }
                if let Err(e) = storage::remove_instance(&db, &id).await {
                    tracing::warn!(error = %e, "cannot remove this instance from `instances`; it will show as not alive");
                } else if let Err(e) = storage::notify(&db, &Signal::Instances.to_string()).await {
                    tracing::debug!(error = %e, "cannot tell the other instances that this one left; they see it at their next heartbeat");
                }
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}

/// Before any connector starts: refused when one of this instance's connector files
/// (`files`: id → [`file_version`]) differs from the one a live instance runs for the same
/// id (which version delivered a shared job would depend on the instance that claimed it).
pub async fn check_files(db: &Db, files: &std::collections::BTreeMap<String, String>, lease: Duration) -> Result<(), JoinError> {
    let others = storage::list_instances(db, storage::lease_ttl(lease)).await?;
    let mismatches = file_mismatches(&json!({ "files": files }), &others);
    if mismatches.is_empty() { Ok(()) } else { Err(JoinError::Files(mismatches)) }
}

/// Registers this instance before anything serves (a row with a first heartbeat); the other
/// live instances it joins are named in the log.
pub async fn join(db: &Db, id: &str, address: &str, registry: &Addr<Registry>, lease: Duration) -> Result<(), JoinError> {
    for other in storage::list_instances(db, storage::lease_ttl(lease)).await?.into_iter().filter(|i| i.alive && i.id != id) {
        tracing::info!(instance = %other.id, address = %other.address, "joining another instance on this database; the jobs are shared");
    }
    let holds = holdings(db, id, registry).await;
    storage::register_instance(db, id, address, env!("CARGO_PKG_VERSION"), &holds).await?;
    // The others draw the shares of the keys again now, not at their next beat.
    if let Err(e) = storage::notify(db, &Signal::Instances.to_string()).await {
        tracing::warn!(error = %e, "cannot tell the other instances that this one joined; they see it at their next heartbeat");
    }
    Ok(())
}

/// How often an instance of a cluster applies what the database says (the control plane):
/// a change made through any instance takes effect on the others within this.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(1);

/// Applies the control plane's state from the database on this instance, every
/// [`RECONCILE_EVERY`]: connectors registered, replaced or deleted over the API, pause flags
/// and the governance toggle, whichever instance they were changed through. Started on
/// PostgreSQL only (on SQLite one process owns the database).
pub struct Reconciler {
    db: Db,
    registry: Addr<Registry>,
    governance: Addr<super::Governance>,
    running: bool,
}

impl Reconciler {
    pub fn new(db: Db, registry: Addr<Registry>, governance: Addr<super::Governance>) -> Self {
        Self { db, registry, governance, running: false }
    }

    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            return;
        }
        self.running = true;
        let (db, registry, governance) = (self.db.clone(), self.registry.clone(), self.governance.clone());
        let read = async move {
            let read_at = std::time::Instant::now();
            let enabled = super::governance::load_enabled(&db).await?;
            let api = storage::list_connectors(&db).await?;
            let paused = storage::settings_with_prefix(&db, "connector.")
                .await?
                .into_iter()
                .filter_map(|(key, value)| Some((key.strip_prefix("connector.")?.strip_suffix(".paused")?.to_string(), value.as_bool()?)))
                .collect();
            governance.do_send(super::governance::Adopt { enabled, read_at });
            registry.do_send(super::registry::Reconcile { api, paused, read_at });
            Ok::<(), storage::StorageError>(())
        };
        ctx.spawn(read.into_actor(self).map(|res, act, _| {
            act.running = false;
            if let Err(e) = res {
                tracing::warn!(error = %e, "cannot read the control plane's state; will try again");
            }
        }));
    }
}

impl Actor for Reconciler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(RECONCILE_EVERY, |act, ctx| act.reconcile(ctx));
    }
}

/// Apply the database's control-plane state now (another instance changed it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReconcileNow;

impl Handler<ReconcileNow> for Reconciler {
    type Result = ();
    fn handle(&mut self, _: ReconcileNow, ctx: &mut Context<Self>) {
        self.reconcile(ctx);
    }
}

// The channel the database's triggers notify on (see the `job_leases` migration): `jobs
// C1,C2,…` (or `jobs *`) when jobs are stored, `control` when connectors or settings change.
use storage::CHANNEL;

/// How often the leases of jobs in flight are looked at for ones that ran out (an instance
/// died or stalled with jobs claimed): their connectors' lanes are woken to claim them.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What another instance did, as this one hears it from the database (PostgreSQL only): it
/// LISTENs on [`CHANNEL`], so a job stored through any instance wakes the lanes here at once
/// and a change of the control plane is applied at once (the Reconciler's 1 s round heals a
/// notification missed all the same); and it sweeps for job leases that ran out.
pub struct Signals {
    db: Db,
    /// This instance's id: the `restart` and `sync` it sent itself are not acted on twice.
    instance: String,
    registry: Addr<Registry>,
    reconciler: Addr<Reconciler>,
    heartbeat: Addr<Heartbeat>,
    sweeping: bool,
}

impl Signals {
    pub fn new(db: Db, instance: String, registry: Addr<Registry>, reconciler: Addr<Reconciler>, heartbeat: Addr<Heartbeat>) -> Self {
        Self { db, instance, registry, reconciler, heartbeat, sweeping: false }
    }

    /// Every second: the jobs whose lease ran out; their lanes are woken to claim them.
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if self.sweeping {
            return;
        }
        self.sweeping = true;
        let db = self.db.clone();
        ctx.spawn(async move { storage::lapsed_lease_connectors(&db).await }.into_actor(self).map(|res, act, _| {
            act.sweeping = false;
            match res {
                Ok(ids) if !ids.is_empty() => {
                    tracing::info!(connectors = ?ids, "jobs whose claim's lease ran out (an instance died or stalled); claiming them here");
                    act.registry.do_send(super::registry::WakeConnectors(ids));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot look for lapsed job leases"),
            }
        }));
    }
}

/// What one notification on [`CHANNEL`] asks of the instances. `jobs` and `control` come
/// from the database's triggers; `restart` and `sync` from the instance an operator asked
/// (which does its part itself: the others act on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Jobs of these connectors were stored (`None`: of any).
    Jobs(Option<Vec<String>>),
    /// Connectors, pause flags or governance changed.
    Control,
    /// Restart the connector.
    Restart { from: String, connector: String },
    /// Pull the connector now (its pull's lease holder does).
    Sync { from: String, connector: String },
    /// An instance joined or left: the shares of the keys are drawn again.
    Instances,
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signal::Jobs(None) => write!(f, "jobs *"),
            Signal::Jobs(Some(ids)) => write!(f, "jobs {}", ids.join(",")),
            Signal::Control => write!(f, "control"),
            Signal::Restart { from, connector } => write!(f, "restart {from} {connector}"),
            Signal::Sync { from, connector } => write!(f, "sync {from} {connector}"),
            Signal::Instances => write!(f, "instances"),
        }
    }
}

fn parse_signal(payload: &str) -> Option<Signal> {
    let two = |rest: &str| rest.split_once(' ').map(|(from, connector)| (from.to_string(), connector.to_string()));
    match payload.split_once(' ') {
        Some(("jobs", "*")) => Some(Signal::Jobs(None)),
        Some(("jobs", ids)) => Some(Signal::Jobs(Some(ids.split(',').filter(|i| !i.is_empty()).map(str::to_string).collect()))),
        Some(("restart", rest)) => two(rest).map(|(from, connector)| Signal::Restart { from, connector }),
        Some(("sync", rest)) => two(rest).map(|(from, connector)| Signal::Sync { from, connector }),
        None if payload == "control" => Some(Signal::Control),
        None if payload == "instances" => Some(Signal::Instances),
        _ => None,
    }
}

/// The listening connection. sqlx's listener hands its connection back on a task it spawns
/// when dropped, which panics when no runtime is left (a process unwinding from a panic, a
/// test that failed): then it is let go instead, as the process is ending anyway.
struct Listening(Option<sea_orm::sqlx::postgres::PgListener>);

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(l) = self.0.take()
            && tokio::runtime::Handle::try_current().is_err()
        {
            std::mem::forget(l);
        }
    }
}

/// LISTENs on [`CHANNEL`] for as long as the actor lives, reconnecting with back-off. Each
/// time it (re)starts listening it wakes every lane and reconciles, since what was notified
/// meanwhile is lost.
async fn listen(db: Db, instance: String, registry: Addr<Registry>, reconciler: Addr<Reconciler>, heartbeat: Addr<Heartbeat>) {
    use sea_orm::sqlx::postgres::PgListener;
    const MAX_BACKOFF: Duration = Duration::from_secs(10);
    let mut backoff = Duration::from_millis(200);
    loop {
        let listening = async {
            let mut l = PgListener::connect_with(db.get_postgres_connection_pool()).await?;
            l.listen(CHANNEL).await?;
            Ok::<_, sea_orm::sqlx::Error>(l)
        };
        let mut listener = match listening.await {
            Ok(l) => Listening(Some(l)),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot listen for other instances' changes; lanes and the control plane fall back to polling meanwhile");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        registry.do_send(super::registry::WakeAll);
        reconciler.do_send(ReconcileNow);
        loop {
            let Some(l) = listener.0.as_mut() else { break };
            match l.try_recv().await {
                Ok(Some(n)) => match parse_signal(n.payload()) {
                    Some(Signal::Jobs(Some(ids))) => registry.do_send(super::registry::WakeConnectors(ids)),
                    Some(Signal::Jobs(None)) => registry.do_send(super::registry::WakeAll),
                    Some(Signal::Control) => reconciler.do_send(ReconcileNow),
                    Some(Signal::Instances) => heartbeat.do_send(BeatNow),
                    Some(Signal::Restart { from, connector }) if from != instance => registry.do_send(super::registry::ForConnector::Restart(connector)),
                    Some(Signal::Sync { from, connector }) if from != instance => registry.do_send(super::registry::ForConnector::Sync(connector)),
                    Some(Signal::Restart { .. } | Signal::Sync { .. }) => {}
                    None => tracing::debug!(payload = n.payload(), "an unknown notification; ignored"),
                },
                // The connection was lost and made again: notifications may have been missed.
                Ok(None) => {
                    registry.do_send(super::registry::WakeAll);
                    reconciler.do_send(ReconcileNow);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the connection that listens for other instances' changes; listening again");
                    break;
                }
            }
        }
    }
}

impl Actor for Signals {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.spawn(listen(self.db.clone(), self.instance.clone(), self.registry.clone(), self.reconciler.clone(), self.heartbeat.clone()).into_actor(self));
        ctx.run_interval(SWEEP_EVERY, |act, ctx| act.sweep(ctx));
    }
}

#[cfg(test)]
mod tests {
    use super::{Signal, parse_signal, share_of};

    #[test]
    fn each_instance_has_its_own_share() {
        let ids = ["0192-a", "0192-b", "0192-c"];
        let shares: Vec<(u32, u32)> = ids.iter().map(|me| share_of(me, &ids.iter().filter(|o| *o != me).map(|o| o.to_string()).collect())).map(|s| (s.of, s.index)).collect();
        assert_eq!(shares, [(3, 0), (3, 1), (3, 2)], "the same count, a place each");
        assert_eq!(share_of("alone", &Default::default()), crate::storage::Share { of: 1, index: 0 }, "alone: every key");
        let current = crate::storage::CurrentShare::default();
        assert_eq!(current.get(), crate::storage::Share::ALL);
        current.set(crate::storage::Share { of: 3, index: 2 });
        assert_eq!(current.get(), crate::storage::Share { of: 3, index: 2 }, "kept whole in one word");
    }

    #[test]
    fn notifications_are_read() {
        assert_eq!(parse_signal("jobs a,b"), Some(Signal::Jobs(Some(vec!["a".into(), "b".into()]))));
        assert_eq!(parse_signal("jobs *"), Some(Signal::Jobs(None)));
        assert_eq!(parse_signal(&Signal::Instances.to_string()), Some(Signal::Instances));
        assert_eq!(parse_signal("control"), Some(Signal::Control));
        assert_eq!(parse_signal("restart x"), None);
        for s in [Signal::Jobs(Some(vec!["a".into()])), Signal::Control, Signal::Restart { from: "i1".into(), connector: "c".into() }, Signal::Sync { from: "i2".into(), connector: "c".into() }] {
            assert_eq!(parse_signal(&s.to_string()), Some(s.clone()), "{s}");
        }
        assert_eq!(parse_signal(""), None);
    }
}

super::messages::halt_handler!(Reconciler);
super::messages::halt_handler!(Signals);
