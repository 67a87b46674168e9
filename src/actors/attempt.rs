//! One attempt of one claimed job, run on a worker of the pool: the two-way gate → render →
//! send → settle (pure: `delivery::settle`) → observe (counters, metrics, alerts, the log
//! line) → commit (the job's outcome, its link, the attempt and the ticket, in one group
//! commit of the [`Committer`](super::committer)). Read top to bottom from [`run`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use serde_json::json;
use tracing::Instrument;

use super::alerter::{CircuitOpened, FailureSeen, JobParked};
use super::lane::{Lane, RequestOver};
use super::shared::{ConnectorShared, Counters, Runtime};
use super::committer::RecordOutcome;
use super::two_way;
use crate::delivery::breaker::{Change, Circuit};
use crate::delivery::{sender, settle, Outcome, Settlement};
use crate::mapping::compiled::masked_secrets;
use crate::spec::model::{ConnectorSpec, Side};
use crate::storage::{self, Claim, Delivery, Direction, EntryWritten, InFlight, JobUpdate, NewAttempt, NewTicket, TicketStatus};

/// What an attempt came to, for the lane's bookkeeping.
pub struct Done {
    /// The outcome is committed (else the job is still pending, as it was).
    pub recorded: bool,
    /// The job's record key may have a pending job now (see `EntryWritten::Settled`): the
    /// lane reads the queue for it, unless it is given as `next`.
    pub key_waits: bool,
    /// That job, due, as SQLite's writer read it in the settle's commit: the lane starts it
    /// without reading the queue.
    pub next: Option<Delivery>,
}

/// What one attempt works with: the connector's shared state, and the lane to tell when
/// its request is over.
#[derive(Clone)]
pub struct Crew {
    pub rt: Runtime,
    pub shared: Arc<ConnectorShared>,
    pub lane: Addr<Lane>,
    /// This job is the circuit breaker's probe after a cool-down.
    pub probe: bool,
}

thread_local! {
    /// Each worker's HTTP client per connector (awc clients are not `Send`), made on the
    /// connector's first attempt there. Keyed by the address of the connector's shared
    /// state, which the `Weak` keeps from being reused while the entry exists.
    static CLIENTS: RefCell<HashMap<usize, (Weak<ConnectorShared>, awc::Client)>> = RefCell::new(HashMap::new());
}

/// This worker's client for `shared`'s connector (its timeout, connection limit and TLS).
fn client(shared: &Arc<ConnectorShared>) -> awc::Client {
    let key = Arc::as_ptr(shared) as usize;
    CLIENTS.with(|clients| {
        let mut clients = clients.borrow_mut();
        if let Some((_, c)) = clients.get(&key) {
            return c.clone();
        }
        // Clients of connectors that are gone (replaced or removed) go now.
        clients.retain(|_, (w, _)| w.strong_count() > 0);
        let c = sender::client(shared.spec.timeout(), shared.spec.concurrency_limit(), shared.tls.clone());
        clients.insert(key, (Arc::downgrade(shared), c.clone()));
        c
    })
}

/// How often a refused conditional write (409/412) is decided again within one attempt.
const REDECIDE_ROUNDS: u32 = 3;

/// One gate-render-send round of an attempt.
struct Sent {
    cleared: two_way::Cleared,
    /// The URL as logs and tickets may show it (secrets masked).
    masked_url: Option<String>,
    line: String,
    sent_meta: Option<(Option<u16>, u64)>,
    answer: Option<actix_web::web::Bytes>,
    outcome: Outcome,
    detail: serde_json::Value,
    request_secrets: crate::mapping::Secrets,
    /// The claim's lease ran out before the request could go: nothing was sent, and the
    /// job is left as it is (another instance may have claimed it).
    lease_lapsed: bool,
}

impl Sent {
    /// A two-way write answered 409 or 412 by a side the connector can read again.
    fn refused_as_stale(&self, shared: &ConnectorShared) -> bool {
        self.cleared.link.is_some() && matches!(self.sent_meta, Some((Some(409 | 412), _))) && two_way::can_read(shared, self.cleared.to)
    }
}

