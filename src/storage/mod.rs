//! Storage: opening the database (SQLite or PostgreSQL), its error type, and the data access
//! functions of every table, re-exported here.
//!
//! Every function is a plain `async fn(db: &Db, …) -> Result<_, StorageError>`: the database,
//! not memory, is the truth, so actors call these directly and stay stateless across restarts.
//!
//! Conventions shared by the table modules:
//! - JSON is kept in `text` columns and (de)serialized here; a row that does not parse is
//!   reported as [`StorageError::Corrupt`] rather than silently dropped.
//! - Every timestamp written is UTC truncated to whole microseconds ([`now`], [`micros`]),
//!   the precision of PostgreSQL's `timestamptz`. Both backends then hold exactly the value
//!   the caller sees, which the ticket hash chain needs (a hash recomputed from a row must match).

mod attempts;
mod audit;
mod checkpointer;
mod connectors;
mod cursors;
mod deliveries;
mod instances;
mod leases;
mod links;
mod schema;
mod sessions;
mod settings;
mod signals;
mod sqlite_writer;
mod stats;
mod tickets;

pub use audit::{AuditEntry, list_audit, record_audit};
pub use sessions::{IDLE as SESSION_IDLE, MAX_AGE as SESSION_MAX_AGE, Session, close_session, find_session, open_session, prune_sessions, random_token};
pub use attempts::{Attempt, NewAttempt, failures_since, list_attempts};
pub use connectors::{StoredConnector, delete_connector, list_connectors, save_connector};
pub use cursors::{load_cursor, save_cursor};
pub use deliveries::{
    Claim, ClaimToken, Claimant, CurrentShare, Delivery, InFlight, JobStatus, SHARE_WAIT, Share, JobUpdate, NewDelivery, apply_update, claim, complete, discard_parked, due_heads, due_heads_except, enqueue, get_delivery, lapsed_lease_connectors,
    in_flight_by_instance, ParkedFilter, list_parked, newer_delivered, next_due_at, note_in_flight, park, pending_count, queue_stats, release_claims, release_job_leases, renew_job_leases, replay_parked, reschedule,
};
pub use instances::{Instance, beat, db_now, list_instances, register_instance, remove_instance};
pub use leases::{forget_other_instances, holder, lease_ttl, leases_held, release_leases, take_lease};
pub use links::{Link, LinkUpdate, get_link, link_by_external, save_link};
pub use settings::{get_setting, put_setting, settings_with_prefix};
pub use signals::{CHANNEL, notify};
pub use sqlite_writer::SqliteWriter;
pub use stats::{Counts, TicketMark, failures_per_minute, ticket_cursor_since, tickets_from};
pub use tickets::{
    ANCHOR_KEY, BrokenLink, ChainReport, Direction, GENESIS_HASH, verify_chain, NewTicket, Ticket, TicketFilter, TicketStatus, append_tickets, get_ticket, list_tickets,
    prune_tickets, ticket_count, ticket_row_hash,
};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, Database, DatabaseTransaction, DbBackend, DbErr, RuntimeErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

