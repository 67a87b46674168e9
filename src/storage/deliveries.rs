//! The durable delivery queue (`deliveries` table): enqueue with group commit and
//! idempotency, per-record-key heads, retry scheduling, completion and parking.
//!
//! A job's life: `pending` (attempts 0, due now) → delivered: `done`; failed and retryable:
//! still `pending` with a later `next_attempt_at`; failed for good: `parked` (kept, listable,
//! replayable). Rows are never deleted here, so the queue is also the delivery history.

use std::borrow::Borrow;

use chrono::{DateTime, Utc};
use entities::deliveries::{ActiveModel, Column, Entity, Model};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, OnConflict, Query, QueryStatementBuilder};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Statement,
};

use super::{Db, StorageError, begin_write, from_json_text, micros, now, to_json_text};
use crate::mapping::Payload;
use crate::sync::Origin;
use crate::sync::engine::Written;

const PENDING: &str = JobStatus::Pending.as_str();
const DONE: &str = JobStatus::Done.as_str();
const PARKED: &str = JobStatus::Parked.as_str();
const DISCARDED: &str = JobStatus::Discarded.as_str();

/// Where a job is in its life (its `status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting for its first attempt or its next (a retry), or on the wire.
    Pending,
    /// Delivered (or found already there).
    Done,
    /// Failed for good, or a conflict for a person: kept, listable, replayable.
    Parked,
    /// A parked job an operator closed: kept as history.
    Discarded,
}

impl JobStatus {
    pub const NAMES: [&'static str; 4] = ["pending", "done", "parked", "discarded"];

    pub const fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Done, Self::Parked, Self::Discarded].into_iter().find(|s| s.as_str() == text)
    }
}

/// A two-way write on the wire, noted on its job before the request goes (see
/// [`note_in_flight`]) and cleared by the job's settle: a job that still has it after a
/// restart may have been written already (the two-way engine's `Kind::Resent`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InFlight {
    /// What it writes where, when it updates a record and that record is all it writes (a
    /// create is found again by its natural key, a delete by the record's absence). Stored
    /// flat (`{"to": …, "content": …}`, or `{}`), as the column held it before.
    #[serde(flatten)]
    pub written: Option<Written>,
}

/// Rows per `INSERT`: large enough to amortize round trips, small enough to stay in
/// PostgreSQL's fast range (NOTES.md: batches of 100–500) and far below bind-parameter limits.
const CHUNK: usize = 200;

/// A job to enqueue: one event for one connector.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewDelivery {
    pub connector_id: String,
    /// Unique per connector; a second job with the same id is dropped (idempotency).
    pub event_id: String,
    pub topic: String,
    /// Jobs with the same key are delivered strictly in acceptance order.
    pub record_key: String,
    /// Shared, not copied, from the published event to the stored job handed to its lane
    /// (and its JSON text, written into the row, to the request's body: see [`Payload`]).
    pub payload: std::sync::Arc<Payload>,
    /// Where it comes from (which side it writes).
    pub origin: Origin,
    /// The change deletes the record.
    pub deleted: bool,
}

/// A stored job. `id` is the acceptance order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: i64,
    pub connector_id: String,
    pub event_id: String,
    pub topic: String,
    pub record_key: String,
    pub payload: std::sync::Arc<Payload>,
    pub status: JobStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub origin: Origin,
    pub deleted: bool,
    /// A parked conflict's records: `base` (last synced), `hms`, `external`, and the
    /// `rule` that parked it, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict: Option<serde_json::Value>,
    /// How many times it was claimed (the fencing token of its claim, see [`ClaimToken`]).
    #[serde(skip)]
    pub claims: i32,
    /// Who put the parked job back (a token's name), written into its ticket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed_by: Option<String>,
    /// Its two-way write is on the wire, or was when the process stopped (see [`InFlight`]).
    #[serde(skip)]
    pub in_flight: Option<InFlight>,
    /// How many of its attempts panicked: a poison job is parked at its second.
    #[serde(skip)]
    pub panics: i32,
}

impl TryFrom<Model> for Delivery {
    type Error = StorageError;
    fn try_from(m: Model) -> Result<Self, StorageError> {
        let payload = from_json_text(&m.payload, &format!("payload of delivery {}", m.id))?;
        let origin = Origin::parse(&m.origin).ok_or_else(|| StorageError::Corrupt(format!("origin `{}` of delivery {}", m.origin, m.id)))?;
        let conflict = m.conflict.as_deref().map(|c| from_json_text(c, &format!("conflict of delivery {}", m.id))).transpose()?;
        let status = JobStatus::parse(&m.status).ok_or_else(|| StorageError::Corrupt(format!("status `{}` of delivery {}", m.status, m.id)))?;
        // A note that does not read as one still says the write was on the wire (the job is
        // decided again, as a write that may have landed).
        let in_flight = m.in_flight.as_deref().map(|t| serde_json::from_str(t).unwrap_or_default());
        Ok(Self {
            id: m.id,
            connector_id: m.connector_id,
            event_id: m.event_id,
            topic: m.topic,
            record_key: m.record_key,
            payload: Payload::shared(payload),
            status,
            attempts: m.attempts,
            next_attempt_at: m.next_attempt_at,
            last_error: m.last_error,
            created_at: m.created_at,
            origin,
            deleted: m.deleted,
            conflict,
            claims: m.claims,
            replayed_by: m.replayed_by,
            in_flight,
            panics: m.panics,
        })
    }
}

impl Delivery {
    /// Job `job`, just stored as `id` at `t` by the statements of [`insert_statements`]: the
    /// row as a read would give it (pending, no attempt, no claim, due at `t`).
    pub(crate) fn stored(job: &NewDelivery, id: i64, t: DateTime<Utc>) -> Self {
        Self {
            id,
            connector_id: job.connector_id.clone(),
            event_id: job.event_id.clone(),
            topic: job.topic.clone(),
            record_key: job.record_key.clone(),
            payload: job.payload.clone(),
            status: JobStatus::Pending,
            attempts: 0,
            next_attempt_at: t,
            last_error: None,
            created_at: t,
            origin: job.origin,
            deleted: job.deleted,
            conflict: None,
            claims: 0,
            replayed_by: None,
            in_flight: None,
            panics: 0,
        }
    }