/// The two-way gate, render (secrets from the environment now) and send. `Err`: the job
/// was settled by the gate.
async fn send_once(crew: &Crew, client: &awc::Client, claim: &Claim, attempts: i32, round: u32) -> Result<Sent, two_way::Settled> {
    let job = &claim.job;
    let cleared = two_way::gate(client, &crew.rt, &crew.shared, job, attempts).await?;
    let (rt, shared) = (&crew.rt, &crew.shared);
    // A two-way verdict may write the other way (the target's newer version back to the source).
    let inbound = cleared.to == Side::Hms;
    let (payload, blocked, extras) = (&cleared.payload, cleared.blocked.clone(), &cleared.extras);
    let only_publish = inbound && shared.spec.hms_request().is_none();
    let write = cleared.write;
    let render = |secrets: &crate::mapping::Secrets| {
        let _render = tracing::debug_span!("render").entered();
        shared.compiled.render_write(cleared.to, write, payload, extras, secrets)
    };
    let names = ConnectorSpec::secrets_of(shared.spec.write_request(cleared.to, write));
    let prepared = rt.egress.secrets(&names).map_err(|e| e.to_string()).and_then(|secrets| {
        render(&secrets).map_err(|e| e.to_string())?.map(|r| (r, secrets)).ok_or_else(|| "connector has no request for this job".to_string())
    });
    // What logs and tickets may show: the URL with every secret masked. A request that uses
    // no secret is shown as it is sent (rendered once, not twice).
    let masked_url = if names.is_empty() {
        prepared.as_ref().ok().map(|(req, _)| req.url.clone())
    } else {
        render(&masked_secrets(&names)).ok().flatten().map(|r| r.url)
    };
    let mut line = String::new();
    let mut sent_meta = None;
    let mut answer = None;
    let mut lease_lapsed = false;
    let (outcome, detail, request_secrets) = match prepared {
        _ if blocked.is_some() => (Outcome::Retryable { error: blocked.clone().unwrap_or_default(), retry_after: None }, json!({}), Default::default()),
        _ if only_publish => (Outcome::Delivered { status: 200 }, json!({ "published": shared.spec.publish_topic() }), Default::default()),
        Err(error) => (Outcome::Permanent { error }, json!({}), Default::default()),
        Ok((req, secrets)) => {
            // A write decided again after a refused precondition is another request: a
            // server that replays answers by key must not replay the refusal.
            let key = if round == 0 { format!("{}:{}", shared.id(), job.event_id) } else { format!("{}:{}:r{round}", shared.id(), job.event_id) };
            // A two-way write leaves a trace first: after a restart before its outcome is
            // stored, the next attempt knows it may have landed.
            if shared.spec.two_way()
                && cleared.link.is_some()
                && let Err(e) = storage::note_in_flight(&rt.db, job.id, &format!("in flight: {} {}", req.method, masked_url.as_deref().unwrap_or("")), &InFlight { written: two_way::written(shared, &cleared) }).await
            {
                tracing::warn!(error = %e, "cannot note the write in flight");
            }
            shared.throttle().await;
            // The lease is checked again now, the last moment before the request goes: a
            // claim whose lease ran out (a long wait for the rate limit, a stalled process)
            // must not send what another instance may be sending.
            if claim.lease_lapsed() {
                lease_lapsed = true;
                return Ok(Sent { cleared, masked_url, line, sent_meta, answer, outcome: Outcome::Retryable { error: "lease lapsed".into(), retry_after: None }, detail: json!({}), request_secrets: secrets, lease_lapsed });
            }
            let sent = send_authorized(client, shared, &req, &key, &rt.egress).instrument(tracing::debug_span!("send")).await;
            // The API says its budget is spent: every request of the connector waits.
            if let Some(pause) = sent.pause {
                tracing::info!(pause_ms = pause.as_millis() as u64, "the target's rate limit is spent; pausing the connector's requests");
                shared.limiter.pause_for(pause);
            }
            rt.metrics.latency.with_label_values(&[shared.id()]).observe(sent.latency.as_secs_f64());
            let shown_url = masked_url.as_deref().unwrap_or("");
            // The seed's console line, `[connector] PATCH https://… 200 OK`; logged once the
            // outcome is recorded, so the span carries the ticket id too.
            line = match sent.status {
                Some(code) => format!("{} {} {} {}", req.method, shown_url, code, reason_phrase(code)),
                None => format!("{} {} failed: {}", req.method, shown_url, scrub_secrets(&sent.outcome.error_text(), &secrets)),
            };
            let detail = json!({ "method": req.method, "status": sent.status, "latency_ms": sent.latency.as_millis() as u64 });
            sent_meta = Some((sent.status, sent.latency.as_millis() as u64));
            answer = sent.body;
            (sent.outcome, detail, secrets)
        }
    };
    Ok(Sent { cleared, masked_url, line, sent_meta, answer, outcome, detail, request_secrets, lease_lapsed })
}

