//! Sync tickets (`sync_tickets` table): the append-only, hash-chained audit trail of every
//! change that crossed, with filtered listing for the API and retention pruning.

use std::borrow::Borrow;

use chrono::{DateTime, SecondsFormat, Utc};
use entities::sync_tickets::{ActiveModel, Column, Entity, Model};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait,
};
use sea_orm::DatabaseTransaction;
use sea_orm::sea_query::{Expr, ExprTrait, Func, Query, QueryStatementBuilder};
use sha2::{Digest, Sha256};

use super::{Db, StorageError, begin_write, from_json_text, micros, now};

/// `prev_hash` of the very first ticket: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Rows per `INSERT` (see `deliveries::CHUNK`).
const CHUNK: usize = 200;

/// Key of the PostgreSQL transaction-level advisory lock that serializes appenders, so two
/// instances cannot both chain onto the same last ticket. The two-int4 form lives in a key
/// space apart from single-bigint advisory locks (used for puller ownership).
const PG_CHAIN_LOCK: (i32, i32) = (0x484D53, 1); // "HMS", 1

/// A ticket to append.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewTicket {
    pub connector_id: String,
    pub event_id: Option<String>,
    pub delivery_id: Option<i64>,
    pub hms_id: Option<String>,
    pub external_id: Option<String>,
    pub direction: Direction,
    pub status: TicketStatus,
    pub reason: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub detail: Option<serde_json::Value>,
}

/// How a change ended (a ticket's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketStatus {
    /// The change crossed (or the other side already held it).
    Completed,
    /// It failed past its retries, or for good: kept for a person.
    Parked,
    /// Nothing to send: filtered, an echo, no change, stale, superseded, a lost conflict
    /// written back, or closed by an operator.
    Skipped,
    /// Both sides changed and a person decides (the job is parked with both records).
    Conflict,
}

