//! Lane: delivers one connector's jobs (the child `pusher`). It claims the head job of each
//! record key (so one key's changes arrive in order, through retries too), has up to
//! `concurrency` requests of different keys in flight, and lets a key's next job go only
//! once the outcome of the one before is committed; jobs that find every slot taken wait in
//! the lane for one (`Lane::ready`) rather than in the queue alone. The attempts themselves run on the
//! lane's own worker while a few are in flight, and on the whole worker pool beyond (see
//! [`super::attempt`]), so a hot connector uses every core.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use tracing::Instrument;

use super::attempt::{self, Crew};
use super::child::ChildCtx;
use super::messages::Wake;
use crate::delivery::breaker::{Circuit, Gate};
use crate::storage::{self, Claim, ClaimToken, Claimant, Delivery};

/// How long a key waits after its outcome could not be stored, before its job is tried again.
const RECORD_RETRY: Duration = Duration::from_secs(2);

/// Up to this many requests in flight, a lane runs its attempts on its own worker; beyond,
/// they spread over the pool. An attempt handed to another worker costs thread switches both
/// ways (its start there, and the lane told of its end). Under a light or moderate load a
/// connector has a few requests in flight and keeps them; a hot one has many, and spreads
/// them over every core.
const LOCAL_ATTEMPTS: usize = 4;

/// How many jobs per slot of a connector's concurrency may wait in memory for a slot (see
/// `Lane::ready`), and at most how many in all: with the default concurrency of 16, 256 jobs,
/// about half a MiB for events of a few hundred bytes; never more than 1,024. Beyond, the
/// lane reads the queue in id order, as with any backlog.
const READY_PER_SLOT: usize = 16;
const READY_MAX: usize = 1024;

/// A safety net: look at the queue this often even if nobody woke us. Every path that
/// stores a job wakes the lane (the Bus, the Puller, the webhook intake, an operator's
/// replay), and a lane that starts reads the queue first, so this only covers what no
/// path foresaw; with 1,000 idle connectors it is 33 queries a second, not 500.
const IDLE_POLL: Duration = Duration::from_secs(30);

pub struct Lane {
    cx: ChildCtx,
    in_flight_keys: HashSet<String>,
    /// Jobs claimed and not yet settled (sending, or waiting for their outcome's commit).
    in_flight_ids: HashSet<i64>,
    /// Of those, the jobs whose request is not over yet: they use the concurrency limit.
    /// A job waiting only for its commit frees its slot (see [`RequestOver`]) but keeps its
    /// key, so the key's next job still waits for the outcome to be durable.
    sending: HashSet<i64>,
    /// Outcomes that could not be stored lately (each held for `RECORD_RETRY`): while any
    /// is held, no new job is claimed.
    holds: usize,
    /// A claim query is running; a wake meanwhile sets `again`.
    claiming: bool,
    again: bool,
    /// A look at the queue scheduled for the end of an open circuit's cool-down.
    after_cool_down: Option<SpawnHandle>,
    /// The attempts running on the workers, stopped with the lane (see [`Attempts`]).
    attempts: Attempts,
    /// When the last claim went, and whether it came back full (a backlog: the next claim
    /// is not paced); a paced claim scheduled (see [`Lane::paced`]).
    last_claim: Option<(std::time::Instant, bool)>,
    /// The last claim came back full (more may be due), one was not made because every
    /// slot was taken, or a job found neither a slot nor room in `ready`: a slot that frees,
    /// once `ready` is empty, reads the queue again. Otherwise every due job not in flight
    /// was claimed or is in `ready`, and any job stored since wakes the lane, so a freed slot
    /// has nothing to read (it was a claim per event, a round trip to the database each).
    starved: bool,
    /// Keys in flight of which a claim passed over a job: a job stored after the key's
    /// outcome was committed, whose wake came before the lane heard of the outcome (the
    /// outcome's `key_waits`, read at its commit, could not know of it). The key's settle
    /// reads the queue then.
    passed_over: HashSet<String>,
    pacing: Option<SpawnHandle>,
    /// A look at the queue scheduled for when other instances' jobs, left to them, become
    /// anyone's (see `storage::SHARE_WAIT`).
    share_recheck: Option<SpawnHandle>,
    /// Woken (jobs stored) since the last claim that scheduled a `share_recheck`.
    woken: bool,
    /// Jobs a claim started (see [`Started`]): one given at its commit afterwards must not
    /// start again.
    claim_started: Started,
    /// New jobs given while a claim was running: taken once it is back (the claim may have
    /// started some of them).
    given_meanwhile: Vec<Delivery>,
    /// Jobs known to be due heads of their keys that found no free slot (given at their
    /// commit, or read by a claim beyond the free slots), in id order: a freed slot starts
    /// the next of them instead of reading the queue. Under a steady saturating load a lane
    /// always has such jobs, and reading them back from the database (a round trip to a
    /// pooled connection, each row's payload parsed again) was a quarter of a lane worker's
    /// time. Valid only between claims: a claim reads the queue whole, so it starts from an
    /// empty list (see [`Lane::claim`]); bounded (see [`Lane::ready_room`]), beyond which the
    /// lane is `starved` and reads the queue. Not used on a shared queue, where a claim is a
    /// lease and jobs left waiting here would be leased for nothing.
    ready: std::collections::VecDeque<Claim>,
}

