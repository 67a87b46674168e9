//! Intake: durable acceptance of delivery jobs with group commit. Publishers hand in their
//! jobs and wait; the Intake writes everything that arrived meanwhile in ONE transaction
//! (bounded by rows and by a few milliseconds) and answers each publisher once it is
//! committed. So a 202 always means "stored", and durability costs one fsync per batch,
//! not per event.

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::registry::{Registry, WakeConnectors};
use crate::storage::{self, Db, NewDelivery};

/// How a store failed, as publishers see it (cloned to every publisher of the batch).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct IntakeError(pub String);

struct Waiting {
    jobs: Vec<NewDelivery>,
    reply: oneshot::Sender<Result<(), IntakeError>>,
}

pub struct Intake {
    db: Db,
    registry: Addr<Registry>,
    waiting: Vec<Waiting>,
    rows: usize,
    /// A transaction is running; new arrivals wait for the next one (that is the group).
    writing: bool,
    flush_scheduled: bool,
    max_rows: usize,
    max_wait: Duration,
}

impl Intake {
    pub fn new(db: Db, registry: Addr<Registry>, max_rows: usize, max_wait: Duration) -> Self {
        Self { db, registry, waiting: Vec::new(), rows: 0, writing: false, flush_scheduled: false, max_rows: max_rows.max(1), max_wait }
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.waiting.is_empty() {
            return;
        }
        if self.rows >= self.max_rows || self.max_wait.is_zero() {
            self.flush(ctx);
        } else if !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.run_later(self.max_wait, |act, ctx| {
                act.flush_scheduled = false;
                if !act.writing {
                    act.flush(ctx);
                }
            });
        }
    }

    /// Writes the waiting publishers' jobs (up to `max_rows`, whole publishers only).
    fn flush(&mut self, ctx: &mut Context<Self>) {
        let mut take = 0;
        let mut rows = 0;
        for w in &self.waiting {
            if take > 0 && rows + w.jobs.len() > self.max_rows {
                break;
            }
            rows += w.jobs.len();
            take += 1;
        }
        if take == 0 {
            return;
        }
        let batch: Vec<Waiting> = self.waiting.drain(..take).collect();
        self.rows -= rows;
        self.writing = true;
        let db = self.db.clone();
        let jobs: Vec<NewDelivery> = batch.iter().flat_map(|w| w.jobs.iter().cloned()).collect();
        ctx.spawn(async move { storage::enqueue(&db, &jobs).await.map(|_| jobs) }.into_actor(self).map(move |res, act, ctx| {
            act.writing = false;
            let outcome = match res {
                Ok(jobs) => {
                    let mut ids: Vec<String> = jobs.into_iter().map(|j| j.connector_id).collect();
                    ids.sort();
                    ids.dedup();
                    act.registry.do_send(WakeConnectors(ids));
                    Ok(())
                }
                Err(e) => {
                    tracing::error!(error = %e, publishers = batch.len(), "cannot store accepted events; publishers are told");
                    Err(IntakeError(e.to_string()))
                }
            };
            for w in batch {
                let _ = w.reply.send(outcome.clone());
            }
            act.schedule(ctx);
        }));
    }
}

impl Actor for Intake {
    type Context = Context<Self>;
}

/// Store these jobs durably; answers once they are committed.
#[derive(Message)]
#[rtype(result = "Result<(), IntakeError>")]
pub struct StoreJobs(pub Vec<NewDelivery>);

impl Handler<StoreJobs> for Intake {
    type Result = ResponseFuture<Result<(), IntakeError>>;

    fn handle(&mut self, msg: StoreJobs, ctx: &mut Context<Self>) -> Self::Result {
        if msg.0.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        let (tx, rx) = oneshot::channel();
        self.rows += msg.0.len();
        self.waiting.push(Waiting { jobs: msg.0, reply: tx });
        self.schedule(ctx);
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(IntakeError("the intake stopped before storing the event".into()))) })
    }
}
