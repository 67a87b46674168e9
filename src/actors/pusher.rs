//! Pusher: delivers a connector's jobs. It takes the head job of each record key (so one
//! key's changes arrive in order, through retries too), has up to `concurrency` requests of
//! different keys in flight, and lets a key's next job go only once the outcome of the one
//! before is written to the database.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use serde_json::json;
use tracing::Instrument;

use super::alerter::{CircuitOpened, FailureSeen, JobParked};
use crate::delivery::breaker::{Change, Gate};
use super::child::ChildCtx;
use super::messages::Wake;
use crate::spec::model::{ConnectorSpec, Side};
use super::two_way;
use super::retrier::RetryScheduled;
use super::shared::{ConnectorShared, Counters, Runtime};
use super::supervisor::ConnectorSupervisor;
use super::ticket_writer::RecordOutcome;
use crate::delivery::{sender, Decision, Outcome};
use crate::mapping::compiled::masked_secrets;
use crate::storage::{self, Delivery, Direction, JobUpdate, NewAttempt, NewTicket, TicketStatus};

/// How long a key waits after its outcome could not be stored, before its job is tried again.
const RECORD_RETRY: Duration = Duration::from_secs(2);

/// What an attempt of a job came to, for the Pusher's bookkeeping.
struct Done {
    id: i64,
    key: String,
    /// The outcome is stored (else the job is still pending, as it was).
    recorded: bool,
}

/// A safety net: look at the queue this often even if nobody woke us (another instance
/// may have enqueued, a wake may have been lost during a restart).
const IDLE_POLL: Duration = Duration::from_secs(2);

pub struct Pusher {
    cx: ChildCtx,
    /// Created in `started` on the connector's own thread (awc clients are not `Send`).
    client: Option<awc::Client>,
    in_flight_keys: HashSet<String>,
    /// Jobs taken and not yet recorded (sending, or waiting for their outcome's commit).
    in_flight_ids: HashSet<i64>,
    /// Of those, the jobs whose request is not over yet: they use the concurrency limit.
    /// A job waiting only for its commit frees its slot (see [`RequestOver`]) but keeps its
    /// key, so the key's next job still waits for the outcome to be durable.
    sending: HashSet<i64>,
    /// Outcomes that could not be stored lately (each held for `RECORD_RETRY`): while any
    /// is held, no new job is taken.
    holds: usize,
    /// A queue query is running; a wake meanwhile sets `again`.
    polling: bool,
    again: bool,
    /// A look at the queue scheduled for the end of an open circuit's cool-down.
    after_cool_down: Option<SpawnHandle>,
}

impl Pusher {
    pub fn new(cx: ChildCtx) -> Self {
        Self { cx, client: None, in_flight_keys: HashSet::new(), in_flight_ids: HashSet::new(), sending: HashSet::new(), holds: 0, polling: false, again: false, after_cool_down: None }
    }

    fn capacity(&self) -> usize {
        self.cx.shared.spec.concurrency_limit().saturating_sub(self.sending.len())
    }