/// The connection pool every storage function takes (cheap to clone, `Send + Sync`).
pub type Db = sea_orm::DatabaseConnection;

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A query failed (constraint, lost connection, locked database, …).
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// A statement of SQLite's own writer failed (see [`SqliteWriter`]).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// SQLite's own writer could not open its connection, or failed in a way SQLite does
    /// not report (a panic).
    #[error("the SQLite writer {0}")]
    Writer(String),
    /// The database could not be opened. `url` has its password redacted.
    #[error("cannot connect to database {url}: {source}")]
    Connect { url: String, source: DbErr },
    /// The database opened but its schema could not be brought up to date.
    #[error("cannot migrate database {url}: {source}")]
    Migrate { url: String, source: DbErr },
    /// The URL names neither SQLite nor PostgreSQL.
    #[error(
        "unsupported database URL {0}: expected sqlite:PATH, sqlite://PATH, sqlite::memory: or postgres://…"
    )]
    UnsupportedUrl(String),
    /// The directory for a SQLite file could not be created.
    #[error("cannot create directory {path} for database {url}: {source}")]
    CreateDir {
        path: String,
        url: String,
        source: std::io::Error,
    },
    /// A stored value is not what this version wrote (bad JSON, broken hash chain, …).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The database's schema is newer than this binary knows, and no longer serves it.
    #[error(
        "the database {url} has schema {schema}, written by hms-sync {written_by}; this hms-sync {binary} knows schemas up to {known} and that schema serves binaries from {compatible_from} on: upgrade this binary to {written_by} (or later)"
    )]
    SchemaTooNew { url: String, schema: String, written_by: String, binary: String, known: String, compatible_from: String },
    /// Another process runs on this SQLite file.
    #[error("the SQLite database {path} is in use by another hms-sync ({holder}); SQLite is single-node: stop that one, or run several instances on one PostgreSQL database.url")]
    InUse { path: String, holder: String },
    /// The lock file beside a SQLite database could not be opened.
    #[error("cannot open the lock file {path}: {source}")]
    LockFile { path: String, source: std::io::Error },
}

/// Takes the lock of a SQLite database file (`PATH.lock` beside it) for as long as the
/// returned file is open: one process per file, since SQLite is single-node. `None` for
/// PostgreSQL and in-memory SQLite. The lock is the operating system's (`flock`), so a
/// process killed with -9 leaves no stale lock behind.
pub fn lock_sqlite(url: &str) -> Result<Option<std::fs::File>, StorageError> {
    use std::io::{Read, Seek, Write};
    let Some(path) = url.starts_with("sqlite:").then(|| sqlite_file(url)).flatten() else { return Ok(None) };
    let lock_path = format!("{path}.lock");
    if let Some(dir) = Path::new(&lock_path).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::LockFile { path: lock_path.clone(), source })?;
    }
    let mut file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&lock_path).map_err(|source| StorageError::LockFile { path: lock_path.clone(), source })?;
    match file.try_lock() {
        Ok(()) => {
            // Who holds it, for the message the next one gets.
            let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| write!(file, "pid {}", std::process::id()));
            Ok(Some(file))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = if holder.trim().is_empty() { "another process".to_string() } else { holder.trim().to_string() };
            Err(StorageError::InUse { path, holder })
        }
        Err(std::fs::TryLockError::Error(source)) => Err(StorageError::LockFile { path: lock_path, source }),
    }
}

/// One thing a group commit writes (see [`write_batch`]).
#[derive(Debug, Clone)]
pub enum BatchEntry {
    /// Newly accepted jobs.
    Jobs(Vec<NewDelivery>),
    /// A claimed job's outcome, settled by its claim token (in `update`), with what comes
    /// with it: the jobs it gives rise to, its record link, its attempt and its ticket.
    Outcome { update: JobUpdate, jobs: Vec<NewDelivery>, link: Option<LinkUpdate>, attempt: Option<NewAttempt>, ticket: Option<NewTicket> },
    /// A ticket alone.
    Ticket(NewTicket),
}

/// What became of one entry of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryWritten {
    /// New jobs stored. With SQLite's own writer, those of them that are the head of their
    /// record key (the oldest pending job of it) once stored, as a read would give them: the
    /// lane can start them at once, without reading the queue (at a light load that read was
    /// one per event, a round trip to a pooled connection's thread). A stored job that is
    /// not its key's head waits behind the head, whose settle reads the queue for it
    /// (`Settled::key_waits`); a job already stored (its event id seen) is not there.
    /// `None` (the pool's writer): not known; the lane reads the queue.
    Queued(Option<Vec<Delivery>>),
    /// A ticket alone written; the id of its ticket.
    Written(Option<i64>),
    /// An outcome written: its job settled (done, rescheduled or parked), with the id of its
    /// ticket if it had one. `key_waits`: the job's record key has a pending job after the
    /// commit (a later change of the record, or the job itself, rescheduled), which its lane
    /// must claim next; without one, the lane has nothing to read for the key (at a steady
    /// load that was a claim per event, each a round trip to the database, for nothing).
    /// `next`: with SQLite's own writer, that pending job, the key's head now, when it is
    /// due, as a read would give it: the lane starts it without reading the queue (in a burst
    /// of changes to one record that read was one per event). `None` (the pool's writer, or
    /// a job not due): the lane reads the queue when `key_waits`.
    Settled { ticket: Option<i64>, key_waits: bool, next: Option<Delivery> },
    /// An outcome whose claim no longer holds (the job was settled meanwhile, by another
    /// attempt): nothing of it was written, neither its state nor its ticket.
    Stale,
}