/// Sends `req` with the connector's credentials (`auth`). An OAuth2 token the target
/// refuses (401) is fetched anew and the request sent once more.
async fn send_authorized(client: &awc::Client, shared: &ConnectorShared, req: &crate::mapping::RenderedRequest, key: &str, egress: &crate::delivery::Egress) -> sender::Attempt {
    let started = std::time::Instant::now();
    let send_once = || async {
        if !shared.auth.applies() {
            return sender::send(client, req, key, egress).await;
        }
        // The credentials go on a copy: a retry after a 401 starts from the request as rendered.
        let mut authorized = req.clone();
        match shared.auth.apply(&mut authorized, client, egress).await {
            Err(outcome) => sender::Attempt { outcome, latency: started.elapsed(), status: None, body: None, pause: None },
            Ok(()) => sender::send(client, &authorized, key, egress).await,
        }
    };
    let sent = send_once().await;
    if sent.status == Some(401) && shared.auth.refreshes() {
        tracing::info!("the target refused the access token (401); fetching a new one and sending again");
        shared.auth.invalidate().await;
        return send_once().await;
    }
    sent
}

/// How long a job whose attempt panicked waits before its second (and last) try.
const AFTER_PANIC: Duration = Duration::from_secs(1);

/// [`run`], with a panic caught as that job's failure: the lane lives on (no restart, no
/// crash loop into `failed`, the other keys keep going). The first panic retries the job
/// once after [`AFTER_PANIC`]; a second parks it with the panic's message as the reason (a
/// poison job).
///
/// The attempt borrows the crew and the claim, which stay here for a panic's settle (no copy
/// of the job per attempt), and its large future is boxed: this one stays small, and moving
/// it into its task, onto another worker, copies a pointer rather than the whole state of an
/// HTTP exchange (those copies were a few percent of a worker at saturation).
pub async fn guarded(crew: Crew, claim: Claim) -> Done {
    use futures_util::FutureExt;
    // Boxed in a statement of its own: a temporary of the awaiting statement keeps its slot
    // in this future until that statement ends, after the await, though moved into its box.
    // This future is copied whole into the attempt's task at every start: 2 KB now, against
    // 8.9 KB with the box made in the awaiting statement and 12.3 KB with the panic's settle
    // below inline too (measured in a release build).
    let attempt = Box::pin(run(&crew, &claim));
    let caught = std::panic::AssertUnwindSafe(attempt).catch_unwind().await;
    match caught {
        Ok(done) => done,
        // Boxed, though rare: inline, its state (a commit's) would be part of this future.
        Err(panic) => Box::pin(poisoned(crew, claim, crate::actors::panics::message(&*panic).unwrap_or_else(|| "a panic".into()))).await,
    }
}

/// Settles a job whose attempt panicked (see [`guarded`]).
async fn poisoned(crew: Crew, Claim { job, token, .. }: Claim, message: String) -> Done {
    let (rt, shared) = (&crew.rt, &crew.shared);
    if crew.probe {
        shared.breaker.release_probe();
    }
    let attempts = job.attempts + 1;
    let error = format!("panicked: {message}");
    Counters::inc(&shared.counters.failed_attempts);
    rt.metrics.fail.with_label_values(&[shared.id()]).inc();
    shared.counters.note_delivery_error(&error);
    let (update, ticket) = if job.panics > 0 {
        let reason = format!("poison job: its attempt panicked twice ({message}); parked so that the connector's other jobs go on");
        tracing::error!(job = job.id, reason = %reason, "delivery parked");
        Counters::inc(&shared.counters.parked);
        rt.metrics.parked.with_label_values(&[shared.id()]).inc();
        rt.alerts.do_send(JobParked { connector: shared.id().to_string(), job: job.id, reason: reason.clone() });
        let ticket = NewTicket {
            connector_id: shared.id().to_string(),
            event_id: Some(job.event_id.clone()),
            delivery_id: Some(job.id),
            hms_id: Some(job.record_key.clone()),
            external_id: None,
            direction: two_way::direction(job.origin.target()),
            status: TicketStatus::Parked,
            reason: Some(reason.clone()),
            attempts,
            last_error: Some(error),
            detail: None,
        };
        (JobUpdate::Park { token, attempts, error: reason }, Some(ticket))
    } else {
        tracing::error!(job = job.id, error = %error, retry_in_ms = AFTER_PANIC.as_millis() as u64, "delivery panicked; one more try");
        let at = Utc::now() + chrono::Duration::from_std(AFTER_PANIC).unwrap_or_default();
        (JobUpdate::Panicked { token, attempts, at, error }, None)
    };
    commit(&crew, &job, RecordOutcome { update, jobs: Vec::new(), link: None, attempt: None, ticket }, String::new()).await
}