impl TicketStatus {
    pub const NAMES: [&'static str; 4] = ["completed", "parked", "skipped", "conflict"];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// Which way a ticketed change went (a ticket's `direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// HMS → the external system.
    Outbound,
    /// The external system → HMS.
    Inbound,
}

impl Direction {
    pub const NAMES: [&'static str; 2] = ["outbound", "inbound"];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// A stored ticket, shaped for the API (`"ticketId": "SYNC-991"`, camelCase keys).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    pub id: i64,
    /// `SYNC-{id}`: the name users quote to support.
    pub ticket_id: String,
    pub connector_id: String,
    pub event_id: Option<String>,
    pub delivery_id: Option<i64>,
    pub hms_id: Option<String>,
    pub external_id: Option<String>,
    pub direction: String,
    pub status: String,
    pub reason: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub detail: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub prev_hash: String,
    pub hash: String,
}

impl TryFrom<Model> for Ticket {
    type Error = StorageError;
    fn try_from(m: Model) -> Result<Self, StorageError> {
        let detail = match &m.detail {
            Some(text) => Some(from_json_text(text, &format!("detail of ticket {}", m.id))?),
            None => None,
        };
        Ok(Self {
            id: m.id,
            ticket_id: format!("SYNC-{}", m.id),
            connector_id: m.connector_id,
            event_id: m.event_id,
            delivery_id: m.delivery_id,
            hms_id: m.hms_id,
            external_id: m.external_id,
            direction: m.direction,
            status: m.status,
            reason: m.reason,
            attempts: m.attempts,
            last_error: m.last_error,
            detail,
            created_at: m.created_at,
            prev_hash: m.prev_hash,
            hash: m.hash,
        })
    }
}

/// Which tickets [`list_tickets`] returns. `None` fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub connector_id: Option<String>,
    pub status: Option<String>,
    pub direction: Option<String>,
    /// `created_at >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `created_at < until`.
    pub until: Option<DateTime<Utc>>,
    /// A record's id on either side: `hms_id` or `external_id` equals it.
    pub record: Option<String>,
    /// Keyset pagination: only `id > after_id` (pass the last id of the previous page);
    /// `id < after_id` when `newest_first`.
    pub after_id: Option<i64>,
    /// Newest first (the console), instead of the chain's order.
    pub newest_first: bool,
    /// Page size; 0 means no limit.
    pub limit: u64,
}

/// Appends `tickets` in ONE transaction and returns their ids, in slice order.
///
/// Each ticket is chained to the one before it (by id): `prev_hash` is the previous
/// ticket's `hash` ([`GENESIS_HASH`] for the first ticket ever), and
///
/// ```text
/// hash = lowercase_hex(SHA-256(prev_hash ‖ content))
/// ```
///
/// where `prev_hash` is its 64 ASCII hex characters and `content` is this UTF-8 JSON text,
/// with no whitespace and the keys in exactly this (sorted) order:
///
/// ```text
/// {"attempts":3,"connector_id":"…","created_at":"2026-11-22T10:00:00.123456Z",
///  "delivery_id":42|null,"detail":<detail column text>|null,"direction":"…",
///  "event_id":"…"|null,"external_id":"…"|null,"hms_id":"…"|null,"last_error":"…"|null,
///  "reason":"…"|null,"status":"…"}
/// ```
///
/// - strings are escaped as `serde_json` does (only `"`, `\` and control characters:
///   `\b \f \n \r \t`, others as lowercase `\u00XX`; all other characters literal UTF-8);
/// - numbers are plain decimal integers;
/// - `created_at` is UTC with exactly 6 fractional digits and `Z` (timestamps are stored
///   truncated to microseconds, so the column gives back exactly this value);
/// - `detail` is the `detail` column's text inserted verbatim. It is stored as canonical
///   JSON (object keys sorted by byte order, recursively, no whitespace), so a verifier
///   needs no JSON library to recompute the hash from a row; see [`ticket_row_hash`].
///
/// `id` is not hashed (it is assigned by the database); the chain order is the id order.
/// Appenders are serialized (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a transaction-level
/// advisory lock), so concurrent writers and several instances cannot fork the chain.
pub async fn append_tickets(db: &Db, tickets: &[NewTicket]) -> Result<Vec<i64>, StorageError> {
    if tickets.is_empty() {
        return Ok(Vec::new());
    }
    let txn = begin_write(db).await?;
    let ids = append_in(&txn, tickets).await?;
    txn.commit().await?;
    Ok(ids)
}

/// [`append_tickets`] inside the caller's write transaction (so a job's outcome and its
/// ticket commit together). The caller commits.
pub(crate) async fn append_in(txn: &DatabaseTransaction, tickets: &[impl Borrow<NewTicket>]) -> Result<Vec<i64>, StorageError> {
    if tickets.is_empty() {
        return Ok(Vec::new());
    }
    let backend = txn.get_database_backend();
    if backend == DbBackend::Postgres {
        let (a, b) = PG_CHAIN_LOCK;
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({a}, {b})"))
            .await?;
    }
    let head = match txn.query_one_raw(head_statement(backend)).await? {
        Some(row) => Some(row.try_get_many_by_index::<(i64, String)>()?),
        None => None,
    };
    let chain = Chain::after(head, tickets);
    let mut written = Vec::with_capacity(tickets.len());
    for stmt in chain.insert_statements(backend) {
        for row in txn.query_all_raw(stmt).await? {
            written.push(row.try_get_many_by_index::<(i64, String)>()?);
        }
    }
    chain.check(written)
}

/// The query of the chain's head: the id and hash of the row with the highest id (no row:
/// no chain yet). Not `ORDER BY id DESC LIMIT 1` (nor `one()`, which adds a LIMIT): SQLite
/// prepares a statement with a bound LIMIT again at every run (see
/// `deliveries::literal_limit`).
pub(crate) fn head_statement(backend: DbBackend) -> sea_orm::Statement {
    let newest = Query::select().expr(Func::max(Expr::col((Entity, Column::Id)))).from(Entity).to_owned();
    Entity::find()
        .select_only()
        .column(Column::Id)
        .column(Column::Hash)
        .filter(Expr::col((Entity, Column::Id)).eq(Expr::SubQuery(None, Box::new(newest.into_sub_query_statement()))))
        .build(backend)
}

/// New tickets chained onto the head (see [`append_tickets`]): their rows, hashes computed,
/// ready to insert; and what the insert must give back. Shared by both writers (the pool's
/// and SQLite's own, `sqlite_writer`): only running the statements differs.
pub(crate) struct Chain {
    last_id: i64,
    rows: Vec<Model>,
}

impl Chain {
    /// `tickets` chained after `head` (its id and hash; `None`: the first tickets ever).
    pub(crate) fn after(head: Option<(i64, String)>, tickets: &[impl Borrow<NewTicket>]) -> Self {
        let (last_id, mut prev) = head.unwrap_or((0, GENESIS_HASH.to_owned()));
        let t = now();
        let mut rows = Vec::with_capacity(tickets.len());
        for n in tickets.iter().map(Borrow::borrow) {
            let mut row = Model {
                id: 0,
                connector_id: n.connector_id.clone(),
                event_id: n.event_id.clone(),
                delivery_id: n.delivery_id,
                hms_id: n.hms_id.clone(),
                external_id: n.external_id.clone(),
                direction: n.direction.as_str().to_owned(),
                status: n.status.as_str().to_owned(),
                reason: n.reason.clone(),
                attempts: n.attempts,
                last_error: n.last_error.clone(),
                detail: n.detail.as_ref().map(canonical_json),
                created_at: t,
                prev_hash: prev,
                hash: String::new(),
            };
            row.hash = ticket_row_hash(&row);
            prev = row.hash.clone();
            rows.push(row);
        }
        Self { last_id, rows }
    }