/// The jobs a lane's claims started lately, so that a new job given to the lane at its commit
/// ([`Lane::take`]) is not started a second time when a claim read it first: a claim may read
/// a job between its commit and its hand-over, start it, even settle it, before the hand-over
/// reaches the lane. Bounded: the oldest are forgotten (and all of them when the lane has
/// nothing in flight at its idle poll), and a job given at or below the highest id forgotten
/// reads the queue instead (which knows whether it is still pending).
/// (A watermark alone, the highest id any claim read, sent every job a claim had overtaken to
/// the queue: each such read overtook the next hand-overs, and at 2,000 events/s one event in
/// six was read, measured.)
#[derive(Default)]
struct Started {
    ids: HashSet<i64>,
    order: std::collections::VecDeque<i64>,
    forgotten_up_to: i64,
}

impl Started {
    /// How many it remembers: far more than a hand-over can fall behind the claims.
    const KEPT: usize = 4096;

    fn insert(&mut self, id: i64) {
        if self.ids.insert(id) {
            self.order.push_back(id);
        }
        while self.order.len() > Self::KEPT {
            if let Some(old) = self.order.pop_front() {
                // Taken out already when its hand-over came; forgotten otherwise.
                if self.ids.remove(&old) {
                    self.forgotten_up_to = self.forgotten_up_to.max(old);
                }
            }
        }
    }

    /// Whether the hand-over of `id` can be judged here: above everything forgotten.
    fn knows(&self, id: i64) -> bool {
        id > self.forgotten_up_to
    }

    /// `id`'s hand-over came: whether a claim started it (each job is handed over once).
    fn handed_over(&mut self, id: i64) -> bool {
        self.ids.remove(&id)
    }

    /// Forgets everything (its memory too: a lane that was busy once and is idle now must
    /// cost what an idle lane costs). Hand-overs up to the highest id remembered read the
    /// queue from now on.
    fn forget_all(&mut self) {
        self.forgotten_up_to = self.order.iter().copied().fold(self.forgotten_up_to, i64::max);
        self.ids = HashSet::new();
        self.order = std::collections::VecDeque::new();
    }
}

/// The attempts a lane has running on the workers. Dropped with the lane (a stop, a panic,
/// a replacement), it stops them where they are, as if they ran in the lane's own context:
/// the lane that comes next claims their jobs again, and an old attempt must not go on
/// beside the new one (two requests, two tickets for one job).
#[derive(Default)]
struct Attempts(HashMap<i64, futures_util::future::AbortHandle>);

