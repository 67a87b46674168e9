//! SQLite's own writer of the hot path: a connection of its own to the database file, on
//! which the Committer writes each group-committed batch whole, every statement of it on the
//! Committer's own thread: a batch costs no hand-off at all.
//!
//! Through the pool, each statement of a batch (`BEGIN`, the claims' check, the inserts, the
//! updates, the chain's head, `COMMIT`) is a round trip to the pooled connection's thread:
//! two thread switches each, about 14 for a batch of outcomes. Measured at 2,000 events/s,
//! those switches were most of what SQLite's threads cost (a quarter of the service's CPU in
//! the kernel's `finish_task_switch` alone) and SQLite's own work a twentieth. It writes what
//! the pool's writer writes ([`super::write_batch`]: the same [`Plan`], the same ticket
//! chain, the same rows to the byte), the hot statements by hand (see [`write`]), the rare
//! ones with the pool's builders. PostgreSQL, and a SQLite database in memory (which a second
//! connection would not see), are written through the pool.

use chrono::SecondsFormat;
use rusqlite::types::{ToSql, ToSqlOutput, Value as Sql, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use sea_orm::{DbBackend, Statement, Value};

use super::attempts::NewAttempt;
use super::checkpointer::{self, Checkpointer};
use super::deliveries::{Delivery, JobUpdate, NewDelivery};
use super::tickets::NewTicket;
use super::{BatchEntry, EntryWritten, Plan, Queued, StorageError, claimed, deliveries, links, tickets};

const BACKEND: DbBackend = DbBackend::Sqlite;

/// Prepared statements the writer keeps (the batch's statements come in a few shapes each:
/// `IN` lists are padded to powers of two, inserts are chunked).
const CACHED_STATEMENTS: usize = 64;

/// The connection (`Send`, not `Sync`: one thread uses it at a time). Its calls block while
/// SQLite works: it belongs on a thread of its own (the Committer's), not an async worker.
pub struct SqliteWriter {
    conn: Connection,
    /// Copies the WAL into the database file beside this thread (see [`Checkpointer`]).
    checkpointer: Checkpointer,
}

impl std::fmt::Debug for SqliteWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteWriter")
    }
}

impl SqliteWriter {
    /// The writer of the SQLite file `url` names; `None` for PostgreSQL and an in-memory
    /// SQLite database. The file must exist with its schema (after [`super::connect`]).
    pub fn open(url: &str) -> Result<Option<Self>, StorageError> {
        let Some(path) = url.starts_with("sqlite:").then(|| super::sqlite_file(url)).flatten() else { return Ok(None) };
        let conn = open_connection(&path).map_err(|e| StorageError::Writer(format!("cannot open {path}: {e}")))?;
        let checkpointer = Checkpointer::start(&path).map_err(|e| StorageError::Writer(format!("cannot start the checkpointer of {path}: {e}")))?;
        Ok(Some(Self { conn, checkpointer }))
    }

    /// Writes one batch in one transaction, as [`super::write_batch`] does. A panic on the way
    /// (a bug) fails the batch, whose transaction the unwinding rolls back; the connection
    /// stays usable.
    pub fn write(&mut self, entries: &[&BatchEntry]) -> Result<Vec<EntryWritten>, StorageError> {
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(&mut self.conn, entries))).unwrap_or_else(|panic| {
            let message = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_default();
            Err(StorageError::Writer(format!("panicked writing a batch: {message}")))
        });
        self.checkpointer.after_commit(&self.conn);
        written
    }
}

/// A connection set up as the pool's are (see [`super::connect`]): the file's WAL journal,
/// `synchronous = NORMAL`, the same busy timeout and foreign keys. Instead of SQLite's
/// autocheckpoint, its WAL hook tells the [`Checkpointer`] the log's size after each commit.
fn open_connection(path: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(super::SQLITE_BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.wal_hook(Some(checkpointer::wal_hook));
    conn.set_prepared_statement_cache_capacity(CACHED_STATEMENTS);
    Ok(conn)
}

/// [`super::write_batch`], run on this thread's connection, always as one transaction (the
/// pool's writer sends a lone `INSERT` without `BEGIN` and `COMMIT` to save round trips to
/// its connection's thread; here there are none to save). Unlike the pool's writer, it
/// learns the new jobs' ids (each insert gives back its row) and which of them head their
/// keys, for their lanes (see `EntryWritten::Queued`).
///
/// The statements of every job, outcome and ticket are written here by hand, one row each,
/// prepared once and kept (see [`sql`]): built with the query builder, a batch's statements
/// cost more than SQLite's work on them (measured at saturation: building, binding and
/// dropping the builder's values about 45% of this thread, parsing the multi-row `INSERT`s,
/// one SQL text per row count, another 8%). The rows are the pool's to the byte (a test
/// compares them); the rarer statements (a reschedule, a park, a link) are the builder's.
fn write(conn: &mut Connection, entries: &[&BatchEntry]) -> Result<Vec<EntryWritten>, StorageError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let at = super::now();
    let stamp = time_text(at);
    let txn = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let pending = pending_claims(&txn, &claimed(entries))?;
    let plan = Plan::of(entries, &pending);
    let stored = insert_jobs(&txn, &plan.jobs, &stamp)?;
    settle(&txn, &plan.updates, &stamp)?;
    for s in plan.links.iter().flat_map(|l| links::save_statements(BACKEND, l)) {
        execute(&txn, &s)?;
    }
    insert_attempts(&txn, &plan.attempts, &stamp)?;
    // After the updates: a job this batch settles no longer holds its key.
    let queued = queued(&txn, stored, at)?;
    let mut waiting = keys_waiting(&txn, &plan.settled, &queued, at)?;
    let ids = append_tickets(&txn, &plan.tickets)?;
    txn.commit()?;
    Ok(plan.written(entries, ids, &mut waiting, Some(queued)))
}