/// One attempt of one job, the walk: gate and send (with a few rounds when a conditional
/// write is refused as stale), classify, settle, observe, commit.
async fn run(crew: &Crew, claim: &Claim) -> Done {
    // Test hook (only with `server.fault_injection`): an event carrying
    // `"__hms_sync_panic": "why"` makes its attempt panic, as a bug in a render would.
    if crew.rt.fault_injection
        && let Some(why) = claim.job.payload.get("__hms_sync_panic").and_then(serde_json::Value::as_str)
    {
        panic!("injected panic in the attempt of job {}: {why}", claim.job.id);
    }
    let client = client(&crew.shared);
    let attempts = claim.job.attempts + 1;
    let mut rounds = 0;
    let Sent { mut cleared, masked_url, line, sent_meta, answer, outcome, mut detail, request_secrets, .. } = loop {
        match send_once(crew, &client, claim, attempts, rounds).await {
            Err(settled) => {
                // Settled without a request (a two-way skip, say): a probe learned nothing,
                // the next job may probe.
                if crew.probe {
                    crew.shared.breaker.release_probe();
                }
                return commit(crew, &claim.job, settled.outcome, String::new()).await;
            }
            Ok(sent) if sent.lease_lapsed => {
                if crew.probe {
                    crew.shared.breaker.release_probe();
                }
                tracing::warn!(job = claim.job.id, "the claim's lease ran out before the request could go; not sent, left to the next claim");
                crew.lane.do_send(RequestOver(claim.job.id));
                return Done { recorded: true, key_waits: true, next: None };
            }
            // A conditional write refused: the target changed between our read and our
            // write. Read it again and decide again, a few times, instead of parking.
            Ok(sent) if rounds < REDECIDE_ROUNDS && sent.refused_as_stale(&crew.shared) => {
                rounds += 1;
                tracing::info!(round = rounds, status = ?sent.sent_meta.map(|m| m.0), "conditional write refused; reading the target again");
            }
            Ok(sent) => break sent,
        }
    };
    let (job, token) = (&claim.job, claim.token);
    let (rt, shared) = (&crew.rt, &crew.shared);
    let _settle = tracing::debug_span!("settle").entered();
    let policy = crate::delivery::RetryPolicy::of(&shared.spec);
    let status = sent_meta.and_then(|m| m.0);
    let outcome = policy.classify(outcome, status);
    observe_circuit(rt, shared, shared.breaker.observe(&outcome, status, crew.probe, std::time::Instant::now()));
    // Errors are scrubbed of every secret of the connector that is set, not only this
    // request's: a resolver read or a pull may have used others.
    // (Only failures have errors to scrub: a success skips reading the environment.)
    let secrets = if matches!(outcome, Outcome::Delivered { .. }) {
        request_secrets
    } else {
        let mut all = rt.egress.known(&shared.spec.secret_names());
        all.extend(request_secrets);
        all
    };
    let scrub = |text: &str| scrub_secrets(text, &secrets);
    let now = std::time::Instant::now();
    // The circuit is open after this failure (it opened now, or a probe failed): the
    // failure is the outage's, not the job's (see `Settlement::Hold`).
    let open_for = (shared.breaker.circuit(now) == Circuit::Open).then(|| shared.breaker.open_for(now));
    let mut settlement = settle(&policy, &outcome, attempts, fastrand::f64(), open_for, Utc::now(), scrub);
    // Every attempt that reached the wire (or failed on it) is kept with its status,
    // latency and error, secrets scrubbed.
    let attempt_row = sent_meta.map(|(status, latency_ms)| NewAttempt {
        delivery_id: job.id,
        connector_id: shared.id().to_string(),
        attempt: attempts,
        status,
        latency_ms,
        error: (!matches!(outcome, Outcome::Delivered { .. })).then(|| scrub(&outcome.error_text())),
    });
    drop(_settle);
    // A delivered inbound change is also published on an HMS topic when the connector says
    // so (outbound connectors fan it out); a failure to store it is retried like a failed
    // delivery, and parked after `retry.max`.
    let inbound = cleared.to == Side::Hms;
    let mut publish_failed = false;
    if settlement == Settlement::Done
        && inbound
        && let Err(error) = publish_inbound(rt, shared, job, &cleared.payload).await
    {
        settlement = settle(&policy, &Outcome::Retryable { error, retry_after: None }, attempts, fastrand::f64(), None, Utc::now(), str::to_string);
        publish_failed = true;
    }
    observe(rt, shared, job, attempts, &settlement);
    // The other side's id: the URL written to (secrets masked), and the record's own id on
    // the side it came from (its link's when linked, else the record key).
    let target = masked_url;
    let own = |ext: bool| cleared.link.as_ref().map_or_else(|| job.record_key.clone(), |l| if ext { l.external_id.clone() } else { l.hms_id.clone() });
    let (hms_id, external_id, direction) = if inbound { (target, Some(own(true)), Direction::Inbound) } else { (Some(own(false)), target, Direction::Outbound) };
    // Who put a parked job back answers for what it did next (the console's "who did it").
    if let (Some(by), Some(d)) = (&job.replayed_by, detail.as_object_mut()) {
        d.insert("replayed_by".into(), by.clone().into());
    }
    let ticket = |status: TicketStatus, reason: Option<String>, error: Option<String>| NewTicket {
        connector_id: shared.id().to_string(),
        event_id: Some(job.event_id.clone()),
        delivery_id: Some(job.id),
        hms_id: hms_id.clone(),
        external_id: external_id.clone(),
        direction,
        status,
        reason,
        attempts,
        last_error: error,
        detail: Some(detail.clone()),
    };
    let now_attempts = settlement.attempts(attempts);
    let (update, ticket) = match settlement {
        Settlement::Done => (JobUpdate::Complete { token, attempts }, Some(ticket(TicketStatus::Completed, cleared.why.clone(), None))),
        Settlement::Retry { at, error } | Settlement::Hold { at, error } => (JobUpdate::Reschedule { token, attempts: now_attempts, at, error }, None),
        Settlement::Park { reason } => {
            let shown = if publish_failed { "cannot publish the inbound change".to_string() } else { reason.clone() };
            (JobUpdate::Park { token, attempts, error: reason }, Some(ticket(TicketStatus::Parked, cleared.why.clone(), Some(shown))))
        }
    };
    let (link, jobs) = if matches!(update, JobUpdate::Complete { .. }) {
        let jobs = two_way::after_write(shared, job, &mut cleared, answer.as_deref());
        (cleared.link, jobs)
    } else {
        (None, Vec::new())
    };
    commit(crew, job, RecordOutcome { update, jobs, link, attempt: attempt_row, ticket }, line).await
}

