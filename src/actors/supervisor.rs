//! ConnectorSupervisor: one per connector. Owns the connector's stable address, starts its
//! children on the connector's home worker (a thread of the shared pool, or one of its own
//! with `runtime.dedicated_threads`), learns of their death through their guards and
//! restarts them one-for-one with restart intensity and back-off (OTP style).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use actix::prelude::*;
use chrono::Utc;

use super::child::ChildCtx;
use super::intensity::{RestartWindow, Verdict};
use super::messages::{ChildDied, ChildKind, Fault, InjectFault, StopChild, Wake};
use super::puller::Puller;
use super::lane::Lane;
use super::pool::Worker;
use super::retrier::Retrier;
use super::shared::{ConnectorShared, Runtime};
use super::status::{ChildState, ChildStatus, ConnectorState, ConnectorStatus, IntensityView, LastError};
use crate::storage;

/// A running child's address, by kind.
enum ChildAddr {
    Pusher(Addr<Lane>),
    Puller(Addr<Puller>),
    Retrier(Addr<Retrier>),
}

impl ChildAddr {
    fn stop(&self) {
        match self {
            ChildAddr::Pusher(a) => a.do_send(StopChild),
            ChildAddr::Puller(a) => a.do_send(StopChild),
            ChildAddr::Retrier(a) => a.do_send(StopChild),
        }
    }

    fn fault(&self, fault: Fault) {
        match self {
            ChildAddr::Pusher(a) => a.do_send(InjectFault(fault)),
            ChildAddr::Puller(a) => a.do_send(InjectFault(fault)),
            ChildAddr::Retrier(a) => a.do_send(InjectFault(fault)),
        }
    }
}

/// The thread a connector's children run on.
enum Home {
    Pool(Worker),
    Own(ArbiterHandle),
}

struct Slot {
    /// The generation of the child now expected alive; a death report of any other
    /// generation is stale (a child we replaced on purpose) and ignored.
    generation: u64,
    state: ChildState,
    restarts: u64,
    addr: Option<ChildAddr>,
}

/// Run first on every dedicated connector thread (`runtime.dedicated_threads`). The binary
/// sets it (main.rs): it makes the allocator keep no per-thread cache on these threads,
/// which are many and mostly idle.
pub static CONNECTOR_THREAD_STARTED: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// How many turns a connector's thread gets to let its children stop before it is stopped.
const STOP_YIELDS: usize = 8;

pub struct ConnectorSupervisor {
    rt: Runtime,
    shared: Arc<ConnectorShared>,
    /// The thread the children run on: a worker of the pool, or the connector's own thread.
    home: Option<Home>,
    /// Homes taken so far (shown in the status: a connector moved after its thread died).
    placements: u64,
    slots: BTreeMap<ChildKind, Slot>,
    next_generation: u64,
    /// Bumped by every stop-all; a restart scheduled before it is void.
    epoch: u64,
    window: RestartWindow,
    restarts: u64,
    /// The last crashes, newest first (at most [`HISTORY`]): what the console shows.
    history: std::collections::VecDeque<LastError>,
    /// Set when restart intensity was exceeded; cleared by an operator's restart.
    failed: Option<String>,
    last_error: Option<LastError>,
    /// When an operator last restarted the connector here (through this instance or another).
    restart_requested_at: Option<chrono::DateTime<Utc>>,
    local_paused: bool,
    governance_enabled: bool,
}

/// Crashes kept in a connector's restart history.
const HISTORY: usize = 20;

impl ConnectorSupervisor {
    pub fn new(rt: Runtime, shared: Arc<ConnectorShared>, local_paused: bool, governance_enabled: bool) -> Self {
        let window = RestartWindow::new(shared.spec.supervision_with(rt.supervision));
        let sup = Self {
            rt,
            shared,
            home: None,
            placements: 0,
            slots: BTreeMap::new(),
            next_generation: 0,
            epoch: 0,
            window,
            restarts: 0,
            history: std::collections::VecDeque::new(),
            failed: None,
            last_error: None,
            restart_requested_at: None,
            local_paused,
            governance_enabled,
        };
        sup.apply_pause();
        sup
    }