    /// Reads due head jobs and starts a delivery for each key not already in flight.
    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.cx.shared.is_paused() || self.capacity() == 0 || self.holds > 0 {
            return;
        }
        if self.polling {
            self.again = true;
            return;
        }
        // An open circuit: nothing is taken (the jobs wait untouched) until the cool-down
        // ends; then one job goes as the probe.
        let probe = match self.cx.shared.breaker.gate(std::time::Instant::now()) {
            Gate::Send { probe } => probe,
            Gate::Wait(wait) => {
                if self.after_cool_down.is_none() {
                    self.after_cool_down = Some(ctx.run_later(wait, |act, ctx| {
                        act.after_cool_down = None;
                        act.poll(ctx);
                    }));
                }
                return;
            }
        };
        self.polling = true;
        let db = self.cx.rt.db.clone();
        let id = self.cx.id().to_string();
        let limit = if probe { 1 } else { self.capacity() as u64 };
        let in_flight: Vec<i64> = self.in_flight_ids.iter().copied().collect();
        ctx.spawn(async move { storage::due_heads_except(&db, &id, Utc::now(), limit, &in_flight).await }.into_actor(self).map(
            move |res, act, ctx| {
                act.polling = false;
                match res {
                    Ok(jobs) => {
                        let mut probe_sent = false;
                        for job in jobs {
                            if act.capacity() == 0 {
                                break;
                            }
                            if !act.in_flight_ids.contains(&job.id) && !act.in_flight_keys.contains(&job.record_key) {
                                act.deliver(job, probe, ctx);
                                probe_sent = probe;
                            }
                        }
                        if probe && !probe_sent {
                            act.cx.shared.breaker.release_probe();
                        }
                    }
                    Err(e) => {
                        if probe {
                            act.cx.shared.breaker.release_probe();
                        }
                        tracing::error!(connector = %act.cx.id(), error = %e, "cannot read the delivery queue");
                    }
                }
                if std::mem::take(&mut act.again) {
                    act.poll(ctx);
                }
            },
        ));
    }

    fn deliver(&mut self, job: Delivery, probe: bool, ctx: &mut Context<Self>) {
        let Some(client) = self.client.clone() else { return };
        self.in_flight_ids.insert(job.id);
        self.sending.insert(job.id);
        self.in_flight_keys.insert(job.record_key.clone());
        // `ticket` is filled in once the outcome is recorded (ticket ids come from the database).
        let span = tracing::info_span!("delivery", connector = %self.cx.id(), event = %job.event_id, job = job.id, ticket = tracing::field::Empty);
        let crew = Crew { client, rt: self.cx.rt.clone(), shared: self.cx.shared.clone(), supervisor: self.cx.supervisor.clone(), pusher: ctx.address(), probe };
        let fut = guarded(crew, job).instrument(span);
        ctx.spawn(fut.into_actor(self).map(|done: Done, act, ctx| {
            if done.recorded {
                act.sending.remove(&done.id);
                act.in_flight_ids.remove(&done.id);
                act.in_flight_keys.remove(&done.key);
                act.poll(ctx);
            } else {
                // The outcome could not be stored (a full disk, say): the job is still pending
                // and due. Hold its key a moment instead of sending it again at once, in a
                // loop, and take no new job meanwhile: while writes fail, the Pusher must not
                // run through its whole backlog sending jobs it cannot record.
                act.sending.remove(&done.id);
                act.holds += 1;
                ctx.run_later(RECORD_RETRY, move |act, ctx| {
                    act.holds -= 1;
                    act.in_flight_ids.remove(&done.id);
                    act.in_flight_keys.remove(&done.key);
                    act.poll(ctx);
                });
            }
        }));
    }
}

/// What one attempt works with: the connector's HTTP client and shared state, and whom to
/// tell (the supervisor of a scheduled retry, the Pusher of a request that is over).
#[derive(Clone)]
struct Crew {
    client: awc::Client,
    rt: Runtime,
    shared: Arc<ConnectorShared>,
    supervisor: Addr<ConnectorSupervisor>,
    pusher: Addr<Pusher>,
    /// This job is the circuit breaker's probe after a cool-down.
    probe: bool,
}

/// How often a refused conditional write (409/412) is decided again within one attempt.
const REDECIDE_ROUNDS: u32 = 3;

/// One gate-render-send round of an attempt.
struct Sent {
    cleared: two_way::Cleared,
    masked: Option<crate::mapping::RenderedRequest>,
    line: String,
    sent_meta: Option<(Option<u16>, u64)>,
    answer: Option<actix_web::web::Bytes>,
    outcome: Outcome,
    detail: serde_json::Value,
    request_secrets: crate::mapping::Secrets,
}

impl Sent {
    /// A two-way write answered 409 or 412 by a side the connector can read again.
    fn refused_as_stale(&self, shared: &ConnectorShared) -> bool {
        self.cleared.link.is_some() && matches!(self.sent_meta, Some((Some(409 | 412), _))) && two_way::can_read(shared, self.cleared.to)
    }
}