/// The hand-written statements of [`write`]. Each names its columns; the values it does not
/// bind are the ones the query builder's statements give (a new job: pending, no attempt).
mod sql {
    pub const PENDING_CLAIM: &str = "SELECT attempts, claims FROM deliveries WHERE id = ?1 AND status = 'pending'";
    /// `OR IGNORE`, not the pool's `ON CONFLICT (connector_id, event_id) DO NOTHING`: the
    /// same rows, as the event's unique index is the only constraint a job of ours can break
    /// (every value is bound, the id is the table's own). With `DO NOTHING`, SQLite keeps a
    /// statement journal for the insert, in case a constraint aborts it halfway: each page
    /// the insert touches copied into memory first, a quarter of the insert's time
    /// (measured at saturation: the job insert from 22% of the writer's thread to 17%).
    pub const INSERT_JOB: &str = "INSERT OR IGNORE INTO deliveries (connector_id, event_id, topic, record_key, payload, status, attempts, next_attempt_at, last_error, created_at, updated_at, origin, deleted) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, NULL, ?6, ?6, ?7, ?8)";
    pub const COMPLETE: &str = "UPDATE deliveries SET status = 'done', attempts = ?1, updated_at = ?2, lease_owner = NULL, lease_until = NULL, in_flight = NULL \
         WHERE id = ?3 AND status = 'pending' AND attempts = ?4 AND claims = ?5";
    pub const INSERT_ATTEMPT: &str = "INSERT INTO delivery_attempts (delivery_id, connector_id, attempt, status, latency_ms, error, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    /// A pending job of connector `?1` and record key `?2` older than job `?3`: none, and the
    /// pending job `?3` heads its key (the claim's head test). The new job's connector and key
    /// are bound, not read from its row: one search of the pending jobs' key index, where
    /// looking the job up by its id first and then taking the key's smallest id was two.
    pub const OLDER_OF_KEY: &str = "SELECT 1 FROM deliveries WHERE connector_id = ?1 AND record_key = ?2 AND status = 'pending' AND id < ?3 LIMIT 1";
    /// The oldest pending job of job `?1`'s record key, whole (the columns of
    /// [`super::job_row`], in its order): the key's head once `?1` is settled.
    pub const KEY_HEAD: &str = "SELECT p.id, p.connector_id, p.event_id, p.topic, p.record_key, p.payload, p.status, p.attempts, p.next_attempt_at, p.last_error, \
         p.created_at, p.updated_at, p.origin, p.deleted, p.conflict, p.lease_owner, p.lease_until, p.claims, p.replayed_by, p.in_flight, p.panics \
         FROM deliveries AS d JOIN deliveries AS p ON p.connector_id = d.connector_id AND p.status = 'pending' AND p.record_key = d.record_key \
         WHERE d.id = ?1 ORDER BY p.id LIMIT 1";
    pub const TICKETS_HEAD: &str = "SELECT id, hash FROM sync_tickets WHERE id = (SELECT max(id) FROM sync_tickets)";
    pub const INSERT_TICKET: &str = "INSERT INTO sync_tickets (connector_id, event_id, delivery_id, hms_id, external_id, direction, status, reason, attempts, last_error, detail, created_at, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";
}

/// The attempts and claim counts of those of jobs `ids` still pending (what each outcome's
/// claim token is checked against).
fn pending_claims(conn: &Connection, ids: &[i64]) -> Result<std::collections::HashMap<i64, (i32, i32)>, StorageError> {
    let mut found = std::collections::HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(found);
    }
    let mut select = conn.prepare_cached(sql::PENDING_CLAIM)?;
    for &id in ids {
        if let Some(claim) = select.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional()? {
            found.insert(id, claim);
        }
    }
    Ok(found)
}