/// Publishes a delivered inbound change on the connector's `map.publish` topic, if it has one.
async fn publish_inbound(rt: &Runtime, shared: &ConnectorShared, job: &Delivery, payload: &serde_json::Value) -> Result<(), String> {
    let Some(topic) = shared.spec.publish_topic() else { return Ok(()) };
    let published = match rt.bus.get() {
        Some(bus) => bus.publish(topic, payload.clone(), Some(publish_id(shared.id(), &job.event_id))).await.map(|_| ()).map_err(|e| e.to_string()),
        None => Err("the event bus is not running yet".to_string()),
    };
    published.map_err(|e| format!("cannot publish on {topic}: {e}"))
}

/// The breaker's change after an answer: logged, alerted and shown in the metrics.
fn observe_circuit(rt: &Runtime, shared: &ConnectorShared, change: Change) {
    match change {
        Change::Opened => {
            let cool = shared.spec.circuit_breaker.map_or(0, |b| b.cool_down_ms);
            tracing::warn!(cool_down_ms = cool, "circuit open: the target looks down; deliveries wait (no attempts counted) until a probe succeeds");
            rt.alerts.do_send(CircuitOpened { connector: shared.id().to_string(), cool_down_ms: cool });
            rt.metrics.circuit_open.with_label_values(&[shared.id()]).set(1);
        }
        Change::Closed => {
            tracing::info!("circuit closed: the probe got through; deliveries resume");
            rt.metrics.circuit_open.with_label_values(&[shared.id()]).set(0);
        }
        Change::None => {}
    }
}