impl Drop for Attempts {
    fn drop(&mut self) {
        for handle in self.0.values() {
            handle.abort();
        }
    }
}

impl Lane {
    pub fn new(cx: ChildCtx) -> Self {
        Self { cx, in_flight_keys: HashSet::new(), in_flight_ids: HashSet::new(), sending: HashSet::new(), holds: 0, claiming: false, again: false, after_cool_down: None, attempts: Attempts::default(), last_claim: None, starved: false, passed_over: HashSet::new(), pacing: None, share_recheck: None, woken: false, claim_started: Started::default(), given_meanwhile: Vec::new(), ready: std::collections::VecDeque::new() }
    }

    fn capacity(&self) -> usize {
        self.cx.shared.spec.concurrency_limit().saturating_sub(self.sending.len())
    }

    /// Whether one more job may wait in [`Lane::ready`]: at most [`READY_PER_SLOT`] per slot
    /// of the connector's concurrency (and [`READY_MAX`]), and never on a shared queue.
    fn ready_room(&self) -> bool {
        !self.cx.rt.shared_queue() && self.ready.len() < (READY_PER_SLOT * self.cx.shared.spec.concurrency_limit()).min(READY_MAX)
    }

    /// A slot is free: starts the jobs that wait in [`Lane::ready`], as many as there are free
    /// slots. While the lane may not start jobs (paused, an outcome held, a circuit not
    /// closed) they are dropped from the list instead, and the lane is `starved`: they are
    /// still in the queue, which the lane reads when it may go on.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        if self.ready.is_empty() {
            return;
        }
        if self.holds > 0 || self.cx.shared.is_paused() || self.cx.shared.breaker.circuit(std::time::Instant::now()) != Circuit::Closed {
            self.ready.clear();
            self.starved = true;
            return;
        }
        while self.capacity() > 0
            && let Some(claim) = self.ready.pop_front()
        {
            if self.in_flight_ids.contains(&claim.job.id) {
                continue;
            }
            if self.in_flight_keys.contains(&claim.job.record_key) {
                // Not possible for a head, but a key in flight always waits for its settle.
                self.passed_over.insert(claim.job.record_key.clone());
                continue;
            }
            self.start(claim, false, ctx);
        }
    }

    /// With other instances on the queue, whether this claim waits: at most one claim per
    /// `cluster.claim_gap_ms` unless the last one came back full. A claim there is a write,
    /// and each job stored anywhere wakes every instance's lane: unpaced, lanes claimed back
    /// to back, a few jobs each, and the claims were most of the database's work (measured
    /// with three instances: 5,400 claims of 3.7 jobs for 20,000 events). A lane idle for
    /// longer than the gap claims at once, so a light load waits for nothing; an instance
    /// alone (or on SQLite) is not paced.
    fn paced(&mut self, ctx: &mut Context<Self>) -> bool {
        let gap = self.cx.rt.claim_gap;
        let now = std::time::Instant::now();
        match self.last_claim {
            Some((at, false)) if !gap.is_zero() && self.cx.rt.share().of > 1 && now < at + gap => {
                if self.pacing.is_none() {
                    self.pacing = Some(ctx.run_later(at + gap - now, |act, ctx| {
                        act.pacing = None;
                        act.claim(ctx);
                    }));
                }
                true
            }
            _ => false,
        }
    }

    /// Claims due head jobs and starts an attempt for each key not already in flight.
    fn claim(&mut self, ctx: &mut Context<Self>) {
        if self.capacity() == 0 {
            self.starved = true;
        }
        if self.cx.shared.is_paused() || self.capacity() == 0 || self.holds > 0 {
            return;
        }
        if self.claiming {
            self.again = true;
            return;
        }
        if self.paced(ctx) {
            return;
        }
        // An open circuit: nothing is claimed (the jobs wait untouched) until the cool-down
        // ends; then one job goes as the probe.
        let probe = match self.cx.shared.breaker.gate(std::time::Instant::now()) {
            Gate::Send { probe } => probe,
            Gate::Wait(wait) => {
                if self.after_cool_down.is_none() {
                    self.after_cool_down = Some(ctx.run_later(wait, |act, ctx| {
                        act.after_cool_down = None;
                        act.claim(ctx);
                    }));
                }
                return;
            }
        };
        self.claiming = true;
        // The claim reads the queue whole: what waited for a slot is read again with the rest.
        self.ready.clear();
        let asked = std::time::Instant::now();
        let db = self.cx.rt.db.clone();
        let id = self.cx.id().to_string();
        // On SQLite a claim reads as many jobs as the connector may have in flight, not only
        // as many as there are free slots: the rest wait in `ready` for a slot, so that each
        // job is read once, not once per claim that passes over it.
        let limit = match probe {
            true => 1,
            false if self.cx.rt.shared_queue() => self.capacity() as u64,
            false => self.cx.shared.spec.concurrency_limit() as u64,
        };
        let in_flight: Vec<i64> = self.in_flight_ids.iter().copied().collect();
        let (instance, lease, share) = (self.cx.rt.instance.clone(), self.cx.rt.lease, self.cx.rt.share());
        // Keys of other instances' shares were left to them: after a wake (new jobs), look
        // again once such jobs are anyone's, in case their instance is gone or does not run
        // this connector (nothing else would wake this lane for them). Once per wake, so an
        // idle lane does not poll.
        if share.of > 1 && std::mem::take(&mut self.woken) && self.share_recheck.is_none() {
            self.share_recheck = Some(ctx.run_later(storage::SHARE_WAIT + Duration::from_millis(50), |act, ctx| {
                act.share_recheck = None;
                act.claim(ctx);
            }));
        }
        self.cx.rt.metrics.queue_reads.with_label_values(&[id.as_str()]).inc();
        let span = tracing::debug_span!("claim", connector = %id);
        let claimed = async move { storage::claim(&db, &id, Utc::now(), limit, &in_flight, Claimant { instance: &instance, lease, share }).await };
        ctx.spawn(claimed.instrument(span).into_actor(self).map(
            move |res, act, ctx| {
                act.claiming = false;
                match res {
                    Ok(claims) => {
                        let full = claims.len() as u64 >= limit;
                        act.last_claim = Some((asked, full));
                        act.starved = full;
                        let mut probe_sent = false;
                        // Claimed and not started: on a shared queue they are leased to this
                        // instance, and given back at once (a key whose last job's outcome was
                        // just committed, its lane not told yet, offers its next job).
                        let mut skipped = Vec::new();
                        for claim in claims {
                            let free = !act.in_flight_ids.contains(&claim.job.id) && !act.in_flight_keys.contains(&claim.job.record_key);
                            if free && act.capacity() > 0 {
                                act.claim_started.insert(claim.job.id);
                                act.start(claim, probe, ctx);
                                probe_sent = probe;
                            } else if free && !probe && act.ready_room() {
                                // Its hand-over, if it comes later, must not start it again.
                                act.claim_started.insert(claim.job.id);
                                act.ready.push_back(claim);
                            } else {
                                if act.in_flight_keys.contains(&claim.job.record_key) {
                                    act.passed_over.insert(claim.job.record_key.clone());
                                }
                                if free {
                                    act.starved = true;
                                }
                                skipped.push(claim.job.id);
                            }
                        }
                        if probe && !probe_sent {
                            act.cx.shared.breaker.release_probe();
                        }
                        // Not read again now: their key's own outcome, when the lane hears of
                        // it, reads the queue (at once would find them again, in a loop).
                        act.release(skipped, false, ctx);
                    }
                    Err(e) => {
                        if probe {
                            act.cx.shared.breaker.release_probe();
                        }
                        tracing::error!(connector = %act.cx.id(), error = %e, "cannot read the delivery queue");
                    }
                }
                let given = std::mem::take(&mut act.given_meanwhile);
                if !given.is_empty() {
                    act.take(given, ctx);
                }
                if std::mem::take(&mut act.again) {
                    act.claim(ctx);
                }
            },
        ));
    }

    /// Starts new jobs given at their commit, each the head of its record key then, without
    /// reading the queue (see `storage::EntryWritten::Queued`): at a light load that read was
    /// one per event, a round trip to a pooled connection's thread. Given while a claim runs,
    /// they wait for it (it may start some of them); one a claim started is not started again
    /// ([`Started`]). Whatever else stands in the way reads the queue instead, which knows
    /// better: a backlog (older jobs of other keys go first, in id order), the connector
    /// paused, an outcome held, a circuit not closed, a job a claim may have started that the
    /// lane no longer remembers. A job whose key is in flight waits for that key's settle; one
    /// that finds no slot, for a slot.
    fn take(&mut self, mut heads: Vec<Delivery>, ctx: &mut Context<Self>) {
        if self.claiming {
            self.given_meanwhile.append(&mut heads);
            return;
        }
        let direct = !self.starved
            && self.holds == 0
            && !self.cx.shared.is_paused()
            && !self.cx.rt.shared_queue()
            && self.cx.shared.breaker.circuit(std::time::Instant::now()) == Circuit::Closed
            && heads.iter().all(|j| self.claim_started.knows(j.id));
        if !direct {
            return self.claim(ctx);
        }
        let _span = tracing::debug_span!("claim", connector = %self.cx.id(), given = heads.len()).entered();
        heads.sort_by_key(|j| j.id);
        for job in heads {
            if self.claim_started.handed_over(job.id) || self.in_flight_ids.contains(&job.id) {
                continue;
            }
            let claim = Claim { token: ClaimToken::of(&job), job, lease_deadline: None };
            if self.in_flight_keys.contains(&claim.job.record_key) {
                self.passed_over.insert(claim.job.record_key);
            } else if self.capacity() > 0 {
                self.start(claim, false, ctx);
            } else if self.ready_room() {
                self.ready.push_back(claim);
            } else {
                self.starved = true;
            }
        }
    }

    /// Gives back the claims of jobs `ids` this lane did not start (a shared queue; nothing to
    /// do on SQLite, where a claim is a read), then, with `then_claim`, reads the queue again.
    fn release(&mut self, ids: Vec<i64>, then_claim: bool, ctx: &mut Context<Self>) {
        if ids.is_empty() || !self.cx.rt.shared_queue() {
            if then_claim {
                self.claim(ctx);
            }
            return;
        }
        let (db, instance) = (self.cx.rt.db.clone(), self.cx.rt.instance.clone());
        ctx.spawn(async move { storage::release_claims(&db, &instance, &ids).await }.into_actor(self).map(move |res, act, ctx| {
            if let Err(e) = res {
                tracing::warn!(connector = %act.cx.id(), error = %e, "cannot give back claims not started; they are claimed again when their leases run out");
            }
            if then_claim {
                act.claim(ctx);
            }
        }));
    }

    /// Renews the leases of the jobs in flight (a shared queue), so a slow request keeps its
    /// job. A lease found run out is not renewed: the job may be another instance's now, and
    /// its outcome here will be fenced off (see `storage::ClaimToken`).
    fn renew(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight_ids.is_empty() {
            return;
        }
        let (db, instance, lease) = (self.cx.rt.db.clone(), self.cx.rt.instance.clone(), self.cx.rt.lease);
        let ids: Vec<i64> = self.in_flight_ids.iter().copied().collect();
        ctx.spawn(async move { storage::renew_job_leases(&db, &instance, &ids, lease).await }.into_actor(self).map(|res, act, _| match res {
            Ok(lost) => {
                let lost: Vec<i64> = lost.into_iter().filter(|i| act.in_flight_ids.contains(i)).collect();
                if !lost.is_empty() {
                    tracing::warn!(connector = %act.cx.id(), jobs = ?lost, "the leases of jobs in flight ran out before they were renewed; another instance may take them, and their outcomes here will not be written");
                }
            }
            Err(e) => tracing::warn!(connector = %act.cx.id(), error = %e, "cannot renew the leases of the jobs in flight"),
        }));
    }

    /// Starts the attempt of a claimed job on a worker of the pool (or on this lane's own
    /// thread when the connector has one) and settles the lane's books when it is over.
    fn start(&mut self, claim: Claim, probe: bool, ctx: &mut Context<Self>) {
        let (id, key) = (claim.job.id, claim.job.record_key.clone());
        self.in_flight_ids.insert(id);
        self.sending.insert(id);
        self.in_flight_keys.insert(key.clone());
        // `ticket` is filled in once the outcome is committed (ticket ids come from the database).
        let span = tracing::info_span!("delivery", connector = %self.cx.id(), event = %claim.job.event_id, job = id, ticket = tracing::field::Empty);
        let crew = Crew { rt: self.cx.rt.clone(), shared: self.cx.shared.clone(), lane: ctx.address(), probe };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (abort, registration) = futures_util::future::AbortHandle::new_pair();
        self.attempts.0.insert(id, abort);
        let run = move || {
            let attempt = async move {
                let _ = tx.send(attempt::guarded(crew, claim).await);
            };
            // Boxed: the attempt's future is large (the HTTP client's, the two-way engine's), and
            // a task moves its future in when spawned and writes over it when it ends; a box
            // moves as a pointer (those copies were a tenth of a worker's time at saturation).
            actix::spawn(futures_util::future::Abortable::new(Box::pin(attempt), registration).instrument(span));
        };
        match self.cx.rt.workers.pool() {
            // A worker whose thread dies before it runs the attempt drops it: the answer
            // below is then an error, and the job is held and tried again like one whose
            // outcome could not be stored.
            Some(pool) if self.sending.len() > LOCAL_ATTEMPTS => {
                pool.next().handle.spawn_fn(run);
            }
            _ => run(),
        }
        ctx.spawn(rx.into_actor(self).map(move |done, act, ctx| {
            act.attempts.0.remove(&id);
            let (recorded, key_waits, next) = done.map_or((false, true, None), |d| (d.recorded, d.key_waits, d.next));
            act.sending.remove(&id);
            let passed_over = act.passed_over.remove(&key);
            if recorded {
                act.in_flight_ids.remove(&id);
                act.in_flight_keys.remove(&key);
                act.fill(ctx);
                // The queue is read for the key's next job (unless the settle gave it: then it
                // starts as a new head does, see `Lane::take`), for a job passed over while
                // the key was in flight, or for jobs that wait for a slot and are not in
                // `ready`; anything else stored meanwhile woke the lane (see
                // `Lane::starved`, `Lane::passed_over`).
                if passed_over || (act.starved && act.ready.is_empty()) {
                    act.claim(ctx);
                } else if let Some(next) = next {
                    act.take(vec![next], ctx);
                } else if key_waits {
                    act.claim(ctx);
                }
            } else {
                // The outcome could not be stored (a full disk, say): the job is still pending
                // and due. Hold its key a moment instead of sending it again at once, in a
                // loop, and claim no new job meanwhile: while writes fail, the lane must not
                // run through its whole backlog sending jobs it cannot record.
                act.holds += 1;
                ctx.run_later(RECORD_RETRY, move |act, ctx| {
                    act.holds -= 1;
                    act.in_flight_ids.remove(&id);
                    act.in_flight_keys.remove(&key);
                    // Its claim is given back first (on a shared queue it still holds the
                    // job), then the queue is read.
                    act.release(vec![id], true, ctx);
                });
            }
        }));
    }
}

