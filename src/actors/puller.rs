//! Puller: the ETL pull of a connector. On its interval it asks the external change feed
//! for what changed since the cursor, stores every record as an inbound job in one
//! transaction, and only then advances the cursor, so a crash between fetch and store
//! re-reads the batch instead of losing it (duplicates are dropped by the job's id).

use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;

use super::child::ChildCtx;
use super::messages::Wake;
use super::shared::{ConnectorShared, Counters};
use crate::delivery::{Egress, sender};
use crate::mapping::{RenderedRequest, fields, selector};
use crate::metrics::Metrics;
use crate::spec::model::{Pagination, PullSpec};
use crate::storage::{self, Db};
use super::cluster::PULL_LEASE;
use super::two_way::{inbound_job, key_by_links};
use crate::sync::inbound::scalar_text;

/// Most pages one pull follows (a feed that never ends is an error, not a hang).
const MAX_PAGES: usize = 1000;

pub struct Puller {
    cx: ChildCtx,
    client: Option<awc::Client>,
    /// Reloaded from the database at every start: the database, not memory, is the truth.
    cursor: Value,
    running: bool,
    /// The cursor is loaded: pulls may start (a `PullNow` before waits for the first).
    ready: bool,
    /// Failed pulls in a row (back-off); 0 after a success.
    failures: u32,
    retry: Option<SpawnHandle>,
    /// Callers of `PullNow` waiting for the pull that is running.
    waiting: Vec<tokio::sync::oneshot::Sender<Result<PullReport, NotPulled>>>,
}

/// What one pull did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PullReport {
    pub records: usize,
    pub pages: usize,
    pub stored: usize,
    pub cursor: Value,
    /// The feed had more pages than one pull reads; the next pull follows at once.
    pub more: bool,
}

impl Puller {
    pub fn new(cx: ChildCtx) -> Self {
        Self { cx, client: None, cursor: Value::Null, running: false, ready: false, failures: 0, retry: None, waiting: Vec::new() }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.running || !self.ready || self.cx.shared.is_paused() {
            return;
        }
        let Some(client) = self.client.clone() else { return };
        if let Some(h) = self.retry.take() {
            ctx.cancel_future(h);
        }
        self.running = true;
        let shared = self.cx.shared.clone();
        let db = self.cx.rt.db.clone();
        let cursor = self.cursor.clone();
        let egress = self.cx.rt.egress.clone();
        let metrics = self.cx.rt.metrics.clone();
        let lease = PullLease { db: db.clone(), name: format!("{PULL_LEASE}{}", shared.id()), owner: self.cx.rt.instance.to_string(), ttl: self.cx.rt.lease_ttl() };
        let pull = async move {
            // One instance pulls a connector at a time: the one holding its lease. The cursor
            // is read again: another instance may have pulled since this one last did.
            match lease.take().await {
                Ok(None) => {}
                Ok(Some(holder)) => return Pulled::Elsewhere(holder),
                Err(e) => return Pulled::Done(Err(e)),
            }
            let cursor = match storage::load_cursor(&db, shared.id()).await {
                Ok(stored) => stored.unwrap_or(cursor),
                Err(e) => return Pulled::Done(Err(format!("cannot read the cursor: {e}"))),
            };
            Pulled::Done(pull_once(&client, &shared, &db, &egress, &metrics, cursor, &lease).await)
        };
        ctx.spawn(pull.into_actor(self).map(|pulled, act, ctx| {
            act.running = false;
            let res = match pulled {
                Pulled::Done(res) => res,
                Pulled::Elsewhere(holder) => {
                    tracing::debug!(connector = %act.cx.id(), holder = %holder, "another instance pulls this connector");
                    for w in act.waiting.drain(..) {
                        let _ = w.send(Err(NotPulled::Elsewhere(holder.clone())));
                    }
                    return;
                }
            };
            // An error may quote a URL or an answer that carried a secret: scrubbed before it
            // is logged or returned to `POST /connectors/{id}/sync`.
            let known = act.cx.rt.egress.known(&act.cx.shared.spec.secret_names());
            let res = res.map_err(|e| super::attempt::scrub_secrets(&e, &known));
            match &res {
                Ok(report) => {
                    act.cursor = report.cursor.clone();
                    act.failures = 0;
                    if report.stored > 0 {
                        act.cx.shared.wake_lane();
                    }
                    if report.more {
                        ctx.notify(Wake);
                    }
                }
                Err(e) => {
                    Counters::inc(&act.cx.shared.counters.pull_failures);
                    act.failures += 1;
                    // Back off (the connector's retry steps, capped at its interval); the
                    // cursor stays where it was.
                    let policy = crate::delivery::RetryPolicy::of(&act.cx.shared.spec);
                    let every = act.cx.shared.spec.pull_view().map_or(Duration::from_secs(30), |p| p.every);
                    let step = Duration::from_millis(policy.backoff_ms.saturating_mul(1u64 << act.failures.min(16).saturating_sub(1))).min(every);
                    tracing::warn!(connector = %act.cx.id(), error = %e, failures = act.failures, retry_in_ms = step.as_millis() as u64, "pull failed; cursor not advanced");
                    act.retry = Some(ctx.run_later(step, |act, ctx| {
                        act.retry = None;
                        act.tick(ctx);
                    }));
                }
            }
            for w in act.waiting.drain(..) {
                let _ = w.send(res.clone().map_err(NotPulled::Failed));
            }
        }));
    }
}

