//! The worker pool: a fixed set of arbiters (threads), sized to the cores by default
//! ([`default_threads`]), that every connector's children and every delivery attempt run
//! on. A connector is not a thread: an idle one costs its actors' state, and a hot one
//! spreads its attempts over every worker.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use actix::{Arbiter, ArbiterHandle};

pub struct WorkerPool {
    workers: Vec<Mutex<ArbiterHandle>>,
    next: AtomicUsize,
    /// Threads started so far (a worker whose thread died is replaced by a new one).
    started: AtomicU64,
}

/// A worker of the pool: its handle and its place (shown in the status as `worker-N`).
#[derive(Clone)]
pub struct Worker {
    pub index: usize,
    pub handle: ArbiterHandle,
}

impl WorkerPool {
    /// A pool of `size` workers (at least one).
    pub fn new(size: usize) -> Self {
        let size = size.max(1);
        let workers = (0..size).map(|_| Mutex::new(Arbiter::new().handle())).collect();
        Self { workers, next: AtomicUsize::new(0), started: AtomicU64::new(size as u64) }
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// The next worker, round-robin.
    pub fn next(&self) -> Worker {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        self.get(index)
    }

    /// Worker `index`, whose thread is started anew if it died (a stopped arbiter refuses
    /// work: that is how a dead one is told apart).
    pub fn get(&self, index: usize) -> Worker {
        let index = index % self.workers.len();
        let mut slot = self.workers[index].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !slot.spawn(async {}) {
            *slot = Arbiter::new().handle();
            self.started.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(worker = index, "a worker thread had died; started a new one");
        }
        Worker { index, handle: slot.clone() }
    }

    /// Threads started since the pool was made (more than its size: some died).
    pub fn threads_started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
}

/// How many turns a worker gets to let its tasks end before its thread is stopped.
const STOP_YIELDS: usize = 8;

impl Drop for WorkerPool {
    /// The last connector is gone (the service stopped): the threads stop once the children
    /// on them have handled their own stop. Stopped at once, a thread would drop unfinished
    /// work (a query waiting in the database) while tearing its runtime down, and sqlx
    /// panics when a pooled connection is dropped outside a runtime. (A thread that is gone
    /// already refuses the task: then there is nothing to stop.)
    fn drop(&mut self) {
        for w in &self.workers {
            let handle = w.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = handle.spawn(async {
                for _ in 0..STOP_YIELDS {
                    tokio::task::yield_now().await;
                }
                Arbiter::current().stop();
            });
        }
    }
}

/// Where a connector's children and attempts run: the shared pool, or (with
/// `runtime.dedicated_threads`) a thread of the connector's own.
#[derive(Clone)]
pub struct Workers {
    pool: Option<std::sync::Arc<WorkerPool>>,
}

impl Workers {
    /// The pool of `settings` (`workers: 0`: [`default_threads`], given whether the
    /// Committer has a thread of its own).
    pub fn new(settings: crate::settings::RuntimeSettings, committer_thread: bool) -> Self {
        let size = threads(settings.workers, committer_thread);
        Self { pool: (!settings.dedicated_threads).then(|| std::sync::Arc::new(WorkerPool::new(size))) }
    }

    /// The shared pool; `None` when each connector has its own thread.
    pub fn pool(&self) -> Option<&WorkerPool> {
        self.pool.as_deref()
    }
}

/// A thread count as set (`runtime.workers`, `server.workers`): the count, or with 0 the
/// [`default_threads`].
pub fn threads(setting: usize, committer_thread: bool) -> usize {
    if setting > 0 { setting } else { default_threads(committer_thread) }
}

/// The threads of the pool, and of the HTTP server, when the settings leave them at 0: one
/// per core, less one when the Committer writes a SQLite file on a thread of its own (it is
/// the busiest thread at saturation: the one writer), and at least one. Then the busy threads
/// of the hot path are one more than the cores rather than twice as many plus one. Measured
/// on two cores (2026-12-02), one HTTP worker and one pool worker against two of each: less
/// CPU per event in 24 of 31 rounds under `wrk` and in all 6 pairs of `hms-sync bench`, more
/// events/s while the machine was quiet (README, Performance). On PostgreSQL the Committer
/// runs on the main thread and the writing is the server's: one per core.
fn default_threads(committer_thread: bool) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    if committer_thread { cores.saturating_sub(1).max(1) } else { cores }
}
