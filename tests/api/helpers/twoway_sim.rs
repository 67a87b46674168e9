//! The two-way simulator (tests/api/twoway.rs, tests/api/stores.rs): a simulated Lotus
//! Notes calendar and a simulated HMS, in-process actix-web servers on port 0 sharing one
//! logical clock. Both are one fake record store, [`FakeStore`], in two dialects ([`Lotus`],
//! [`Hms`]): what tells them apart is named in [`Dialect`], everything else is shared.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse};
use serde_json::{json, Value};

/// The longest a held answer waits for its release (see [`FakeStore::hold_next_answer`]).
const HOLD_BOUND: Duration = Duration::from_secs(30);

/// The clock both systems stamp their modification times from: strictly increasing.
#[derive(Clone, Default)]
pub struct LogicalClock(Arc<AtomicU64>);

impl LogicalClock {
    /// The next time.
    pub fn tick(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    /// Moves the clock forward to at least `t` (for explicit times in a test).
    pub fn advance_to(&self, t: u64) {
        self.0.fetch_max(t, Ordering::SeqCst);
    }
}

/// A small deterministic PRNG (xorshift64*), seeded from a number.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        let s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        XorShift(if s == 0 { 1 } else { s })
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// 0..n
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// True with `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// `target` with every field of `changes` set (both objects).
pub fn merge(target: &mut Value, changes: &Value) {
    if !target.is_object() {
        *target = json!({});
    }
    if let (Value::Object(t), Value::Object(c)) = (target, changes) {
        for (k, v) in c {
            t.insert(k.clone(), v.clone());
        }
    }
}

fn key_of(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}


/// How a simulated store treats writes, as real ones do.
#[derive(Clone, Copy, Debug, Default)]
pub struct Behaviour {
    /// Every write is stamped with the store's own clock (the version we send is
    /// ignored), as most systems do with `updatedAt`.
    pub restamp: bool,
    /// Stamps are rounded down to a multiple of this (1: every tick distinct, like
    /// milliseconds; more: several edits share a stamp, like seconds). 0 counts as 1.
    pub precision: u64,
    /// Writes carrying `If-Match` are refused with 412 unless it names the current
    /// revision (served as `ETag` on reads).
    pub revisions: bool,
}

impl Behaviour {
    fn stamp(&self, t: u64) -> u64 {
        let p = self.precision.max(1);
        t - t % p
    }
}

/// `"7"`: a revision as an ETag.
fn etag(rev: u64) -> String {
    format!("\"{rev}\"")
}

/// The If-Match of a write, and whether it names an old revision.
fn stale_precondition(req: &HttpRequest, behaviour: Behaviour, rev: u64) -> bool {
    behaviour.revisions && req.headers().get("if-match").and_then(|v| v.to_str().ok()).is_some_and(|m| m != "*" && m != etag(rev))
}


// ----- The two dialects ------------------------------------------------------------------

/// What tells one simulated store from the other: the names of its fields and routes, how
/// it writes and how it deletes.
pub trait Dialect: Clone + Send + Sync + 'static {
    /// The id field of a record (`ShiftID`, `id`).
    const ID: &'static str;
    /// The field of a record's modification time, a number of the shared clock.
    const STAMP: &'static str;
    /// Where records live: `{RECORDS}/{spec}`.
    const RECORDS: &'static str;
    /// The change feed (`?since=` a stamp), if the store has one.
    const FEED: Option<&'static str>;
    /// A record's path names it as `{ID}={id}` (Domino's view key), not by its bare id.
    const KEYED_PATH: bool;
    /// Writes are PATCHes merged into the record (its stamp kept unless restamped), not
    /// PUTs replacing it (stamped by the store when they carry no stamp).
    const MERGE: bool;
    /// A delete is a write of a tombstone (stamped, listed in the feed, refused like any
    /// write while writes fail), not the record's removal.
    const TOMBSTONES: bool;
    /// What a record is called in error answers.
    const NOUN: &'static str;
    /// The error of a write while writes fail.
    const BUSY: &'static str;
}

/// The Lotus Notes dialect: see [`FakeLotus`].
#[derive(Clone, Copy, Debug)]
pub struct Lotus;

