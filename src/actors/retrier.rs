//! Retrier: the connector's retry clock. Failed jobs wait in the database with their
//! `next_attempt_at` (back-off with jitter, chosen by the pure policy in
//! `delivery::retry`); the Retrier sleeps until the earliest one is due and wakes the
//! Pusher then, so a retry costs no polling and survives any restart.

use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::child::ChildCtx;
use super::messages::Wake;
use crate::storage;

/// Re-reads the earliest due time this often, for retries scheduled by another instance.
const RESCAN: Duration = Duration::from_secs(5);

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
        if self.armed_for.is_some_and(|armed| armed <= at) {
            return;
        }
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        let delay = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        self.armed_for = Some(at);
        self.timer = Some(ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.armed_for = None;
            act.cx.supervisor.do_send(Wake);
            act.rescan(ctx);
        }));
    }

    /// Reads the earliest pending due time from the database and arms for it.
    fn rescan(&mut self, ctx: &mut Context<Self>) {
        let db = self.cx.rt.db.clone();
        let id = self.cx.id().to_string();
        ctx.spawn(async move { storage::next_due_at(&db, &id).await }.into_actor(self).map(|res, act, ctx| match res {
            Ok(Some(at)) if at > Utc::now() => act.arm(at, ctx),
            Ok(_) => {}
            Err(e) => tracing::error!(connector = %act.cx.id(), error = %e, "retrier cannot read the queue"),
        }));
    }
}

impl Actor for Retrier {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.rescan(ctx);
        ctx.run_interval(RESCAN, |act, ctx| act.rescan(ctx));
    }
}

impl Handler<RetryScheduled> for Retrier {
    type Result = ();
    fn handle(&mut self, msg: RetryScheduled, ctx: &mut Context<Self>) {
        self.arm(msg.at, ctx);
    }
}

super::child::control_handlers!(Retrier, "retrier");
