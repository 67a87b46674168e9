//! Committer: the one writer of the hot path. Publishers hand in accepted jobs, lanes hand
//! in "job N is done (or rescheduled, or parked), and here is its ticket"; the committer
//! group-commits whatever arrived meanwhile in ONE transaction and then answers each of
//! them. So a 202 means stored, a job is never `done` without its ticket, durability costs
//! one commit per batch rather than per event, and SQLite's single write lock is never
//! fought over by several writers (a loser would sleep in SQLite's busy handler).
//!
//! On a SQLite file the Committer writes each batch itself, with SQLite's own writer (a
//! connection of its own, [`SqliteWriter`]), so it runs on a thread of its own
//! ([`Committer::start`]): a batch costs no hand-off, and what arrives during a write waits in
//! the mailbox to make the next batch. On PostgreSQL (and SQLite in memory) it writes through
//! the pool, asynchronously.

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::storage::{self, BatchEntry, Db, Delivery, EntryWritten, JobUpdate, LinkUpdate, NewAttempt, NewDelivery, NewTicket, SqliteWriter, StorageError};

/// Who waits for an entry's commit: answered with what became of it (its ticket's id).
type Reply = oneshot::Sender<Result<EntryWritten, String>>;

/// One thing to commit: jobs, an outcome or a ticket (see [`BatchEntry`]), and who waits
/// for it. A ticket alone has nobody waiting, and is kept until it is written.
struct Entry {
    rows: BatchEntry,
    reply: Option<Reply>,
}

impl Entry {
    /// Rows it writes, about.
    fn size(&self) -> usize {
        match &self.rows {
            BatchEntry::Jobs(jobs) => jobs.len(),
            BatchEntry::Outcome { jobs, .. } => jobs.len() + 1,
            BatchEntry::Ticket(_) => 1,
        }
    }

    /// Answers whoever waits; gives the entry back when nobody does and it failed (a ticket
    /// to keep).
    fn answer(self, result: Result<EntryWritten, String>) -> Option<Entry> {
        match self.reply {
            Some(reply) => {
                let _ = reply.send(result);
                None
            }
            None => result.is_err().then_some(self),
        }
    }
}

pub struct Committer {
    db: Db,
    /// SQLite's own writer, on which batches are written here, on this thread (see
    /// [`SqliteWriter`]); without it (PostgreSQL, SQLite in memory), through the pool.
    writer: Option<SqliteWriter>,
    buffer: Vec<Entry>,
    batch_size: usize,
    /// The commit gap (`tickets.flush_ms`): while busy, at most one transaction per gap.
    flush_after: Duration,
    /// A write through the pool is running; arrivals wait for the next batch (that is the
    /// group).
    writing: bool,
    /// A write on SQLite's writer is due as soon as the mailbox is read (see
    /// [`Committer::write_soon`]).
    write_queued: bool,
    /// Started on an arbiter of its own (see [`Committer::start`]), which it stops when it
    /// stops.
    own_arbiter: bool,
    /// When the last write started: an entry that comes within the gap after it waits for
    /// the gap's end with whatever else comes meanwhile.
    last_write: Option<std::time::Instant>,
    flush_scheduled: bool,
    /// Tickets written so far.
    written: u64,
    /// Retention: tickets older than this are pruned (the chain keeps an anchor).
    retention: Option<Retention>,
    /// This instance's id: the owner of the pruning lease.
    instance: String,
}

/// How long tickets are kept, and how often old ones are pruned.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub keep: chrono::Duration,
    pub every: Duration,
}

/// Entries that make a batch worth writing without waiting for the end of the commit gap:
/// they share their transaction's statements and commit well already. (Measured on SQLite:
/// without it, a 2 ms gap cost 8-10% of the saturated rate, the one writer idling between
/// fast commits; with it, no difference beyond noise.)
const GATHERED: usize = 16;

/// Messages the mailbox holds before senders wait (actix's default is 16).
const MAILBOX: usize = 1024;

/// The lease of the tickets' retention pruning: one instance of a cluster prunes.
const PRUNE_LEASE: &str = "prune";