    /// Parked for a conflict (both sides changed), not a failure: it keeps the records to
    /// decide between (`{}` for a conflict parked before they were kept).
    pub fn is_conflict(&self) -> bool {
        self.conflict.is_some()
    }
}

fn convert(rows: Vec<Model>) -> Result<Vec<Delivery>, StorageError> {
    rows.into_iter().map(Delivery::try_from).collect()
}

/// Stores `jobs` as pending, due now, in ONE statement or transaction (group commit: one
/// fsync for the whole slice, which is what lets durable acceptance keep up with
/// publishers). Returns how many rows were inserted: a job whose `(connector_id, event_id)` is already queued — or
/// repeated within `jobs` — is skipped silently (`ON CONFLICT DO NOTHING`), so re-publishing
/// an event is harmless. Jobs get ids in slice order.
///
/// Jobs that one statement inserts (up to [`CHUNK`]) go without `BEGIN` and `COMMIT`: a
/// statement alone is atomic and durable as any transaction, and on SQLite each statement is a
/// round trip to the connection's thread, so a lone acceptance costs one instead of three.
pub async fn enqueue(db: &Db, jobs: &[NewDelivery]) -> Result<u64, StorageError> {
    if jobs.is_empty() {
        return Ok(0);
    }
    if jobs.len() <= CHUNK {
        return insert_in(db, jobs).await;
    }
    let txn = begin_write(db).await?;
    let inserted = insert_in(&txn, jobs).await?;
    txn.commit().await?;
    Ok(inserted)
}

/// [`enqueue`] inside the caller's write transaction (the caller commits), or on a plain
/// connection for at most [`CHUNK`] jobs (one statement, atomic by itself).
pub(crate) async fn insert_in<C: ConnectionTrait>(txn: &C, jobs: &[impl Borrow<NewDelivery>]) -> Result<u64, StorageError> {
    let mut inserted = 0;
    for stmt in insert_statements(txn.get_database_backend(), jobs, now()) {
        inserted += txn.execute_raw(stmt).await?.rows_affected();
    }
    Ok(inserted)
}

/// The `INSERT`s that store `jobs` (one per [`CHUNK`]; a job whose event id the connector
/// already has is skipped). Built once for both writers: the pool's and SQLite's own
/// (`sqlite_writer`), so both write exactly the same rows. `t`: the time they are stored
/// at (their creation, and when they are due).
pub(crate) fn insert_statements(backend: DbBackend, jobs: &[impl Borrow<NewDelivery>], t: DateTime<Utc>) -> Vec<Statement> {
    jobs.chunks(CHUNK)
        .map(|chunk| {
            let rows = chunk.iter().map(Borrow::borrow).map(|j: &NewDelivery| ActiveModel {
                connector_id: Set(j.connector_id.clone()),
                event_id: Set(j.event_id.clone()),
                topic: Set(j.topic.clone()),
                record_key: Set(j.record_key.clone()),
                payload: Set(j.payload.text().to_owned()),
                status: Set(PENDING.to_owned()),
                attempts: Set(0),
                next_attempt_at: Set(t),
                last_error: Set(None),
                created_at: Set(t),
                updated_at: Set(t),
                origin: Set(j.origin.as_text()),
                deleted: Set(j.deleted),
                ..Default::default()
            });
            Entity::insert_many(rows)
                .on_conflict(OnConflict::columns([Column::ConnectorId, Column::EventId]).do_nothing().to_owned())
                .build(backend)
        })
        .collect()
}

/// `statement` with its final `LIMIT ?` written as the literal `limit`. SQLite plans with a
/// bound LIMIT's value, so it prepares such a statement again at every run (measured: every
/// run of the due scan, about 5% of the CPU of a busy service); with a literal, the driver's
/// cached statement is reused. Other statements, and other backends, are left as they are.
fn literal_limit(mut statement: Statement, limit: u64) -> Statement {
    if statement.db_backend == DbBackend::Sqlite && statement.sql.ends_with("LIMIT ?") {
        if let Some(values) = statement.values.as_mut() {
            values.0.pop();
            statement.sql.truncate(statement.sql.len() - 1);
            statement.sql.push_str(&limit.to_string());
        }
    }
    statement
}

/// `ids` repeated at the end up to the next power of two (a repeat changes nothing in an
/// `IN` list). Each list length is a different SQL text, and the driver caches prepared
/// statements by text (100 per connection): padded, the hot queries have a handful of
/// shapes that stay cached, instead of one per length that SQLite parses again each time.
fn padded(ids: &[i64]) -> impl Iterator<Item = i64> + '_ {
    let pad = match ids.last() {
        Some(&last) => std::iter::repeat_n(last, ids.len().next_power_of_two() - ids.len()),
        None => std::iter::repeat_n(0, 0),
    };
    ids.iter().copied().chain(pad)
}

/// `id = (the smallest id of a pending job of the same connector and record key)`, correlated
/// with the outer `deliveries` row: the row is the head of its key. Served by the
/// (connector_id, status, record_key, id) index as a min lookup.
///
/// Written as a `min` rather than `NOT EXISTS (an older pending job of the key)`, which means
/// the same: PostgreSQL, whose statistics say pending rows are rare (most jobs are done),
/// planned that anti-join as a scan of ALL the connector's pending jobs for each candidate,
/// so polling cost grew with the square of the backlog (58 ms per poll at 5,000 pending). A
/// `min` in id order stops at the first match whichever index it picks (0.8 ms).
fn is_head() -> Expr {
    Expr::col((Entity, Column::Id)).eq(oldest_pending_of_key())
}