    fn wanted(&self) -> Vec<ChildKind> {
        let spec = &self.shared.spec;
        let mut kinds = Vec::new();
        if spec.pushes() {
            kinds.push(ChildKind::Pusher);
            kinds.push(ChildKind::Retrier);
        }
        if spec.pulls() {
            kinds.push(ChildKind::Puller);
        }
        kinds
    }

    fn apply_pause(&self) {
        let paused = self.local_paused || !self.governance_enabled;
        self.shared.paused.store(paused, Ordering::SeqCst);
    }

    /// The connector's home thread: its pool worker (started anew by the pool if its thread
    /// died), or its own thread (started anew when it died).
    fn live_home(&mut self) -> ArbiterHandle {
        match (&self.home, self.rt.workers.pool()) {
            (Some(Home::Pool(w)), Some(pool)) => {
                let w = pool.get(w.index);
                self.home = Some(Home::Pool(w.clone()));
                return w.handle;
            }
            (Some(Home::Own(handle)), None) if handle.spawn(async {}) => return handle.clone(),
            _ => {}
        }
        self.placements += 1;
        match self.rt.workers.pool() {
            Some(pool) => {
                let w = pool.next();
                self.home = Some(Home::Pool(w.clone()));
                w.handle
            }
            None => {
                let handle = Arbiter::new().handle();
                if let Some(hook) = CONNECTOR_THREAD_STARTED.get().copied() {
                    handle.spawn(async move { hook() });
                }
                self.home = Some(Home::Own(handle.clone()));
                handle
            }
        }
    }

    /// A child of `kind` is gone: nobody may address it any more.
    fn forget_live(&self, kind: ChildKind) {
        let mut live = self.shared.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match kind {
            ChildKind::Pusher => live.lane = None,
            ChildKind::Retrier => live.retrier = None,
            ChildKind::Puller => {}
        }
    }

    /// Where the status says the children run.
    fn worker_name(&self) -> String {
        match &self.home {
            Some(Home::Pool(w)) => format!("worker-{}#{}", w.index, self.placements),
            Some(Home::Own(_)) => format!("arbiter-{}", self.placements),
            None => "none".into(),
        }
    }