impl Committer {
    pub fn new(db: Db, batch_size: usize, flush_after: Duration) -> Self {
        Self { db, writer: None, buffer: Vec::new(), batch_size: batch_size.max(1), flush_after, writing: false, write_queued: false, own_arbiter: false, last_write: None, flush_scheduled: false, written: 0, retention: None, instance: String::new() }
    }

    /// Write the batches with SQLite's own writer, here (see [`SqliteWriter`]).
    pub fn with_writer(mut self, writer: Option<SqliteWriter>) -> Self {
        self.writer = writer;
        self
    }

    /// Starts the Committer: with SQLite's writer on a thread of its own (an arbiter it stops
    /// when it stops), since its writes block; else on the current arbiter.
    pub fn start(mut self) -> Addr<Self> {
        if self.writer.is_none() {
            return Actor::start(self);
        }
        self.own_arbiter = true;
        Committer::start_in_arbiter(&Arbiter::new().handle(), move |_| self)
    }

    /// Prune tickets older than `retention.keep`, every `retention.every`, as instance
    /// `instance` (the owner of the pruning lease).
    pub fn with_retention(mut self, retention: Retention, instance: &str) -> Self {
        self.retention = Some(retention);
        self.instance = instance.to_string();
        self
    }

    /// Prunes, once for the whole cluster: the instance that takes the lease `prune` (for
    /// the pruning interval) does it; the others skip this round.
    ///
    /// It runs on the System's arbiter, not this actor's: its transaction goes through the
    /// pool, statement by statement, and on SQLite's writer this thread blocks in its own
    /// writes: a transaction that needed this thread to go on would hold SQLite's write lock
    /// while the write waited for it, up to the busy timeout. (Measured: a restart whose first
    /// batch met the start-up prune wrote nothing for seconds.)
    fn prune(&self) {
        let Some(r) = self.retention else { return };
        let db = self.db.clone();
        let before = chrono::Utc::now() - r.keep;
        let owner = self.instance.clone();
        let ttl = chrono::Duration::from_std(r.every).unwrap_or_else(|_| chrono::Duration::hours(1));
        let prune = async move {
            match storage::take_lease(&db, PRUNE_LEASE, &owner, ttl).await? {
                None => storage::prune_tickets(&db, before).await,
                Some(holder) => {
                    tracing::debug!(holder = %holder, "another instance prunes the tickets this round");
                    Ok(0)
                }
            }
        };
        System::current().arbiter().spawn(async move {
            match prune.await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "tickets past retention pruned; the chain keeps its anchor"),
                Err(e) => tracing::error!(error = %e, "cannot prune old tickets; will try again"),
            }
        });
    }

    fn push(&mut self, entry: Entry, ctx: &mut Context<Self>) {
        self.buffer.push(entry);
        self.schedule(ctx);
    }

    /// Writes now, or at the end of the commit gap. An entry that finds the Committer quiet
    /// for a whole gap is written at once (a lone event pays no wait); within the gap after
    /// the last write started, it waits for the gap's end, and what arrives meanwhile joins
    /// it: at a moderate load, at most one transaction per gap. A write that took longer
    /// than the gap is followed at once, and so is a batch of [`GATHERED`] entries: at
    /// saturation the Committer never idles (on SQLite it is the one writer).
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.buffer.is_empty() {
            return;
        }
        let wait = self.last_write.map_or(Duration::ZERO, |at| self.flush_after.saturating_sub(at.elapsed()));
        if self.buffer.len() >= self.batch_size.min(GATHERED) || wait.is_zero() {
            self.write_soon(ctx);
        } else if !self.flush_scheduled {
            self.flush_scheduled = true;
            // Decided again when it fires: a write may have started since (a full batch),
            // and the gap then runs from that one.
            ctx.run_later(wait, |act, ctx| {
                act.flush_scheduled = false;
                act.schedule(ctx);
            });
        }
    }

    /// Writes a batch now through the pool; on SQLite's writer, once the mailbox is read. A
    /// write there blocks this thread, and what arrives meanwhile waits in the mailbox: read
    /// first, it all joins the batch (the context reads the whole mailbox before it runs its
    /// spawned futures); written at once, the first arrival would go alone.
    fn write_soon(&mut self, ctx: &mut Context<Self>) {
        if self.writer.is_none() {
            return self.write_batch(ctx);
        }
        if !self.write_queued {
            self.write_queued = true;
            ctx.spawn(fut::ready(()).map(|_, act: &mut Self, ctx| {
                act.write_queued = false;
                act.write_batch(ctx);
            }));
        }
    }

    /// Writes up to one batch. On a database error, waiting lanes are told (their jobs stay
    /// pending and are sent again: at least once); fire-and-forget tickets go back to the
    /// front of the buffer and are tried again later: a ticket is never dropped.
    fn write_batch(&mut self, ctx: &mut Context<Self>) {
        // Whole entries, up to about `batch_size` rows (a publisher's jobs are not split).
        let mut take = 0;
        let mut rows = 0;
        for e in &self.buffer {
            if take > 0 && rows >= self.batch_size {
                break;
            }
            rows += e.size();
            take += 1;
        }
        if take == 0 {
            return;
        }
        let batch: Vec<Entry> = self.buffer.drain(..take).collect();
        self.last_write = Some(std::time::Instant::now());
        // The stage where outcomes become hash-chained tickets (jobs and outcomes with them).
        let span = tracing::debug_span!("ticket", entries = batch.len());
        let started = std::time::Instant::now();
        let logged = move |entries: usize| tracing::debug!(entries, ms = started.elapsed().as_secs_f64() * 1000.0, "batch written");
        if let Some(writer) = self.writer.as_mut() {
            let res = span.in_scope(|| writer.write(&rows_of(&batch)));
            logged(batch.len());
            return self.written_batch(batch, res, ctx);
        }
        self.writing = true;
        let db = self.db.clone();
        // The batch goes into the write and comes back with its result, to be answered.
        ctx.spawn(async move {
            let res = storage::write_batch(&db, &rows_of(&batch)).instrument(span).await;
            logged(batch.len());
            (batch, res)
        }.into_actor(self).map(move |(batch, res), act, ctx| {
            act.writing = false;
            act.written_batch(batch, res, ctx);
        }));
    }

    /// Answers a batch written (or not) and goes on with what waits.
    fn written_batch(&mut self, batch: Vec<Entry>, res: Result<Vec<EntryWritten>, StorageError>, ctx: &mut Context<Self>) {
        match res {
            Ok(results) => {
                self.answer(batch, results);
                self.schedule(ctx);
            }
            Err(e) if batch.len() > 1 => {
                // One bad entry must not fail everyone who shared its transaction: write
                // each alone, so only the bad one is told.
                tracing::warn!(error = %e, entries = batch.len(), "batch failed; writing its entries one by one");
                self.write_each(batch, ctx);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record an outcome or ticket");
                let retry = fail_entries(batch, &e.to_string());
                self.buffer.splice(0..0, retry);
                ctx.run_later(Duration::from_millis(500), |act, ctx| act.schedule(ctx));
            }
        }
    }
}