/// The id of the oldest pending job of the outer `deliveries` row's connector and record key
/// (NULL when none is pending): a min lookup in the key's range of the index.
fn oldest_pending_of_key() -> Expr {
    let p = Alias::new("p");
    let oldest = Query::select()
        .expr(Func::min(Expr::col((p.clone(), Column::Id))))
        .from_as(Entity, p.clone())
        .and_where(Expr::col((p.clone(), Column::ConnectorId)).equals((Entity, Column::ConnectorId)))
        .and_where(Expr::col((p.clone(), Column::Status)).eq(PENDING))
        .and_where(Expr::col((p, Column::RecordKey)).equals((Entity, Column::RecordKey)))
        .to_owned();
    Expr::SubQuery(None, Box::new(oldest.into_sub_query_statement()))
}

/// Of jobs `ids`, those whose record key has a pending job (a later one, or the job itself
/// when it stays pending): after a batch settles them, their lanes must read the queue for
/// it; for the others there is nothing to read (see `EntryWritten::Settled`).
pub(crate) async fn keys_waiting_in<C: ConnectionTrait>(c: &C, ids: &[i64]) -> Result<std::collections::HashSet<i64>, StorageError> {
    let mut waiting = std::collections::HashSet::new();
    for stmt in keys_waiting_statements(c.get_database_backend(), ids) {
        for row in c.query_all_raw(stmt).await? {
            waiting.insert(row.try_get_by_index::<i64>(0)?);
        }
    }
    Ok(waiting)
}

/// The queries of [`keys_waiting_in`]: each gives rows of (id).
pub(crate) fn keys_waiting_statements(backend: DbBackend, ids: &[i64]) -> Vec<Statement> {
    ids.chunks(CHUNK)
        .map(|chunk| Entity::find().select_only().column(Column::Id).filter(Column::Id.is_in(padded(chunk))).filter(oldest_pending_of_key().is_not_null()).build(backend))
        .collect()
}

/// The pending jobs of `connector_id` that may be attempted at `now`, ordered by id, at most
/// `limit`: each is the OLDEST pending job of its record key, and due.
///
/// Only heads are returned so that per-key order survives retries: while the head of a key
/// waits for its retry, later jobs of that key wait behind it, and other keys keep flowing.
/// A job that is `done` or `parked` no longer blocks its key.
pub async fn due_heads(
    db: &Db,
    connector_id: &str,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Delivery>, StorageError> {
    due_heads_except(db, connector_id, now, limit, &[]).await
}

/// [`due_heads`] leaving out the jobs in `except` (those already in flight), so a busy
/// lane reads only jobs it can start.
pub async fn due_heads_except(
    db: &Db,
    connector_id: &str,
    now: DateTime<Utc>,
    limit: u64,
    except: &[i64],
) -> Result<Vec<Delivery>, StorageError> {
    let query = Entity::find()
        .filter(Column::ConnectorId.eq(connector_id))
        .filter(Column::Status.eq(PENDING))
        .filter(Column::NextAttemptAt.lte(micros(now)))
        .apply_if((!except.is_empty()).then_some(except), |q, ids| q.filter(Column::Id.is_not_in(padded(ids))))
        .filter(is_head())
        .order_by_asc(Column::Id)
        .limit(limit);
    let statement = literal_limit(query.build(db.get_database_backend()), limit);
    let rows = Entity::find().from_raw_sql(statement).all(db).await?;
    convert(rows)
}

/// Proof that a lane took a job: the job's id, the attempts it had and its claim count
/// once taken. The job's outcome is settled by this token, and a settle changes the job only
/// while it is still pending with those attempts and claims, so an outcome can never land
/// on a job that moved on meanwhile: settled by another attempt, or claimed again by another
/// instance after this claim's lease ran out (`claims` is the fencing token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimToken {
    pub job: i64,
    pub attempts: i32,
    pub claims: i32,
}

impl ClaimToken {
    /// The token of `job` as it was read.
    pub fn of(job: &Delivery) -> Self {
        Self { job: job.id, attempts: job.attempts, claims: job.claims }
    }
}

/// A claimed job and the token its outcome is settled by.
#[derive(Debug, Clone)]
pub struct Claim {
    pub job: Delivery,
    pub token: ClaimToken,
    /// On a shared queue (PostgreSQL): until when, on this process's monotonic clock, the
    /// claim's lease surely holds. Taken before the claim was sent, so it ends no later than
    /// the lease in the database (whose clock alone decides), whatever the clocks' offset;
    /// the attempt checks it just before its request goes (see [`Claim::lease_lapsed`]).
    pub lease_deadline: Option<std::time::Instant>,
}

impl Claim {
    /// The claim's lease may have run out: its request must not go (another instance may
    /// have claimed the job again).
    pub fn lease_lapsed(&self) -> bool {
        self.lease_deadline.is_some_and(|d| std::time::Instant::now() >= d)
    }
}

/// Who claims, for how long: an instance's id and its `cluster.lease_secs`.
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    pub instance: &'a str,
    pub lease: std::time::Duration,
    /// This instance's share of the record keys: (instances alive, its place among them).
    pub share: Share,
}

/// Which record keys an instance claims: those whose hash modulo `of` is `index` (`of` ≤ 1:
/// all), and any job that waited [`SHARE_WAIT`]. See [`claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Share {
    pub of: u32,
    pub index: u32,
}

impl Share {
    /// Every key: one instance, or SQLite.
    pub const ALL: Share = Share { of: 0, index: 0 };
}

/// An instance's share as it is now: written by its heartbeat, read at each claim of its
/// lanes (one word, no lock on the claim path).
#[derive(Debug, Default)]
pub struct CurrentShare(std::sync::atomic::AtomicU64);