    /// The rows to insert, in chain order.
    pub(crate) fn rows(&self) -> &[Model] {
        &self.rows
    }

    /// The `INSERT`s, one per [`CHUNK`], each giving back the new rows' (id, hash).
    pub(crate) fn insert_statements(&self, backend: DbBackend) -> Vec<sea_orm::Statement> {
        self.rows
            .chunks(CHUNK)
            .map(|chunk| {
                let models = chunk.iter().cloned().map(|m| ActiveModel { id: NotSet, ..to_active(m) });
                let mut stmt = Entity::insert_many(models).into_query();
                stmt.returning(Query::returning().columns([Column::Id, Column::Hash]));
                backend.build(&stmt)
            })
            .collect()
    }

    /// The new tickets' ids, in chain order, from what the inserts gave back. The ids come in
    /// no promised order (`RETURNING`, SQLite 3.35+ and PostgreSQL): sorted by id, their hashes
    /// must follow the chain's order. Holding the chain lock, nobody else appends meanwhile, so
    /// the chain follows id order.
    pub(crate) fn check(&self, mut written: Vec<(i64, String)>) -> Result<Vec<i64>, StorageError> {
        let last_id = self.last_id;
        written.sort_unstable_by_key(|(id, _)| *id);
        if written.first().is_some_and(|(id, _)| *id <= last_id) {
            return Err(StorageError::Corrupt(format!("ticket chain: a new ticket got id {}, not after {last_id}", written[0].0)));
        }
        if written.len() != self.rows.len() || written.iter().zip(&self.rows).any(|((_, h), row)| *h != row.hash) {
            return Err(StorageError::Corrupt(format!(
                "ticket chain: expected {} new tickets after id {last_id} in order, found {}",
                self.rows.len(),
                written.len()
            )));
        }
        Ok(written.into_iter().map(|(id, _)| id).collect())
    }
}

fn to_active(m: Model) -> ActiveModel {
    ActiveModel {
        id: Set(m.id),
        connector_id: Set(m.connector_id),
        event_id: Set(m.event_id),
        delivery_id: Set(m.delivery_id),
        hms_id: Set(m.hms_id),
        external_id: Set(m.external_id),
        direction: Set(m.direction),
        status: Set(m.status),
        reason: Set(m.reason),
        attempts: Set(m.attempts),
        last_error: Set(m.last_error),
        detail: Set(m.detail),
        created_at: Set(m.created_at),
        prev_hash: Set(m.prev_hash),
        hash: Set(m.hash),
    }
}

/// The hash a stored ticket row must carry, recomputed from its columns and its own
/// `prev_hash` (the exact recipe is on [`append_tickets`]). A verifier walks the table in id
/// order checking `row.hash == ticket_row_hash(row)` and `row.prev_hash == previous.hash`.
pub fn ticket_row_hash(row: &Model) -> String {
    // Numbers, strings and absent values (`null`) are written by `push_json`.
    let mut c = Vec::with_capacity(256);
    c.extend_from_slice(b"{\"attempts\":");
    push_json(&mut c, &row.attempts);
    c.extend_from_slice(b",\"connector_id\":");
    push_json(&mut c, row.connector_id.as_str());
    c.extend_from_slice(b",\"created_at\":");
    push_json(&mut c, micros(row.created_at).to_rfc3339_opts(SecondsFormat::Micros, true).as_str());
    c.extend_from_slice(b",\"delivery_id\":");
    push_json(&mut c, &row.delivery_id);
    c.extend_from_slice(b",\"detail\":");
    c.extend_from_slice(row.detail.as_deref().unwrap_or("null").as_bytes());
    c.extend_from_slice(b",\"direction\":");
    push_json(&mut c, row.direction.as_str());
    c.extend_from_slice(b",\"event_id\":");
    push_json(&mut c, &row.event_id);
    c.extend_from_slice(b",\"external_id\":");
    push_json(&mut c, &row.external_id);
    c.extend_from_slice(b",\"hms_id\":");
    push_json(&mut c, &row.hms_id);
    c.extend_from_slice(b",\"last_error\":");
    push_json(&mut c, &row.last_error);
    c.extend_from_slice(b",\"reason\":");
    push_json(&mut c, &row.reason);
    c.extend_from_slice(b",\"status\":");
    push_json(&mut c, row.status.as_str());
    c.push(b'}');

    let mut h = Sha256::new();
    h.update(row.prev_hash.as_bytes());
    h.update(&c);
    hex::encode(h.finalize())
}

/// Appends `v` as serde_json writes it (a string escaped, a scalar as is, `None` as
/// `null`), straight into `out`: the same bytes as `Value::from(v).to_string()`, without the
/// two copies.
fn push_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Serializing a string or a scalar into memory cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// Canonical JSON: object keys sorted by byte order (recursively), no whitespace, scalars
/// as `serde_json` writes them. Independent of serde_json's `preserve_order` feature,
/// which another crate in the build could switch on.
fn canonical_json(v: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut Vec<u8>) {
        match v {
            serde_json::Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(item, out);
                }
                out.push(b']');
            }
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push(b'{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    push_json(out, k.as_str());
                    out.push(b':');
                    write(&map[k], out);
                }
                out.push(b'}');
            }
            scalar => push_json(out, scalar),
        }
    }
    let mut out = Vec::with_capacity(128);
    write(v, &mut out);
    // serde_json writes UTF-8, and so does every byte pushed above.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Tickets matching `f`, ordered by id ascending (keyset pagination with `after_id`).