/// A settlement seen from outside: the counters of the status API, the Prometheus metrics,
/// the failure-rate and parked-job alerts, and the warning lines.
fn observe(rt: &Runtime, shared: &ConnectorShared, job: &Delivery, attempts: i32, settlement: &Settlement) {
    let id = shared.id();
    let failed = |error: &str| {
        Counters::inc(&shared.counters.failed_attempts);
        rt.metrics.fail.with_label_values(&[id]).inc();
        shared.counters.note_delivery_error(error);
    };
    match settlement {
        Settlement::Done => {
            Counters::inc(&shared.counters.delivered);
            rt.metrics.ok.with_label_values(&[id]).inc();
        }
        Settlement::Hold { error, .. } => failed(error),
        Settlement::Retry { at, error } => {
            failed(error);
            rt.alerts.do_send(FailureSeen(id.to_string()));
            let retry_in_ms = (*at - Utc::now()).num_milliseconds().max(0);
            tracing::warn!(attempt = attempts, retry_in_ms, error = %error, "delivery failed; will retry");
        }
        Settlement::Park { reason } => {
            failed(reason);
            Counters::inc(&shared.counters.parked);
            rt.metrics.parked.with_label_values(&[id]).inc();
            rt.alerts.do_send(FailureSeen(id.to_string()));
            tracing::warn!(attempt = attempts, reason = %reason, "delivery parked");
            rt.alerts.do_send(JobParked { connector: id.to_string(), job: job.id, reason: reason.clone() });
        }
    }
}

/// The event id an inbound change is published under: stable (so a retried publish is
/// stored once), within the bus's limits (a long or odd id is hashed).
fn publish_id(connector: &str, event_id: &str) -> String {
    let id = format!("{connector}:{event_id}");
    if id.len() <= 200 && !id.chars().any(char::is_control) {
        id
    } else {
        format!("{connector}:#{}", crate::sync::inbound::content_hash(&serde_json::Value::String(id.clone())))
    }
}

/// Commits the outcome (job state, link, attempt, ticket) in one group commit, then logs the
/// delivery line with the ticket id in the span and arms the retry timer for a retry.
async fn commit(crew: &Crew, job: &Delivery, outcome: RecordOutcome, line: String) -> Done {
    // The request is over: its slot may carry another key's job while this one commits.
    crew.lane.do_send(RequestOver(job.id));
    let retry_at = outcome.update.retry_at();
    // The key stays in flight until the outcome is durable, so its next job cannot overtake.
    let committed = crew.rt.tickets.send(outcome).instrument(tracing::debug_span!("commit")).await;
    match committed {
        // Another attempt of this job settled it first (a lane replaced or restarted while
        // this one was on the wire): nothing of this one was written; the key is free.
        Ok(Ok(EntryWritten::Stale)) => Done { recorded: true, key_waits: true, next: None },
        Ok(Ok(written)) => {
            let (ticket, key_waits, next) = match written {
                EntryWritten::Settled { ticket, key_waits, next } => (ticket, key_waits, next),
                _ => (None, true, None),
            };
            if let Some(id) = ticket {
                tracing::Span::current().record("ticket", format!("SYNC-{id}"));
            }
            if !line.is_empty() {
                tracing::info!(target: crate::telemetry::DELIVERY, "[{}] {line}", crew.shared.id());
            }
            if let Some(at) = retry_at {
                crew.shared.retry_at(at);
            }
            Done { recorded: true, key_waits, next }
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot record the outcome; the job stays pending and will be sent again");
            Done { recorded: false, key_waits: true, next: None }
        }
        Err(e) => {
            tracing::error!(error = %e, "the committer is unavailable; the job stays pending and will be sent again");
            Done { recorded: false, key_waits: true, next: None }
        }
    }
}

/// `OK`, `Not Found`, …: the words after the status code in the log line.
fn reason_phrase(code: u16) -> &'static str {
    awc::http::StatusCode::from_u16(code).ok().and_then(|s| s.canonical_reason()).unwrap_or("")
}

/// Replaces every secret value in `text` with its `${NAME}`: an error message may quote a
/// URL or header that carried one, and errors end up in tickets and logs.
pub fn scrub_secrets(text: &str, secrets: &crate::mapping::Secrets) -> String {
    secrets
        .iter()
        .filter(|(_, v)| v.len() >= 4)
        .fold(text.to_string(), |acc, (name, value)| acc.replace(value.as_str(), &format!("${{{name}}}")))
}