impl CurrentShare {
    pub fn get(&self) -> Share {
        let v = self.0.load(std::sync::atomic::Ordering::Relaxed);
        Share { of: (v >> 32) as u32, index: v as u32 }
    }

    pub fn set(&self, share: Share) {
        self.0.store(u64::from(share.of) << 32 | u64::from(share.index), std::sync::atomic::Ordering::Relaxed);
    }
}

/// How long a job waits for the instance whose share its key is in, before any instance may
/// claim it: an instance that died, stopped, is overloaded or does not run the connector
/// holds up its share's new jobs this long at most.
pub const SHARE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Claims up to `limit` due head jobs of `connector_id` (see [`due_heads`]), leaving out the
/// jobs in `except` (those the lane has in flight already).
///
/// On PostgreSQL, where several instances share the queue, the claim is a write: the jobs get
/// `claimant`'s lease (until the database's `now()` + the lease time) and their claim count
/// goes up by one, in one `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)`, so two
/// instances never take one job, and a key whose job is leased (in flight anywhere) offers
/// none of its jobs. Each instance claims the keys of its `share` (their hash modulo the
/// instances alive): instances that all took the oldest jobs first fought over the same rows
/// (locks skipped, leased rows walked past: measured with three instances, a claim cost 5 ms
/// where one instance's cost 0.8), and a job that waited [`SHARE_WAIT`] is anyone's, so a
/// share whose instance is gone or behind is taken over. On SQLite one process owns the
/// queue (the file's lock) and the claim is a read; the lane's own books keep a job and its
/// key from being taken twice.
pub async fn claim(db: &Db, connector_id: &str, now: DateTime<Utc>, limit: u64, except: &[i64], claimant: Claimant<'_>) -> Result<Vec<Claim>, StorageError> {
    if db.get_database_backend() != DbBackend::Postgres {
        let jobs = due_heads_except(db, connector_id, now, limit, except).await?;
        return Ok(jobs.into_iter().map(|job| Claim { token: ClaimToken::of(&job), job, lease_deadline: None }).collect());
    }
    // Before the statement goes: the lease in the database starts later than this.
    let asked = std::time::Instant::now();
    // The key test, per candidate `j`, over the few pending jobs of its key (the partial
    // index of pending jobs by key): `j` is the oldest of them, and none is in flight anywhere
    // (a live lease: a key is busy also when its in-flight job is not its head, when an
    // older job of it was put back in the queue by a replay). It is an aggregate, not a
    // `min` alone: PostgreSQL answers a lone `min(id)` by walking an index in id order, and
    // without statistics (a fresh database, autovacuum off) it walked the connector's pending
    // jobs past every one in flight, a fifth of a millisecond per candidate with three
    // instances. (As a `NOT EXISTS`, the key test became an anti-join that read every pending
    // job for each candidate; as a set of busy keys read once per claim, without statistics
    // it read every pending job once per claim.) The candidates themselves are walked on the (connector,
    // status, id) index in id order, stopping at `limit`.
    let sql = "WITH async AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true) AS c) \
         UPDATE deliveries SET lease_owner = $1, lease_until = now() + $2 * interval '1 millisecond', claims = claims + 1 \
         WHERE id IN (SELECT j.id FROM deliveries j \
           WHERE j.connector_id = $3 AND j.status = 'pending' AND j.next_attempt_at <= $4 \
             AND (j.lease_until IS NULL OR j.lease_until < now()) AND NOT (j.id = ANY(string_to_array($6, ',')::bigint[])) \
             AND ($7 <= 1 OR mod(abs(hashtext(j.record_key)::bigint), $7) = $8 OR j.created_at < now() - $9 * interval '1 millisecond') \
             AND j.id <= (SELECT CASE WHEN bool_or(p.lease_owner IS NOT NULL AND p.lease_until >= now()) THEN 0 ELSE min(p.id) END \
               FROM deliveries p WHERE p.connector_id = j.connector_id AND p.status = 'pending' AND p.record_key = j.record_key) \
           ORDER BY j.id LIMIT $5 FOR UPDATE OF j SKIP LOCKED) \
           AND (SELECT c FROM async) = 'off' \
         RETURNING *";
    let ttl_ms = i64::try_from(claimant.lease.as_millis()).unwrap_or(i64::MAX);
    let values: [sea_orm::Value; 9] = [claimant.instance.into(), ttl_ms.into(), connector_id.into(), micros(now).into(), (limit as i64).into(), id_list(except).into(), i64::from(claimant.share.of).into(), i64::from(claimant.share.index).into(), (SHARE_WAIT.as_millis() as i64).into()];
    // One statement, one round trip. Its `async` part makes its commit not wait for the WAL
    // flush (a commit's fsync, milliseconds each, and lanes claim after every completion):
    // were a crash of the database to lose the claim, the job would simply be unclaimed
    // again, and the attempt's outcome, its claim count rolled back, would be fenced off as
    // stale: sent again, never settled twice. The outcome's own commit stays synchronous
    // (and flushes this one with it).
    let rows = Entity::find().from_raw_sql(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).all(db).await?;
    let mut jobs = convert(rows)?;
    jobs.sort_by_key(|j| j.id);
    let deadline = asked + lease_margin(claimant.lease);
    Ok(jobs.into_iter().map(|job| Claim { token: ClaimToken::of(&job), job, lease_deadline: Some(deadline) }).collect())
}

/// Job ids as one text parameter, `1,2,3`, read by `string_to_array($n, ',')::bigint[]`: the
/// statement's text stays the same whatever the ids, so PostgreSQL parses and plans it once
/// per connection (ids written into the text made every claim a new statement: measured,
/// parsing and planning were a visible share of the database's CPU with three instances).
fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// How much of a lease an attempt may count on: all but a tenth of it (at most 1 s), a
/// margin for the time between the check and the request leaving, and for clocks that run
/// at slightly different rates.
fn lease_margin(lease: std::time::Duration) -> std::time::Duration {
    lease.saturating_sub((lease / 10).min(std::time::Duration::from_secs(1)))
}

