//! The event bus entry point, shared by `POST /events/{topic}`, `hms-sync publish` (through
//! the API) and code that embeds the runtime: match an HMS event to connectors (topic +
//! filter), store one delivery job per match durably, then acknowledge.

use std::collections::HashMap;
use std::sync::Arc;

use actix::Addr;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use super::shared::{ConnectorShared, Counters};
use super::committer::{Committer, StoreJobs};
use crate::metrics::Metrics;
use crate::storage::{Delivery, NewDelivery};

/// Connectors by topic, written by the Registry, read by publishers (no message to the
/// Registry per event).
pub type RoutingTable = Arc<std::sync::RwLock<HashMap<String, Vec<Arc<ConnectorShared>>>>>;

/// A cloneable handle to publish events in-process.
#[derive(Clone)]
pub struct Bus {
    routes: RoutingTable,
    writer: Addr<Committer>,
    metrics: Arc<Metrics>,
}

/// What the bus did with an event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Accepted {
    pub event_id: String,
    pub topic: String,
    /// Connectors that got a delivery job (stored before this was returned).
    pub connectors: Vec<String>,
    /// Connectors on the topic whose filter turned the event away (counted, not delivered).
    pub filtered: Vec<String>,
    /// When no connector subscribes to the topic: the subscribed topic closest to it, a
    /// likely typo's intended topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub did_you_mean: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The event itself is unacceptable (bad topic, bad id); nothing was stored.
    #[error("{0}")]
    Invalid(String),
    /// The event could not be stored; nothing was acknowledged.
    #[error("cannot store the event: {0}")]
    Unavailable(String),
}

/// Longest accepted event id (the `Idempotency-Key`).
const MAX_ID_LEN: usize = 200;

impl Bus {
    pub fn new(routes: RoutingTable, writer: Addr<Committer>, metrics: Arc<Metrics>) -> Self {
        Self { routes, writer, metrics }
    }

    /// Publishes `payload` on `topic`. `event_id` makes re-publishing idempotent (the same id
    /// is delivered once per connector); without one a time-ordered id (UUIDv7) is made.
    /// Returns only after every job is durably stored.
    pub async fn publish(&self, topic: &str, payload: Value, event_id: Option<String>) -> Result<Accepted, PublishError> {
        let mut routed = self.route(topic, payload, event_id)?;
        if !routed.jobs.is_empty() {
            let span = tracing::debug_span!("commit", event = %routed.accepted.event_id);
            let heads = self.store(std::mem::take(&mut routed.jobs)).instrument(span).await?;
            wake(&routed.wake, heads);
        }
        Ok(self.stored(routed))
    }

    /// Publishes several events with their ids, in order, in ONE group commit: their jobs
    /// get ids in this order, so a source that orders its events (a stream's sequence) keeps
    /// that order per record key. An event that is invalid gets its error and the others go
    /// on; `Err` when nothing could be stored (none is acknowledged).
    pub async fn publish_batch(&self, events: Vec<(String, Value, String)>) -> Result<Vec<Result<Accepted, PublishError>>, PublishError> {
        let mut routed: Vec<Result<Routed, PublishError>> = events.into_iter().map(|(topic, payload, id)| self.route(&topic, payload, Some(id))).collect();
        let jobs: Vec<NewDelivery> = routed.iter_mut().filter_map(|r| r.as_mut().ok()).flat_map(|r| std::mem::take(&mut r.jobs)).collect();
        if !jobs.is_empty() {
            let heads = self.store(jobs).instrument(tracing::debug_span!("commit")).await?;
            let mut connectors: Vec<Arc<ConnectorShared>> = Vec::new();
            for shared in routed.iter().filter_map(|r| r.as_ref().ok()).flat_map(|r| &r.wake) {
                if !connectors.iter().any(|c| Arc::ptr_eq(c, shared)) {
                    connectors.push(shared.clone());
                }
            }
            wake(&connectors, heads);
        }
        Ok(routed.into_iter().map(|r| r.map(|r| self.stored(r))).collect())
    }

    /// Stores jobs durably (a group commit of the Committer); the stored jobs that head their
    /// record keys, when the writer knows them.
    async fn store(&self, jobs: Vec<NewDelivery>) -> Result<Option<Vec<Delivery>>, PublishError> {
        self.writer.send(StoreJobs(jobs)).await.map_err(|e| PublishError::Unavailable(e.to_string()))?.map_err(PublishError::Unavailable)
    }

    /// After an event's jobs are stored (and its connectors' lanes woken): it is counted.
    fn stored(&self, routed: Routed) -> Accepted {
        for id in &routed.accepted.connectors {
            self.metrics.accepted.with_label_values(&[id.as_str()]).inc();
        }
        routed.accepted
    }