impl Actor for Lane {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Spread over the interval, so that connectors started together do not poll together.
        ctx.run_later(IDLE_POLL.mul_f64(fastrand::f64()), |_, ctx| {
            ctx.run_interval(IDLE_POLL, |act, ctx| {
                if act.in_flight_ids.is_empty() {
                    act.claim_started.forget_all();
                    // An idle lane costs what an idle lane costs, whatever burst it had.
                    act.ready = std::collections::VecDeque::new();
                }
                act.claim(ctx);
            });
        });
        // What the inbox holds is in the queue, read now.
        self.cx.shared.wake_taken();
        if !self.cx.rt.shared_queue() {
            self.claim(ctx);
            return;
        }
        // A shared queue: the jobs this instance had claimed for the connector (a lane before
        // this one, stopped by a crash or a replacement, with its attempts) are given back
        // first, so they go now rather than when their leases run out.
        let (db, id, instance) = (self.cx.rt.db.clone(), self.cx.id().to_string(), self.cx.rt.instance.clone());
        ctx.spawn(async move { storage::release_job_leases(&db, &id, &instance).await }.into_actor(self).map(|res, act, ctx| {
            if let Err(e) = res {
                tracing::warn!(connector = %act.cx.id(), error = %e, "cannot give back this instance's earlier claims; they are claimed again when their leases run out");
            }
            act.claim(ctx);
        }));
        // The leases of the jobs in flight are renewed while their requests run.
        ctx.run_interval(self.cx.rt.lease / 3, |act, ctx| act.renew(ctx));
    }
}

