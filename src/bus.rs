//! The event bus entry point, shared by `POST /events/{topic}`, `hms-sync publish` (through
//! the API) and code that embeds the runtime: match an HMS event to connectors (topic +
//! filter), store one delivery job per match durably, then acknowledge.

use std::sync::Arc;

use actix::Addr;
use serde::Serialize;
use serde_json::Value;

use crate::actors::registry::{RouteEntry, RoutingTable};
use crate::actors::ticket_writer::{StoreJobs, TicketWriter};
use crate::actors::shared::Counters;
use crate::metrics::Metrics;
use crate::storage::NewDelivery;

/// A cloneable handle to publish events in-process.
#[derive(Clone)]
pub struct Bus {
    routes: RoutingTable,
    writer: Addr<TicketWriter>,
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
    pub fn new(routes: RoutingTable, writer: Addr<TicketWriter>, metrics: Arc<Metrics>) -> Self {
        Self { routes, writer, metrics }
    }

    /// Publishes `payload` on `topic`. `event_id` makes re-publishing idempotent (the same id
    /// is delivered once per connector); without one a time-ordered id (UUIDv7) is made.
    /// Returns only after every job is durably stored.
    pub async fn publish(&self, topic: &str, payload: Value, event_id: Option<String>) -> Result<Accepted, PublishError> {
        check_topic(topic)?;
        let event_id = match event_id {
            Some(id) if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) => {
                return Err(PublishError::Invalid(format!("the event id must be 1 to {MAX_ID_LEN} printable characters")));
            }
            Some(id) => id,
            None => uuid::Uuid::now_v7().to_string(),
        };
        let routes: Vec<RouteEntry> = match self.routes.read() {
            Ok(t) => t.get(topic).cloned().unwrap_or_default(),
            Err(poisoned) => poisoned.into_inner().get(topic).cloned().unwrap_or_default(),
        };
        let mut jobs = Vec::with_capacity(routes.len());
        let mut accepted = Accepted { event_id: event_id.clone(), topic: topic.to_string(), connectors: Vec::new(), filtered: Vec::new() };
        for RouteEntry { shared, .. } in &routes {
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
                payload: payload.clone(),
                origin: crate::sync::Origin::Event,
                deleted: shared.compiled.is_delete(topic, &payload),
            });
            accepted.connectors.push(shared.id().to_string());
        }
        if jobs.is_empty() {
            return Ok(accepted);
        }
        self.writer
            .send(StoreJobs(jobs))
            .await
            .map_err(|e| PublishError::Unavailable(e.to_string()))?
            .map_err(PublishError::Unavailable)?;
        // Straight to the connectors' supervisors (stable addresses), not via the Registry.
        for r in routes.iter().filter(|r| accepted.connectors.iter().any(|c| c == r.shared.id())) {
            r.shared.jobs_stored(&r.supervisor);
        }
        for id in &accepted.connectors {
            self.metrics.accepted.with_label_values(&[id.as_str()]).inc();
        }
        Ok(accepted)
    }
}

/// Topics are names like `permit.updated`: letters, digits, `.`, `_`, `-`, at most 128.
fn check_topic(topic: &str) -> Result<(), PublishError> {
    let ok = !topic.is_empty() && topic.len() <= 128 && topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok { Ok(()) } else { Err(PublishError::Invalid(format!("invalid topic `{topic}`: expected 1 to 128 letters, digits, `.`, `_` or `-`"))) }
}