/// What a batch writes, entry by entry.
fn rows_of(batch: &[Entry]) -> Vec<&BatchEntry> {
    batch.iter().map(|e| &e.rows).collect()
}

/// Answers every waiting entry with `error`; gives back the fire-and-forget tickets, which
/// are kept to be written later.
fn fail_entries(batch: Vec<Entry>, error: &str) -> Vec<Entry> {
    batch.into_iter().filter_map(|e| e.answer(Err(error.to_string()))).collect()
}

impl Committer {
    /// Tells each waiting entry of a committed batch what became of it (`results` are in
    /// batch order).
    fn answer(&mut self, batch: Vec<Entry>, results: Vec<EntryWritten>) {
        for (entry, written) in batch.into_iter().zip(results) {
            match written {
                EntryWritten::Written(Some(_)) | EntryWritten::Settled { ticket: Some(_), .. } => self.written += 1,
                EntryWritten::Stale => tracing::info!("an outcome came for a job settled meanwhile (another attempt of it); neither its state nor a ticket was written"),
                EntryWritten::Written(None) | EntryWritten::Settled { ticket: None, .. } | EntryWritten::Queued(_) => {}
            }
            entry.answer(Ok(written));
        }
    }

    /// Writes each entry of a failed batch in a transaction of its own.
    fn write_each(&mut self, batch: Vec<Entry>, ctx: &mut Context<Self>) {
        if let Some(writer) = self.writer.as_mut() {
            let results = batch
                .into_iter()
                .map(|entry| {
                    let res = writer.write(&[&entry.rows]);
                    (entry, res)
                })
                .collect();
            return self.written_each(results, ctx);
        }
        self.writing = true;
        let db = self.db.clone();
        ctx.spawn(
            async move {
                let mut results = Vec::with_capacity(batch.len());
                for entry in batch {
                    let res = storage::write_batch(&db, &[&entry.rows]).await;
                    results.push((entry, res));
                }
                results
            }
            .into_actor(self)
            .map(|results, act, ctx| {
                act.writing = false;
                act.written_each(results, ctx);
            }),
        );
    }