/// The position a request starts from: the cursor, less the lookback margin.
fn with_lookback(cursor: &Value, lookback: Option<u64>) -> Value {
    let Some(margin) = lookback.filter(|m| *m > 0) else { return cursor.clone() };
    match cursor {
        Value::Number(n) if n.is_i64() || n.is_u64() => Value::from(n.as_i64().unwrap_or(i64::MAX).saturating_sub(margin as i64)),
        Value::Number(n) => Value::from(n.as_f64().unwrap_or(0.0) - margin as f64),
        Value::String(s) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => Value::String((t - chrono::Duration::seconds(margin as i64)).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            Err(_) => cursor.clone(),
        },
        _ => cursor.clone(),
    }
}

/// The request for the next page, or `None` when the feed says there is none.
fn next_page(pull: &PullSpec, first: &RenderedRequest, body: &Value, page_no: u64, got_records: bool, render: impl Fn(Value) -> Result<RenderedRequest, String>) -> Result<Option<RenderedRequest>, String> {
    match &pull.next {
        None => Ok(None),
        Some(Pagination::Link(sel)) => match selector::select(body, sel) {
            Some(Value::String(link)) if !link.is_empty() => {
                let url = if link.starts_with("http://") || link.starts_with("https://") { link.clone() } else { join_url(&first.url, link) };
                Ok(Some(RenderedRequest { url, ..first.clone() }))
            }
            _ => Ok(None),
        },
        Some(Pagination::Token(sel)) => match selector::select(body, sel) {
            Some(Value::Null) | None => Ok(None),
            Some(Value::String(t)) if t.is_empty() => Ok(None),
            Some(token) => render(token.clone()).map(Some),
        },
        Some(Pagination::Page(_)) if !got_records => Ok(None),
        Some(Pagination::Page(_)) => render(Value::from(page_no + 1)).map(Some),
    }
}

/// `https://h/a/b?x` + `/c?p=2` → `https://h/c?p=2`; + `c?p=2` → `https://h/a/c?p=2`.
fn join_url(base: &str, link: &str) -> String {
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let origin_end = base[after_scheme..].find('/').map_or(base.len(), |i| after_scheme + i);
    if link.starts_with('/') {
        return format!("{}{link}", &base[..origin_end]);
    }
    let path = base.split('?').next().unwrap_or(base);
    let dir = path.rfind('/').filter(|i| *i >= origin_end).map_or(format!("{}/", &base[..origin_end]), |i| path[..=i].to_string());
    format!("{dir}{link}")
}

/// What a tick came to: a pull, or none because another instance holds the lease.
enum Pulled {
    Done(Result<PullReport, String>),
    Elsewhere(String),
}