/// The two-way gate, render (secrets from the environment now) and send. `Err`: the job
/// was settled by the gate.
async fn send_once(crew: &Crew, job: &Delivery, attempts: i32, round: u32) -> Result<Sent, two_way::Settled> {
    let cleared = two_way::gate(&crew.client, &crew.rt, &crew.shared, job, attempts).await?;
    let (client, rt, shared) = (&crew.client, &crew.rt, &crew.shared);
    // A two-way verdict may write the other way (the target's newer version back to the source).
    let inbound = cleared.to == Side::Hms;
    let (payload, blocked, extras) = (&cleared.payload, cleared.blocked.clone(), &cleared.extras);
    let only_publish = inbound && shared.spec.hms_request().is_none();
    let write = cleared.write;
    let render = |secrets: &crate::mapping::Secrets| shared.compiled.render_write(cleared.to, write, payload, extras, secrets);
    let names = ConnectorSpec::secrets_of(shared.spec.write_request(cleared.to, write));
    // What logs and tickets may show: the request with every secret masked.
    let masked = render(&masked_secrets(&names)).ok().flatten();
    let prepared = rt.egress.secrets(&names).map_err(|e| e.to_string()).and_then(|secrets| {
        render(&secrets).map_err(|e| e.to_string())?.map(|r| (r, secrets)).ok_or_else(|| "connector has no request for this job".to_string())
    });
    let mut line = String::new();
    let mut sent_meta = None;
    let mut answer = None;
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
                && let Err(e) = storage::note_in_flight(&rt.db, job.id, &format!("{}{} {}", two_way::IN_FLIGHT, req.method, masked.as_ref().map_or("", |m| m.url.as_str()))).await
            {
                tracing::warn!(error = %e, "cannot note the write in flight");
            }
            shared.throttle().await;
            let sent = send_authorized(client, shared, &req, &key, &rt.egress).await;
            // The API says its budget is spent: every request of the connector waits.
            if let Some(pause) = sent.pause {
                tracing::info!(pause_ms = pause.as_millis() as u64, "the target's rate limit is spent; pausing the connector's requests");
                shared.limiter.pause_for(pause);
            }
            rt.metrics.latency.with_label_values(&[shared.id()]).observe(sent.latency.as_secs_f64());
            let shown_url = masked.as_ref().map_or("", |m| m.url.as_str());
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
    Ok(Sent { cleared, masked, line, sent_meta, answer, outcome, detail, request_secrets })
}