    fn start_child(&mut self, kind: ChildKind, ctx: &mut Context<Self>) {
        if self.failed.is_some() {
            return;
        }
        self.next_generation += 1;
        let generation = self.next_generation;
        let arbiter = self.live_home();
        let cx = ChildCtx::new(self.rt.clone(), self.shared.clone(), ctx.address(), kind, generation);
        let addr = match kind {
            ChildKind::Pusher => {
                let lane = Lane::start_in_arbiter(&arbiter, move |_| Lane::new(cx));
                self.shared.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).lane = Some(lane.clone());
                ChildAddr::Pusher(lane)
            }
            ChildKind::Puller => ChildAddr::Puller(Puller::start_in_arbiter(&arbiter, move |_| Puller::new(cx))),
            ChildKind::Retrier => {
                let retrier = Retrier::start_in_arbiter(&arbiter, move |_| Retrier::new(cx));
                self.shared.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retrier = Some(retrier.clone());
                ChildAddr::Retrier(retrier)
            }
        };
        let slot = self.slots.entry(kind).or_insert(Slot { generation, state: ChildState::Running, restarts: 0, addr: None });
        slot.generation = generation;
        slot.state = ChildState::Running;
        slot.addr = Some(addr);
    }

    fn start_all(&mut self, ctx: &mut Context<Self>) {
        for kind in self.wanted() {
            self.start_child(kind, ctx);
        }
    }

    /// Stops every child on purpose: their generations are retired first so their death
    /// reports are ignored.
    fn stop_all(&mut self) {
        self.epoch += 1;
        for kind in self.slots.keys() {
            self.forget_live(*kind);
        }
        for slot in self.slots.values_mut() {
            slot.generation = 0;
            slot.state = ChildState::Stopped;
            if let Some(addr) = slot.addr.take() {
                addr.stop();
            }
        }
    }

    fn state(&self) -> ConnectorState {
        if self.failed.is_some() {
            ConnectorState::Failed
        } else if self.slots.values().any(|s| s.state == ChildState::Restarting) {
            ConnectorState::Restarting
        } else if self.shared.is_paused() {
            ConnectorState::Paused
        } else {
            ConnectorState::Running
        }
    }

    /// New jobs, a due retry or a resume: the lane looks at the queue. The Puller keeps
    /// its own interval (and is woken on resume by `wake_puller`).
    fn wake_children(&self) {
        self.shared.wake_lane();
    }

    fn wake_puller(&self) {
        if let Some(Slot { addr: Some(ChildAddr::Puller(a)), .. }) = self.slots.get(&ChildKind::Puller) {
            a.do_send(Wake);
        }
    }

    fn status(&self, queue_depth: u64, alerts: Vec<super::alerter::AlertRecord>, pull_holder: Option<String>, in_flight: Vec<(String, i64)>) -> ConnectorStatus {
        let policy = self.window.policy();
        let worker = self.worker_name();
        ConnectorStatus {
            id: self.shared.id().to_string(),
            direction: self.shared.spec.direction_name().to_string(),
            state: self.state(),
            paused: self.local_paused,
            governance_paused: !self.governance_enabled,
            children: self
                .slots
                .iter()
                .map(|(k, s)| ChildStatus { kind: k.as_str(), state: s.state, restarts: s.restarts, worker: worker.clone() })
                .collect(),
            restarts: self.restarts,
            restart_history: self.history.iter().cloned().collect(),
            last_error: self.last_error.clone(),
            restart_requested_at: self.restart_requested_at,
            last_delivery_error: self.shared.counters.last_delivery_error().map(|(message, at)| LastError { message, at }),
            missing_secrets: self.rt.egress.missing(&self.shared.spec),
            circuit: self.shared.breaker.circuit(std::time::Instant::now()),
            queue_depth,
            counters: self.shared.counters.snapshot(),
            intensity: IntensityView {
                max_restarts: policy.max_restarts,
                within_secs: policy.within_secs,
                backoff_ms: policy.backoff_ms,
                max_backoff_ms: policy.max_backoff_ms,
                immediate_first_restart: policy.immediate_first_restart,
            },
            alerts,
            instance: self.rt.instance.to_string(),
            pull_holder,
            in_flight_by_instance: in_flight.into_iter().collect(),
        }
    }
}

impl Actor for ConnectorSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(connector = %self.shared.id(), children = ?self.wanted(), "connector starting");
        self.start_all(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.stop_all();
        if let Some(Home::Own(arbiter)) = self.home.take() {
            // Stop the thread only after its children have handled their StopChild: a
            // child stopping drops its unfinished work (a query waiting in the database,
            // say) inside the runtime. Stopped at once, the thread would drop it while
            // tearing the runtime down, and sqlx panics when a pooled connection is dropped
            // outside a runtime. The children's messages were queued first; a few yields
            // let their tasks run before this one stops the thread.
            // (A thread that is gone already refuses the task: then there is nothing to stop.)
            let _ = arbiter.spawn(async {
                for _ in 0..STOP_YIELDS {
                    tokio::task::yield_now().await;
                }
                Arbiter::current().stop();
            });
        }
    }
}

impl Handler<ChildDied> for ConnectorSupervisor {
    type Result = ();

