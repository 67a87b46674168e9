//! TicketWriter: collects sync tickets from every connector and writes them in batches
//! (one transaction per batch), keeping the hash chain in one writer.

use std::time::Duration;

use actix::prelude::*;

use crate::storage::{self, Db, NewTicket};

pub struct TicketWriter {
    db: Db,
    buffer: Vec<NewTicket>,
    batch_size: usize,
    flush_after: Duration,
    /// A flush is already scheduled or running; avoids piling up timers.
    flush_pending: bool,
    /// Written so far (for status and tests).
    written: u64,
}

impl TicketWriter {
    pub fn new(db: Db, batch_size: usize, flush_after: Duration) -> Self {
        Self { db, buffer: Vec::new(), batch_size: batch_size.max(1), flush_after, flush_pending: false, written: 0 }
    }

    fn schedule(&mut self, ctx: &mut Context<Self>, delay: Duration) {
        if !self.flush_pending {
            self.flush_pending = true;
            ctx.run_later(delay, |act, ctx| act.write_batch(ctx));
        }
    }

    /// Writes up to one batch; on a database error the tickets go back to the front of the
    /// buffer and the write is tried again later: a ticket is never dropped.
    fn write_batch(&mut self, ctx: &mut Context<Self>) {
        let take = self.buffer.len().min(self.batch_size);
        if take == 0 {
            self.flush_pending = false;
            return;
        }
        let batch: Vec<NewTicket> = self.buffer.drain(..take).collect();
        let db = self.db.clone();
        ctx.wait(
            async move {
                let res = storage::append_tickets(&db, &batch).await;
                (batch, res)
            }
            .into_actor(self)
            .map(|(batch, res), act, ctx| {
                act.flush_pending = false;
                match res {
                    Ok(ids) => act.written += ids.len() as u64,
                    Err(e) => {
                        tracing::error!(error = %e, tickets = batch.len(), "ticket batch failed; will retry");
                        act.buffer.splice(0..0, batch);
                        act.schedule(ctx, Duration::from_millis(500));
                        return;
                    }
                }
                if !act.buffer.is_empty() {
                    let delay = if act.buffer.len() >= act.batch_size { Duration::ZERO } else { act.flush_after };
                    act.schedule(ctx, delay);
                }
            }),
        );
    }
}

impl Actor for TicketWriter {
    type Context = Context<Self>;
}

/// Record this ticket (batched).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WriteTicket(pub NewTicket);

impl Handler<WriteTicket> for TicketWriter {
    type Result = ();
    fn handle(&mut self, msg: WriteTicket, ctx: &mut Context<Self>) {
        self.buffer.push(msg.0);
        let delay = if self.buffer.len() >= self.batch_size { Duration::ZERO } else { self.flush_after };
        self.schedule(ctx, delay);
    }
}

/// Write everything buffered now; answers with the count written so far. Used at shutdown.
#[derive(Message)]
#[rtype(result = "u64")]
pub struct FlushTickets;

impl Handler<FlushTickets> for TicketWriter {
    type Result = ResponseActFuture<Self, u64>;
    fn handle(&mut self, _: FlushTickets, _: &mut Context<Self>) -> Self::Result {
        let batch: Vec<NewTicket> = std::mem::take(&mut self.buffer);
        let db = self.db.clone();
        Box::pin(async move { (storage::append_tickets(&db, &batch).await, batch) }.into_actor(self).map(
            |(res, batch), act, _| {
                match res {
                    Ok(ids) => act.written += ids.len() as u64,
                    Err(e) => {
                        tracing::error!(error = %e, "ticket flush failed");
                        act.buffer.splice(0..0, batch);
                    }
                }
                act.written
            },
        ))
    }
}
