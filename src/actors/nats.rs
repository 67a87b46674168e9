//! NATS JetStream intake (`bus.nats.url` set): HMS events from a stream, through one durable
//! pull consumer shared by every instance, into the [`Bus`] like `POST /events/{topic}`.
//!
//! - **One taker at a time.** The instance holding the lease `nats:STREAM/CONSUMER` takes from
//!   the consumer; the others stand by and take over when it runs out (`cluster.lease_secs`).
//!   One taker that commits batch after batch keeps the stream's order: the jobs of a batch
//!   are stored in ONE group commit in sequence order, so per record key the jobs are ordered
//!   by stream sequence whichever instance took them. (Several takers at once could not
//!   promise that: a later batch taken by one instance may commit before an earlier one taken
//!   by another.) On a takeover, messages the last taker did not acknowledge are waited for:
//!   JetStream gives them out again after `ack_wait`, before anything newer.
//! - **Acknowledged after commit.** A message is acked once its jobs are durably stored; an
//!   instance that dies before leaves it unacked, and it is delivered again. Its event id is
//!   the `Nats-Msg-Id` header, else `STREAM:SEQUENCE` (stable across redeliveries), so a
//!   message stored twice makes its jobs once.
//! - **Bad messages** (not JSON, not an object, a subject outside the prefix) are terminated
//!   (never redelivered), logged with their stream sequence and counted; they stay in the
//!   stream. A database outage: the batch is kept (its ack deadline pushed back) and stored
//!   again with back-off; nothing is acked meanwhile.
//! - **A NATS outage**: HTTP intake goes on; the intake reconnects with back-off, and
//!   `/readyz` and `GET /cluster` say NATS is down from the moment the client sees the
//!   connection drop, whatever request was in flight.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures_util::StreamExt;
use serde::Serialize;

use super::bus::{Bus, PublishError, parse_event};
use crate::settings::NatsSettings;
use crate::storage::{self, Db};

/// Back-off between attempts to reach NATS (or to store a batch): doubling up to the max.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How long an idle taker waits for the next message in one request.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// What the intake is doing, for `/readyz` and `GET /cluster`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct NatsState {
    /// Connected to NATS, the stream and its consumer found or made.
    pub connected: bool,
    /// This instance holds the lease and takes from the consumer (else another does).
    pub taking: bool,
    /// Who takes from the consumer, when another instance does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taker: Option<String>,
    /// Why the intake is not taking, if something is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Messages stored (acknowledged) and refused (terminated) by this instance.
    pub stored: u64,
    pub refused: u64,
}

/// The intake's state, shared with the HTTP handlers.
#[derive(Debug, Default)]
pub struct NatsHealth(Mutex<NatsState>);

impl NatsHealth {
    pub fn state(&self) -> NatsState {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NatsState> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut NatsState)) {
        f(&mut self.lock());
    }
}

/// The intake's actor: runs [`take_forever`] for as long as it lives.
pub struct NatsIntake {
    intake: Intake,
}

/// What the intake works with.
#[derive(Clone)]
struct Intake {
    cfg: NatsSettings,
    url: String,
    bus: Bus,
    db: Db,
    instance: Arc<str>,
    lease: Duration,
    /// The intake's lease (`nats:STREAM/CONSUMER`) and its time on the database's clock.
    lease_name: String,
    ttl: chrono::Duration,
    health: Arc<NatsHealth>,
}

impl NatsIntake {
    /// `None` when `bus.nats.url` is not set.
    pub fn new(cfg: &NatsSettings, bus: Bus, db: Db, instance: Arc<str>, lease: Duration, health: Arc<NatsHealth>) -> Option<Self> {
        let url = cfg.url.as_deref().map(str::trim).filter(|u| !u.is_empty())?.to_string();
        let lease_name = format!("nats:{}/{}", cfg.stream, cfg.consumer);
        Some(Self { intake: Intake { cfg: cfg.clone(), url, bus, db, instance, lease, lease_name, ttl: storage::lease_ttl(lease), health } })
    }
}