/// Writes one group-committed batch in ONE transaction: newly accepted jobs, job outcomes and
/// tickets. A job is never `done` without its ticket, nor ticketed without its new state,
/// whatever crashes in between; an outcome is written only while its claim holds (the job is
/// pending with the attempts it had when claimed: its token), so a job is settled and
/// ticketed once even if two attempts of it ran; and SQLite's single writer lock is taken
/// once per batch instead of being fought over by several writers. A batch of new jobs alone
/// that one statement inserts is that statement, without `BEGIN` and `COMMIT` (atomic as it
/// is; one round trip instead of three). Answers per entry, in order.
pub async fn write_batch(db: &Db, entries: &[&BatchEntry]) -> Result<Vec<EntryWritten>, StorageError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    // New jobs alone (acceptances, the common batch at a light load): no outcome to check,
    // no ticket to chain; one statement where they fit in one (see `deliveries::enqueue`).
    if let Some(jobs) = jobs_only(entries) {
        match entries {
            [BatchEntry::Jobs(jobs)] => deliveries::enqueue(db, jobs).await?,
            _ => deliveries::enqueue(db, &jobs).await?,
        };
        return Ok(vec![EntryWritten::Queued(None); entries.len()]);
    }
    let txn = begin_write(db).await?;
    let claimed = claimed(entries);
    let pending = if claimed.is_empty() { Default::default() } else { deliveries::pending_claims_in(&txn, &claimed).await? };
    let plan = Plan::of(entries, &pending);
    deliveries::insert_in(&txn, &plan.jobs).await?;
    deliveries::apply_updates_in(&txn, &plan.updates).await?;
    for l in &plan.links {
        links::save_link(&txn, l).await?;
    }
    attempts::insert_in(&txn, &plan.attempts).await?;
    let mut waiting = deliveries::keys_waiting_in(&txn, &plan.settled).await?.into_iter().map(|id| (id, None)).collect();
    let ids = tickets::append_in(&txn, &plan.tickets).await?;
    txn.commit().await?;
    Ok(plan.written(entries, ids, &mut waiting, None))
}

/// A batch of new jobs alone: their jobs in one list (empty for a single entry, which is
/// written from its own list). `None` when the batch holds anything else.
fn jobs_only(entries: &[&BatchEntry]) -> Option<Vec<NewDelivery>> {
    if !entries.iter().all(|e| matches!(e, BatchEntry::Jobs(_))) {
        return None;
    }
    Some(match entries {
        [_] => Vec::new(),
        _ => entries.iter().flat_map(|e| if let BatchEntry::Jobs(jobs) = e { jobs.as_slice() } else { &[] }).cloned().collect(),
    })
}

/// The jobs whose outcomes the batch settles (their claims are checked first).
fn claimed(entries: &[&BatchEntry]) -> Vec<i64> {
    entries.iter().filter_map(|e| if let BatchEntry::Outcome { update, .. } = e { Some(update.token().job) } else { None }).collect()
}