impl Dialect for Lotus {
    const ID: &'static str = "ShiftID";
    const STAMP: &'static str = "LastModified";
    const RECORDS: &'static str = "/calendar/doc";
    const FEED: Option<&'static str> = Some("/calendar/changes");
    const KEYED_PATH: bool = true;
    const MERGE: bool = false;
    const TOMBSTONES: bool = true;
    const NOUN: &'static str = "document";
    const BUSY: &'static str = "Domino server busy";
}

/// The HMS dialect: see [`FakeHms`].
#[derive(Clone, Copy, Debug)]
pub struct Hms;

impl Dialect for Hms {
    const ID: &'static str = "id";
    const STAMP: &'static str = "updatedAt";
    const RECORDS: &'static str = "/api/shifts";
    const FEED: Option<&'static str> = None;
    const KEYED_PATH: bool = false;
    const MERGE: bool = true;
    const TOMBSTONES: bool = false;
    const NOUN: &'static str = "shift";
    const BUSY: &'static str = "HMS is deploying";
}

/// The Lotus Notes calendar: documents by ShiftID with BeginTime, FinishTime, RangerName
/// and LastModified (a number of the shared clock).
pub type FakeLotus = FakeStore<Lotus>;

/// HMS: shifts by id with startAt, endAt, assignee, updatedAt. After each PATCH by the
/// sync it pushes the full shift to the service's webhook, as HMS does for every change.
pub type FakeHms = FakeStore<Hms>;

// ----- The store ---------------------------------------------------------------------------

#[derive(Default)]
struct StoreState {
    records: BTreeMap<String, Value>,
    /// Successful writes and deletes by the sync.
    writes: u64,
    log: Vec<(String, Value)>,
    /// The next writes answer 503 (and change nothing).
    fail_writes: u32,
    /// The next write is applied and its answer held back until `answers_released` (or
    /// [`HOLD_BOUND`]): the writer never learns its outcome, as when it is killed mid-request.
    hold_next: bool,
    answers_released: bool,
    failed_writes: u64,
    /// How the store behaves (see [`Behaviour`]).
    behaviour: Behaviour,
    /// Each record's revision (its ETag), raised by every change.
    revs: BTreeMap<String, u64>,
    /// A user's edit that lands right after the next read of that record (between the
    /// service's read and its write).
    edit_after_read: Option<(String, Value)>,
    /// Edits that landed that way: (changes, the record after them, the clock's tick).
    edited_after_read: Vec<(Value, Value, u64)>,
    /// Writes refused because their If-Match named an old revision.
    stale_refused: u64,
    /// Reads of single records.
    reads: u64,
    /// The next feed answers list their records in a shuffled order.
    shuffle_feeds: u32,
    rng: Option<XorShift>,
    feeds: u64,
    /// Where the store pushes its changes (HMS: the service's /webhook/hms) and the token.
    hook: Option<(String, String)>,
    /// The next echoes are sent twice.
    dup_echoes: u32,
    echo_started: u64,
    echo_done: u64,
    echo_errors: Vec<String>,
}

#[derive(Clone)]
struct Shared<D> {
    state: Arc<Mutex<StoreState>>,
    clock: LogicalClock,
    dialect: PhantomData<D>,
}

/// A simulated record store in dialect `D` ([`FakeLotus`], [`FakeHms`]): records by id, each
/// with a revision (its `ETag`) and a modification time from the shared clock; the sync
/// reads, writes and deletes them, users edit and delete them (see [`Behaviour`] for how
/// writes are treated).
#[derive(Clone)]
pub struct FakeStore<D: Dialect> {
    pub base: String,
    shared: Shared<D>,
}

fn number(v: Option<&Value>) -> f64 {
    v.and_then(Value::as_f64).unwrap_or(f64::MIN)
}

/// The record id in a request path.
fn record_id<D: Dialect>(spec: &str) -> String {
    if !D::KEYED_PATH {
        return spec.to_string();
    }
    spec.strip_prefix(D::ID).and_then(|rest| rest.strip_prefix('=').or_else(|| rest.strip_prefix("%3D"))).unwrap_or(spec).to_string()
}