    /// Answers the entries of a failed batch, each written alone (or not).
    fn written_each(&mut self, results: Vec<(Entry, Result<Vec<EntryWritten>, StorageError>)>, ctx: &mut Context<Self>) {
        for (entry, res) in results {
            match res {
                Ok(written) => self.answer(vec![entry], written),
                Err(e) => {
                    tracing::error!(error = %e, "cannot record an outcome or ticket");
                    let keep = fail_entries(vec![entry], &e.to_string());
                    self.buffer.extend(keep);
                }
            }
        }
        self.schedule(ctx);
    }
}

impl Actor for Committer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Senders wait while the mailbox is full: on SQLite's writer it fills during a write,
        // and what it holds is the next batch (publishers and attempts each wait for their
        // answer, so what can queue is bounded by them).
        ctx.set_mailbox_capacity(MAILBOX);
        if let Some(r) = self.retention {
            self.prune();
            ctx.run_interval(r.every, |act, _| act.prune());
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Its own thread (see `Committer::start`) ends with it.
        if self.own_arbiter {
            Arbiter::current().stop();
        }
    }
}

/// Record this ticket (batched, fire and forget).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WriteTicket(pub NewTicket);

impl Handler<WriteTicket> for Committer {
    type Result = ();
    fn handle(&mut self, msg: WriteTicket, ctx: &mut Context<Self>) {
        self.push(Entry { rows: BatchEntry::Ticket(msg.0), reply: None }, ctx);
    }
}

/// Record a claimed job's outcome (settled by its claim's token, in `update`) and, when
/// final, its ticket; answers after the commit: settled (with its ticket's id, and whether
/// its key has a pending job), or stale (the job was settled meanwhile, by another attempt:
/// nothing written).
#[derive(Message)]
#[rtype(result = "Result<EntryWritten, String>")]
pub struct RecordOutcome {
    pub update: JobUpdate,
    /// Jobs the outcome gives rise to (the second half of a merge), stored with it.
    pub jobs: Vec<NewDelivery>,
    pub link: Option<LinkUpdate>,
    pub attempt: Option<NewAttempt>,
    pub ticket: Option<NewTicket>,
}

impl Handler<RecordOutcome> for Committer {
    type Result = ResponseFuture<Result<EntryWritten, String>>;
    fn handle(&mut self, msg: RecordOutcome, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let rows = BatchEntry::Outcome { update: msg.update, jobs: msg.jobs, link: msg.link, attempt: msg.attempt, ticket: msg.ticket };
        self.push(Entry { rows, reply: Some(tx) }, ctx);
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err("the committer stopped".into())) })
    }
}

/// Store these accepted jobs durably; answers once they are committed, with the stored jobs
/// that head their record keys when the writer knows them (see `EntryWritten::Queued`).
#[derive(Message)]
#[rtype(result = "Result<Option<Vec<Delivery>>, String>")]
pub struct StoreJobs(pub Vec<NewDelivery>);