pub async fn list_tickets(db: &Db, f: &TicketFilter) -> Result<Vec<Ticket>, StorageError> {
    let mut q = Entity::find()
        .apply_if(f.connector_id.as_deref(), |q, v| {
            q.filter(Column::ConnectorId.eq(v))
        })
        .apply_if(f.status.as_deref(), |q, v| q.filter(Column::Status.eq(v)))
        .apply_if(f.direction.as_deref(), |q, v| {
            q.filter(Column::Direction.eq(v))
        })
        .apply_if(f.since, |q, v| q.filter(Column::CreatedAt.gte(micros(v))))
        .apply_if(f.until, |q, v| q.filter(Column::CreatedAt.lt(micros(v))))
        .apply_if(f.record.as_deref(), |q, v| q.filter(Column::HmsId.eq(v).or(Column::ExternalId.eq(v))));
    q = match (f.newest_first, f.after_id) {
        (false, after) => q.apply_if(after, |q, v| q.filter(Column::Id.gt(v))).order_by_asc(Column::Id),
        (true, after) => q.apply_if(after, |q, v| q.filter(Column::Id.lt(v))).order_by_desc(Column::Id),
    };
    if f.limit > 0 {
        q = q.limit(f.limit);
    }
    q.all(db).await?.into_iter().map(Ticket::try_from).collect()
}

/// Ticket `id` (the number in `SYNC-{id}`).
pub async fn get_ticket(db: &Db, id: i64) -> Result<Option<Ticket>, StorageError> {
    Entity::find_by_id(id)
        .one(db)
        .await?
        .map(Ticket::try_from)
        .transpose()
}

/// Settings key of the retention anchor: the hash of the newest ticket ever pruned, which
/// the oldest remaining ticket's `prev_hash` must equal.
pub const ANCHOR_KEY: &str = "tickets.anchor_hash";

/// Deletes tickets created before `before` (retention, 30 days by default) and returns how
/// many. The newest ticket is always kept so the chain continues from its hash instead of
/// restarting at genesis. The hash of the newest deleted ticket is kept as the anchor
/// ([`ANCHOR_KEY`]), in the same transaction, so what remains still verifies.
pub async fn prune_tickets(db: &Db, before: DateTime<Utc>) -> Result<u64, StorageError> {
    let txn = begin_write(db).await?;
    let newest: Option<i64> = Entity::find()
        .select_only()
        .column(Column::Id)
        .order_by_desc(Column::Id)
        .limit(1)
        .into_tuple()
        .one(&txn)
        .await?;
    let Some(newest) = newest else {
        return Ok(0);
    };
    let last_pruned: Option<String> = Entity::find()
        .select_only()
        .column(Column::Hash)
        .filter(Column::CreatedAt.lt(micros(before)))
        .filter(Column::Id.lt(newest))
        .order_by_desc(Column::Id)
        .limit(1)
        .into_tuple()
        .one(&txn)
        .await?;
    let Some(anchor) = last_pruned else {
        return Ok(0);
    };
    let res = Entity::delete_many()
        .filter(Column::CreatedAt.lt(micros(before)))
        .filter(Column::Id.lt(newest))
        .exec(&txn)
        .await?;
    super::settings::put_setting(&txn, ANCHOR_KEY, &serde_json::Value::String(anchor)).await?;
    txn.commit().await?;
    Ok(res.rows_affected)
}