fn is_tombstone<D: Dialect>(record: &Value) -> bool {
    D::TOMBSTONES && record.get("Deleted") == Some(&json!(true))
}

/// Record `id` unless missing or deleted.
fn live<'a, D: Dialect>(s: &'a StoreState, id: &str) -> Option<&'a Value> {
    s.records.get(id).filter(|r| !is_tombstone::<D>(r))
}

/// Would `changes` change any field of `record`?
fn changes_anything(record: Option<&Value>, changes: &Value) -> bool {
    changes.as_object().is_some_and(|c| c.iter().any(|(k, v)| record.and_then(|r| r.get(k)) != Some(v)))
}

/// A user's edit of record `id` stamped `t`, raising its revision.
fn edit_record<D: Dialect>(s: &mut StoreState, id: &str, changes: &Value, t: u64) -> Value {
    let key: u64 = id.parse().unwrap_or_default();
    let record = s.records.entry(id.to_string()).or_insert_with(|| json!({ (D::ID): key }));
    merge(record, changes);
    merge(record, &json!({ (D::STAMP): t }));
    let record = record.clone();
    *s.revs.entry(id.to_string()).or_insert(0) += 1;
    record
}

/// Record `id` deleted: with tombstones, one stamped by the clock in its place (its
/// revision raised, listed in the feed); otherwise gone with its revision. What the store
/// lists or pushes for the deletion.
fn bury<D: Dialect>(s: &mut StoreState, clock: &LogicalClock, id: &str) -> Value {
    let key = id.parse::<u64>().unwrap_or_default();
    if D::TOMBSTONES {
        let t = s.behaviour.stamp(clock.tick());
        let tomb = json!({ (D::ID): key, "Deleted": true, (D::STAMP): t });
        *s.revs.entry(id.to_string()).or_insert(0) += 1;
        s.records.insert(id.to_string(), tomb.clone());
        tomb
    } else {
        s.records.remove(id);
        s.revs.remove(id);
        json!({ (D::ID): key, "deleted": true })
    }
}

fn busy<D: Dialect>(s: &mut StoreState) -> Option<HttpResponse> {
    (s.fail_writes > 0).then(|| {
        s.fail_writes -= 1;
        s.failed_writes += 1;
        HttpResponse::ServiceUnavailable().json(json!({"error": D::BUSY}))
    })
}

fn stale<D: Dialect>(s: &mut StoreState, req: &HttpRequest, rev: u64) -> Option<HttpResponse> {
    stale_precondition(req, s.behaviour, rev).then(|| {
        s.stale_refused += 1;
        HttpResponse::PreconditionFailed().json(json!({"error": format!("{} changed", D::NOUN), "rev": rev}))
    })
}

fn not_found<D: Dialect>() -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": format!("no such {}", D::NOUN)}))
}

/// POSTs `shift` to `url` with the bearer token; the status, or why it failed.
pub async fn post_hook(url: &str, token: &str, shift: &Value) -> Result<u16, String> {
    let client = awc::Client::builder().timeout(Duration::from_secs(5)).finish();
    let resp = client
        .post(url)
        .insert_header(("Authorization", format!("Bearer {token}")))
        .insert_header(("Content-Type", "application/json"))
        .send_body(shift.to_string())
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    Ok(resp.status().as_u16())
}

/// The store pushes `record` to its webhook `times` times, in the background (counted in
/// `echo_started` before, `echo_done` after). What fails is kept in `echo_errors`, and
/// with `strict` an answer other than 200 too.
fn spawn_echo(state: Arc<Mutex<StoreState>>, (url, token): (String, String), record: Value, times: u32, strict: bool) {
    actix_web::rt::spawn(async move {
        for _ in 0..times {
            match post_hook(&url, &token, &record).await {
                Ok(200) => {}
                Ok(code) if strict => state.lock().unwrap().echo_errors.push(format!("echo answered {code}")),
                Ok(_) => {}
                Err(e) => state.lock().unwrap().echo_errors.push(e),
            }
        }
        state.lock().unwrap().echo_done += 1;
    });
}