/// The lease of a connector's pull (`pull:ID`), held by this instance while it pulls.
struct PullLease {
    db: Db,
    name: String,
    owner: String,
    ttl: chrono::Duration,
}

impl PullLease {
    /// Takes or renews it: `None` when this instance holds it, else who does.
    async fn take(&self) -> Result<Option<String>, String> {
        storage::take_lease(&self.db, &self.name, &self.owner, self.ttl).await.map_err(|e| format!("cannot take the pull lease: {e}"))
    }
}

/// One pull: every page of the feed from the cursor, every record stored as an inbound
/// job in ONE transaction, then the cursor advanced to the greatest version seen and saved.
/// A crash before the save re-reads the same records, which are recognised by their id
/// and version and not stored twice.
async fn pull_once(client: &awc::Client, shared: &ConnectorShared, db: &Db, egress: &Egress, metrics: &Metrics, cursor: Value, lease: &PullLease) -> Result<PullReport, String> {
    let pull = shared.spec.pull_view().ok_or("connector has no pull")?;
    let secrets = egress.secrets(&pull.request.secret_names()).map_err(|e| e.to_string())?;
    let from = with_lookback(&cursor, pull.lookback);
    let first_page = match &pull.next {
        Some(Pagination::Page(n)) => Value::from(*n),
        _ => Value::Null,
    };
    let render = |page: Value| shared.compiled.render_pull(&from, &page, &secrets).map_err(|e| e.to_string());
    let first = render(first_page.clone())?;
    let mut req = first.clone();
    let mut page_no = first_page.as_u64().unwrap_or(0);
    let mut next_cursor = cursor.clone();
    let mut jobs = Vec::new();
    let mut records_seen = 0;
    let mut pages = 0;
    let mut more = false;
    loop {
        pages += 1;
        // A long pull renews its lease at every page, and stops if it was lost meanwhile.
        if pages > 1
            && let Some(holder) = lease.take().await?
        {
            return Err(format!("lost the pull lease to instance {holder} during the pull; nothing of it was stored"));
        }
        let mut authorized = req.clone();
        shared.ready(&mut authorized, client, egress).await?;
        let body = sender::fetch_json(client, &authorized, egress).await.map_err(|o| o.error_text())?;
        let records = selector::records(&body, &pull.records);
        records_seen += records.len();
        for record in &records {
            let version = pull.cursor_field.as_deref().and_then(|f| fields::get_path(record, f)).cloned().unwrap_or(Value::Null);
            if greater(&version, &next_cursor) {
                next_cursor = version.clone();
            }
            jobs.push(inbound_job(shared, record, pull.id_field.as_deref(), Some(&version), "pull", None));
        }
        let from = jobs.len() - records.len();
        key_by_links(db, shared, &mut jobs[from..], pull.id_field.as_deref(), &records).await.map_err(|e| e.to_string())?;
        match next_page(pull, &first, &body, page_no, !records.is_empty(), render)? {
            // A very long backlog is taken in parts: what was read so far is stored and the
            // cursor advanced to it; the next pull (at once) goes on from there.
            Some(_) if pages >= MAX_PAGES => {
                more = true;
                tracing::info!(connector = %shared.id(), pages, "long backlog: storing what was read, continuing at once");
                break;
            }
            Some(next) => {
                req = next;
                page_no += 1;
            }
            None => break,
        }
    }
    let stored = storage::enqueue(db, &jobs).await.map_err(|e| e.to_string())? as usize;
    if next_cursor != cursor {
        storage::save_cursor(db, shared.id(), &next_cursor).await.map_err(|e| e.to_string())?;
    }
    Counters::add(&shared.counters.pulled, records_seen as u64);
    metrics.pulled(shared.id());
    // Going on at once only makes sense when the cursor moved; a feed that cannot be resumed
    // part-way (no version field) is read again at the next interval.
    let advanced = next_cursor != cursor;
    if more && !advanced {
        tracing::warn!(connector = %shared.id(), "the feed has more than {MAX_PAGES} pages and no version to resume from; reading again at the next interval");
    }
    Ok(PullReport { records: records_seen, pages, stored, cursor: next_cursor, more: more && advanced })
}