/// Renews the leases of `owner` on jobs `ids` (still in flight there) for `lease` from the
/// database's `now()`; a lease that ran out already is not renewed (another instance may
/// have claimed the job since). Returns the ids whose lease is lost: still pending, and
/// not held by `owner` any more (a job settled meanwhile is neither renewed nor lost).
pub async fn renew_job_leases(db: &Db, owner: &str, ids: &[i64], lease: std::time::Duration) -> Result<Vec<i64>, StorageError> {
    if ids.is_empty() || db.get_database_backend() != DbBackend::Postgres {
        return Ok(Vec::new());
    }
    // The rows are locked in id order, as a group commit locks them: two statements that
    // lock several rows each in different orders could deadlock.
    let sql = "UPDATE deliveries SET lease_until = now() + $1 * interval '1 millisecond' \
         WHERE id IN (SELECT id FROM deliveries WHERE id = ANY(string_to_array($3, ',')::bigint[]) AND status = 'pending' AND lease_owner = $2 AND lease_until >= now() ORDER BY id FOR UPDATE) \
         RETURNING id";
    let ttl_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let renewed = db.query_all_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, [ttl_ms.into(), owner.into(), id_list(ids).into()])).await?;
    if renewed.len() == ids.len() {
        return Ok(Vec::new());
    }
    let sql = "SELECT id FROM deliveries WHERE id = ANY(string_to_array($2, ',')::bigint[]) AND status = 'pending' AND NOT (lease_owner IS NOT DISTINCT FROM $1 AND lease_until >= now())";
    let lost = db.query_all_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, [owner.into(), id_list(ids).into()])).await?;
    lost.iter().map(|r| r.try_get::<i64>("", "id").map_err(StorageError::from)).collect()
}

/// Gives back the leases `owner` holds on jobs `ids` (claimed and not started: their key was
/// still busy here, or their outcome could not be stored), so they can be claimed again at
/// once rather than when the leases run out. A no-op on SQLite.
pub async fn release_claims(db: &Db, owner: &str, ids: &[i64]) -> Result<(), StorageError> {
    if ids.is_empty() || db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    // Locked in id order (see `renew_job_leases`).
    let sql = "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL \
         WHERE id IN (SELECT id FROM deliveries WHERE id = ANY(string_to_array($2, ',')::bigint[]) AND lease_owner = $1 AND status = 'pending' ORDER BY id FOR UPDATE)";
    db.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, [owner.into(), id_list(ids).into()])).await?;
    Ok(())
}

/// Gives back the leases `owner` holds on the pending jobs of `connector_id`: its lane starts
/// afresh (after a crash or a replacement) and has nothing in flight, so the jobs are free to
/// claim again at once rather than when the leases run out.
pub async fn release_job_leases(db: &Db, connector_id: &str, owner: &str) -> Result<(), StorageError> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    // Locked in id order (see `renew_job_leases`).
    let sql = "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL \
               WHERE id IN (SELECT id FROM deliveries WHERE lease_owner = $1 AND connector_id = $2 AND status = 'pending' ORDER BY id FOR UPDATE)";
    db.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, [owner.into(), connector_id.into()])).await?;
    Ok(())
}

/// How many jobs of `connector_id` each instance has in flight now (its leases that have
/// not run out), for the cluster view of a connector's status. Empty on SQLite.
pub async fn in_flight_by_instance(db: &Db, connector_id: &str) -> Result<Vec<(String, i64)>, StorageError> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(Vec::new());
    }
    let sql = "SELECT lease_owner, count(*) AS n FROM deliveries WHERE connector_id = $1 AND status = 'pending' AND lease_owner IS NOT NULL AND lease_until >= now() GROUP BY lease_owner ORDER BY lease_owner";
    let rows = db.query_all_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, [connector_id.into()])).await?;
    rows.iter().map(|r| Ok((r.try_get::<String>("", "lease_owner")?, r.try_get::<i64>("", "n")?))).collect()
}

/// The connectors with a pending job whose lease ran out (its instance died or stalled): their
/// lanes are woken to claim it. PostgreSQL only (served by the partial index on leased jobs).
pub async fn lapsed_lease_connectors(db: &Db) -> Result<Vec<String>, StorageError> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(Vec::new());
    }
    let sql = "SELECT DISTINCT connector_id FROM deliveries WHERE lease_owner IS NOT NULL AND lease_until < now() AND status = 'pending'";
    let rows = db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql)).await?;
    rows.iter().map(|r| r.try_get::<String>("", "connector_id").map_err(StorageError::from)).collect()
}

/// When the next job of `connector_id` becomes due: the earliest `next_attempt_at` among
/// pending HEADS of their keys (see [`due_heads`]), `None` when nothing is pending.
///
/// Heads only, on purpose: a job queued behind a head that waits for a retry has an old
/// `next_attempt_at` but cannot run; counting it would make a scheduler wake up at once,
/// find nothing in `due_heads`, and spin.
pub async fn next_due_at(
    db: &Db,
    connector_id: &str,
    after: Option<DateTime<Utc>>,
) -> Result<Option<DateTime<Utc>>, StorageError> {
    // `MIN` rather than `ORDER BY … LIMIT 1`: see [`literal_limit`] (and `one()` adds a LIMIT).
    let t = Entity::find()
        .select_only()
        .column_as(Expr::from(Func::min(Expr::col((Entity, Column::NextAttemptAt)))), "next")
        .filter(Column::ConnectorId.eq(connector_id))
        .filter(Column::Status.eq(PENDING))
        .apply_if(after, |q, a| q.filter(Column::NextAttemptAt.gt(a)))
        .filter(is_head())
        .into_tuple::<Option<DateTime<Utc>>>()
        .all(db)
        .await?;
    Ok(t.into_iter().next().flatten())
}

