//! Alerter: the seed's `rate(sync.fail) > 3 per 5m` rule, per connector, plus alerts for
//! parked jobs (each job in one: the first at once, those parked while rate-limited
//! together when the interval ends). Alerts are POSTed as JSON to the configured URL,
//! rate-limited per connector and kind, counted in metrics, and kept (the last few) for the
//! status API.
//!
//! One instance counts failures as it sees them. On a cluster (a shared PostgreSQL queue) a
//! connector's failures happen on every instance, so the rule is evaluated from the database
//! instead: every [`CLUSTER_EVAL_EVERY`], by the one instance holding the lease `alerts`, over
//! the failed attempts every instance stored. (Parked-job and circuit alerts stay with the
//! instance that saw them: each happens once.)

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::metrics::Metrics;

/// Alerts kept per connector for its status.
const KEEP: usize = 10;

/// A parsed `rate(sync.fail) > N per W` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailRule {
    /// Alert when MORE than this many failures fall in the window.
    pub threshold: u32,
    pub window: Duration,
}

impl FailRule {
    /// Parses `rate(sync.fail) > 3 per 5m` (`s`, `m`, `h`; spaces are free).
    pub fn parse(text: &str) -> Result<Self, String> {
        let expected = "expected `rate(sync.fail) > N per DURATION`, e.g. `rate(sync.fail) > 3 per 5m`";
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let rest = compact.strip_prefix("rate(sync.fail)>").ok_or_else(|| format!("alert rule `{text}`: {expected}"))?;
        let (n, window) = rest.split_once("per").ok_or_else(|| format!("alert rule `{text}`: {expected}"))?;
        let threshold = n.parse::<u32>().map_err(|_| format!("alert rule `{text}`: `{n}` is not a whole number; {expected}"))?;
        let split = window.find(|c: char| !c.is_ascii_digit()).unwrap_or(window.len());
        let (num, unit) = window.split_at(split);
        let num: u64 = num.parse().map_err(|_| format!("alert rule `{text}`: bad window `{window}`; {expected}"))?;
        let secs = match unit {
            "s" => num,
            "m" => num * 60,
            "h" => num * 3600,
            _ => return Err(format!("alert rule `{text}`: bad window unit `{unit}` (s, m or h); {expected}")),
        };
        if secs == 0 {
            return Err(format!("alert rule `{text}`: the window must be longer than zero"));
        }
        Ok(Self { threshold, window: Duration::from_secs(secs) })
    }
}

/// One alert as sent and as shown in status.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertRecord {
    pub alert: &'static str,
    /// `fail-rate` or `parked`.
    pub kind: &'static str,
    pub connector: String,
    pub message: String,
    pub at: DateTime<Utc>,
    /// Whether it reached the alert URL (`None`: no URL configured).
    pub delivered: Option<bool>,
}

/// How often the instance holding the `alerts` lease evaluates the fail-rate rule from the
/// database, on a cluster.
pub const CLUSTER_EVAL_EVERY: Duration = Duration::from_secs(2);

/// The lease of the instance that evaluates the fail-rate rule for the cluster.
const ALERTS_LEASE: &str = "alerts";

/// On a cluster: where the failures are read from, and who may evaluate.
struct ClusterRule {
    db: crate::storage::Db,
    instance: String,
    lease: Duration,
    evaluating: bool,
}

pub struct Alerter {
    rule: FailRule,
    cluster: Option<ClusterRule>,
    url: Option<String>,
    min_interval: Duration,
    metrics: std::sync::Arc<Metrics>,
    client: Option<awc::Client>,
    failures: HashMap<String, VecDeque<Instant>>,
    last_sent: HashMap<(String, &'static str), Instant>,
    recent: HashMap<String, VecDeque<AlertRecord>>,
    /// Jobs parked while a connector's `parked` alert was rate-limited: (job, reason),
    /// sent as one alert when the interval ends (no parked job goes unreported).
    held: HashMap<String, Vec<(i64, String)>>,
}

/// Job ids named in one held-jobs alert, at most (the rest are counted).
const NAMED: usize = 20;

impl Alerter {
    pub fn new(rule: FailRule, url: Option<String>, min_interval: Duration, metrics: std::sync::Arc<Metrics>) -> Self {
        Self { rule, cluster: None, url, min_interval, metrics, client: None, failures: HashMap::new(), last_sent: HashMap::new(), recent: HashMap::new(), held: HashMap::new() }
    }