/// What a batch writes, once its outcomes' claims are checked: shared by both writers (the
/// pool's above and SQLite's own, [`sqlite_writer`]), which differ only in how they run the
/// statements.
struct Plan<'a> {
    /// Per entry: written (an outcome whose claim holds, or anything else) or stale.
    live: Vec<bool>,
    /// The jobs the live outcomes settle.
    settled: Vec<i64>,
    /// What to write, borrowed from the entries (a job's payload is not copied to be written).
    jobs: Vec<&'a NewDelivery>,
    updates: Vec<&'a JobUpdate>,
    links: Vec<&'a LinkUpdate>,
    attempts: Vec<&'a NewAttempt>,
    tickets: Vec<&'a NewTicket>,
}

impl<'a> Plan<'a> {
    /// `pending`: the attempts and claim counts of the claimed jobs still pending.
    fn of(entries: &[&'a BatchEntry], pending: &std::collections::HashMap<i64, (i32, i32)>) -> Self {
        // Which outcomes hold their claim: the job still pending with the token's attempts and
        // claim count (no other claim since, on any instance), and settled once in the batch
        // (two outcomes of one job in one batch: the first).
        let mut settled = std::collections::HashSet::new();
        let live: Vec<bool> = entries
            .iter()
            .map(|e| match e {
                BatchEntry::Outcome { update, .. } => {
                    let t = update.token();
                    pending.get(&t.job) == Some(&(t.attempts, t.claims)) && settled.insert(t.job)
                }
                _ => true,
            })
            .collect();
        let mut plan = Plan { live: Vec::new(), settled: Vec::new(), jobs: Vec::new(), updates: Vec::new(), links: Vec::new(), attempts: Vec::new(), tickets: Vec::new() };
        for (e, live) in entries.iter().zip(&live) {
            match e {
                BatchEntry::Jobs(new) => plan.jobs.extend(new.iter()),
                BatchEntry::Outcome { update, jobs: new, link, attempt, ticket } if *live => {
                    plan.jobs.extend(new.iter());
                    plan.settled.push(update.token().job);
                    plan.updates.push(update);
                    plan.links.extend(link.iter());
                    plan.attempts.extend(attempt.iter());
                    plan.tickets.extend(ticket.iter());
                }
                BatchEntry::Outcome { .. } => {}
                BatchEntry::Ticket(t) => plan.tickets.push(t),
            }
        }
        plan.live = live;
        plan
    }

    /// What became of each entry, given the tickets' new ids (in entry order), the settled
    /// jobs whose keys have a pending job (`waiting`), with that job when the writer knows
    /// it, and, when the writer knows them, the new jobs stored and which of them head their
    /// keys (`queued`).
    fn written(self, entries: &[&'a BatchEntry], ticket_ids: Vec<i64>, waiting: &mut std::collections::HashMap<i64, Option<Delivery>>, mut queued: Option<Queued<'a>>) -> Vec<EntryWritten> {
        let mut ids = ticket_ids.into_iter();
        entries
            .iter()
            .zip(self.live)
            .map(|(e, live)| match e {
                BatchEntry::Outcome { .. } if !live => EntryWritten::Stale,
                BatchEntry::Outcome { update, ticket, .. } => {
                    let next = waiting.remove(&update.token().job);
                    EntryWritten::Settled { ticket: ticket.as_ref().and_then(|_| ids.next()), key_waits: next.is_some(), next: next.flatten() }
                }
                BatchEntry::Ticket(_) => EntryWritten::Written(ids.next()),
                BatchEntry::Jobs(jobs) => EntryWritten::Queued(queued.as_mut().map(|q| q.heads(jobs))),
            })
            .collect()
    }
}

/// The new jobs a batch stored, as SQLite's writer learns them (each insert gives back the
/// row it adds): their ids by connector and event id, which of them head their record keys
/// once stored, and when they were stored.
pub(crate) struct Queued<'a> {
    pub(crate) ids: std::collections::HashMap<(&'a str, &'a str), i64>,
    pub(crate) heads: std::collections::HashSet<i64>,
    pub(crate) at: DateTime<Utc>,
}

impl<'a> Queued<'a> {
    /// Whether job `id` was stored by this batch.
    pub(crate) fn stored(&self, id: i64) -> bool {
        self.ids.values().any(|&stored| stored == id)
    }