/// How many jobs of `connector_id` are pending (the backlog, for status and metrics).
pub async fn pending_count(db: &Db, connector_id: &str) -> Result<u64, StorageError> {
    Ok(Entity::find()
        .filter(Column::ConnectorId.eq(connector_id))
        .filter(Column::Status.eq(PENDING))
        .count(db)
        .await?)
}

/// Sets columns of job `id` if it is still `pending` (and, with a claim's token as `fence`,
/// still as it was claimed), and frees it of its lease. A job already done, parked or gone is
/// left alone: a late report from a stale attempt must not resurrect or overwrite it.
async fn update_pending<C: ConnectionTrait>(c: &C, id: i64, fence: Option<ClaimToken>, set: Vec<(Column, Expr)>) -> Result<(), StorageError> {
    c.execute_raw(update_pending_statement(c.get_database_backend(), id, fence, set)).await?;
    Ok(())
}

/// The statement of [`update_pending`].
fn update_pending_statement(backend: DbBackend, id: i64, fence: Option<ClaimToken>, set: Vec<(Column, Expr)>) -> Statement {
    let mut q = Entity::update_many()
        .col_expr(Column::UpdatedAt, Expr::value(now()))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(PENDING))
        .apply_if(fence, |q, t| q.filter(Column::Attempts.eq(t.attempts)).filter(Column::Claims.eq(t.claims)));
    // A settle by the claim's token: the claim's lease ends, and the attempt's write is no
    // longer in flight (its outcome is what this update stores).
    if fence.is_some() {
        q = q
            .col_expr(Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(Column::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(Column::InFlight, Expr::value(Option::<String>::None));
    }
    for (c, e) in set {
        q = q.col_expr(c, e);
    }
    q.build(backend)
}

/// What one attempt did to a claimed job (see [`apply_update`]), settled by its claim's token.
#[derive(Debug, Clone, PartialEq)]
pub enum JobUpdate {
    /// Delivered after `attempts` attempts; its key's next job becomes the head.
    Complete { token: ClaimToken, attempts: i32 },
    /// Failed; try again at `at`. It stays the head of its key, so later jobs wait for it.
    Reschedule { token: ClaimToken, attempts: i32, at: DateTime<Utc>, error: String },
    /// Its attempt panicked: counted (see `Delivery::panics`), and tried again at `at` as a
    /// reschedule is.
    Panicked { token: ClaimToken, attempts: i32, at: DateTime<Utc>, error: String },
    /// Failed for good: kept for a human, no longer blocking its key.
    Park { token: ClaimToken, attempts: i32, error: String },
    /// Both sides changed and a person decides: parked with the records to decide between.
    Conflict { token: ClaimToken, attempts: i32, error: String, records: serde_json::Value },
}

impl JobUpdate {
    pub fn token(&self) -> ClaimToken {
        match self {
            JobUpdate::Complete { token, .. } | JobUpdate::Reschedule { token, .. } | JobUpdate::Panicked { token, .. } | JobUpdate::Park { token, .. } | JobUpdate::Conflict { token, .. } => *token,
        }
    }

    /// When the job is due again, if it stays pending.
    pub fn retry_at(&self) -> Option<DateTime<Utc>> {
        match self {
            JobUpdate::Reschedule { at, .. } | JobUpdate::Panicked { at, .. } => Some(*at),
            JobUpdate::Complete { .. } | JobUpdate::Park { .. } | JobUpdate::Conflict { .. } => None,
        }
    }
}

/// Applies `update` on `c` (the database or a transaction).
pub async fn apply_update<C: ConnectionTrait>(c: &C, update: &JobUpdate) -> Result<(), StorageError> {
    c.execute_raw(update_statement(c.get_database_backend(), update)).await?;
    Ok(())
}

/// The statement of [`apply_update`].
fn update_statement(backend: DbBackend, update: &JobUpdate) -> Statement {
    match update {
        JobUpdate::Complete { token, attempts } => {
            update_pending_statement(backend, token.job, Some(*token), vec![(Column::Status, Expr::value(DONE)), (Column::Attempts, Expr::value(*attempts))])
        }
        JobUpdate::Reschedule { token, attempts, at, error } | JobUpdate::Panicked { token, attempts, at, error } => {
            let mut set = vec![
                (Column::Attempts, Expr::value(*attempts)),
                (Column::NextAttemptAt, Expr::value(micros(*at))),
                (Column::LastError, Expr::value(error.as_str())),
            ];
            if matches!(update, JobUpdate::Panicked { .. }) {
                set.push((Column::Panics, Expr::col(Column::Panics).add(1)));
            }
            update_pending_statement(backend, token.job, Some(*token), set)
        }
        JobUpdate::Park { token, attempts, error } => {
            update_pending_statement(
                backend,
                token.job,
                Some(*token),
                vec![
                    (Column::Status, Expr::value(PARKED)),
                    (Column::Attempts, Expr::value(*attempts)),
                    (Column::LastError, Expr::value(error.as_str())),
                ],
            )
        }
        JobUpdate::Conflict { token, attempts, error, records } => {
            update_pending_statement(
                backend,
                token.job,
                Some(*token),
                vec![
                    (Column::Status, Expr::value(PARKED)),
                    (Column::Attempts, Expr::value(*attempts)),
                    (Column::LastError, Expr::value(error.as_str())),
                    (Column::Conflict, Expr::value(to_json_text(records))),
                ],
            )
        }
    }
}

/// Applies many updates on `c`: completions with the same attempt count in one statement
/// each (they are most of a busy batch), the rest one by one.
pub(crate) async fn apply_updates_in<C: ConnectionTrait>(c: &C, updates: &[impl Borrow<JobUpdate>]) -> Result<(), StorageError> {
    for stmt in update_statements(c.get_database_backend(), updates) {
        c.execute_raw(stmt).await?;
    }
    Ok(())
}

/// The statements of [`apply_updates_in`].
pub(crate) fn update_statements(backend: DbBackend, updates: &[impl Borrow<JobUpdate>]) -> Vec<Statement> {
    // By (attempts and claims when claimed, attempts now): the first two are the claim's fence.
    let mut completed: std::collections::BTreeMap<(i32, i32, i32), Vec<i64>> = std::collections::BTreeMap::new();
    let mut statements = Vec::new();
    for u in updates {
        match u.borrow() {
            JobUpdate::Complete { token, attempts } => completed.entry((token.attempts, token.claims, *attempts)).or_default().push(token.job),
            other => statements.push(update_statement(backend, other)),
        }
    }
    for ((claimed, claims, attempts), ids) in completed {
        for chunk in ids.chunks(CHUNK) {
            statements.push(
                Entity::update_many()
                    .col_expr(Column::Status, Expr::value(DONE))
                    .col_expr(Column::Attempts, Expr::value(attempts))
                    .col_expr(Column::UpdatedAt, Expr::value(now()))
                    .col_expr(Column::LeaseOwner, Expr::value(Option::<String>::None))
                    .col_expr(Column::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
                    .col_expr(Column::InFlight, Expr::value(Option::<String>::None))
                    .filter(Column::Id.is_in(padded(chunk)))
                    .filter(Column::Status.eq(PENDING))
                    .filter(Column::Attempts.eq(claimed))
                    .filter(Column::Claims.eq(claims))
                    .build(backend),
            );
        }
    }
    statements
}

/// The attempts and claim counts of those of jobs `ids` that are still pending, locked for the
/// transaction on PostgreSQL (`FOR UPDATE`; SQLite's write transaction holds the whole
/// database): what a settle's claim token is checked against.
pub(crate) async fn pending_claims_in(txn: &sea_orm::DatabaseTransaction, ids: &[i64]) -> Result<std::collections::HashMap<i64, (i32, i32)>, StorageError> {
    let mut found = std::collections::HashMap::new();
    for stmt in pending_claims_statements(txn.get_database_backend(), ids) {
        for row in txn.query_all_raw(stmt).await? {
            let (id, attempts, claims): (i64, i32, i32) = row.try_get_many_by_index()?;
            found.insert(id, (attempts, claims));
        }
    }
    Ok(found)
}

/// The queries of [`pending_claims_in`]: each gives rows of (id, attempts, claims).
pub(crate) fn pending_claims_statements(backend: DbBackend, ids: &[i64]) -> Vec<Statement> {
    let mut ids: Vec<i64> = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids.chunks(CHUNK)
        .map(|chunk| {
            let mut query = Entity::find()
                .select_only()
                .column(Column::Id)
                .column(Column::Attempts)
                .column(Column::Claims)
                .filter(Column::Id.is_in(padded(chunk)))
                .filter(Column::Status.eq(PENDING));
            if backend == DbBackend::Postgres {
                query = query.lock_exclusive();
            }
            query.build(backend)
        })
        .collect()
}

/// Notes on pending job `id` that its write is about to be sent (`in_flight`, with what it
/// writes where when that is a record), so a restart before its outcome is stored leaves a
/// trace the next attempt can read; `note` (`in flight: PUT …`) is its `last_error`
/// meanwhile, for the people who look at the job.
pub async fn note_in_flight(db: &Db, id: i64, note: &str, in_flight: &InFlight) -> Result<(), StorageError> {
    let in_flight = serde_json::to_string(in_flight).unwrap_or_else(|_| "{}".into());
    update_pending(db, id, None, vec![(Column::LastError, Expr::value(note)), (Column::InFlight, Expr::value(in_flight))]).await
}

/// Marks job `id` delivered after `attempts` attempts.
pub async fn complete(db: &Db, id: i64, attempts: i32) -> Result<(), StorageError> {
    let Some(token) = token_now(db, id).await? else { return Ok(()) };
    apply_update(db, &JobUpdate::Complete { token, attempts }).await
}

/// The token of job `id` as it is now (for the helpers below, which settle a job not claimed
/// through a lane).
async fn token_now(db: &Db, id: i64) -> Result<Option<ClaimToken>, StorageError> {
    Ok(get_delivery(db, id).await?.as_ref().map(ClaimToken::of))
}

/// Records a failed attempt of job `id` and when to try again.
pub async fn reschedule(db: &Db, id: i64, attempts: i32, next_attempt_at: DateTime<Utc>, error: &str) -> Result<(), StorageError> {
    let Some(token) = token_now(db, id).await? else { return Ok(()) };
    apply_update(db, &JobUpdate::Reschedule { token, attempts, at: next_attempt_at, error: error.to_string() }).await
}

/// Parks job `id` (retries exhausted, or a failure no retry can fix).
pub async fn park(db: &Db, id: i64, attempts: i32, error: &str) -> Result<(), StorageError> {
    let Some(token) = token_now(db, id).await? else { return Ok(()) };
    apply_update(db, &JobUpdate::Park { token, attempts, error: error.to_string() }).await
}

/// Job `id`, whatever its status.
pub async fn get_delivery(db: &Db, id: i64) -> Result<Option<Delivery>, StorageError> {
    Entity::find_by_id(id)
        .one(db)
        .await?
        .map(Delivery::try_from)
        .transpose()
}

/// The newest job of record `record_key` of `connector_id` delivered after job `id` was
/// accepted (a later change of the same record), if the queue still holds one.
pub async fn newer_delivered(db: &Db, connector_id: &str, record_key: &str, id: i64) -> Result<Option<Delivery>, StorageError> {
    Entity::find()
        .filter(Column::ConnectorId.eq(connector_id))
        .filter(Column::RecordKey.eq(record_key))
        .filter(Column::Status.eq(DONE))
        .filter(Column::Id.gt(id))
        .order_by_desc(Column::Id)
        .one(db)
        .await?
        .map(Delivery::try_from)
        .transpose()
}

/// Parked jobs, oldest first, with `id > after_id`, optionally of one connector (for
/// `GET /parked`).
pub async fn list_parked(db: &Db, f: &ParkedFilter) -> Result<Vec<Delivery>, StorageError> {
    let mut q = Entity::find()
        .filter(Column::Status.eq(PARKED))
        .apply_if(f.connector_id.as_deref(), |q, c| q.filter(Column::ConnectorId.eq(c)))
        .apply_if(f.reason.as_deref(), |q, r| q.filter(Column::LastError.contains(r)))
        .apply_if(f.since, |q, t| q.filter(Column::UpdatedAt.gte(t)))
        .apply_if(f.until, |q, t| q.filter(Column::UpdatedAt.lt(t)))
        .apply_if(f.after_id, |q, a| q.filter(Column::Id.gt(a)))
        .order_by_asc(Column::Id);
    if f.limit > 0 {
        q = q.limit(f.limit);
    }
    convert(q.all(db).await?)
}

/// Which parked jobs [`list_parked`] returns, oldest first. `None` fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct ParkedFilter {
    pub connector_id: Option<String>,
    /// Its error (`last_error`) contains this text.
    pub reason: Option<String>,
    /// Parked at or after (the job's last change).
    pub since: Option<DateTime<Utc>>,
    /// Parked before.
    pub until: Option<DateTime<Utc>>,
    /// Keyset pagination: only `id > after_id`.
    pub after_id: Option<i64>,
    /// Page size; 0: no limit.
    pub limit: u64,
}

/// Puts parked job `id` back in the queue: pending, due now, attempts reset to 0 so it gets
/// its full retry budget again, its payload replaced when `payload` is given (an operator's
/// fix). It keeps its id, so it is again ordered before any later job of its key. Returns
/// the job as it now is, or `None` if `id` is not a parked job.
pub async fn replay_parked(db: &Db, id: i64, payload: Option<&serde_json::Value>, by: &str) -> Result<Option<Delivery>, StorageError> {
    let t = now();
    let mut q = Entity::update_many()
        .col_expr(Column::Status, Expr::value(PENDING))
        .col_expr(Column::ReplayedBy, Expr::value(by))
        .col_expr(Column::Attempts, Expr::value(0))
        // A fresh start: a poison job put back gets its two tries again.
        .col_expr(Column::Panics, Expr::value(0))
        .col_expr(Column::NextAttemptAt, Expr::value(t))
        .col_expr(Column::UpdatedAt, Expr::value(t))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(PARKED));
    if let Some(p) = payload {
        q = q.col_expr(Column::Payload, Expr::value(to_json_text(p)));
    }
    if q.exec(db).await?.rows_affected == 0 {
        return Ok(None);
    }
    get_delivery(db, id).await
}