    /// Matches an event to its connectors (topic + filter) and makes their jobs.
    fn route(&self, topic: &str, payload: Value, event_id: Option<String>) -> Result<Routed, PublishError> {
        check_topic(topic)?;
        let event_id = match event_id {
            Some(id) if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) => {
                return Err(PublishError::Invalid(format!("the event id must be 1 to {MAX_ID_LEN} printable characters")));
            }
            Some(id) => id,
            None => uuid::Uuid::now_v7().to_string(),
        };
        let route = tracing::debug_span!("route", topic, event = %event_id).entered();
        // The table's lock is held only here, never across an await.
        let (routes, did_you_mean) = {
            let table = self.routes.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            match table.get(topic) {
                Some(routes) if !routes.is_empty() => (routes.clone(), None),
                _ => (Vec::new(), closest(topic, table.keys().map(String::as_str))),
            }
        };
        let mut accepted = Accepted { event_id: event_id.clone(), topic: topic.to_string(), connectors: Vec::new(), filtered: Vec::new(), did_you_mean };
        if routes.is_empty() {
            // Normal (events nobody syncs), but counted, and a likely typo is named.
            self.metrics.unrouted(topic);
            tracing::debug!(topic, did_you_mean = ?accepted.did_you_mean, "no connector subscribes to this topic; the event is not stored");
            return Ok(Routed { accepted, jobs: Vec::new(), wake: Vec::new() });
        }
        // Every connector's job shares the one payload.
        let payload = crate::mapping::Payload::shared(payload);
        let mut jobs = Vec::with_capacity(routes.len());
        for shared in &routes {
            if !shared.compiled.matches(topic, &payload) {
                Counters::inc(&shared.counters.filtered);
                self.metrics.filtered.with_label_values(&[shared.id()]).inc();
                accepted.filtered.push(shared.id().to_string());
                continue;
            }
            // A key that cannot be rendered (field missing) orders the job on its own; the
            // send-time render then parks it with the reason if the request needs the field.
            let record_key = crate::sync::inbound::no_nul(shared.compiled.record_key(&payload, &event_id).unwrap_or_else(|_| event_id.clone()));
            jobs.push(NewDelivery {
                connector_id: shared.id().to_string(),
                event_id: event_id.clone(),
                topic: topic.to_string(),
                record_key,
                payload: std::sync::Arc::clone(&payload),
                origin: crate::sync::Origin::Event,
                deleted: shared.compiled.is_delete(topic, &payload),
            });
            accepted.connectors.push(shared.id().to_string());
        }
        drop(route);
        // The payload's JSON text, for the jobs' rows and for bodies that are the record as it
        // is, is made here on the publisher's thread, not by the writer: its thread is the
        // one every event's commit waits on.
        if !jobs.is_empty() {
            payload.text();
        }
        let wake = routes.into_iter().filter(|s| accepted.connectors.iter().any(|c| c == s.id())).collect();
        Ok(Routed { accepted, jobs, wake })
    }
}

/// Jobs were stored for `connectors`: their lanes are woken (straight, not via the Registry
/// or the supervisors), each given its jobs that head their record keys when the writer
/// knows them (`heads`); a connector with none of those is not woken (its new jobs wait
/// behind their keys' heads, whose settles read the queue for them; a job already stored
/// needs nothing).
fn wake(connectors: &[Arc<ConnectorShared>], heads: Option<Vec<Delivery>>) {
    let Some(mut heads) = heads else {
        connectors.iter().for_each(|shared| shared.jobs_stored(None));
        return;
    };
    for shared in connectors {
        let (mine, rest): (Vec<Delivery>, Vec<Delivery>) = heads.into_iter().partition(|j| j.connector_id == shared.id());
        heads = rest;
        shared.jobs_stored(Some(mine));
    }
}

/// An event matched to its connectors, its jobs not stored yet.
struct Routed {
    accepted: Accepted,
    jobs: Vec<NewDelivery>,
    /// The connectors whose lanes to wake once the jobs are stored (those with a job).
    wake: Vec<Arc<ConnectorShared>>,
}

/// An event's body as `POST /events/{topic}` and the NATS intake take it: a JSON object.
pub fn parse_event(body: &[u8]) -> Result<Value, String> {
    let payload: Value = serde_json::from_slice(body).map_err(|e| format!("the event is not valid JSON: {e}"))?;
    if !payload.is_object() {
        return Err(format!("the event must be a JSON object (its fields are what connectors map), found {}", json_kind(&payload)));
    }
    Ok(payload)
}

/// "an array", "a string", … for messages.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The topic of `known` closest to `topic` by edit distance, if it is close enough to be a
/// typo of it (at most a third of its length, and 3 edits).
fn closest<'a>(topic: &str, known: impl Iterator<Item = &'a str>) -> Option<String> {
    let limit = (topic.chars().count() / 3).clamp(1, 3);
    known.map(|k| (strsim::levenshtein(topic, k), k)).filter(|(d, _)| *d <= limit).min().map(|(_, k)| k.to_string())
}

/// Topics are names like `permit.updated`: letters, digits, `.`, `_`, `-`, at most 128.
fn check_topic(topic: &str) -> Result<(), PublishError> {
    let ok = !topic.is_empty() && topic.len() <= 128 && topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok { Ok(()) } else { Err(PublishError::Invalid(format!("invalid topic `{topic}`: expected 1 to 128 letters, digits, `.`, `_` or `-`"))) }
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn a_typo_names_the_closest_subscribed_topic() {
        let known = ["permit.updated", "permit.created", "shift.updated"];
        assert_eq!(closest("permit.updaetd", known.into_iter()).as_deref(), Some("permit.updated"));
        assert_eq!(closest("shift.update", known.into_iter()).as_deref(), Some("shift.updated"));
        assert_eq!(closest("invoice.paid", known.into_iter()), None);
    }
}