    /// Of an entry's `jobs`, those stored by this batch that head their keys. A job stored
    /// by the batch is given to the first entry that has it (an event id twice in a batch is
    /// stored once).
    fn heads(&mut self, jobs: &'a [NewDelivery]) -> Vec<Delivery> {
        jobs.iter()
            .filter_map(|j| {
                let id = self.ids.remove(&(j.connector_id.as_str(), j.event_id.as_str()))?;
                self.heads.contains(&id).then(|| Delivery::stored(j, id, self.at))
            })
            .collect()
    }
}

/// Closes parked job `id` (status `discarded`), stores `jobs` that replace it (a resolved
/// conflict) and its closing `ticket`, all in ONE transaction. `false` (and nothing
/// written) when the job is not parked any more.
pub async fn close_parked(db: &Db, id: i64, jobs: &[NewDelivery], ticket: &NewTicket) -> Result<bool, StorageError> {
    let txn = begin_write(db).await?;
    if !deliveries::discard_in(&txn, id).await? {
        txn.rollback().await?;
        return Ok(false);
    }
    deliveries::insert_in(&txn, jobs).await?;
    tickets::append_in(&txn, std::slice::from_ref(ticket)).await?;
    txn.commit().await?;
    Ok(true)
}

/// The current time as stored: UTC, whole microseconds (see the module docs).
pub(crate) fn now() -> DateTime<Utc> {
    micros(Utc::now())
}

/// `t` truncated to whole microseconds, the precision both backends keep.
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// A statement written with `?` placeholders, numbered (`$1`, …) on PostgreSQL. For the
/// small tables whose queries are plain text (sessions, audit log, console statistics);
/// `sql` must hold no `?` other than placeholders.
pub(crate) fn stmt(db: &Db, sql: &str, values: Vec<sea_orm::Value>) -> sea_orm::Statement {
    let backend = sea_orm::ConnectionTrait::get_database_backend(db);
    if backend != sea_orm::DbBackend::Postgres {
        return sea_orm::Statement::from_sql_and_values(backend, sql, values);
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    sea_orm::Statement::from_sql_and_values(backend, out, values)
}

/// Serializes a JSON value for a `text` column.
pub(crate) fn to_json_text(v: &serde_json::Value) -> String {
    // Serializing a `Value` to a string cannot fail (its map keys are always strings).
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

/// Parses a JSON `text` column; `what` names the row for the error message.
pub(crate) fn from_json_text(text: &str, what: &str) -> Result<serde_json::Value, StorageError> {
    serde_json::from_str(text)
        .map_err(|e| StorageError::Corrupt(format!("{what}: invalid JSON: {e}")))
}

/// Starts a write transaction. On SQLite it is `BEGIN IMMEDIATE`: a deferred transaction
/// that reads first and writes later fails with `SQLITE_BUSY` when another writer got in
/// between (busy_timeout cannot help there); taking the write lock up front makes
/// concurrent writers queue on busy_timeout instead.
pub(crate) async fn begin_write(db: &Db) -> Result<DatabaseTransaction, StorageError> {
    let opts = TransactionOptions {
        sqlite_transaction_mode: (db.get_database_backend() == DbBackend::Sqlite)
            .then_some(SqliteTransactionMode::Immediate),
        ..Default::default()
    };
    Ok(db.begin_with_options(opts).await?)
}

/// How long a SQLite connection waits for another's lock before it gives up: the pool's
/// connections, SQLite's writer and its checkpointer alike.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled connection idle this long is pinged before it is handed out (see [`connect`]).
const POOL_PING_AFTER_IDLE: Duration = Duration::from_secs(30);

/// Opens the database at `url` and brings its schema up to date.
///
/// - `sqlite:PATH` / `sqlite://PATH` (relative) / `sqlite:///abs/path`: the parent
///   directory and the file are created if missing; WAL journal (readers never block the
///   writer), `synchronous = NORMAL` (durable at checkpoints, safe against corruption in WAL
///   mode, and far fewer fsyncs), checkpoints on a thread of their own beside the writer,
///   the pool's connections checkpointing only past the writer's backstop
///   ([`checkpointer::HARD_PAGES`]), `busy_timeout` 5 s, foreign keys on, a pool of twice
///   the cores, 4 to 8 ([`sqlite_pool_size`]; sea-orm's SQLite default is 1, which
///   serializes every reader behind the writer).
///   `sqlite::memory:` gets a pool of 1: each in-memory connection would otherwise share one
///   cache and trip over table locks.
/// - `postgres://…` / `postgresql://…`: a pool of 16, all opened at start.
///
/// Then runs `migrations::Migrator::up`, which is a no-op when the schema is current.
/// Errors name the URL with its password redacted.
pub async fn connect(url: &str) -> Result<Db, StorageError> {
    let shown = redact_url(url);
    let mut opts = ConnectOptions::new(url.to_owned());
    // sqlx logs statements through the `log` crate, which nothing here forwards to
    // `tracing`; turning it off saves formatting every statement for nobody.
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        // sqlx pings a pooled connection at every checkout by default: a round trip before
        // each query or transaction (for SQLite a hop to the connection's thread and back,
        // for PostgreSQL one over the socket). Only a connection idle this long is pinged
        // (the one a server, proxy or firewall may have dropped meanwhile); one in use
        // fails on its query instead, which its caller handles as any database error.
        .test_before_acquire_if_idle_for(POOL_PING_AFTER_IDLE);
    if url.starts_with("sqlite:") {
        let file = sqlite_file(url);
        match &file {
            Some(path) => {
                if let Some(dir) = Path::new(path)
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                {
                    std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
                        path: dir.display().to_string(),
                        url: shown.clone(),
                        source,
                    })?;
                }
                opts.max_connections(sqlite_pool_size()).min_connections(1);
            }
            None => {
                opts.max_connections(1).min_connections(1);
            }
        }
        opts.map_sqlx_sqlite_opts(|o| {
            o.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
                .pragma("wal_autocheckpoint", checkpointer::HARD_PAGES.to_string())
        });
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // All 16 opened up front, by the pool's own task on the runtime that connects (the
        // service's main one, which lives as long as the process): a connection's socket
        // belongs to the runtime that opened it, and one opened by a connector's thread
        // breaks for every later user when that connector is deleted and its thread ends
        // ("A Tokio 1.x context was found, but it is being shutdown"). With the pool full
        // from the start, connector threads never open their own.
        opts.max_connections(16).min_connections(16);
    } else {
        return Err(StorageError::UnsupportedUrl(shown));
    }
    let db = match Database::connect(opts).await {
        Ok(db) => db,
        Err(source) => {
            let source = explain_pool_timeout(url, source).await;
            return Err(StorageError::Connect { url: shown, source });
        }
    };
    // Instances of a cluster that start together would run the migrations side by side (and
    // fail on each other's tables): one at a time, the others wait, then find nothing to do.
    let lock = schema::MigrationLock::take(url).await.map_err(|source| StorageError::Migrate { url: shown.clone(), source })?;
    if schema::ours_is_current(&db, &shown).await? {
        use migrations::MigratorTrait;
        migrations::Migrator::up(&db, None).await.map_err(|source| StorageError::Migrate { url: shown.clone(), source })?;
        schema::record(&db).await?;
    }
    lock.release().await;
    Ok(db)
}

/// The SQLite file's pool: twice the cores, at least 4, at most 8. SQLite has one writer
/// (the Committer) and readers that run beside it (the lanes' claims, the API and the
/// console); readers beyond twice the cores only wait for a core. Each connection costs
/// memory once it has been used (its own thread, its schema, its statements and page cache,
/// and that thread's allocator cache): on 2 cores, 4 connections instead of 8 took an idle
/// service with 1,000 connectors from 38.4-38.6 to 36.6-36.9 MiB, with no difference in throughput
/// beyond noise (README, Performance).
fn sqlite_pool_size() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (2 * cores).clamp(4, 8) as u32
}