    fn handle(&mut self, msg: ChildDied, ctx: &mut Context<Self>) {
        if self.slots.get(&msg.kind).is_none_or(|s| s.generation != msg.generation) {
            return;
        }
        self.forget_live(msg.kind);
        let Some(slot) = self.slots.get_mut(&msg.kind) else { return };
        let why = match (msg.panicked, msg.reason) {
            (true, Some(r)) => format!("{} panicked: {r}", msg.kind.as_str()),
            (true, None) => format!("{} panicked", msg.kind.as_str()),
            (false, Some(r)) => format!("{} stopped: {r}", msg.kind.as_str()),
            (false, None) => format!("{} stopped unexpectedly", msg.kind.as_str()),
        };
        self.restarts += 1;
        slot.restarts += 1;
        self.rt.metrics.restarts.with_label_values(&[self.shared.id()]).inc();
        slot.addr = None;
        self.last_error = Some(LastError { message: why.clone(), at: Utc::now() });
        self.history.push_front(LastError { message: why.clone(), at: Utc::now() });
        self.history.truncate(HISTORY);
        match self.window.on_crash(Instant::now()) {
            Verdict::Restart(delay) => {
                slot.state = ChildState::Restarting;
                slot.generation = 0;
                tracing::warn!(connector = %self.shared.id(), child = msg.kind.as_str(), delay_ms = delay.as_millis() as u64, reason = %why, "child died; restarting");
                let epoch = self.epoch;
                ctx.run_later(delay, move |act, ctx| {
                    let still_wanted = act.slots.get(&msg.kind).is_some_and(|s| s.state == ChildState::Restarting);
                    if still_wanted && act.failed.is_none() && act.epoch == epoch {
                        act.start_child(msg.kind, ctx);
                    }
                });
            }
            Verdict::GiveUp => {
                let policy = self.window.policy();
                let reason = format!(
                    "restart intensity exceeded ({} restarts in {} s); last: {why}",
                    policy.max_restarts, policy.within_secs
                );
                tracing::error!(connector = %self.shared.id(), reason = %reason, "connector failed; waiting for POST /connectors/{{id}}/restart");
                self.stop_all();
                self.failed = Some(reason.clone());
                self.last_error = Some(LastError { message: reason, at: Utc::now() });
            }
        }
    }
}

impl Handler<Wake> for ConnectorSupervisor {
    type Result = ();
    fn handle(&mut self, _: Wake, _: &mut Context<Self>) {
        self.wake_children();
    }
}

/// Ask for the connector's status (queue depth is read from the database).
#[derive(Message)]
#[rtype(result = "ConnectorStatus")]
pub struct GetStatus;

impl Handler<GetStatus> for ConnectorSupervisor {
    type Result = ResponseActFuture<Self, ConnectorStatus>;
    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        let db = self.rt.db.clone();
        let id = self.shared.id().to_string();
        let alerts = self.rt.alerts.clone();
        let pulls = self.shared.spec.pulls();
        Box::pin(
            async move {
                let depth = storage::pending_count(&db, &id).await.unwrap_or(0);
                // Who pulls it now, cluster-wide: the holder of its pull lease.
                let holder = if pulls { storage::holder(&db, &format!("{}{id}", super::cluster::PULL_LEASE)).await.ok().flatten() } else { None };
                let now = storage::db_now(&db).await.unwrap_or_else(|_| Utc::now());
                let holder = holder.filter(|(_, until)| *until >= now).map(|(owner, _)| owner);
                let in_flight = storage::in_flight_by_instance(&db, &id).await.unwrap_or_default();
                let recent = alerts.send(super::alerter::RecentAlerts(id)).await.unwrap_or_default();
                (depth, recent, holder, in_flight)
            }
            .into_actor(self)
            .map(|(depth, recent, holder, in_flight), act, _| act.status(depth, recent, holder, in_flight)),
        )
    }
}

/// The status without what needs the database (see `registry::AllSummaries`).
#[derive(Message)]
#[rtype(result = "ConnectorStatus")]
pub struct GetSummary;

impl Handler<GetSummary> for ConnectorSupervisor {
    type Result = MessageResult<GetSummary>;
    fn handle(&mut self, _: GetSummary, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status(0, Vec::new(), None, Vec::new()))
    }
}

/// Pause or resume this connector (the Registry has persisted it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetPaused(pub bool);

impl Handler<SetPaused> for ConnectorSupervisor {
    type Result = ();
    fn handle(&mut self, msg: SetPaused, _: &mut Context<Self>) {
        self.local_paused = msg.0;
        self.apply_pause();
        self.wake_children();
        self.wake_puller();
    }
}