/// The first link of the chain that does not hold.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokenLink {
    pub id: i64,
    pub ticket_id: String,
    pub reason: String,
}

/// The result of walking the whole chain.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChainReport {
    pub ok: bool,
    /// Tickets checked (up to and including the first broken one).
    pub checked: u64,
    /// What the oldest remaining ticket must chain to: genesis, or the retention anchor.
    pub anchor: String,
    pub first_broken: Option<BrokenLink>,
}

/// Walks every ticket in id order and reports the first broken link: a row whose content
/// no longer matches its hash (edited), or whose `prev_hash` is not the hash before it
/// (deleted, inserted or reordered rows).
///
/// The walk runs in one read transaction (a snapshot: repeatable read on PostgreSQL), so a
/// retention prune committing meanwhile cannot make an intact chain look broken.
pub async fn verify_chain(db: &Db) -> Result<ChainReport, StorageError> {
    use sea_orm::{AccessMode, IsolationLevel, TransactionTrait};
    let txn = match db.get_database_backend() {
        DbBackend::Postgres => db.begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)).await?,
        _ => db.begin().await?,
    };
    let report = verify_in(&txn).await;
    txn.rollback().await?;
    report
}

async fn verify_in(db: &DatabaseTransaction) -> Result<ChainReport, StorageError> {
    let anchor = super::settings::get_setting(db, ANCHOR_KEY)
        .await?
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| GENESIS_HASH.to_owned());
    let mut prev = anchor.clone();
    let mut checked = 0u64;
    let mut after = i64::MIN;
    loop {
        let page = Entity::find().filter(Column::Id.gt(after)).order_by_asc(Column::Id).limit(1000).all(db).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for row in page {
            checked += 1;
            let reason = if row.prev_hash != prev {
                Some(format!("prev_hash {} does not match the hash before it ({prev}): a ticket before it was deleted, inserted or edited", row.prev_hash))
            } else if ticket_row_hash(&row) != row.hash {
                Some("its content does not match its hash: the ticket was edited".to_string())
            } else {
                None
            };
            if let Some(reason) = reason {
                let first_broken = Some(BrokenLink { id: row.id, ticket_id: format!("SYNC-{}", row.id), reason });
                return Ok(ChainReport { ok: false, checked, anchor, first_broken });
            }
            prev = row.hash;
        }
    }
    Ok(ChainReport { ok: true, checked, anchor, first_broken: None })
}

/// How many tickets there are (for the benchmark and status).
pub async fn ticket_count(db: &Db) -> Result<u64, StorageError> {
    use sea_orm::PaginatorTrait;
    Ok(Entity::find().count(db).await?)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// The hash recipe's bytes are what `Value::to_string` wrote before: chains stored by
    /// earlier versions still verify. Strings with quotes, escapes, control characters and
    /// non-ASCII text, numbers of every kind, nested objects with unsorted keys.
    #[test]
    fn json_is_written_as_serde_json_writes_values() {
        let texts = ["", "plain", "quote \" and \\ backslash", "line\nbreak\ttab\r", "\u{0}\u{1f}\u{7f}", "é ü 漢字 🚲", "</script>"];
        for t in texts {
            let mut out = Vec::new();
            push_json(&mut out, t);
            assert_eq!(String::from_utf8(out).unwrap(), Value::from(t).to_string(), "{t:?}");
        }
        for v in [json!(null), json!(true), json!(0), json!(-7), json!(18446744073709551615u64), json!(1.5), json!(1e300), json!(-0.0)] {
            let mut out = Vec::new();
            push_json(&mut out, &v);
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string(), "{v}");
        }
        for v in [None, Some("a \"b\"".to_string())] {
            let mut out = Vec::new();
            push_json(&mut out, &v);
            assert_eq!(String::from_utf8(out).unwrap(), v.map_or(Value::Null, Value::from).to_string());
        }
        for v in [None, Some(-3i64)] {
            let mut out = Vec::new();
            push_json(&mut out, &v);
            assert_eq!(String::from_utf8(out).unwrap(), v.map_or(Value::Null, Value::from).to_string());
        }
        let detail = json!({ "z": [1, { "b": "x\"y", "a": null }], "a": { "d": 2.5, "c": "🚲" }, "m": "\n" });
        assert_eq!(canonical_json(&detail), r#"{"a":{"c":"🚲","d":2.5},"m":"\n","z":[1,{"a":null,"b":"x\"y"}]}"#);
    }
}