/// Orders cursor values: numbers by value, anything else by its text.
fn greater(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, _) => false,
        (_, Value::Null) => true,
        (Value::Number(x), Value::Number(y)) => x.as_f64() > y.as_f64(),
        _ => scalar_text(a) > scalar_text(b),
    }
}

impl Actor for Puller {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let spec = self.cx.shared.spec.clone();
        self.client = Some(sender::client(spec.timeout(), 1, self.cx.shared.tls.clone()));
        let every = spec.pull_view().map_or(Duration::from_secs(30), |p| p.every);
        let initial = spec.pull_view().map(|p| p.initial_cursor.clone()).unwrap_or(Value::Null);
        let db = self.cx.rt.db.clone();
        let id = self.cx.id().to_string();
        // No pull before the cursor is loaded (never from a stale position), but the mailbox
        // stays open meanwhile (`spawn`, not `wait`): a StopChild while the query waits in the
        // database stops the actor, which drops the query inside the runtime. Blocked in
        // `wait`, the actor kept it until its thread was torn down, and sqlx panicked
        // dropping a pooled connection outside a runtime.
        ctx.spawn(async move { storage::load_cursor(&db, &id).await }.into_actor(self).map(move |res, act, ctx| {
            match res {
                Ok(cursor) => {
                    act.cursor = cursor.unwrap_or(initial);
                    act.ready = true;
                }
                Err(e) => {
                    tracing::error!(connector = %act.cx.id(), error = %e, "cannot load the cursor; stopping for a restart");
                    ctx.stop();
                    return;
                }
            }
            ctx.run_interval(every, |act, ctx| act.tick(ctx));
            act.tick(ctx);
        }));
    }
}

impl Handler<Wake> for Puller {
    type Result = ();
    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.tick(ctx);
    }
}

/// Why a pull asked for (`PullNow`) did not run here.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotPulled {
    /// Another instance holds the connector's pull lease.
    #[error("another instance pulls this connector now (instance {0})")]
    Elsewhere(String),
    #[error("{0}")]
    Failed(String),
}

/// Pull now (the seed's `svc:syncNow`) and answer with what the pull did. If a pull is
/// running, the answer is that pull's.
#[derive(Message)]
#[rtype(result = "Result<PullReport, NotPulled>")]
pub struct PullNow;

impl Handler<PullNow> for Puller {
    type Result = ResponseFuture<Result<PullReport, NotPulled>>;
    fn handle(&mut self, _: PullNow, ctx: &mut Context<Self>) -> Self::Result {
        if self.cx.shared.is_paused() {
            return Box::pin(async { Err(NotPulled::Failed("the connector is paused".to_string())) });
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiting.push(tx);
        self.tick(ctx);
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(NotPulled::Failed("the puller stopped".into()))) })
    }
}

super::child::control_handlers!(Puller, "puller");

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookback_and_links() {
        assert_eq!(with_lookback(&json!(100), Some(5)), json!(95));
        assert_eq!(with_lookback(&json!(100), None), json!(100));
        assert_eq!(with_lookback(&json!("2024-05-10T00:00:30Z"), Some(30)), json!("2024-05-10T00:00:00Z"));
        assert_eq!(with_lookback(&json!("opaque-token"), Some(30)), json!("opaque-token"));
        assert_eq!(join_url("http://h:1/feed/changes?since=3", "/feed/changes?page=2"), "http://h:1/feed/changes?page=2");
        assert_eq!(join_url("http://h:1/feed/changes?since=3", "changes?page=2"), "http://h:1/feed/changes?page=2");
    }

    #[test]
    fn cursor_ordering() {
        assert!(greater(&json!(5), &json!(4)));
        assert!(!greater(&json!(4), &json!(4)));
        assert!(greater(&json!("2024-05-10T00:00:01Z"), &json!("2024-05-10T00:00:00Z")));
        assert!(greater(&json!(1), &Value::Null));
        assert!(!greater(&Value::Null, &json!(1)));
    }
}
