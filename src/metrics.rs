//! Prometheus metrics (the seeds' `sync.*`), one registry per running service, labelled by
//! connector. Counters and the latency histogram are updated where things happen; queue
//! depth, parked jobs and pull lag are read when `GET /metrics` is scraped, so they are
//! true even for work another instance did.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use prometheus::core::Collector;
use prometheus::{Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::storage::{self, Db, StorageError};

/// Every family hms-sync exports.
pub struct Metrics {
    registry: Registry,
    /// Delivery jobs accepted (stored) per connector.
    pub accepted: IntCounterVec,
    /// Events a connector's filter turned away.
    pub filtered: IntCounterVec,
    /// Successful deliveries (`sync.ok`).
    pub ok: IntCounterVec,
    /// Failed delivery attempts (`sync.fail`).
    pub fail: IntCounterVec,
    /// Jobs parked.
    pub parked: IntCounterVec,
    /// Duration of delivery attempts.
    pub latency: HistogramVec,
    /// Supervisor restarts of a connector's children.
    pub restarts: IntCounterVec,
    /// Inbound webhooks refused, by reason.
    pub webhook_rejections: IntCounterVec,
    /// Alerts raised, by kind.
    pub alerts: IntCounterVec,
    /// 1 while a connector's circuit is open (its target looks down), else 0.
    pub circuit_open: IntGaugeVec,
    /// Reads of the delivery queue by a connector's lane (its claims).
    pub queue_reads: IntCounterVec,
    queue_depth: IntGaugeVec,
    parked_jobs: IntGaugeVec,
    pull_lag: GaugeVec,
    /// Events published on a topic no connector subscribes to, by topic (the first
    /// [`MAX_UNROUTED_TOPICS`] topics seen, then `other`).
    pub unrouted: IntCounterVec,
    unrouted_topics: Mutex<HashSet<String>>,
    /// The registered connectors: their series exist from registration (at 0) until the
    /// connector is deleted.
    connectors: Mutex<BTreeSet<String>>,
    /// Last successful pull of each connector (for the lag gauge).
    last_pull: Mutex<HashMap<String, Instant>>,
    started: Instant,
}

/// How many distinct topics `sync_events_unrouted_total` names before it counts the rest
/// as `other` (a typo per request must not grow the series without bound).
pub const MAX_UNROUTED_TOPICS: usize = 100;

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    registry.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), &["connector"]).expect("static metric definition");
    registry.register(Box::new(g.clone())).expect("metric registered once");
    g
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family. The definitions are static, so this cannot fail at run time.
    pub fn new() -> Self {
        let r = Registry::new();
        let latency = HistogramVec::new(
            HistogramOpts::new("sync_latency_seconds", "Duration of one delivery attempt, request sent to answer read.")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0]),
            &["connector"],
        )
        .expect("static metric definition");
        r.register(Box::new(latency.clone())).expect("metric registered once");
        let pull_lag = GaugeVec::new(Opts::new("sync_pull_lag_seconds", "Seconds since the connector's last successful pull (since start if none yet)."), &["connector"])
            .expect("static metric definition");
        r.register(Box::new(pull_lag.clone())).expect("metric registered once");
        Self {
            accepted: counter(&r, "sync_events_accepted_total", "Delivery jobs accepted and stored, per connector.", &["connector"]),
            filtered: counter(&r, "sync_filtered_total", "Events turned away by the connector's filter.", &["connector"]),
            ok: counter(&r, "sync_ok_total", "Deliveries that succeeded (sync.ok).", &["connector"]),
            fail: counter(&r, "sync_fail_total", "Delivery attempts that failed (sync.fail).", &["connector"]),
            parked: counter(&r, "sync_parked_total", "Jobs parked after their retries or a permanent failure.", &["connector"]),
            restarts: counter(&r, "sync_restarts_total", "Restarts of a connector's supervised children.", &["connector"]),
            queue_reads: counter(&r, "sync_queue_reads_total", "Reads of the delivery queue by the connector's lane (new jobs heading their record keys, and a key's next job with the settle of the one before, are handed to it without one).", &["connector"]),
            webhook_rejections: counter(&r, "sync_webhook_rejections_total", "Inbound webhooks refused, by reason.", &["connector", "reason"]),
            alerts: counter(&r, "sync_alerts_total", "Alerts raised, by kind.", &["connector", "kind"]),
            queue_depth: gauge(&r, "sync_queue_depth", "Jobs accepted and not yet delivered or parked."),
            parked_jobs: gauge(&r, "sync_parked_jobs", "Jobs parked now, waiting for a human."),
            circuit_open: gauge(&r, "sync_circuit_open", "1 while the connector's circuit breaker is open (its target looks down; deliveries wait), else 0."),
            latency,
            pull_lag,
            unrouted: counter(&r, "sync_events_unrouted_total", "Events published on a topic no connector subscribes to (stored nowhere), by topic: the first 100 topics, then `other`.", &["topic"]),
            unrouted_topics: Mutex::new(HashSet::new()),
            connectors: Mutex::new(BTreeSet::new()),
            last_pull: Mutex::new(HashMap::new()),
            started: Instant::now(),
            registry: r,
        }
    }

    /// Connector `id` was registered: its series start at 0 now, so a dashboard or an
    /// alert rule sees them before anything happens (Prometheus advises against missing
    /// series).
    pub fn register_connector(&self, id: &str) {
        for c in [&self.accepted, &self.filtered, &self.ok, &self.fail, &self.parked, &self.restarts, &self.queue_reads] {
            c.with_label_values(&[id]);
        }
        self.latency.with_label_values(&[id]);
        self.circuit_open.with_label_values(&[id]).set(0);
        if let Ok(mut set) = self.connectors.lock() {
            set.insert(id.to_string());
        }
    }

    /// Connector `id` was deleted: its series go.
    pub fn forget_connector(&self, id: &str) {
        for c in [&self.accepted, &self.filtered, &self.ok, &self.fail, &self.parked, &self.restarts, &self.queue_reads, &self.webhook_rejections, &self.alerts] {
            remove_series(c, id);
        }
        remove_series(&self.latency, id);
        remove_series(&self.circuit_open, id);
        if let Ok(mut set) = self.connectors.lock() {
            set.remove(id);
        }
        if let Ok(mut last) = self.last_pull.lock() {
            last.remove(id);
        }
    }

    /// An event on `topic` had no subscriber.
    pub fn unrouted(&self, topic: &str) {
        let label = match self.unrouted_topics.lock() {
            Ok(mut seen) if seen.contains(topic) || seen.len() < MAX_UNROUTED_TOPICS => {
                seen.insert(topic.to_string());
                topic
            }
            _ => "other",
        };
        self.unrouted.with_label_values(&[label]).inc();
    }

    /// A pull of `connector` succeeded now.
    pub fn pulled(&self, connector: &str) {
        if let Ok(mut m) = self.last_pull.lock() {
            m.insert(connector.to_string(), Instant::now());
        }
    }

    /// How long since connector `id` last pulled successfully on this instance (since the
    /// start when it has not yet): the `hms_sync_pull_lag_seconds` gauge's value.
    pub fn pull_lag(&self, id: &str) -> std::time::Duration {
        self.last_pull.lock().ok().and_then(|m| m.get(id).copied()).unwrap_or(self.started).elapsed()
    }

    /// The exposition text: live counters plus gauges read from the database now.
    /// `pullers` are the connectors that pull.
    pub async fn render(&self, db: &Db, pullers: &[String]) -> Result<String, StorageError> {
        self.queue_depth.reset();
        self.parked_jobs.reset();
        if let Ok(registered) = self.connectors.lock() {
            for id in registered.iter() {
                self.queue_depth.with_label_values(&[id.as_str()]).set(0);
                self.parked_jobs.with_label_values(&[id.as_str()]).set(0);
            }
        }
        for (connector, status, n) in storage::queue_stats(db).await? {
            match status.as_str() {
                "pending" => self.queue_depth.with_label_values(&[connector.as_str()]).set(n as i64),
                "parked" => self.parked_jobs.with_label_values(&[connector.as_str()]).set(n as i64),
                _ => {}
            }
        }
        self.pull_lag.reset();
        if let Ok(last) = self.last_pull.lock() {
            for id in pullers {
                let since = last.get(id).copied().unwrap_or(self.started);
                self.pull_lag.with_label_values(&[id.as_str()]).set(since.elapsed().as_secs_f64());
            }
        }
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format; an error would be a bug.
        TextEncoder::new().encode(&self.registry.gather(), &mut out).map_err(|e| StorageError::Corrupt(format!("metrics encoding: {e}")))?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// Removes every series of `vec` whose `connector` label is `id`, whatever its other labels.
fn remove_series<T: prometheus::core::MetricVecBuilder>(vec: &prometheus::core::MetricVec<T>, id: &str) {
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: Vec<&str> = metric.get_label().iter().map(|l| l.value()).collect();
            if metric.get_label().iter().any(|l| l.name() == "connector" && l.value() == id) {
                let _ = vec.remove_label_values(&labels);
            }
        }
    }
}