/// Marks parked job `id` `discarded` on `c`; `false` when it is not parked.
pub(crate) async fn discard_in<C: ConnectionTrait>(c: &C, id: i64) -> Result<bool, StorageError> {
    let res = Entity::update_many()
        .col_expr(Column::Status, Expr::value(DISCARDED))
        .col_expr(Column::UpdatedAt, Expr::value(now()))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(PARKED))
        .exec(c)
        .await?;
    Ok(res.rows_affected > 0)
}

/// Discards parked job `id` for good (an operator decided it must not be sent). The row is
/// kept as history with status `discarded`. Returns the job, or `None` if it is not parked.
pub async fn discard_parked(db: &Db, id: i64) -> Result<Option<Delivery>, StorageError> {
    if !discard_in(db, id).await? {
        return Ok(None);
    }
    get_delivery(db, id).await
}

/// `(connector, status, count)` of pending and parked jobs, for metrics.
pub async fn queue_stats(db: &Db) -> Result<Vec<(String, String, i64)>, StorageError> {
    Ok(Entity::find()
        .select_only()
        .column(Column::ConnectorId)
        .column(Column::Status)
        .column_as(Expr::col(Column::Id).count(), "n")
        .filter(Column::Status.is_in([PENDING, PARKED]))
        .group_by(Column::ConnectorId)
        .group_by(Column::Status)
        .into_tuple::<(String, String, i64)>()
        .all(db)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::{literal_limit, padded};
    use sea_orm::{DbBackend, Statement};

    #[test]
    fn a_bound_limit_becomes_a_literal_on_sqlite_only() {
        let st = |backend, sql: &str| Statement::from_sql_and_values(backend, sql, [1i64.into(), 5u64.into()]);
        let sqlite = literal_limit(st(DbBackend::Sqlite, "SELECT * FROM t WHERE a = ? LIMIT ?"), 5);
        assert_eq!(sqlite.sql, "SELECT * FROM t WHERE a = ? LIMIT 5");
        assert_eq!(sqlite.values.unwrap().0.len(), 1, "the limit's value is no longer bound");
        let pg = literal_limit(st(DbBackend::Postgres, "SELECT * FROM t WHERE a = $1 LIMIT $2"), 5);
        assert!(pg.sql.ends_with("LIMIT $2"));
        let no_limit = literal_limit(st(DbBackend::Sqlite, "SELECT * FROM t WHERE a = ? AND b = ?"), 5);
        assert!(no_limit.sql.ends_with("b = ?"));
    }

    #[test]
    fn padding_repeats_the_last_id_up_to_a_power_of_two() {
        assert_eq!(padded(&[]).count(), 0);
        assert_eq!(padded(&[7]).collect::<Vec<_>>(), [7]);
        assert_eq!(padded(&[1, 2, 3]).collect::<Vec<_>>(), [1, 2, 3, 3]);
        assert_eq!(padded(&[1, 2, 3, 4, 5]).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 5, 5, 5]);
        assert_eq!(padded(&(0..64).collect::<Vec<_>>()).count(), 64);
    }
}
