//! Retrier: the connector's retry clock. Failed jobs wait in the database with their
//! `next_attempt_at` (back-off with jitter, chosen by the pure policy in
//! `delivery::retry`); the Retrier sleeps until the earliest one is due and wakes the
//! lane then, so a retry costs no polling and survives any restart.

use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::child::ChildCtx;
use crate::storage;

/// Re-reads the earliest due time this often, a safety net like the lane's idle poll: the
/// lane arms this timer for every retry it schedules.
const RESCAN: Duration = Duration::from_secs(30);

pub struct Retrier {
    cx: ChildCtx,
    timer: Option<SpawnHandle>,
    armed_for: Option<DateTime<Utc>>,
}

/// A job was rescheduled for `at`.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct RetryScheduled {
    pub at: DateTime<Utc>,
}

impl Retrier {
    pub fn new(cx: ChildCtx) -> Self {
        Self { cx, timer: None, armed_for: None }
    }

    /// Arms the timer for `at` unless an earlier one is armed already.
    fn arm(&mut self, at: DateTime<Utc>, ctx: &mut Context<Self>) {
        let Some(delay) = timer_for(self.armed_for, at, Utc::now()) else { return };
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        self.armed_for = Some(at);
        self.timer = Some(ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.armed_for = None;
            act.cx.shared.wake_lane();
            act.rescan(ctx);
        }));
    }

    /// Reads the earliest due time still ahead from the database and arms for it. (Not the
    /// earliest of all: one due already, not yet taken by the lane, would hide the later
    /// ones, and those would wait for the next retry to be scheduled or the idle poll: up
    /// to seconds late. The lane takes what is due when it is woken.)
    fn rescan(&mut self, ctx: &mut Context<Self>) {
        let db = self.cx.rt.db.clone();
        let id = self.cx.id().to_string();
        let now = Utc::now();
        ctx.spawn(async move { storage::next_due_at(&db, &id, Some(now)).await }.into_actor(self).map(|res, act, ctx| match res {
            Ok(Some(at)) => act.arm(at, ctx),
            Ok(None) => {}
            Err(e) => tracing::error!(connector = %act.cx.id(), error = %e, "retrier cannot read the queue"),
        }));
    }
}

/// The timer to (re-)arm for a retry due at `at`, given the one armed for `armed_for`, at
/// `now`: `None` keeps the armed one (it fires first, and its rescan finds `at`); else
/// the delay until `at`, zero when it is due already. (Pure, so tests set the clock.)
fn timer_for(armed_for: Option<DateTime<Utc>>, at: DateTime<Utc>, now: DateTime<Utc>) -> Option<Duration> {
    if armed_for.is_some_and(|armed| armed <= at) {
        return None;
    }
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

impl Actor for Retrier {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.rescan(ctx);
        ctx.run_later(RESCAN.mul_f64(fastrand::f64()), |_, ctx| {
            ctx.run_interval(RESCAN, |act, ctx| act.rescan(ctx));
        });
    }
}

impl Handler<RetryScheduled> for Retrier {
    type Result = ();
    fn handle(&mut self, msg: RetryScheduled, ctx: &mut Context<Self>) {
        self.arm(msg.at, ctx);
    }
}

/// Read the earliest due retry from the database again (another instance, which had
/// scheduled retries of this connector, is gone: its timers with it).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Rescan;

impl Handler<Rescan> for Retrier {
    type Result = ();
    fn handle(&mut self, _: Rescan, ctx: &mut Context<Self>) {
        self.rescan(ctx);
    }
}

super::child::control_handlers!(Retrier, "retrier");

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11, item 15: a retry fires on its due time. With the clock set by the test: the
    /// timer is armed for the retry's own due time, re-armed when an earlier retry comes in,
    /// and fires at once for one that is due already.
    #[test]
    fn a_retry_arms_the_timer_for_its_due_time() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z").unwrap().with_timezone(&Utc);
        let ms = |n: i64| t0 + chrono::Duration::milliseconds(n);
        assert_eq!(timer_for(None, ms(325), t0), Some(Duration::from_millis(325)), "nothing armed: exactly its delay");
        assert_eq!(timer_for(Some(ms(5_000)), ms(325), t0), Some(Duration::from_millis(325)), "an earlier retry re-arms");
        assert_eq!(timer_for(Some(ms(100)), ms(325), t0), None, "a later one waits for the armed timer, whose rescan arms it");
        assert_eq!(timer_for(Some(ms(325)), ms(325), t0), None);
        assert_eq!(timer_for(None, ms(-50), t0), Some(Duration::ZERO), "due already: at once");
        assert_eq!(timer_for(None, ms(438), ms(100)), Some(Duration::from_millis(338)), "measured from now, not from when it was scheduled");
    }
}