/// The change feed: every record (tombstones too) stamped at or after `since`, oldest
/// first (or shuffled, when asked).
async fn feed<D: Dialect>(req: HttpRequest, st: web::Data<Shared<D>>) -> HttpResponse {
    let since = req
        .query_string()
        .split('&')
        .find_map(|kv| kv.strip_prefix("since="))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let mut s = st.state.lock().unwrap();
    s.feeds += 1;
    let mut records: Vec<Value> = s.records.values().filter(|r| number(r.get(D::STAMP)) >= since).cloned().collect();
    records.sort_by(|a, b| number(a.get(D::STAMP)).total_cmp(&number(b.get(D::STAMP))));
    if s.shuffle_feeds > 0 {
        s.shuffle_feeds -= 1;
        let mut rng = s.rng.take().unwrap_or_else(|| XorShift::new(7));
        rng.shuffle(&mut records);
        s.rng = Some(rng);
    }
    HttpResponse::Ok().json(json!({ "changes": records }))
}

/// The sync writes a record: a PUT replaces it, a PATCH merges into it. With a webhook
/// set, the store pushes the record after (twice when a duplicate echo is asked for).
async fn write<D: Dialect>(req: HttpRequest, spec: web::Path<String>, body: web::Bytes, st: web::Data<Shared<D>>) -> HttpResponse {
    let id = record_id::<D>(&spec);
    let Ok(mut changes) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().json(json!({"error": "not JSON"}));
    };
    let (record, echo, rev, hold) = {
        let mut s = st.state.lock().unwrap();
        if let Some(refused) = busy::<D>(&mut s) {
            return refused;
        }
        let rev = s.revs.get(&id).copied().unwrap_or(0);
        if let Some(refused) = stale::<D>(&mut s, &req, rev) {
            return refused;
        }
        if s.behaviour.restamp || (!D::MERGE && changes.get(D::STAMP).is_none_or(Value::is_null)) {
            let t = s.behaviour.stamp(st.clock.tick());
            merge(&mut changes, &json!({ (D::STAMP): t }));
        }
        s.revs.insert(id.clone(), rev + 1);
        let record = if D::MERGE {
            let record = s.records.entry(id.clone()).or_insert_with(|| json!({}));
            merge(record, &changes);
            record.clone()
        } else {
            s.records.insert(id.clone(), changes.clone());
            changes.clone()
        };
        s.writes += 1;
        s.log.push((id, changes));
        let times = if s.dup_echoes > 0 {
            s.dup_echoes -= 1;
            2
        } else {
            1
        };
        let echo = s.hook.clone().map(|h| (h, times));
        if echo.is_some() {
            s.echo_started += 1;
        }
        (record, echo, rev + 1, std::mem::take(&mut s.hold_next))
    };
    if let Some((hook, times)) = echo {
        spawn_echo(st.state.clone(), hook, record.clone(), times, true);
    }
    if hold {
        let waited = Instant::now();
        while !st.state.lock().unwrap().answers_released && waited.elapsed() < HOLD_BOUND {
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
    HttpResponse::Ok().insert_header(("ETag", etag(rev))).json(record)
}

/// The sync reads a record (with its revision as `ETag`); a user's edit waiting for this
/// read lands right after it.
async fn get<D: Dialect>(spec: web::Path<String>, st: web::Data<Shared<D>>) -> HttpResponse {
    let id = record_id::<D>(&spec);
    let mut s = st.state.lock().unwrap();
    s.reads += 1;
    let live = live::<D>(&s, &id).cloned();
    let answer = match &live {
        Some(r) => HttpResponse::Ok().insert_header(("ETag", etag(s.revs.get(&id).copied().unwrap_or(0)))).json(r),
        None => not_found::<D>(),
    };
    if s.edit_after_read.as_ref().is_some_and(|(i, _)| *i == id) {
        let (_, changes) = s.edit_after_read.take().unwrap();
        // Meanwhile the record may hold these values already, or be gone: then nobody
        // edits.
        if live.is_some() && changes_anything(live.as_ref(), &changes) {
            let tick = st.clock.tick();
            let stamp = s.behaviour.stamp(tick);
            let record = edit_record::<D>(&mut s, &id, &changes, stamp);
            s.edited_after_read.push((changes, record, tick));
        }
    }
    answer
}

/// The sync deletes a record (see [`Dialect::TOMBSTONES`]); with a webhook set, the store
/// pushes the deletion (`{"id": …, "deleted": true}`).
async fn delete<D: Dialect>(req: HttpRequest, spec: web::Path<String>, st: web::Data<Shared<D>>) -> HttpResponse {
    let id = record_id::<D>(&spec);
    let echo = {
        let mut s = st.state.lock().unwrap();
        if D::TOMBSTONES
            && let Some(refused) = busy::<D>(&mut s)
        {
            return refused;
        }
        if live::<D>(&s, &id).is_none() {
            return not_found::<D>();
        }
        let rev = s.revs.get(&id).copied().unwrap_or(0);
        if let Some(refused) = stale::<D>(&mut s, &req, rev) {
            return refused;
        }
        let gone = bury::<D>(&mut s, &st.clock, &id);
        s.writes += 1;
        s.log.push((id, gone.clone()));
        let hook = s.hook.clone();
        if hook.is_some() {
            s.echo_started += 1;
        }
        hook.map(|h| (h, gone))
    };
    if let Some((hook, gone)) = echo {
        spawn_echo(st.state.clone(), hook, gone, 1, false);
    }
    HttpResponse::NoContent().finish()
}

impl<D: Dialect> FakeStore<D> {
    pub async fn start(clock: LogicalClock) -> FakeStore<D> {
        let shared = Shared { state: Arc::default(), clock, dialect: PhantomData };
        let data = shared.clone();
        let base = crate::serve_local!(move || {
            let records = format!("{}/{{spec}}", D::RECORDS);
            let writes = if D::MERGE { web::patch() } else { web::put() };
            let app = App::new()
                .app_data(web::Data::new(data.clone()))
                .route(&records, writes.to(write::<D>))
                .route(&records, web::get().to(get::<D>))
                .route(&records, web::delete().to(delete::<D>));
            match D::FEED {
                Some(path) => app.route(path, web::route().to(feed::<D>)),
                None => app,
            }
        });
        FakeStore { base, shared }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, StoreState> {
        self.shared.state.lock().unwrap()
    }

    /// A record as it is now (a deleted Lotus document as its tombstone).
    pub fn record(&self, id: u64) -> Option<Value> {
        self.state().records.get(&id.to_string()).cloned()
    }

    /// Puts a record in place (not a write by the sync, no push).
    pub fn seed(&self, record: Value) {
        let id = key_of(&record[D::ID]);
        self.state().records.insert(id, record);
    }

    /// A user edits a record: the changes, its stamp from the clock. Returns the full
    /// record, which is what HMS pushes (see [`push`](FakeStore::push)).
    pub fn edit(&self, id: u64, changes: Value) -> Value {
        let t = self.shared.clock.tick();
        let t = self.state().behaviour.stamp(t);
        self.edit_at(id, changes, t)
    }

    /// A user's edit stamped `t`.
    pub fn edit_at(&self, id: u64, changes: Value, t: u64) -> Value {
        self.shared.clock.advance_to(t);
        edit_record::<D>(&mut self.state(), &id.to_string(), &changes, t)
    }

    /// A user deletes record `id`: a Lotus document becomes a tombstone stamped by the
    /// clock (in the feed), an HMS shift is removed. Returns what the store lists or
    /// pushes for it.
    pub fn delete(&self, id: u64) -> Value {
        bury::<D>(&mut self.state(), &self.shared.clock, &id.to_string())
    }

    /// How the store treats writes from now on.
    pub fn behave(&self, behaviour: Behaviour) {
        self.state().behaviour = behaviour;
    }

    /// A user's edit of record `id` that lands right after its next read (by the service
    /// deciding a change): between the service's read and its write.
    pub fn edit_after_next_read(&self, id: u64, changes: Value) {
        self.state().edit_after_read = Some((id.to_string(), changes));
    }

    /// Is such an edit still waiting for its read? Its content, taken back (it never
    /// happens).
    pub fn take_pending_edit(&self) -> Option<(String, Value)> {
        self.state().edit_after_read.take()
    }

    /// Edits that landed right after a read since the last call (to be pushed, for HMS):
    /// (changes, record, clock tick).
    pub fn take_edited_after_read(&self) -> Vec<(Value, Value, u64)> {
        std::mem::take(&mut self.state().edited_after_read)
    }

    /// Writes refused with 412 (an old revision in If-Match).
    pub fn stale_refused(&self) -> u64 {
        self.state().stale_refused
    }

    /// Reads of single records so far.
    pub fn reads(&self) -> u64 {
        self.state().reads
    }

    /// Successful writes (PUTs, PATCHes) and deletes by the sync.
    pub fn writes(&self) -> u64 {
        self.state().writes
    }

    /// Every successful write by the sync: (id, body as stored: Lotus's whole document,
    /// HMS's changes; for a delete, what the store lists or pushes for it).
    pub fn write_log(&self) -> Vec<(String, Value)> {
        self.state().log.clone()
    }

    /// The next write answers 503 once.
    pub fn fail_next_write(&self) {
        let mut s = self.state();
        s.fail_writes = s.fail_writes.max(1);
    }

    /// The next write is applied, its answer held back until [`release_answers`](Self::release_answers).
    pub fn hold_next_answer(&self) {
        let mut s = self.state();
        s.hold_next = true;
        s.answers_released = false;
    }

    /// Answers the writes held back.
    pub fn release_answers(&self) {
        self.state().answers_released = true;
    }

    pub fn failed_writes(&self) -> u64 {
        self.state().failed_writes
    }
}

/// The Lotus Notes calendar's words: a ranger edits documents.
impl FakeStore<Lotus> {
    /// A document as it is now (a deleted one as its tombstone).
    pub fn doc(&self, id: u64) -> Option<Value> {
        self.record(id)
    }

    /// A document that is not deleted.
    pub fn live_doc(&self, id: u64) -> Option<Value> {
        live::<Lotus>(&self.state(), &id.to_string()).cloned()
    }

    /// A ranger deletes document `id`: a tombstone stamped by the clock (in the feed).
    pub fn ranger_delete(&self, id: u64) -> Value {
        self.delete(id)
    }

    /// A ranger edits a document in Lotus: the changes, LastModified from the clock.
    pub fn ranger_edit(&self, id: u64, changes: Value) -> Value {
        self.edit(id, changes)
    }

    /// A ranger edit stamped `t`.
    pub fn ranger_edit_at(&self, id: u64, changes: Value, t: u64) -> Value {
        self.edit_at(id, changes, t)
    }

    /// The next feed answer lists its records shuffled (seeded).
    pub fn shuffle_next_feed(&self, seed: u64) {
        let mut s = self.state();
        s.shuffle_feeds = s.shuffle_feeds.max(1);
        s.rng.get_or_insert_with(|| XorShift::new(seed));
    }

    /// Feed requests answered.
    pub fn feeds(&self) -> u64 {
        self.state().feeds
    }
}

/// HMS's words, and its webhook: it pushes every change to the service.
impl FakeStore<Hms> {
    pub fn shift(&self, id: u64) -> Option<Value> {
        self.record(id)
    }

    /// From now on every PATCH is echoed to `url` (the service's HMS webhook).
    pub fn echo_to(&self, url: &str, token: &str) {
        self.state().hook = Some((url.to_string(), token.to_string()));
    }

    /// HMS pushes `shift` to the service's webhook (as it does after every change);
    /// the answer's status.
    pub async fn push(&self, shift: &Value) -> u16 {
        let (url, token) = self.state().hook.clone().expect("echo_to names the service's webhook first");
        post_hook(&url, &token, shift).await.unwrap_or_else(|e| panic!("HMS push: {e}"))
    }

    /// The next echo is sent twice (a duplicate webhook).
    pub fn duplicate_next_echo(&self) {
        let mut s = self.state();
        s.dup_echoes = s.dup_echoes.max(1);
    }

    /// Echoes (started, finished).
    pub fn echoes(&self) -> (u64, u64) {
        let s = self.state();
        (s.echo_started, s.echo_done)
    }

    pub fn echo_errors(&self) -> Vec<String> {
        self.state().echo_errors.clone()
    }
}