/// Of the settled jobs `ids`, those whose record key has a pending job (after the batch's
/// updates), each with that key's next job when it is due at `at` (see
/// `EntryWritten::Settled`): its lane starts it as it is, without reading the queue. A key's
/// next job that is not due (the settled job itself, rescheduled, or a later one waiting
/// out a retry) is left to the queue's read and the retry timer. So is one this batch
/// stored (`queued`): it heads its key now, so it goes to its lane as a new job with its
/// commit (`EntryWritten::Queued`), and given twice it could start twice (the second hand
/// coming after its first attempt settled). A job stored before this batch was not handed
/// over (the settled job, older, headed the key), nor claimed (the key was in flight).
fn keys_waiting(conn: &Connection, ids: &[i64], queued: &Queued<'_>, at: chrono::DateTime<chrono::Utc>) -> Result<std::collections::HashMap<i64, Option<Delivery>>, StorageError> {
    let mut waiting = std::collections::HashMap::new();
    if ids.is_empty() {
        return Ok(waiting);
    }
    let mut head = conn.prepare_cached(sql::KEY_HEAD)?;
    for &id in ids {
        match head.query_row([id], job_row).optional() {
            Ok(Some(row)) => {
                let due = row.next_attempt_at <= at && !queued.stored(row.id);
                // A payload that does not read as JSON is left to the queue's read too, which
                // reports it: the batch is not failed for it.
                waiting.insert(id, due.then(|| Delivery::try_from(row).ok()).flatten());
            }
            Ok(None) => {}
            // Likewise a time not as the writers write it.
            Err(rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..)) => {
                waiting.insert(id, None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(waiting)
}

/// A job's row as [`sql::KEY_HEAD`] reads it, in the pool's model (so that it becomes a
/// [`Delivery`] as a read through the pool makes it). Times are read by rusqlite's `chrono`
/// conversion, which takes the RFC 3339 text both writers store.
fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<entities::deliveries::Model> {
    Ok(entities::deliveries::Model {
        id: r.get(0)?,
        connector_id: r.get(1)?,
        event_id: r.get(2)?,
        topic: r.get(3)?,
        record_key: r.get(4)?,
        payload: r.get(5)?,
        status: r.get(6)?,
        attempts: r.get(7)?,
        next_attempt_at: r.get(8)?,
        last_error: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        origin: r.get(12)?,
        deleted: r.get(13)?,
        conflict: r.get(14)?,
        lease_owner: r.get(15)?,
        lease_until: r.get(16)?,
        claims: r.get(17)?,
        replayed_by: r.get(18)?,
        in_flight: r.get(19)?,
        panics: r.get(20)?,
    })
}

/// Stores `jobs`, stamped `stamp`; the ones stored, with their ids (a job whose event id its
/// connector has already is not among them).
fn insert_jobs<'a>(conn: &Connection, jobs: &[&'a NewDelivery], stamp: &str) -> Result<Vec<(i64, &'a NewDelivery)>, StorageError> {
    let mut stored = Vec::with_capacity(jobs.len());
    if jobs.is_empty() {
        return Ok(stored);
    }
    let mut insert = conn.prepare_cached(sql::INSERT_JOB)?;
    for &j in jobs {
        let values = params![j.connector_id, j.event_id, j.topic, j.record_key, j.payload.text(), stamp, j.origin.as_text(), j.deleted];
        // The new row's id from the connection, not `RETURNING id`: SQLite runs a
        // `RETURNING` insert as one that buffers its output rows in a table of their own,
        // about 12,000 instructions of an event's 418,000 (benches/callgrind, 2026-12-04).
        // An ignored insert (the event's id is known) changes no row.
        if insert.execute(values)? == 1 {
            stored.push((conn.last_insert_rowid(), j));
        }
    }
    Ok(stored)
}

/// Applies the outcomes' `updates`: a completion (most of them) by hand, the rest with the
/// query builder's statements.
fn settle(conn: &Connection, updates: &[&JobUpdate], stamp: &str) -> Result<(), StorageError> {
    let mut complete = None;
    for &u in updates {
        match u {
            JobUpdate::Complete { token, attempts } => {
                let statement = match &mut complete {
                    Some(s) => s,
                    None => complete.insert(conn.prepare_cached(sql::COMPLETE)?),
                };
                statement.execute(params![attempts, stamp, token.job, token.attempts, token.claims])?;
            }
            other => {
                for s in deliveries::update_statements(BACKEND, &[other]) {
                    execute(conn, &s)?;
                }
            }
        }
    }
    Ok(())
}

/// Records `attempts`, at `stamp`.
fn insert_attempts(conn: &Connection, attempts: &[&NewAttempt], stamp: &str) -> Result<(), StorageError> {
    if attempts.is_empty() {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(sql::INSERT_ATTEMPT)?;
    for a in attempts {
        let latency = i64::try_from(a.latency_ms).unwrap_or(i64::MAX);
        insert.execute(params![a.delivery_id, a.connector_id, a.attempt, a.status.map(i32::from), latency, a.error, stamp])?;
    }
    Ok(())
}

/// Appends `new` to the ticket chain (see `tickets::append_tickets`); their ids, in order.
fn append_tickets(conn: &Connection, new: &[&NewTicket]) -> Result<Vec<i64>, StorageError> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let head = conn.prepare_cached(sql::TICKETS_HEAD)?.query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))).optional()?;
    let chain = tickets::Chain::after(head, new);
    let mut insert = conn.prepare_cached(sql::INSERT_TICKET)?;
    let mut written = Vec::with_capacity(new.len());
    for t in chain.rows() {
        insert.execute(params![
            t.connector_id,
            t.event_id,
            t.delivery_id,
            t.hms_id,
            t.external_id,
            t.direction,
            t.status,
            t.reason,
            t.attempts,
            t.last_error,
            t.detail,
            time_text(t.created_at),
            t.prev_hash,
            t.hash
        ])?;
        written.push((conn.last_insert_rowid(), t.hash.clone()));
    }
    chain.check(written)
}

