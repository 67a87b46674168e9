//! What a connector's actors share: the spec compiled once, the effective pause flag and
//! the counters shown in its status. Plus [`Runtime`], the handles every actor gets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use actix::Addr;

use crate::delivery::Egress;
use crate::metrics::Metrics;
use crate::mapping::CompiledConnector;
use crate::settings::SupervisionSettings;
use crate::spec::ConnectorSpec;
use crate::storage::{Db, Delivery};

use super::alerter::Alerter;
use super::lane::Lane;
use super::messages::Wake;
use super::pool::Workers;
use super::retrier::{Retrier, RetryScheduled};
use super::committer::Committer;

/// Handles shared by the whole tree.
#[derive(Clone)]
pub struct Runtime {
    pub db: Db,
    pub tickets: Addr<Committer>,
    /// Global default restart intensity.
    pub supervision: SupervisionSettings,
    /// Test hooks (`POST /connectors/{id}/faults`) are honoured only when on.
    pub fault_injection: bool,
    /// Secrets and redirect for every outside request.
    pub egress: Egress,
    pub metrics: Arc<Metrics>,
    /// Fail-rate and parked-job alerts.
    pub alerts: Addr<Alerter>,
    /// The event bus, for inbound changes published on an HMS topic (set once the Registry
    /// it needs is running).
    pub bus: Arc<std::sync::OnceLock<super::bus::Bus>>,
    /// The threads connectors run on.
    pub workers: Workers,
    /// This instance's id in `instances`, the owner of the leases it takes.
    pub instance: Arc<str>,
    /// How long a lease lasts unless renewed (`cluster.lease_secs`).
    pub lease: std::time::Duration,
    /// The least time between two claims of a busy lane while other instances share the
    /// queue (`cluster.claim_gap_ms`).
    pub claim_gap: std::time::Duration,
    /// This instance's share of the record keys (see `storage::Share`), set by the heartbeat
    /// from the instances alive.
    pub share: Arc<crate::storage::CurrentShare>,
}

impl Runtime {
    /// The queue is shared with other instances (PostgreSQL): claims take leases.
    pub fn shared_queue(&self) -> bool {
        self.db.get_database_backend() == sea_orm::DbBackend::Postgres
    }

    /// This instance's share of the record keys now.
    pub fn share(&self) -> crate::storage::Share {
        self.share.get()
    }

    /// The lease time, for the database.
    pub fn lease_ttl(&self) -> chrono::Duration {
        crate::storage::lease_ttl(self.lease)
    }
}

/// Monotonic counters of one connector; kept across restarts and hot reloads.
#[derive(Debug, Default)]
pub struct Counters {
    pub delivered: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub parked: AtomicU64,
    pub filtered: AtomicU64,
    pub pulled: AtomicU64,
    pub pull_failures: AtomicU64,
    /// The last failed delivery attempt's error (secrets scrubbed) and when it failed.
    last_delivery_error: std::sync::Mutex<Option<(String, chrono::DateTime<chrono::Utc>)>>,
}

impl Counters {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A delivery attempt failed with `error` (already scrubbed of secrets).
    pub fn note_delivery_error(&self, error: &str) {
        if let Ok(mut last) = self.last_delivery_error.lock() {
            *last = Some((error.to_string(), chrono::Utc::now()));
        }
    }

    /// The last failed delivery attempt's error and time.
    pub fn last_delivery_error(&self) -> Option<(String, chrono::DateTime<chrono::Utc>)> {
        self.last_delivery_error.lock().ok().and_then(|l| l.clone())
    }

    pub fn snapshot(&self) -> serde_json::Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "delivered": g(&self.delivered),
            "failed_attempts": g(&self.failed_attempts),
            "parked": g(&self.parked),
            "filtered": g(&self.filtered),
            "pulled": g(&self.pulled),
            "pull_failures": g(&self.pull_failures),
        })
    }
}

/// One connector's spec and run-time flags, shared by its supervisor and children.
pub struct ConnectorShared {
    pub spec: Arc<ConnectorSpec>,
    pub compiled: Arc<CompiledConnector>,
    /// Paused by governance or by the operator: children do no outside I/O while set.
    pub paused: Arc<AtomicBool>,
    /// What the lane's next `Wake` brings (see [`ConnectorShared::jobs_stored`]).
    pub inbox: std::sync::Mutex<Inbox>,
    pub counters: Arc<Counters>,
    /// The connector's request rate: every request it makes waits here first.
    pub limiter: Arc<crate::delivery::rate::RateLimiter>,
    /// Whether deliveries are tried at all (`circuitBreaker`).
    pub breaker: Arc<crate::delivery::breaker::Breaker>,
    /// The credentials every request carries (`auth`).
    pub auth: Arc<crate::delivery::auth::Authenticator>,
    /// The connector's TLS client configuration (`tls`), if it has one.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The running lane and retry timer, set by the supervisor as it starts them: the bus
    /// wakes the lane and the lane arms the timer directly, not through the supervisor.
    pub live: std::sync::Mutex<Live>,
}