/// sqlx's pool retries refused or unreachable PostgreSQL connections until its timeout and
/// then reports only "pool timed out", which does not say why. In that case one direct
/// connection attempt recovers the real reason (connection refused, unknown host, bad
/// password, missing database, …) for the error message.
async fn explain_pool_timeout(url: &str, err: DbErr) -> DbErr {
    use sea_orm::sqlx::{Connection, postgres::PgConnection};
    let timed_out = matches!(&err, DbErr::Conn(RuntimeErr::SqlxError(e))
        if matches!(**e, sea_orm::sqlx::Error::PoolTimedOut));
    if !timed_out || url.starts_with("sqlite:") {
        return err;
    }
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(url)).await {
        Ok(Err(reason)) => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(reason))),
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            err
        }
        Err(_) => err,
    }
}

/// The file a `sqlite:` URL names, or `None` for an in-memory database. Mirrors how sqlx
/// reads the URL (prefix stripped, query string cut, percent-decoded).
fn sqlite_file(url: &str) -> Option<String> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory =
        path.is_empty() || path == ":memory:" || query.split('&').any(|kv| kv == "mode=memory");
    (!in_memory).then(|| percent_decode(path))
}

/// Minimal `%XX` decoding for file paths in URLs.
fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub use crate::delivery::egress::redact_url;