/// The new jobs `stored` (by [`insert_jobs`]) and which of them head their keys now.
fn queued<'a>(conn: &Connection, stored: Vec<(i64, &'a NewDelivery)>, at: chrono::DateTime<chrono::Utc>) -> Result<Queued<'a>, StorageError> {
    let mut heads = std::collections::HashSet::with_capacity(stored.len());
    if !stored.is_empty() {
        let mut older = conn.prepare_cached(sql::OLDER_OF_KEY)?;
        for (id, j) in &stored {
            if !older.exists(rusqlite::params![j.connector_id, j.record_key, id])? {
                heads.insert(*id);
            }
        }
    }
    Ok(Queued { ids: stored.into_iter().map(|(id, j)| ((j.connector_id.as_str(), j.event_id.as_str()), id)).collect(), heads, at })
}

/// A time as the pool's driver writes it (sqlx's SQLite encoding): RFC 3339 with `+00:00`
/// and as many fractional digits as needed. Rows this writer stores read and compare exactly
/// as the pool's.
fn time_text(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// Runs `statement`; the rows it changed.
fn execute(conn: &Connection, statement: &Statement) -> Result<usize, StorageError> {
    let mut prepared = conn.prepare_cached(&statement.sql)?;
    Ok(prepared.execute(rusqlite::params_from_iter(binds(statement)))?)
}

fn binds(statement: &Statement) -> impl Iterator<Item = Bind<'_>> {
    statement.values.iter().flat_map(|v| v.0.iter()).map(Bind)
}

/// A statement's value, bound as the pool's driver binds it (sqlx's SQLite encoding): so a
/// row this writer stores reads and compares exactly as one the pool stored. Times are text
/// in RFC 3339 with `+00:00` and as many fractional digits as needed (sqlx's
/// `SecondsFormat::AutoSi`); booleans are 0 and 1; JSON is its text.
struct Bind<'a>(&'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let int = |v: Option<i64>| ToSqlOutput::Owned(v.map_or(Sql::Null, Sql::Integer));
        Ok(match self.0 {
            Value::Bool(v) => int(v.map(i64::from)),
            Value::TinyInt(v) => int(v.map(i64::from)),
            Value::SmallInt(v) => int(v.map(i64::from)),
            Value::Int(v) => int(v.map(i64::from)),
            Value::BigInt(v) => int(*v),
            Value::TinyUnsigned(v) => int(v.map(i64::from)),
            Value::SmallUnsigned(v) => int(v.map(i64::from)),
            Value::Unsigned(v) => int(v.map(i64::from)),
            Value::BigUnsigned(v) => int(v.map(|v| i64::try_from(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))).transpose()?),
            Value::Float(v) => ToSqlOutput::Owned(v.map_or(Sql::Null, |f| Sql::Real(f64::from(f)))),
            Value::Double(v) => ToSqlOutput::Owned(v.map_or(Sql::Null, Sql::Real)),
            Value::String(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::String(None) => ToSqlOutput::Owned(Sql::Null),
            Value::Bytes(Some(b)) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Bytes(None) => ToSqlOutput::Owned(Sql::Null),
            Value::Json(v) => ToSqlOutput::Owned(v.as_ref().map_or(Sql::Null, |j| Sql::Text(j.to_string()))),
            Value::ChronoDateTimeUtc(v) => ToSqlOutput::Owned(v.map_or(Sql::Null, |t| Sql::Text(time_text(t)))),
            other => return Err(rusqlite::Error::ToSqlConversionFailure(format!("the SQLite writer does not bind {other:?}").into())),
        })
    }
}
