//! Puller: the ETL pull of a connector. On its interval it asks the external change feed
//! for what changed since the cursor, stores every record as an inbound job in one
//! transaction, and only then advances the cursor, so a crash between fetch and store
//! re-reads the batch instead of losing it (duplicates are dropped by the job's id).

use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;

use super::child::ChildCtx;
use super::messages::{Fault, InjectFault, StopChild, Wake};
use super::shared::{ConnectorShared, Counters};
use crate::delivery::{sender, Egress, Outcome};
use crate::mapping::{fields, selector};
use crate::metrics::Metrics;
use crate::storage::{self, Db, NewDelivery};

/// The topic of jobs that carry a record from the outside into HMS.
pub const INBOUND_TOPIC: &str = "inbound";

pub struct Puller {
    cx: ChildCtx,
    client: Option<awc::Client>,
    /// Reloaded from the database at every start: the database, not memory, is the truth.
    cursor: Value,
    running: bool,
}

impl Puller {
    pub fn new(cx: ChildCtx) -> Self {
        Self { cx, client: None, cursor: Value::Null, running: false }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.running || self.cx.shared.is_paused() {
            return;
        }
        let Some(client) = self.client.clone() else { return };
        self.running = true;
        let shared = self.cx.shared.clone();
        let db = self.cx.rt.db.clone();
        let cursor = self.cursor.clone();
        let egress = self.cx.rt.egress.clone();
        let metrics = self.cx.rt.metrics.clone();
        ctx.spawn(async move { pull_once(&client, &shared, &db, &egress, &metrics, cursor).await }.into_actor(self).map(|res, act, _| {
            act.running = false;
            match res {
                Ok((cursor, stored)) => {
                    act.cursor = cursor;
                    if stored > 0 {
                        act.cx.supervisor.do_send(Wake);
                    }
                }
                Err(e) => {
                    Counters::inc(&act.cx.shared.counters.pull_failures);
                    tracing::warn!(connector = %act.cx.id(), error = %e, "pull failed; cursor not advanced");
                }
            }
        }));
    }
}

/// One pull: fetch, select, store, then advance and persist the cursor.
async fn pull_once(client: &awc::Client, shared: &ConnectorShared, db: &Db, egress: &Egress, metrics: &Metrics, cursor: Value) -> Result<(Value, usize), String> {
    let pull = shared.spec.pull_view().ok_or("connector has no pull")?;
    let secrets = egress.secrets(&shared.spec.secret_names()).map_err(|e| e.to_string())?;
    let req = shared.compiled.render_pull(&cursor, &secrets).map_err(|e| e.to_string())?;
    let body = sender::fetch_json(client, &req, egress).await.map_err(|o| match o {
        Outcome::Retryable { error, .. } | Outcome::Permanent { error } => error,
        Outcome::Delivered { status } => format!("HTTP {status}"),
    })?;
    let records = selector::records(&body, &pull.records);
    let table = shared.spec.mapping_pairs();
    let mut next = cursor.clone();
    let mut jobs = Vec::with_capacity(records.len());
    for record in &records {
        let version = pull.cursor_field.as_deref().and_then(|f| fields::get_path(record, f)).cloned().unwrap_or(Value::Null);
        if greater(&version, &next) {
            next = version.clone();
        }
        let key = pull.id_field.as_deref().and_then(|f| fields::get_path(record, f)).map(scalar_text).unwrap_or_default();
        let payload = if table.is_empty() { record.clone() } else { fields::map_in(record, &table) };
        jobs.push(NewDelivery {
            connector_id: shared.id().to_string(),
            event_id: pulled_event_id(&key, &version, record),
            topic: INBOUND_TOPIC.into(),
            record_key: key,
            payload,
        });
    }
    storage::enqueue(db, &jobs).await.map_err(|e| e.to_string())?;
    if next != cursor {
        storage::save_cursor(db, shared.id(), &next).await.map_err(|e| e.to_string())?;
    }
    Counters::add(&shared.counters.pulled, records.len() as u64);
    metrics.pulled(shared.id());
    Ok((next, jobs.len()))
}

/// The id of a pulled change: the record's id and version, so the same change read twice
/// (lookback, a crash before the cursor was saved) is stored once, while a new version is
/// a new job. Without a version field the record's content stands for its version.
fn pulled_event_id(key: &str, version: &Value, record: &Value) -> String {
    if version.is_null() {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(record.to_string().as_bytes());
        format!("pull:{key}:#{}", hex::encode(&digest[..12]))
    } else {
        format!("pull:{key}:{}", scalar_text(version))
    }
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

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Actor for Puller {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let spec = self.cx.shared.spec.clone();
        self.client = Some(sender::client(spec.timeout(), 1));
        let every = spec.pull_view().map_or(Duration::from_secs(30), |p| p.every);
        let initial = spec.pull_view().map(|p| p.initial_cursor.clone()).unwrap_or(Value::Null);
        let db = self.cx.rt.db.clone();
        let id = self.cx.id().to_string();
        // Wait for the cursor before the first tick: never pull from a stale position.
        ctx.wait(async move { storage::load_cursor(&db, &id).await }.into_actor(self).map(move |res, act, ctx| {
            match res {
                Ok(cursor) => act.cursor = cursor.unwrap_or(initial),
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

impl Handler<StopChild> for Puller {
    type Result = ();
    fn handle(&mut self, _: StopChild, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<InjectFault> for Puller {
    type Result = ();
    fn handle(&mut self, msg: InjectFault, ctx: &mut Context<Self>) {
        match msg.0 {
            Fault::Panic => panic!("injected fault in puller of {}", self.cx.id()),
            _ => ctx.stop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cursor_ordering() {
        assert!(greater(&json!(5), &json!(4)));
        assert!(!greater(&json!(4), &json!(4)));
        assert!(greater(&json!("2024-05-10T00:00:01Z"), &json!("2024-05-10T00:00:00Z")));
        assert!(greater(&json!(1), &Value::Null));
        assert!(!greater(&Value::Null, &json!(1)));
    }
}