/// `"sqlite"` or `"postgres"` ([`connect`] opens nothing else), for logs, status and metrics.
pub fn backend_name(db: &Db) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Sqlite => "sqlite",
        DbBackend::Postgres => "postgres",
        DbBackend::MySql => "mysql",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool's SQLite connections checkpoint only past the writer's backstop (set in the
    /// pool's connect options, so on every connection it opens): the checkpointer copies.
    #[tokio::test]
    async fn sqlite_connections_checkpoint_at_the_backstop() {
        use sea_orm::ConnectionTrait;
        let dir = tempfile::tempdir().unwrap();
        let db = connect(&format!("sqlite://{}", dir.path().join("hms.db").display())).await.unwrap();
        let row = db.query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Sqlite, "PRAGMA wal_autocheckpoint")).await.unwrap().unwrap();
        assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), i64::from(checkpointer::HARD_PAGES));
    }

    /// A SQLite file's pool is twice the cores, 4 to 8 (each used connection keeps memory:
    /// a pool sized by a constant again would show here on a 2-core machine).
    #[tokio::test]
    async fn the_sqlite_pool_is_sized_to_the_cores() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) as u32;
        let dir = tempfile::tempdir().unwrap();
        let db = connect(&format!("sqlite://{}", dir.path().join("hms.db").display())).await.unwrap();
        let max = db.get_sqlite_connection_pool().options().get_max_connections();
        assert_eq!(max, (2 * cores).clamp(4, 8));
        assert!((4..=8).contains(&max));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cr3t@db.example:5432/hms"),
            "postgres://app:***@db.example:5432/hms"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
        assert_eq!(
            redact_url("postgres://h/db?user=a&password=x&sslmode=require"),
            "postgres://h/db?user=a&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("sqlite://data/hms.db?mode=rwc"),
            "sqlite://data/hms.db?mode=rwc"
        );
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_file("sqlite:data/hms.db").as_deref(),
            Some("data/hms.db")
        );
        assert_eq!(
            sqlite_file("sqlite://data/hms.db").as_deref(),
            Some("data/hms.db")
        );
        assert_eq!(
            sqlite_file("sqlite:///var/lib/h%20s.db?mode=rwc").as_deref(),
            Some("/var/lib/h s.db")
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://?mode=memory"), None);
    }
}