impl Handler<StoreJobs> for Committer {
    type Result = ResponseFuture<Result<Option<Vec<Delivery>>, String>>;
    fn handle(&mut self, msg: StoreJobs, ctx: &mut Context<Self>) -> Self::Result {
        if msg.0.is_empty() {
            return Box::pin(async { Ok(Some(Vec::new())) });
        }
        let (tx, rx) = oneshot::channel();
        self.push(Entry { rows: BatchEntry::Jobs(msg.0), reply: Some(tx) }, ctx);
        Box::pin(async move {
            match rx.await.unwrap_or_else(|_| Err("the writer stopped before storing the event".into()))? {
                EntryWritten::Queued(heads) => Ok(heads),
                _ => Ok(None),
            }
        })
    }
}

/// Write everything buffered now; answers with the count of tickets written so far. Used
/// at shutdown.
#[derive(Message)]
#[rtype(result = "u64")]
pub struct FlushTickets;

impl Handler<FlushTickets> for Committer {
    type Result = ResponseActFuture<Self, u64>;
    fn handle(&mut self, _: FlushTickets, _: &mut Context<Self>) -> Self::Result {
        let batch: Vec<Entry> = std::mem::take(&mut self.buffer);
        if let Some(writer) = self.writer.as_mut() {
            let res = writer.write(&rows_of(&batch));
            self.flushed(batch, res);
            return Box::pin(fut::ready(self.written));
        }
        let db = self.db.clone();
        Box::pin(async move {
            let res = storage::write_batch(&db, &rows_of(&batch)).await;
            (batch, res)
        }
        .into_actor(self)
        .map(move |(batch, res), act, _| {
            act.flushed(batch, res);
            act.written
        }))
    }
}

impl Committer {
    /// Answers the final flush's batch.
    fn flushed(&mut self, batch: Vec<Entry>, res: Result<Vec<EntryWritten>, StorageError>) {
        match res {
            Ok(results) => self.answer(batch, results),
            Err(e) => {
                tracing::error!(error = %e, "final flush of outcomes and tickets failed");
                for entry in batch {
                    entry.answer(Err(e.to_string()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn job(n: u32) -> NewDelivery {
        NewDelivery { connector_id: "c".into(), event_id: format!("e{n}"), topic: "t".into(), record_key: format!("k{n}"), payload: crate::mapping::Payload::shared(serde_json::json!({})), origin: crate::sync::Origin::Event, deleted: false }
    }

    /// The commit gap: a lone entry after a quiet gap is written at once; a batch of
    /// `GATHERED` entries within the gap is written at once; an entry within the gap after a
    /// write waits for the gap's end (it would share that transaction with whatever came).
    /// The bounds are one-sided where the machine's load could stretch them. Through the pool
    /// (SQLite in memory) and with SQLite's own writer on the Committer's own thread.
    #[actix_web::test]
    async fn the_commit_gap_spares_a_lone_entry_and_a_full_batch() {
        let db = storage::connect("sqlite::memory:").await.unwrap();
        commit_gap(Committer::new(db, 500, GAP).start()).await;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}/c.db", dir.path().display());
        let db = storage::connect(&url).await.unwrap();
        let committer = Committer::new(db.clone(), 500, GAP).with_writer(SqliteWriter::open(&url).unwrap()).start();
        commit_gap(committer.clone()).await;
        assert_eq!(storage::pending_count(&db, "c").await.unwrap(), 2 + GATHERED as u64, "every job stored");
    }

    const GAP: Duration = Duration::from_millis(1500);

    async fn commit_gap(committer: Addr<Committer>) {
        let t = Instant::now();
        committer.send(StoreJobs(vec![job(0)])).await.unwrap().unwrap();
        assert!(t.elapsed() < GAP, "a lone entry waited {:?}", t.elapsed());

        let t = Instant::now();
        let sends: Vec<_> = (1..=GATHERED as u32).map(|n| committer.send(StoreJobs(vec![job(n)]))).collect();
        for r in futures_util::future::join_all(sends).await {
            r.unwrap().unwrap();
        }
        assert!(t.elapsed() < GAP / 2, "a full batch waited {:?} for the gap", t.elapsed());

        let t = Instant::now();
        committer.send(StoreJobs(vec![job(100)])).await.unwrap().unwrap();
        assert!(t.elapsed() >= GAP / 2, "an entry within the gap was written after {:?}", t.elapsed());
    }
}
