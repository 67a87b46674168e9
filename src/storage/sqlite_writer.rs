//! SQLite's own writer of the hot path: a connection of its own to the database file, on
//! which the Committer writes each group-committed batch whole, every statement of it on the
//! Committer's own thread: a batch costs no hand-off at all.
//!
//! Through the pool, each statement of a batch (`BEGIN`, the claims' check, the inserts, the
//! updates, the chain's head, `COMMIT`) is a round trip to the pooled connection's thread:
//! two thread switches each, about 14 for a batch of outcomes. Measured at 2,000 events/s,
//! those switches were most of what SQLite's threads cost (a quarter of the service's CPU in
//! the kernel's `finish_task_switch` alone) and SQLite's own work a twentieth. The statements
//! are the very ones the pool's writer runs ([`super::write_batch`]: the same builders, the
//! same [`Plan`]); only who runs them differs. PostgreSQL, and a SQLite database in memory
//! (which a second connection would not see), are written through the pool.

use std::time::Duration;

use chrono::SecondsFormat;
use rusqlite::types::{ToSql, ToSqlOutput, Value as Sql, ValueRef};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use sea_orm::{DbBackend, Statement, Value};

use super::{BatchEntry, EntryWritten, Plan, Queued, StorageError, attempts, claimed, deliveries, links, tickets};

const BACKEND: DbBackend = DbBackend::Sqlite;

/// Prepared statements the writer keeps (the batch's statements come in a few shapes each:
/// `IN` lists are padded to powers of two, inserts are chunked).
const CACHED_STATEMENTS: usize = 64;

/// The connection (`Send`, not `Sync`: one thread uses it at a time). Its calls block while
/// SQLite works: it belongs on a thread of its own (the Committer's), not an async worker.
pub struct SqliteWriter {
    conn: Connection,
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
        Ok(Some(Self { conn }))
    }

    /// Writes one batch in one transaction, as [`super::write_batch`] does. A panic on the way
    /// (a bug) fails the batch, whose transaction the unwinding rolls back; the connection
    /// stays usable.
    pub fn write(&mut self, entries: &[&BatchEntry]) -> Result<Vec<EntryWritten>, StorageError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(&mut self.conn, entries))).unwrap_or_else(|panic| {
            let message = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_default();
            Err(StorageError::Writer(format!("panicked writing a batch: {message}")))
        })
    }
}

/// A connection set up as the pool's are (see [`super::connect`]): the file's WAL journal,
/// `synchronous = NORMAL`, the same busy timeout, foreign keys, and the same checkpoint size
/// (a per-connection setting, and this connection makes most of the commits).
fn open_connection(path: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "wal_autocheckpoint", super::WAL_AUTOCHECKPOINT_PAGES)?;
    conn.set_prepared_statement_cache_capacity(CACHED_STATEMENTS);
    Ok(conn)
}

/// [`super::write_batch`], run on this thread's connection, always as one transaction (the
/// pool's writer sends a lone `INSERT` without `BEGIN` and `COMMIT` to save round trips to
/// its connection's thread; here there are none to save). Unlike the pool's writer, it
/// learns the new jobs' ids (its inserts return them) and which of them head their keys, for
/// their lanes (see `EntryWritten::Queued`).
fn write(conn: &mut Connection, entries: &[&BatchEntry]) -> Result<Vec<EntryWritten>, StorageError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let at = super::now();
    let txn = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut pending = std::collections::HashMap::new();
    for s in deliveries::pending_claims_statements(BACKEND, &claimed(entries)) {
        for (id, attempts, claims) in query(&txn, &s, |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i32>(1)?, r.get::<_, i32>(2)?)))? {
            pending.insert(id, (attempts, claims));
        }
    }
    let plan = Plan::of(entries, &pending);
    let mut ids = Vec::new();
    for s in deliveries::insert_statements(BACKEND, &plan.jobs, at) {
        ids.extend(insert(&txn, s)?);
    }
    let mut statements = deliveries::update_statements(BACKEND, &plan.updates);
    statements.extend(plan.links.iter().flat_map(|l| links::save_statements(BACKEND, l)));
    statements.extend(attempts::insert_statements(BACKEND, &plan.attempts));
    for s in &statements {
        execute(&txn, s)?;
    }
    // After the updates: a job this batch settles no longer holds its key.
    let queued = queued(&txn, ids, at)?;
    let mut waiting = std::collections::HashSet::new();
    for s in deliveries::keys_waiting_statements(BACKEND, &plan.settled) {
        waiting.extend(query(&txn, &s, |r| r.get::<_, i64>(0))?);
    }
    let ids = if plan.tickets.is_empty() {
        Vec::new()
    } else {
        let head = query(&txn, &tickets::head_statement(BACKEND), |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?.into_iter().next();
        let chain = tickets::Chain::after(head, &plan.tickets);
        let mut written = Vec::with_capacity(plan.tickets.len());
        for s in chain.insert_statements(BACKEND) {
            written.extend(query(&txn, &s, |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?);
        }
        chain.check(written)?
    };
    txn.commit()?;
    Ok(plan.written(entries, ids, &waiting, Some(queued)))
}

/// Runs a job `INSERT` of `deliveries::insert_statements`; the rows it added, as (id,
/// connector, event id): a job whose event id its connector has already is not among them.
fn insert(conn: &Connection, mut statement: Statement) -> Result<Vec<(i64, String, String)>, StorageError> {
    statement.sql.push_str(" RETURNING id, connector_id, event_id");
    query(conn, &statement, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
}

/// The new jobs `stored` (by `insert`) and which of them head their keys now.
fn queued(conn: &Connection, stored: Vec<(i64, String, String)>, at: chrono::DateTime<chrono::Utc>) -> Result<Queued, StorageError> {
    let mut heads = std::collections::HashSet::new();
    let ids: Vec<i64> = stored.iter().map(|(id, ..)| *id).collect();
    for s in deliveries::heads_statements(BACKEND, &ids) {
        heads.extend(query(conn, &s, |r| r.get::<_, i64>(0))?);
    }
    Ok(Queued { ids: stored.into_iter().map(|(id, connector, event)| ((connector, event), id)).collect(), heads, at })
}

/// Runs `statement`; the rows it changed.
fn execute(conn: &Connection, statement: &Statement) -> Result<usize, StorageError> {
    let mut prepared = conn.prepare_cached(&statement.sql)?;
    Ok(prepared.execute(rusqlite::params_from_iter(binds(statement)))?)
}

/// Runs `statement` and reads each row it gives with `row`.
fn query<T>(conn: &Connection, statement: &Statement, row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>) -> Result<Vec<T>, StorageError> {
    let mut prepared = conn.prepare_cached(&statement.sql)?;
    let rows = prepared.query_map(rusqlite::params_from_iter(binds(statement)), row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<T>>>()?)
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
            Value::ChronoDateTimeUtc(v) => ToSqlOutput::Owned(v.map_or(Sql::Null, |t| Sql::Text(t.to_rfc3339_opts(SecondsFormat::AutoSi, false)))),
            other => return Err(rusqlite::Error::ToSqlConversionFailure(format!("the SQLite writer does not bind {other:?}").into())),
        })
    }
}