    /// On a cluster: the fail-rate rule is evaluated from the database by the instance
    /// holding the `alerts` lease (see the module docs).
    pub fn for_cluster(mut self, db: crate::storage::Db, instance: String, lease: Duration) -> Self {
        self.cluster = Some(ClusterRule { db, instance, lease, evaluating: false });
        self
    }

    /// Counts every instance's failures in the rule's window from the database, if this
    /// instance holds the `alerts` lease, and alerts for the connectors over the threshold.
    fn evaluate_cluster(&mut self, ctx: &mut Context<Self>) {
        let Some(c) = self.cluster.as_mut().filter(|c| !c.evaluating) else { return };
        c.evaluating = true;
        let (db, instance) = (c.db.clone(), c.instance.clone());
        let ttl = crate::storage::lease_ttl(c.lease);
        let window = chrono::Duration::from_std(self.rule.window).unwrap_or_else(|_| chrono::Duration::minutes(5));
        let evaluate = async move {
            if crate::storage::take_lease(&db, ALERTS_LEASE, &instance, ttl).await?.is_some() {
                return Ok(Vec::new());
            }
            crate::storage::failures_since(&db, Utc::now() - window).await
        };
        ctx.spawn(evaluate.into_actor(self).map(|res, act, ctx| {
            if let Some(c) = act.cluster.as_mut() {
                c.evaluating = false;
            }
            match res {
                Ok(counts) => {
                    let rule = act.rule;
                    for (connector, count) in counts.into_iter().filter(|(_, n)| *n > i64::from(rule.threshold)) {
                        let message = format!("{count} failed deliveries in the last {} s, cluster-wide (rule: more than {})", rule.window.as_secs(), rule.threshold);
                        act.raise(&connector, "fail-rate", message, ctx);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot evaluate the alert rule from the database"),
            }
        }));
    }

    /// How long until `connector` may raise an alert of `kind` again (zero: now).
    fn wait_for(&self, connector: &str, kind: &'static str) -> Duration {
        match self.last_sent.get(&(connector.to_string(), kind)) {
            Some(t) => self.min_interval.saturating_sub(t.elapsed()),
            None => Duration::ZERO,
        }
    }

    /// The jobs of `connector` parked while its alerts were rate-limited, as one alert.
    fn flush_held(&mut self, connector: &str, ctx: &mut Context<Self>) {
        let Some(jobs) = self.held.remove(connector).filter(|j| !j.is_empty()) else { return };
        let message = match jobs.as_slice() {
            [(job, reason)] => format!("job {job} parked: {reason}"),
            _ => {
                let ids: Vec<String> = jobs.iter().take(NAMED).map(|(j, _)| j.to_string()).collect();
                let more = if jobs.len() > NAMED { format!(" and {} more", jobs.len() - NAMED) } else { String::new() };
                let (last, reason) = jobs.last().map(|(j, r)| (*j, r.as_str())).unwrap_or_default();
                format!("{} jobs parked since the last alert: jobs {}{more}; the last, job {last}: {reason}", jobs.len(), ids.join(", "))
            }
        };
        self.last_sent.remove(&(connector.to_string(), "parked"));
        self.raise(connector, "parked", message, ctx);
    }

    /// Raises an alert unless one of the same kind for the connector went out within
    /// `min_interval`.
    fn raise(&mut self, connector: &str, kind: &'static str, message: String, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let key = (connector.to_string(), kind);
        if self.last_sent.get(&key).is_some_and(|t| now.duration_since(*t) < self.min_interval) {
            return;
        }
        self.last_sent.insert(key, now);
        self.metrics.alerts.with_label_values(&[connector, kind]).inc();
        tracing::warn!(connector, kind, message = %message, "alert");
        let record = AlertRecord { alert: "sync.failure", kind, connector: connector.to_string(), message, at: Utc::now(), delivered: None };
        let index = {
            let list = self.recent.entry(connector.to_string()).or_default();
            if list.len() == KEEP {
                list.pop_front();
            }
            list.push_back(record.clone());
            list.len() - 1
        };
        let (Some(url), Some(client)) = (self.url.clone(), self.client.clone()) else { return };
        let connector = connector.to_string();
        ctx.spawn(
            async move {
                match client.post(&url).send_json(&record).await {
                    Ok(mut resp) => {
                        let _ = resp.body().await;
                        resp.status().is_success()
                    }
                    Err(_) => false,
                }
            }
            .into_actor(self)
            .map(move |ok, act, _| {
                if !ok {
                    tracing::warn!(connector = %connector, "the alert could not be delivered to the alert URL");
                }
                if let Some(r) = act.recent.get_mut(&connector).and_then(|l| l.get_mut(index)) {
                    r.delivered = Some(ok);
                }
            }),
        );
    }
}

impl Actor for Alerter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.client = Some(awc::Client::builder().timeout(Duration::from_secs(10)).finish());
        if self.cluster.is_some() {
            ctx.run_interval(CLUSTER_EVAL_EVERY, |act, ctx| act.evaluate_cluster(ctx));
        }
    }
}

/// A delivery attempt of `connector` failed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FailureSeen(pub String);

impl Handler<FailureSeen> for Alerter {
    type Result = ();
    fn handle(&mut self, msg: FailureSeen, ctx: &mut Context<Self>) {
        // On a cluster, the database's count decides (see `evaluate_cluster`).
        if self.cluster.is_some() {
            return;
        }
        let now = Instant::now();
        let window = self.rule.window;
        let seen = self.failures.entry(msg.0.clone()).or_default();
        seen.push_back(now);
        while seen.front().is_some_and(|t| now.duration_since(*t) > window) {
            seen.pop_front();
        }
        let count = seen.len();
        if count > self.rule.threshold as usize {
            let message = format!("{count} failed deliveries in the last {} s (rule: more than {})", window.as_secs(), self.rule.threshold);
            self.raise(&msg.0, "fail-rate", message, ctx);
        }
    }
}

/// A job of `connector` was parked.
#[derive(Message)]
#[rtype(result = "()")]
pub struct JobParked {
    pub connector: String,
    pub job: i64,
    pub reason: String,
}

impl Handler<JobParked> for Alerter {
    type Result = ();
    /// The first parked job raises its alert at once; those parked while that kind is
    /// rate-limited are held and sent together, as one alert naming them, when the
    /// interval ends.
    fn handle(&mut self, msg: JobParked, ctx: &mut Context<Self>) {
        let wait = self.wait_for(&msg.connector, "parked");
        if wait.is_zero() {
            let message = format!("job {} parked: {}", msg.job, msg.reason);
            self.raise(&msg.connector, "parked", message, ctx);
            return;
        }
        let held = self.held.entry(msg.connector.clone()).or_default();
        held.push((msg.job, msg.reason));
        if held.len() == 1 {
            let connector = msg.connector;
            ctx.run_later(wait, move |act, ctx| act.flush_held(&connector, ctx));
        }
    }
}

/// A connector's circuit opened: its target looks down.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CircuitOpened {
    pub connector: String,
    pub cool_down_ms: u64,
}