/// The global toggle changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetGovernance(pub bool);

impl Handler<SetGovernance> for ConnectorSupervisor {
    type Result = ();
    fn handle(&mut self, msg: SetGovernance, _: &mut Context<Self>) {
        self.governance_enabled = msg.0;
        self.apply_pause();
        self.wake_children();
        self.wake_puller();
    }
}

/// An operator's restart: forget past crashes, leave `failed`, start fresh children.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Restart;

impl Handler<Restart> for ConnectorSupervisor {
    type Result = ();
    fn handle(&mut self, _: Restart, ctx: &mut Context<Self>) {
        tracing::info!(connector = %self.shared.id(), "restart requested");
        self.restart_requested_at = Some(Utc::now());
        self.stop_all();
        self.window.reset();
        self.failed = None;
        self.start_all(ctx);
    }
}

/// Hot reload: the same connector with a new spec. Queued jobs stay in the database and
/// are picked up by the new children.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replace(pub Arc<ConnectorShared>);

impl Handler<Replace> for ConnectorSupervisor {
    type Result = ();
    fn handle(&mut self, msg: Replace, ctx: &mut Context<Self>) {
        self.stop_all();
        self.slots.clear();
        self.shared = msg.0;
        self.window = RestartWindow::new(self.shared.spec.supervision_with(self.rt.supervision));
        self.failed = None;
        self.apply_pause();
        self.start_all(ctx);
    }
}

/// Stop the connector for good (deleted, or the service is shutting down).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for ConnectorSupervisor {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Test hook: make a child misbehave.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct InjectChildFault {
    pub child: ChildKind,
    pub fault: Fault,
}

impl Handler<InjectChildFault> for ConnectorSupervisor {
    type Result = Result<(), String>;
    fn handle(&mut self, msg: InjectChildFault, _: &mut Context<Self>) -> Self::Result {
        if !self.rt.fault_injection {
            return Err("fault injection is off".into());
        }
        if msg.fault == Fault::Arbiter {
            match self.home.take().ok_or("no worker thread running")? {
                // Its own thread: stopped for real; the children's guards report their death.
                Home::Own(arbiter) => {
                    arbiter.stop();
                }
                // A pool worker is shared: the connector loses it as if its thread died (every
                // child stops, their guards report it) and moves to the next worker; the
                // other connectors on the old one are not touched.
                Home::Pool(_) => {
                    for slot in self.slots.values() {
                        if let Some(addr) = &slot.addr {
                            addr.fault(Fault::Stop);
                        }
                    }
                }
            }
            return Ok(());
        }
        let slot = self.slots.get(&msg.child).ok_or_else(|| format!("connector has no {}", msg.child.as_str()))?;
        let addr = slot.addr.as_ref().ok_or_else(|| format!("{} is not running", msg.child.as_str()))?;
        addr.fault(msg.fault);
        Ok(())
    }
}

/// Run one pull now (`POST /connectors/{id}/sync`).
#[derive(Message)]
#[rtype(result = "Result<super::puller::PullReport, super::puller::NotPulled>")]
pub struct SyncNow;

impl Handler<SyncNow> for ConnectorSupervisor {
    type Result = ResponseFuture<Result<super::puller::PullReport, super::puller::NotPulled>>;
    fn handle(&mut self, _: SyncNow, _: &mut Context<Self>) -> Self::Result {
        let puller = match self.slots.get(&ChildKind::Puller) {
            Some(Slot { addr: Some(ChildAddr::Puller(a)), .. }) => Some(a.clone()),
            _ => None,
        };
        let state = self.state();
        Box::pin(async move {
            let Some(puller) = puller else {
                return Err(super::puller::NotPulled::Failed(match state {
                    ConnectorState::Failed | ConnectorState::Restarting => format!("the connector is {state:?}; restart it first").to_lowercase(),
                    _ => "the connector does not pull (no source.pull)".to_string(),
                }));
            };
            puller.send(super::puller::PullNow).await.map_err(|e| super::puller::NotPulled::Failed(e.to_string()))?
        })
    }
}