/// What a lane is told when woken: new jobs to start, or that it must read the queue.
#[derive(Default)]
pub struct Inbox {
    /// A `Wake` for new jobs is on its way to the lane, which takes the inbox (clearing this)
    /// before it reads the queue or starts the jobs: publishers that find it set send none,
    /// so a burst of events costs one message instead of one per event.
    sent: bool,
    /// New jobs that headed their record keys when they were stored, as stored: the lane
    /// starts them without reading the queue (see `storage::EntryWritten::Queued`).
    pub heads: Vec<Delivery>,
    /// The queue changed in a way not told here (jobs stored by the pool's writer, a webhook,
    /// a retry due, sending resumed, more new jobs than the inbox keeps): the lane reads it.
    pub read: bool,
}

/// Most new jobs an inbox keeps for its lane: beyond, it tells the lane to read the queue
/// instead (a lane that is not running, failed say, must not make its inbox grow).
const INBOX_JOBS: usize = 1024;

/// A connector's children that others talk to directly.
#[derive(Default)]
pub struct Live {
    pub lane: Option<Addr<Lane>>,
    pub retrier: Option<Addr<Retrier>>,
}

impl ConnectorShared {
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// Waits until the connector's rate limit (and any pause an answer asked for) lets a
    /// request go. A wait here is not an attempt.
    pub async fn throttle(&self) {
        self.limiter.acquire().await;
    }

    /// A read's turn: waits for the rate limit, then adds the connector's credentials.
    pub async fn ready(&self, req: &mut crate::mapping::RenderedRequest, client: &awc::Client, egress: &crate::delivery::Egress) -> Result<(), String> {
        self.throttle().await;
        self.auth.apply(req, client, egress).await.map_err(|o| o.error_text())
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// New jobs of this connector are committed: wake its lane, unless a wake is already on
    /// its way, and give it `heads`, those of them that head their keys (`None`: not known,
    /// the lane reads the queue; empty: nothing for the lane to do now). One wake is enough:
    /// the lane takes the inbox BEFORE it reads the queue or starts its jobs, so whatever
    /// was committed before this call reaches it. (No lane running: the one that starts
    /// reads the queue first thing.)
    pub fn jobs_stored(&self, heads: Option<Vec<Delivery>>) {
        let send = {
            let mut inbox = self.inbox();
            match heads {
                Some(heads) if heads.is_empty() => return,
                Some(heads) if !inbox.read && inbox.heads.len() + heads.len() <= INBOX_JOBS => inbox.heads.extend(heads),
                _ => {
                    inbox.heads.clear();
                    inbox.read = true;
                }
            }
            !std::mem::replace(&mut inbox.sent, true)
        };
        if send {
            self.send_wake();
        }
    }

    /// Wake the lane to read the queue: a retry due, sending resumed, jobs stored elsewhere.
    pub fn wake_lane(&self) {
        {
            let mut inbox = self.inbox();
            inbox.heads.clear();
            inbox.read = true;
        }
        self.send_wake();
    }

    fn send_wake(&self) {
        if let Some(lane) = &self.live().lane {
            lane.do_send(Wake);
        }
    }

    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A job was rescheduled for `at`: the retry timer wakes the lane then.
    pub fn retry_at(&self, at: chrono::DateTime<chrono::Utc>) {
        if let Some(retrier) = &self.live().retrier {
            retrier.do_send(RetryScheduled { at });
        }
    }

    /// Another instance is gone: the retry timer reads the earliest due retry again.
    pub fn rescan_retries(&self) {
        if let Some(retrier) = &self.live().retrier {
            retrier.do_send(super::retrier::Rescan);
        }
    }

    /// The lane takes what it was told, before it reads the queue or starts the jobs (see
    /// [`ConnectorShared::jobs_stored`]).
    pub fn wake_taken(&self) -> Inbox {
        std::mem::take(&mut *self.inbox())
    }
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