/// Sends `req` with the connector's credentials (`auth`). An OAuth2 token the target
/// refuses (401) is fetched anew and the request sent once more.
async fn send_authorized(client: &awc::Client, shared: &ConnectorShared, req: &crate::mapping::RenderedRequest, key: &str, egress: &crate::delivery::Egress) -> sender::Attempt {
    let started = std::time::Instant::now();
    let send_once = || async {
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

/// What a job's `last_error` starts with after its attempt panicked.
const PANICKED: &str = "panicked: ";

/// How long a job whose attempt panicked waits before its second (and last) try.
const AFTER_PANIC: Duration = Duration::from_secs(1);

/// [`attempt`], with a panic caught as that job's failure: the Pusher lives on (no restart,
/// no crash loop into `failed`, the other keys keep going). The first panic retries the job
/// once after [`AFTER_PANIC`]; a second parks it with the panic's message as the reason (a
/// poison job).
async fn guarded(crew: Crew, job: Delivery) -> Done {
    use futures_util::FutureExt;
    let (crew_again, job_again) = (crew.clone(), job.clone());
    match std::panic::AssertUnwindSafe(attempt(crew, job)).catch_unwind().await {
        Ok(done) => done,
        Err(panic) => poisoned(crew_again, job_again, crate::actors::panics::message(&*panic).unwrap_or_else(|| "a panic".into())).await,
    }
}

/// Settles a job whose attempt panicked (see [`guarded`]).
async fn poisoned(crew: Crew, job: Delivery, message: String) -> Done {
    let (rt, shared) = (&crew.rt, &crew.shared);
    if crew.probe {
        shared.breaker.release_probe();
    }
    let attempts = job.attempts + 1;
    let error = format!("{PANICKED}{message}");
    Counters::inc(&shared.counters.failed_attempts);
    rt.metrics.fail.with_label_values(&[shared.id()]).inc();
    shared.counters.note_delivery_error(&error);
    let again = job.last_error.as_deref().is_some_and(|e| e.starts_with(PANICKED));
    let (update, ticket) = if again {
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
        (JobUpdate::Park { id: job.id, attempts, error: reason }, Some(ticket))
    } else {
        tracing::error!(job = job.id, error = %error, retry_in_ms = AFTER_PANIC.as_millis() as u64, "delivery panicked; one more try");
        let at = Utc::now() + chrono::Duration::from_std(AFTER_PANIC).unwrap_or_default();
        (JobUpdate::Reschedule { id: job.id, attempts, at, error }, None)
    };
    record(&crew, job, RecordOutcome { update, jobs: Vec::new(), link: None, attempt: None, ticket }, String::new()).await
}

/// One attempt of one job: the two-way gate, render (secrets from the environment now),
/// send, classify, then record the outcome in the database and, when final, as a ticket.
/// Returns the job's id and key so the Pusher can let the key's next job go.
async fn attempt(crew: Crew, job: Delivery) -> Done {
    // Test hook (only with `server.fault_injection`): an event carrying
    // `"__hms_sync_panic": "why"` makes its attempt panic, as a bug in a render would.
    if crew.rt.fault_injection
        && let Some(why) = job.payload.get("__hms_sync_panic").and_then(serde_json::Value::as_str)
    {
        panic!("injected panic in the attempt of job {}: {why}", job.id);
    }
    let attempts = job.attempts + 1;
    let mut rounds = 0;
    let Sent { mut cleared, masked, line, sent_meta, answer, outcome, detail, request_secrets } = loop {
        match send_once(&crew, &job, attempts, rounds).await {
            Err(settled) => {
                // Settled without a request (a two-way skip, say): a probe learned nothing,
                // the next job may probe.
                if crew.probe {
                    crew.shared.breaker.release_probe();
                }
                return record(&crew, job, settled.outcome, String::new()).await;
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
    let (rt, shared) = (&crew.rt, &crew.shared);
    let inbound = cleared.to == Side::Hms;
    let (payload, why) = (cleared.payload.clone(), cleared.why.clone());
    let policy = crate::delivery::RetryPolicy::of(&shared.spec);
    let status = sent_meta.and_then(|m| m.0);
    let outcome = policy.classify(outcome, status);
    match shared.breaker.observe(&outcome, status, crew.probe, std::time::Instant::now()) {
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

    let decision = policy.decide(&outcome, attempts as u32, fastrand::f64());
    // Every attempt that reached the wire (or failed on it) is kept with its status,
    // latency and error, secrets scrubbed.
    let attempt_row = sent_meta.map(|(status, latency_ms)| NewAttempt {
        delivery_id: job.id,
        connector_id: shared.id().to_string(),
        attempt: attempts,
        status,
        latency_ms,
        error: (!matches!(outcome, Outcome::Delivered { .. })).then(|| scrub_secrets(&outcome.error_text(), &secrets)),
    });
    // The other side's id: the URL written to (secrets masked), and the record's own id on
    // the side it came from (its link's when linked, else the record key).
    let target = masked.map(|r| r.url);
    let own = |ext: bool| cleared.link.as_ref().map_or_else(|| job.record_key.clone(), |l| if ext { l.external_id.clone() } else { l.hms_id.clone() });
    let (hms_id, external_id, direction) = if inbound { (target, Some(own(true)), Direction::Inbound) } else { (Some(own(false)), target, Direction::Outbound) };
    let ticket = |status: TicketStatus, error: Option<String>| NewTicket {
        connector_id: shared.id().to_string(),
        event_id: Some(job.event_id.clone()),
        delivery_id: Some(job.id),
        hms_id: hms_id.clone(),
        external_id: external_id.clone(),
        direction,
        status,
        reason: why.clone(),
        attempts,
        last_error: error,
        detail: Some(detail.clone()),
    };
    // The circuit is open after this failure (it opened now, or a probe failed): the
    // failure is the outage's, not the job's. The job waits for the cool-down's end with
    // its attempts as they were: it never parks for an outage. (Only a retryable failure
    // can be the outage's: a refusal parks as it would with the circuit closed.)
    let now = std::time::Instant::now();
    if matches!(outcome, Outcome::Retryable { .. }) && shared.breaker.circuit(now) == crate::delivery::breaker::Circuit::Open {
        let wait = shared.breaker.open_for(now);
        Counters::inc(&shared.counters.failed_attempts);
        rt.metrics.fail.with_label_values(&[shared.id()]).inc();
        let error = format!("circuit open, waiting: {}", scrub_secrets(&outcome.error_text(), &secrets));
        shared.counters.note_delivery_error(&error);
        let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
        let update = JobUpdate::Reschedule { id: job.id, attempts: job.attempts, at, error };
        return record(&crew, job, RecordOutcome { update, jobs: Vec::new(), link: None, attempt: attempt_row, ticket: None }, line).await;
    }
    let (update, ticket) = match &decision {
        Decision::Done => {
            Counters::inc(&shared.counters.delivered);
            rt.metrics.ok.with_label_values(&[shared.id()]).inc();
            // An inbound change is also published on an HMS topic when the connector says so
            // (outbound connectors fan it out); a failure to store it is retried.
            let published = match (inbound, shared.spec.publish_topic()) {
                (true, Some(topic)) => match rt.bus.get() {
                    Some(bus) => bus.publish(topic, payload.clone(), Some(publish_id(shared.id(), &job.event_id))).await.map(|_| ()).map_err(|e| e.to_string()),
                    None => Err("the event bus is not running yet".to_string()),
                },
                _ => Ok(()),
            };
            if let Err(e) = published {
                // Like a failed delivery: retried with back-off, parked after `retry.max`.
                let error = format!("cannot publish on {}: {e}", shared.spec.publish_topic().unwrap_or_default());
                let update = match policy.decide(&Outcome::Retryable { error: error.clone(), retry_after: None }, attempts as u32, fastrand::f64()) {
                    Decision::RetryIn(delay) => {
                        tracing::warn!(error = %error, "will retry");
                        JobUpdate::Reschedule { id: 0, attempts, at: Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(), error }
                    }
                    _ => JobUpdate::Park { id: 0, attempts, error },
                };
                let parked = matches!(update, JobUpdate::Park { .. }).then(|| ticket(TicketStatus::Parked, Some("cannot publish the inbound change".into())));
                return record(&crew, job, RecordOutcome { update, jobs: Vec::new(), link: None, attempt: attempt_row.clone(), ticket: parked }, line).await;
            }
            (JobUpdate::Complete { id: job.id, attempts }, Some(ticket(TicketStatus::Completed, None)))
        }
        Decision::RetryIn(delay) => {
            Counters::inc(&shared.counters.failed_attempts);
            rt.metrics.fail.with_label_values(&[shared.id()]).inc();
            rt.alerts.do_send(FailureSeen(shared.id().to_string()));
            let error = scrub_secrets(&outcome.error_text(), &secrets);
            shared.counters.note_delivery_error(&error);
            tracing::warn!(attempt = attempts, retry_in_ms = delay.as_millis() as u64, error = %error, "delivery failed; will retry");
            let at = Utc::now() + chrono::Duration::from_std(*delay).unwrap_or_default();
            (JobUpdate::Reschedule { id: job.id, attempts, at, error }, None)
        }
        Decision::Park(reason) => {
            Counters::inc(&shared.counters.failed_attempts);
            Counters::inc(&shared.counters.parked);
            rt.metrics.fail.with_label_values(&[shared.id()]).inc();
            rt.metrics.parked.with_label_values(&[shared.id()]).inc();
            rt.alerts.do_send(FailureSeen(shared.id().to_string()));
            let reason = scrub_secrets(reason, &secrets);
            shared.counters.note_delivery_error(&reason);
            tracing::warn!(attempt = attempts, reason = %reason, "delivery parked");
            rt.alerts.do_send(JobParked { connector: shared.id().to_string(), job: job.id, reason: reason.clone() });
            (JobUpdate::Park { id: job.id, attempts, error: reason.clone() }, Some(ticket(TicketStatus::Parked, Some(reason))))
        }
    };
    let (link, jobs) = if matches!(update, JobUpdate::Complete { .. }) {
        let jobs = two_way::after_write(shared, &job, &mut cleared, answer.as_deref());
        (cleared.link, jobs)
    } else {
        (None, Vec::new())
    };
    record(&crew, job, RecordOutcome { update, jobs, link, attempt: attempt_row, ticket }, line).await
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

/// Records the outcome (job state, link, ticket) in one commit, then logs the delivery line
/// with the ticket id in the span. `outcome.update`'s id is set to the job's here.
async fn record(crew: &Crew, job: Delivery, mut outcome: RecordOutcome, line: String) -> Done {
    // The request is over: its slot may carry another key's job while this one commits.
    crew.pusher.do_send(RequestOver(job.id));
    outcome.update = match outcome.update {
        JobUpdate::Complete { attempts, .. } => JobUpdate::Complete { id: job.id, attempts },
        JobUpdate::Reschedule { attempts, at, error, .. } => JobUpdate::Reschedule { id: job.id, attempts, at, error },
        JobUpdate::Park { attempts, error, .. } => JobUpdate::Park { id: job.id, attempts, error },
        JobUpdate::Conflict { attempts, error, records, .. } => JobUpdate::Conflict { id: job.id, attempts, error, records },
    };
    let retry_at = match &outcome.update {
        JobUpdate::Reschedule { at, .. } => Some(*at),
        _ => None,
    };
    // The key stays in flight until the outcome is durable, so its next job cannot overtake.
    match crew.rt.tickets.send(outcome).await {
        Ok(Ok(ticket)) => {
            if let Some(id) = ticket {
                tracing::Span::current().record("ticket", format!("SYNC-{id}"));
            }
            if !line.is_empty() {
                tracing::info!(target: crate::telemetry::DELIVERY, "[{}] {line}", crew.shared.id());
            }
            if let Some(at) = retry_at {
                crew.supervisor.do_send(RetryScheduled { at });
            }
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot record the outcome; the job stays pending and will be sent again");
            return Done { id: job.id, key: job.record_key, recorded: false };
        }
        Err(e) => {
            tracing::error!(error = %e, "ticket writer unavailable; the job stays pending and will be sent again");
            return Done { id: job.id, key: job.record_key, recorded: false };
        }
    }
    Done { id: job.id, key: job.record_key, recorded: true }
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

impl Actor for Pusher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.client = Some(sender::client(self.cx.shared.spec.timeout(), self.cx.shared.spec.concurrency_limit(), self.cx.shared.tls.clone()));
        ctx.run_interval(IDLE_POLL, |act, ctx| act.poll(ctx));
        self.cx.shared.wake_taken();
        self.poll(ctx);
    }
}

impl Handler<Wake> for Pusher {
    type Result = ();
    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.cx.shared.wake_taken();
        self.poll(ctx);
    }
}

/// Job N's request is over (its outcome is on its way to the database): its slot is free.
#[derive(Message)]
#[rtype(result = "()")]
struct RequestOver(i64);

impl Handler<RequestOver> for Pusher {
    type Result = ();
    fn handle(&mut self, msg: RequestOver, ctx: &mut Context<Self>) {
        if self.sending.remove(&msg.0) {
            self.poll(ctx);
        }
    }
}

super::child::control_handlers!(Pusher, "pusher");