impl Handler<CircuitOpened> for Alerter {
    type Result = ();
    fn handle(&mut self, msg: CircuitOpened, ctx: &mut Context<Self>) {
        let message = format!("circuit open: the target looks down; deliveries wait and are probed every {} ms", msg.cool_down_ms);
        self.raise(&msg.connector, "circuit-open", message, ctx);
    }
}

/// The recent alerts of one connector, oldest first.
#[derive(Message)]
#[rtype(result = "Vec<AlertRecord>")]
pub struct RecentAlerts(pub String);

impl Handler<RecentAlerts> for Alerter {
    type Result = Vec<AlertRecord>;
    fn handle(&mut self, msg: RecentAlerts, _: &mut Context<Self>) -> Self::Result {
        self.recent.get(&msg.0).map(|l| l.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_rule() {
        assert_eq!(FailRule::parse("rate(sync.fail) > 3 per 5m"), Ok(FailRule { threshold: 3, window: Duration::from_secs(300) }));
        assert_eq!(FailRule::parse("rate(sync.fail)>0 per 30s").unwrap().window, Duration::from_secs(30));
        for bad in ["rate(sync.ok) > 3 per 5m", "rate(sync.fail) > x per 5m", "rate(sync.fail) > 3 per 5d", "rate(sync.fail) > 3", "rate(sync.fail) > 3 per 0m"] {
            assert!(FailRule::parse(bad).is_err(), "{bad}");
        }
    }
}