impl Handler<Wake> for Lane {
    type Result = ();
    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        let inbox = self.cx.shared.wake_taken();
        self.woken = true;
        if inbox.read {
            self.claim(ctx);
        } else if !inbox.heads.is_empty() {
            self.take(inbox.heads, ctx);
        }
        // Neither: an earlier wake took what this one was sent for.
    }
}

/// Job N's request is over (its outcome is on its way to the database): its slot is free, and
/// the queue is read again if jobs may wait for a slot (see `Lane::starved`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RequestOver(pub i64);

impl Handler<RequestOver> for Lane {
    type Result = ();
    fn handle(&mut self, msg: RequestOver, ctx: &mut Context<Self>) {
        if self.sending.remove(&msg.0) {
            self.fill(ctx);
            if self.starved && self.ready.is_empty() {
                self.claim(ctx);
            }
        }
    }
}

super::child::control_handlers!(Lane, "pusher");

#[cfg(test)]
mod tests {
    use super::Started;

    /// A job a claim started is known as such when its hand-over comes, once; one no claim
    /// started is not; once forgotten, the jobs up to the highest id forgotten are no longer
    /// judged (their hand-overs read the queue).
    #[test]
    fn the_jobs_claims_started_are_remembered_until_forgotten() {
        let mut started = Started::default();
        started.insert(10);
        started.insert(7);
        assert!(started.knows(10) && started.knows(7) && started.knows(1));
        assert!(started.handed_over(10), "a claim started it");
        assert!(!started.handed_over(10), "each job is handed over once");
        assert!(!started.handed_over(11), "no claim started it");
        // 7 and then the next oldest are pushed out: what is forgotten is judged no more.
        for id in 100..100 + Started::KEPT as i64 {
            started.insert(id);
        }
        assert!(!started.knows(7) && started.knows(8), "7 forgotten: up to 7 reads the queue");
        assert!(started.handed_over(100));
        started.insert(100 + Started::KEPT as i64);
        started.insert(101 + Started::KEPT as i64);
        assert!(!started.knows(101) && started.knows(102), "100 was taken out at its hand-over; 101 is forgotten");
        assert!(started.ids.len() <= Started::KEPT && started.order.len() <= Started::KEPT, "bounded");
        started.forget_all();
        let last = 101 + Started::KEPT as i64;
        assert!(!started.knows(last) && started.knows(last + 1) && started.order.capacity() == 0, "all forgotten, memory too");
    }
}