impl Actor for NatsIntake {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.spawn(take_forever(self.intake.clone()).into_actor(self));
    }
}

super::messages::halt_handler!(NatsIntake);

/// Connects, takes and stores, and on any failure starts again after a back-off.
async fn take_forever(intake: Intake) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let Err(error) = session(&intake, &mut backoff).await;
        intake.health.update(|s| {
            s.connected = false;
            s.taking = false;
            s.error = Some(error.clone());
        });
        tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "NATS intake is down; HTTP intake goes on; trying again");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection to NATS: finds (or makes) the stream and the consumer, then takes batches
/// while this instance holds the lease. Returns only with the reason it stopped.
async fn session(intake: &Intake, backoff: &mut Duration) -> Result<std::convert::Infallible, String> {
    let cfg = &intake.cfg;
    // A request in flight when the connection drops is answered only after a reconnect (a
    // `fetch` has no deadline of its own), so a take ends at the drop instead: `/readyz`
    // says NATS is down as soon as the client sees it go.
    let dropped = Arc::new(tokio::sync::Notify::new());
    let on_drop = dropped.clone();
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .event_callback(move |event| {
            let on_drop = on_drop.clone();
            async move {
                if matches!(event, async_nats::Event::Disconnected) {
                    on_drop.notify_one();
                }
            }
        })
        .connect(intake.url.as_str())
        .await
        .map_err(|e| format!("cannot connect to NATS at {}: {e}", intake.url))?;
    let js = jetstream::new(client.clone());
    let stream = js
        .get_or_create_stream(jetstream::stream::Config { name: cfg.stream.clone(), subjects: vec![cfg.subjects.clone()], ..Default::default() })
        .await
        .map_err(|e| format!("cannot find or create the stream {}: {e}", cfg.stream))?;
    let consumer: PullConsumer = stream
        .get_or_create_consumer(
            &cfg.consumer,
            jetstream::consumer::pull::Config {
                durable_name: Some(cfg.consumer.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(cfg.ack_wait_secs.max(1)),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot find or create the consumer {} of {}: {e}", cfg.consumer, cfg.stream))?;
    intake.health.update(|s| {
        s.connected = true;
        s.error = None;
    });
    tracing::info!(stream = %cfg.stream, consumer = %cfg.consumer, "NATS intake connected");
    *backoff = MIN_BACKOFF;
    let mut taking = false;
    loop {
        if client.connection_state() != async_nats::connection::State::Connected {
            return Err(format!("lost the connection to NATS at {}", intake.url));
        }
        match storage::take_lease(&intake.db, &intake.lease_name, &intake.instance, intake.ttl).await {
            Ok(None) => {
                if !taking {
                    taking = true;
                    intake.health.update(|s| {
                        s.taking = true;
                        s.taker = None;
                    });
                    wait_for_unacked(&consumer, cfg).await?;
                }
            }
            Ok(Some(holder)) => {
                taking = false;
                intake.health.update(|s| {
                    s.taking = false;
                    s.taker = Some(holder);
                });
                tokio::time::sleep(intake.lease / 3).await;
                continue;
            }
            Err(e) => {
                taking = false;
                intake.health.update(|s| s.taking = false);
                tracing::warn!(error = %e, "NATS intake cannot take its lease (the database); waiting");
                tokio::time::sleep(MAX_BACKOFF.min(intake.lease / 3)).await;
                continue;
            }
        }
        let batch = tokio::select! {
            batch = take(&consumer, cfg.batch.max(1)) => batch?,
            () = dropped.notified() => return Err(format!("lost the connection to NATS at {}", intake.url)),
        };
        if !batch.is_empty() {
            store_and_ack(intake, batch).await?;
        }
    }
}

/// A takeover: messages taken by the last taker (or by this one before a reconnect) and not
/// acknowledged are given out again after `ack_wait`, before anything newer; waiting for
/// that keeps their order before later messages.
async fn wait_for_unacked(consumer: &PullConsumer, cfg: &NatsSettings) -> Result<(), String> {
    let mut consumer = consumer.clone();
    let info = consumer.info().await.map_err(|e| format!("cannot read the consumer {}: {e}", cfg.consumer))?;
    if info.num_ack_pending > 0 {
        tracing::info!(unacked = info.num_ack_pending, wait_secs = cfg.ack_wait_secs, "taking over the NATS consumer; waiting for the messages the last taker did not acknowledge");
        tokio::time::sleep(Duration::from_secs(cfg.ack_wait_secs.max(1))).await;
    }
    Ok(())
}

/// Up to `n` messages: what is there now, else the first to come within [`IDLE_WAIT`] with
/// what came with it.
async fn take(consumer: &PullConsumer, n: usize) -> Result<Vec<jetstream::Message>, String> {
    let now = consumer.fetch().max_messages(n).messages().await.map_err(|e| format!("cannot take from NATS: {e}"))?;
    let mut taken = drain(now).await?;
    if taken.is_empty() {
        let next = consumer.batch().max_messages(1).expires(IDLE_WAIT).messages().await.map_err(|e| format!("cannot take from NATS: {e}"))?;
        taken = drain(next).await?;
        if !taken.is_empty() && n > 1 {
            let more = consumer.fetch().max_messages(n - 1).messages().await.map_err(|e| format!("cannot take from NATS: {e}"))?;
            taken.extend(drain(more).await?);
        }
    }
    Ok(taken)
}

async fn drain(mut batch: jetstream::consumer::pull::Batch) -> Result<Vec<jetstream::Message>, String> {
    let mut out = Vec::new();
    // The batch ends by itself when its request is over (no messages, or its wait ran out).
    while let Some(m) = batch.next().await {
        match m {
            Ok(m) => out.push(m),
            // What came before the error is stored; the request is made again next round.
            Err(e) if !out.is_empty() => {
                tracing::debug!(error = %e, "a NATS request ended with an error after some messages");
                break;
            }
            Err(e) => return Err(format!("cannot take from NATS: {e}")),
        }
    }
    Ok(out)
}

/// An event read from a message: its topic, body and id.
#[derive(Debug, Clone, PartialEq)]
struct Incoming {
    topic: String,
    payload: serde_json::Value,
    id: String,
}

/// Reads a message as `POST /events/{topic}` reads a request (see the module docs).
fn decode(cfg: &NatsSettings, subject: &str, msg_id: Option<&str>, sequence: u64, body: &[u8]) -> Result<Incoming, String> {
    let topic = subject.strip_prefix(cfg.prefix.as_str()).filter(|t| !t.is_empty()).ok_or_else(|| format!("the subject {subject} is not under {}", cfg.prefix))?;
    let payload = parse_event(body)?;
    let id = msg_id.map(str::to_string).unwrap_or_else(|| format!("{}:{sequence}", cfg.stream));
    Ok(Incoming { topic: topic.to_string(), payload, id })
}

/// Stores a batch's events in ONE group commit, in sequence order, then acks them; bad
/// messages are terminated. A storage failure keeps the batch (its ack deadline pushed
/// back) and tries again with back-off for as long as this instance holds the lease.
async fn store_and_ack(intake: &Intake, batch: Vec<jetstream::Message>) -> Result<(), String> {
    let mut good = Vec::with_capacity(batch.len());
    let mut events = Vec::with_capacity(batch.len());
    for msg in batch {
        let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        let msg_id = msg.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str().to_string());
        match decode(&intake.cfg, msg.subject.as_str(), msg_id.as_deref(), sequence, &msg.payload) {
            Ok(ev) => {
                events.push((ev.topic, ev.payload, ev.id));
                good.push((msg, sequence));
            }
            Err(why) => refuse(intake, &msg, sequence, &why).await,
        }
    }
    if events.is_empty() {
        return Ok(());
    }
    let mut backoff = MIN_BACKOFF;
    let results = loop {
        match intake.bus.publish_batch(events.clone()).await {
            Ok(results) => break results,
            Err(e) => {
                tracing::warn!(error = %e, messages = good.len(), retry_in_ms = backoff.as_millis() as u64, "cannot store the events taken from NATS; nothing acknowledged, trying again");
                intake.health.update(|s| s.error = Some(e.to_string()));
                for (msg, _) in &good {
                    let _ = msg.ack_with(AckKind::Progress).await;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                if let Ok(Some(holder)) = storage::take_lease(&intake.db, &intake.lease_name, &intake.instance, intake.ttl).await {
                    // Another instance takes now: these go to it when their ack deadline passes.
                    tracing::warn!(holder = %holder, "lost the NATS intake's lease while storing; leaving the batch unacknowledged");
                    return Ok(());
                }
            }
        }
    };
    intake.health.update(|s| s.error = None);
    for ((msg, sequence), result) in good.iter().zip(results) {
        match result {
            Ok(_) => {
                if let Err(e) = msg.ack().await {
                    return Err(format!("cannot acknowledge message {sequence}: {e}"));
                }
                intake.health.update(|s| s.stored += 1);
            }
            Err(PublishError::Invalid(why)) | Err(PublishError::Unavailable(why)) => refuse(intake, msg, *sequence, &why).await,
        }
    }
    Ok(())
}

/// Terminates a message that can never be stored (it stays in the stream).
async fn refuse(intake: &Intake, msg: &jetstream::Message, sequence: u64, why: &str) {
    tracing::error!(stream = %intake.cfg.stream, sequence, subject = %msg.subject, reason = %why, "refused a NATS message; it is not delivered again (it stays in the stream)");
    intake.health.update(|s| s.refused += 1);
    if let Err(e) = msg.ack_with(AckKind::Term).await {
        tracing::warn!(sequence, error = %e, "cannot terminate the refused message; it will come again and be refused again");
    }
}

/// Publishes one event to NATS JetStream on `prefix` + `topic`, with `id` as its
/// `Nats-Msg-Id` (JetStream drops a repeat within its duplicate window; hms-sync stores it
/// once in any case). Waits for the stream's acknowledgement: returns its sequence.
pub async fn publish(url: &str, prefix: &str, topic: &str, body: Vec<u8>, id: Option<&str>) -> Result<u64, String> {
    let client = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(3)).connect(url).await.map_err(|e| format!("cannot connect to NATS at {url}: {e}"))?;
    let js = jetstream::new(client);
    let mut headers = async_nats::HeaderMap::new();
    if let Some(id) = id {
        headers.insert("Nats-Msg-Id", id);
    }
    let subject = format!("{prefix}{topic}");
    let ack = js.publish_with_headers(subject.clone(), headers, body.into()).await.map_err(|e| format!("cannot publish on {subject}: {e}"))?;
    let ack = ack.await.map_err(|e| format!("no stream took {subject} (is the stream there, with this subject?): {e}"))?;
    Ok(ack.sequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_read_like_http_events() {
        let cfg = NatsSettings::default();
        let ev = decode(&cfg, "hms.events.permit.updated", None, 42, br#"{"permitId": "RW-1"}"#).unwrap();
        assert_eq!((ev.topic.as_str(), ev.id.as_str()), ("permit.updated", "HMS_EVENTS:42"), "no Nats-Msg-Id: STREAM:SEQUENCE");
        let ev = decode(&cfg, "hms.events.permit.updated", Some("evt-9"), 42, br#"{"permitId": "RW-1"}"#).unwrap();
        assert_eq!(ev.id, "evt-9", "the Nats-Msg-Id header is the event id");
        assert!(decode(&cfg, "other.permit", None, 1, b"{}").unwrap_err().contains("not under hms.events."));
        assert!(decode(&cfg, "hms.events.", None, 1, b"{}").is_err(), "an empty topic");
        assert!(decode(&cfg, "hms.events.x", None, 1, b"{nope").unwrap_err().contains("not valid JSON"));
        assert!(decode(&cfg, "hms.events.x", None, 1, b"[1]").unwrap_err().contains("must be a JSON object"));
    }
}
