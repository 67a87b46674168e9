//! The lane's two-way gate: reads what the decision needs (the record link, each side's
//! current record when the connector says how to read it), calls the pure
//! [`engine::decide`], and turns its verdict into what the attempt sends or how the job is
//! settled without sending.

use serde_json::{Value, json};

use super::shared::{ConnectorShared, Counters, Runtime};
use super::alerter::JobParked;
use super::committer::RecordOutcome;
use crate::delivery::{Egress, Outcome, sender};
use crate::mapping::compiled::Write;
use crate::mapping::{Payload, fields};
use crate::spec::model::{ResolveSpec, Side};
use crate::storage::{self, Delivery, Direction, JobUpdate, LinkUpdate, NewDelivery, NewTicket, TicketStatus};
use crate::sync::Origin;
use crate::sync::engine::{self, Current, Kind, Rules, Verdict, other, side_name};
use crate::sync::inbound::{INBOUND_TOPIC, content_hash, no_nul, scalar_text};

/// Runs `f` with the connector's decision rules.
pub fn with_rules<T>(shared: &ConnectorShared, f: impl FnOnce(&Rules) -> T) -> T {
    let fallback;
    let resolve = match shared.spec.resolve.as_ref() {
        Some(r) => r,
        None => {
            fallback = ResolveSpec::default();
            &fallback
        }
    };
    f(&Rules { resolve, table: &shared.spec.mapping })
}

/// What a read of one side found: the record in HMS fields, and as the side sent it with
/// its `ETag` (what a revision-checked write needs).
pub struct Read {
    pub current: Current,
    pub raw: Option<Value>,
    pub etag: Option<String>,
    /// The id of a record found by the create's `match` lookup (not linked yet).
    pub found_id: Option<String>,
}

/// What a two-way write is writing, for its in-flight note: the side and the content, when
/// it updates a record and that record is all it writes. (A create is found again by its
/// natural key, a delete by the record's absence; a merge's first half is decided again,
/// which writes its second half.)
pub fn written(shared: &ConnectorShared, cleared: &Cleared) -> Option<engine::Written> {
    (cleared.write == Write::Update && cleared.then_back.is_none()).then(|| engine::Written { to: cleared.to, content: with_rules(shared, |rules| rules.content(&cleared.payload)) })
}

/// Can the connector read `side`'s current record (`resolve.fetch`)?
pub fn can_read(shared: &ConnectorShared, side: Side) -> bool {
    let r = shared.spec.resolve.as_ref();
    match side {
        Side::Hms => r.is_some_and(|r| r.fetch_hms.is_some()),
        Side::Legacy => r.is_some_and(|r| r.fetch_legacy.is_some()),
    }
}

/// What `side` holds now: [`Current::Unknown`] when the connector has no `resolve.fetch`
/// for it. A read's record comes back in HMS fields.
async fn read(client: &awc::Client, egress: &Egress, shared: &ConnectorShared, side: Side, record: &Value, link_ctx: &Value, linked: bool) -> Result<Read, String> {
    let unknown = Read { current: Current::Unknown, raw: None, etag: None, found_id: None };
    let absent = || async {
        let none = Read { current: Current::Absent, raw: None, etag: None, found_id: None };
        if linked {
            return Ok(none);
        }
        // Before anything is created there, look the record up by its natural key.
        match lookup(client, egress, shared, side, record, link_ctx).await? {
            Some((found, id)) => Ok(Read { current: Current::Present(in_hms_fields(shared, side, found.clone())), raw: Some(found), etag: None, found_id: id }),
            None => Ok(none),
        }
    };
    if !linked && shared.spec.assigns_ids(side) {
        return absent().await;
    }
    let resolve = shared.spec.resolve.as_ref();
    let spec_req = match side {
        Side::Hms => resolve.and_then(|r| r.fetch_hms.as_ref()),
        Side::Legacy => resolve.and_then(|r| r.fetch_legacy.as_ref()),
    };
    let Some(spec_req) = spec_req else { return Ok(unknown) };
    let secrets = egress.secrets(&spec_req.secret_names()).map_err(|e| e.to_string())?;
    let Some(mut req) = shared.compiled.render_fetch(side, record, link_ctx, &secrets).map_err(|e| e.to_string())? else { return Ok(unknown) };
    shared.ready(&mut req, client, egress).await?;
    match sender::fetch_optional_json(client, &req, egress).await {
        Ok(None) => absent().await,
        Ok(Some(found)) => Ok(Read { current: Current::Present(in_hms_fields(shared, side, found.record.clone())), raw: Some(found.record), etag: found.etag, found_id: None }),
        Err(Outcome::Retryable { error, .. } | Outcome::Permanent { error }) => Err(format!("cannot read {}'s current record: {error}", side_name(side))),
        Err(Outcome::Delivered { status }) => Err(format!("cannot read the current record: HTTP {status}")),
    }
}

/// The create `match` lookup of `side`: the first record found (as the side sent it) and
/// its id (by the create's `idField`), or `None`.
async fn lookup(client: &awc::Client, egress: &Egress, shared: &ConnectorShared, side: Side, record: &Value, link_ctx: &Value) -> Result<Option<(Value, Option<String>)>, String> {
    let Some(create) = shared.spec.create_request(side) else { return Ok(None) };
    let Some(spec_req) = create.lookup.as_ref() else { return Ok(None) };
    let secrets = egress.secrets(&spec_req.request.secret_names()).map_err(|e| e.to_string())?;
    let Some(mut req) = shared.compiled.render_lookup(side, record, link_ctx, &secrets).map_err(|e| e.to_string())? else { return Ok(None) };
    shared.ready(&mut req, client, egress).await?;
    let answer = match sender::fetch_json(client, &req, egress).await {
        Ok(a) => a,
        Err(Outcome::Retryable { error, .. } | Outcome::Permanent { error }) => return Err(format!("cannot look the record up in {}: {error}", side_name(side))),
        Err(Outcome::Delivered { status }) => return Err(format!("cannot look the record up: HTTP {status}")),
    };
    let Some(found) = crate::mapping::selector::records(&answer, &spec_req.records).into_iter().next() else { return Ok(None) };
    let id = create.id_field.as_deref().and_then(|f| crate::mapping::selector::select(&found, &crate::spec::model::selector_of(f))).map(|v| no_nul(scalar_text(v)));
    Ok(Some((found, id)))
}

/// Why a record `side` holds, found by a lookup under id `found`, cannot be linked to the
/// record of `key` (the record's id on the other side): another record of the connector is
/// linked to it already (two records, one counterpart: a person must look).
async fn linked_elsewhere(rt: &Runtime, shared: &ConnectorShared, side: Side, key: &str, found: &str) -> Option<String> {
    let link = match side {
        Side::Legacy => storage::link_by_external(&rt.db, shared.id(), found).await,
        Side::Hms => storage::get_link(&rt.db, shared.id(), found).await,
    };
    let theirs = |l: &storage::Link| if side == Side::Legacy { l.hms_id.clone() } else { l.external_id.clone() };
    match link {
        Ok(Some(other)) if theirs(&other) != key => Some(format!("the record found by `match` (id {found}) is linked to record {} already", theirs(&other))),
        Ok(_) => None,
        Err(e) => Some(format!("cannot read the record links: {e}")),
    }
}

/// The link of a job's record: by its key, or, when HMS numbers the records we create
/// there and this job was queued before its record was linked, by the external id the key
/// then was.
async fn find_link(rt: &Runtime, shared: &ConnectorShared, job: &Delivery, to: Side) -> Result<Option<storage::Link>, storage::StorageError> {
    let link = storage::get_link(&rt.db, shared.id(), &job.record_key).await?;
    if link.is_none() && to == Side::Hms && shared.spec.assigns_ids(Side::Hms) {
        return storage::link_by_external(&rt.db, shared.id(), &job.record_key).await;
    }
    Ok(link)
}

/// A record's ids on both sides: from its link, or before one exists from the job's key
/// and the id a `match` lookup found on the side written to.
fn ids(job: &Delivery, link: Option<&storage::Link>, to: Side, found: Option<&String>) -> (String, String) {
    let key = job.record_key.clone();
    match (link, found) {
        (Some(l), _) => (l.hms_id.clone(), l.external_id.clone()),
        (None, Some(f)) if to == Side::Hms => (f.clone(), key),
        (None, Some(f)) => (key, f.clone()),
        (None, None) => (key.clone(), key),
    }
}

/// What request templates see of a record's link.
fn link_json(hms_id: &str, external_id: Option<&str>) -> Value {
    json!({ "hmsId": hms_id, "externalId": external_id })
}

/// Inbound jobs of a connector whose HMS numbers the records we create: a record linked
/// already is queued under its HMS id, so both directions of one record share a key (and so
/// their order and lock). A record that names its HMS id itself (the key template rendered)
/// keeps that key.
pub async fn key_by_links(db: &storage::Db, shared: &ConnectorShared, jobs: &mut [NewDelivery], id_field: Option<&str>, records: &[Value]) -> Result<(), storage::StorageError> {
    if !shared.spec.assigns_ids(Side::Hms) {
        return Ok(());
    }
    for (job, record) in jobs.iter_mut().zip(records) {
        if job.record_key == external_id_of(record, id_field)
            && let Some(link) = storage::link_by_external(db, shared.id(), &job.record_key).await?
        {
            job.record_key = link.hms_id;
        }
    }
    Ok(())
}

/// A record as `side` returned it, in HMS fields.
fn in_hms_fields(shared: &ConnectorShared, side: Side, record: Value) -> Value {
    let table = &shared.spec.mapping;
    if side == Side::Legacy && !table.is_empty() { fields::map_in(&record, table) } else { record }
}

/// What the gate lets through.
pub struct Cleared {
    /// The record to write (HMS fields): the job's payload, shared, unless a read replaced it.
    pub payload: std::sync::Arc<Payload>,
    /// The side it is written to.
    pub to: Side,
    /// The link to save once the write succeeded (see [`after_write`]).
    pub link: Option<LinkUpdate>,
    /// A merged record the other side must get too, as a follow-up job.
    pub then_back: Option<Value>,
    /// Why the attempt cannot go on yet (a read failed): retried like a failed send.
    pub blocked: Option<String>,
    /// Why the two-way decision writes this (the ticket's reason).
    pub why: Option<String>,
    /// What the request templates see beside the record: `current` (the side written to,
    /// as read), its `etag`, and the record's `link` (`hmsId`, `externalId`).
    pub extras: Value,
    /// Update, create or delete.
    pub write: Write,
}

/// A job settled by the gate without a send.
pub struct Settled {
    pub outcome: RecordOutcome,
}

/// Decides a job of a two-way connector (and reads the chosen side for a `take` job of
/// any connector). `Err`: the job is settled here (skipped, already there, or parked as a
/// conflict), with its outcome to record.
pub async fn gate(client: &awc::Client, rt: &Runtime, shared: &ConnectorShared, job: &Delivery, attempts: i32) -> Result<Cleared, Settled> {
    let to = job.origin.target();
    let source = other(to);
    let mut cleared = Cleared { payload: job.payload.clone(), to, link: None, then_back: None, blocked: None, why: None, extras: Value::Null, write: if job.deleted { Write::Delete } else { Write::Update } };
    if matches!(job.origin, Origin::Take(_)) {
        let link = storage::get_link(&rt.db, shared.id(), &job.record_key).await.ok().flatten();
        let link_ctx = json!({ "link": link_json(&job.record_key, link.as_ref().map(|l| l.external_id.as_str())) });
        match read(client, &rt.egress, shared, source, &job.payload, &link_ctx, true).await.map(|r| r.current) {
            Ok(Current::Present(current)) => cleared.payload = Payload::shared(current),
            Ok(_) => return Err(settle(shared, job, to, TicketStatus::Skipped, Some("the chosen side has no such record".into()), attempts, None)),
            Err(e) => cleared.blocked = Some(e),
        }
    }
    if cleared.blocked.is_some() {
        return Ok(cleared);
    }
    if !shared.spec.two_way() {
        return one_way(client, rt, shared, job, attempts, cleared).await;
    }
    let kind = match job.origin {
        Origin::Merged(_) => Kind::Merged,
        Origin::Resolved(_) | Origin::Take(_) => Kind::Forced,
        // A job sent before whose outcome was not stored says so (see `storage::InFlight`).
        Origin::Event | Origin::Inbound if job.in_flight.is_some() => Kind::Resent,
        Origin::Event | Origin::Inbound => Kind::Change,
    };
    let link = match find_link(rt, shared, job, to).await {
        Ok(l) => l,
        Err(e) => {
            cleared.blocked = Some(format!("cannot read the record link: {e}"));
            return Ok(cleared);
        }
    };
    // The source is read for every change (was it superseded?), and for the others too
    // when it could be written (a merge's second half, an operator's choice).
    // (Before a link exists both ids are the job's key: the change's own id.)
    let (hms_key, external_key) = ids(job, link.as_ref(), to, None);
    let link_ctx = json!({ "link": link_json(&hms_key, Some(&external_key)) });
    // A side that assigns its own ids has no record of ours before we linked one.
    // (The source is read as the change names it, linked or not.)
    let source_read = read(client, &rt.egress, shared, source, &cleared.payload, &link_ctx, true).await;
    let target_read = read(client, &rt.egress, shared, to, &cleared.payload, &link_ctx, link.is_some()).await;
    let (source_read, target_read) = match (source_read, target_read) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(e), _) | (_, Err(e)) => {
            cleared.blocked = Some(e);
            return Ok(cleared);
        }
    };
    let source_now = if kind.is_change() { &source_read.current } else { &Current::Unknown };
    let rule = rule_hit(shared, source, &cleared.payload, &source_read, &target_read);
    let synced = link.as_ref().map(|l| &l.synced);
    // A record found by the lookup is linked under the id the other side gave it, unless
    // another record is linked to it already (two records, one counterpart: a person must
    // look; retried, then parked with this reason).
    let (hms_id, external_id) = ids(job, link.as_ref(), to, target_read.found_id.as_ref());
    if link.is_none()
        && let Some(found) = &target_read.found_id
        && let Some(err) = linked_elsewhere(rt, shared, to, &job.record_key, found).await
    {
        cleared.blocked = Some(err);
        return Ok(cleared);
    }
    let link_of = |synced| LinkUpdate { connector_id: shared.id().to_string(), hms_id: hms_id.clone(), external_id: external_id.clone(), synced, replaces: None };
    // Sent before, its outcome not stored (a restart, a refused commit): did that write land?
    // (Its side may be the change's own source: a lost conflict's write-back.) Then it is
    // settled as written.
    if kind == Kind::Resent
        && !job.deleted
        && let Some(written) = job.in_flight.as_ref().and_then(|f| f.written.as_ref())
        && let Some((link, why)) = with_rules(shared, |rules| engine::landed(rules, synced, written, source, &source_read.current, &target_read.current))
    {
        tracing::info!(reason = %why, "change already written");
        return Err(settle(shared, job, written.to, TicketStatus::Completed, Some(why), attempts, Some(link_of(link))));
    }
    let verdict = with_rules(shared, |rules| {
        if job.deleted && kind.is_change() {
            engine::decide_delete(rules, synced, source, &cleared.payload, source_now, &target_read.current)
        } else if job.deleted {
            // An operator chose the delete: it is carried out.
            let mut tomb = synced.cloned().unwrap_or_default();
            tomb.base = Some(Value::Null);
            Verdict::Delete { to, link: tomb, why: "chosen by an operator".into() }
        } else {
            engine::decide(rules, synced, source, &cleared.payload, kind, source_now, &target_read.current, rule)
        }
    });
    match verdict {
        Verdict::Delete { to: delete_on, link: synced, why } => {
            if shared.spec.write_request(delete_on, Write::Delete).is_none() {
                let reason = format!("deleted on {}; the connector has no delete request for {} (map.{})", side_name(other(delete_on)), side_name(delete_on), if delete_on == Side::Hms { "hmsDelete" } else { "delete" });
                return Err(settle(shared, job, delete_on, TicketStatus::Skipped, Some(reason), attempts, Some(link_of(synced))));
            }
            let written = if delete_on == to { &target_read } else { &source_read };
            cleared.extras = json!({
                "current": written.raw,
                "etag": written.etag.clone().unwrap_or_default(),
                "link": link_json(&hms_id, Some(&external_id)),
            });
            cleared.to = delete_on;
            cleared.write = Write::Delete;
            cleared.link = Some(link_of(synced));
            cleared.why = Some(why);
            Ok(cleared)
        }
        Verdict::Apply { to: write_to, record, link: synced, why, then_back, write } => {
            cleared.write = write;
            tracing::debug!(why = %why, to = ?write_to, "two-way: apply");
            let written = if write_to == to { &target_read } else { &source_read };
            cleared.extras = json!({
                "current": written.raw,
                "etag": written.etag.clone().unwrap_or_default(),
                "link": link_json(&hms_id, Some(&external_id)),
            });
            let (to, link) = (write_to, synced);
            cleared.to = to;
            cleared.payload = Payload::shared(record);
            cleared.link = Some(link_of(link));
            cleared.then_back = then_back;
            cleared.why = Some(why);
            Ok(cleared)
        }
        Verdict::AlreadyThere { link, why } => {
            tracing::info!(reason = %why, "change already on the target");
            Err(settle(shared, job, to, TicketStatus::Completed, Some(why), attempts, Some(link_of(link))))
        }
        Verdict::Skip { reason, link } => {
            tracing::info!(reason = %reason, "change skipped");
            Err(settle(shared, job, to, TicketStatus::Skipped, Some(reason), attempts, link.map(link_of)))
        }
        Verdict::Conflict { reason } => {
            tracing::warn!(reason = %reason, "conflict parked for a human");
            Counters::inc(&shared.counters.parked);
            rt.metrics.parked.with_label_values(&[shared.id()]).inc();
            rt.alerts.do_send(JobParked { connector: shared.id().to_string(), job: job.id, reason: reason.clone() });
            let ticket = plain_ticket(shared, job, to, TicketStatus::Conflict, Some(reason.clone()), attempts);
            // All three for the person who decides: what was last synced, and each side now.
            let side_record = |side: Side| {
                let read = if side == source { &source_read } else { &target_read };
                match &read.current {
                    Current::Present(r) => r.clone(),
                    _ if side == source => cleared.payload.value().clone(),
                    _ => Value::Null,
                }
            };
            let records = json!({
                "base": link.as_ref().and_then(|l| l.synced.base.clone()),
                "hms": side_record(Side::Hms),
                "external": side_record(Side::Legacy),
                "rule": rule.filter(|_| !job.deleted).and_then(|i| shared.spec.resolve.as_ref().and_then(|r| r.rules.get(i)).map(|r| r.when.clone())),
            });
            let update = JobUpdate::Conflict { token: storage::ClaimToken::of(job), attempts, error: reason, records };
            Err(Settled { outcome: RecordOutcome { update, jobs: Vec::new(), link: None, attempt: None, ticket: Some(ticket) } })
        }
    }
}

/// An outbound (or inbound) connector that creates and deletes: its record link names the
/// id the other system assigned (`{{ link.externalId }}` in later requests). No decision:
/// a job with no link yet creates, a deleted change deletes.
async fn one_way(client: &awc::Client, rt: &Runtime, shared: &ConnectorShared, job: &Delivery, attempts: i32, mut cleared: Cleared) -> Result<Cleared, Settled> {
    let to = cleared.to;
    let (creates, deletes) = (shared.spec.create_request(to).is_some(), shared.spec.delete_request(to).is_some());
    let deleted_on = side_name(other(to));
    if job.deleted && !deletes {
        let reason = format!("deleted on {deleted_on}; the connector has no delete request for {} (map.{})", side_name(to), if to == Side::Hms { "hmsDelete" } else { "delete" });
        return Err(settle(shared, job, to, TicketStatus::Skipped, Some(reason), attempts, None));
    }
    if !creates && !deletes {
        return Ok(cleared);
    }
    let link = match find_link(rt, shared, job, to).await {
        // A tombstone: the record was deleted there, so it is created again.
        Ok(l) => l.filter(|l| l.synced.base != Some(Value::Null)),
        Err(e) => {
            cleared.blocked = Some(format!("cannot read the record link: {e}"));
            return Ok(cleared);
        }
    };
    if job.deleted && link.is_none() && shared.spec.assigns_ids(to) {
        return Err(settle(shared, job, to, TicketStatus::Skipped, Some("deleted before it was ever created there".into()), attempts, None));
    }
    let (mut hms_id, mut external_id) = ids(job, link.as_ref(), to, None);
    if !job.deleted && link.is_none() && creates {
        cleared.write = Write::Create;
        // Already there (made before, or by a create whose outcome a crash lost): linked
        // and updated, never created twice.
        let link_ctx = json!({ "link": link_json(&job.record_key, None) });
        match lookup(client, &rt.egress, shared, to, &cleared.payload, &link_ctx).await {
            Ok(Some((_, id))) => {
                if let Some(found) = &id
                    && let Some(err) = linked_elsewhere(rt, shared, to, &job.record_key, found).await
                {
                    cleared.blocked = Some(err);
                    return Ok(cleared);
                }
                cleared.write = Write::Update;
                (hms_id, external_id) = ids(job, None, to, id.as_ref());
                cleared.why = Some("found by its natural key: linked, not created again".into());
            }
            Ok(None) => {}
            Err(e) => {
                cleared.blocked = Some(e);
                return Ok(cleared);
            }
        }
    }
    cleared.extras = json!({ "current": Value::Null, "etag": "", "link": link_json(&hms_id, Some(&external_id)) });
    let mut synced = link.map(|l| l.synced).unwrap_or_default();
    if job.deleted {
        synced.base = Some(Value::Null);
    }
    cleared.link = Some(LinkUpdate { connector_id: shared.id().to_string(), hms_id, external_id, synced, replaces: None });
    Ok(cleared)
}

/// The first resolver rule that holds for the two records, each as its side holds it (as
/// read; the change itself for an unread source, in the external system's fields through
/// the mapping when it is the external system's). Only a read target can conflict, so
/// without one no rule is looked at.
fn rule_hit(shared: &ConnectorShared, source: Side, change: &Value, source_read: &Read, target_read: &Read) -> Option<usize> {
    if shared.spec.resolve.as_ref().is_none_or(|r| r.rules.is_empty()) {
        return None;
    }
    let target_raw = target_read.raw.as_ref()?;
    let table = &shared.spec.mapping;
    let source_raw = source_read.raw.clone().unwrap_or_else(|| if source == Side::Legacy && !table.is_empty() { fields::map_out(change, table) } else { change.clone() });
    let (hms, legacy) = if source == Side::Hms { (&source_raw, target_raw) } else { (target_raw, &source_raw) };
    shared.compiled.rule_hit(hms, legacy)
}

fn settle(shared: &ConnectorShared, job: &Delivery, to: Side, status: TicketStatus, reason: Option<String>, attempts: i32, link: Option<LinkUpdate>) -> Settled {
    let ticket = plain_ticket(shared, job, to, status, reason, attempts);
    Settled { outcome: RecordOutcome { update: JobUpdate::Complete { token: storage::ClaimToken::of(job), attempts }, jobs: Vec::new(), link, attempt: None, ticket: Some(ticket) } }
}

/// A ticket for a change that was not sent (skipped, already there, or parked as a conflict).
fn plain_ticket(shared: &ConnectorShared, job: &Delivery, to: Side, status: TicketStatus, reason: Option<String>, attempts: i32) -> NewTicket {
    NewTicket {
        connector_id: shared.id().to_string(),
        event_id: Some(job.event_id.clone()),
        delivery_id: Some(job.id),
        hms_id: Some(job.record_key.clone()),
        external_id: Some(job.record_key.clone()),
        direction: direction(to),
        status,
        reason,
        attempts,
        last_error: None,
        detail: None,
    }
}

/// A ticket's direction for a write to `to`.
pub fn direction(to: Side) -> Direction {
    match to {
        Side::Hms => Direction::Inbound,
        Side::Legacy => Direction::Outbound,
    }
}

/// After a successful write of `sent` to `to`: the link learns the side's own form of it
/// (from the write's answer when it carries the record), and a merge's follow-up job is
/// made for the other side.
pub fn after_write(shared: &ConnectorShared, job: &Delivery, cleared: &mut Cleared, answer: Option<&[u8]>) -> Vec<NewDelivery> {
    let Some(link) = cleared.link.as_mut() else { return Vec::new() };
    let raw = answer.and_then(|b| serde_json::from_slice::<Value>(b).ok()).filter(Value::is_object);
    // The id a create's answer holds is the record's id on that side from now on. (A
    // record HMS numbers anew, say written back after a delete, moves its link: the row
    // under the old id goes.)
    if cleared.write == Write::Create
        && let Some(sel) = shared.spec.create_request(cleared.to).and_then(|c| c.id_field.as_deref())
        && let Some(id) = raw.as_ref().and_then(|a| crate::mapping::selector::select(a, &crate::spec::model::selector_of(sel)))
    {
        let id = no_nul(scalar_text(id));
        match cleared.to {
            Side::Legacy => link.external_id = id,
            Side::Hms if link.hms_id != id => link.replaces = Some(std::mem::replace(&mut link.hms_id, id)),
            Side::Hms => {}
        }
    }
    if cleared.write == Write::Delete || !shared.spec.two_way() {
        return Vec::new();
    }
    let answer = raw.map(|a| in_hms_fields(shared, cleared.to, a));
    with_rules(shared, |rules| link.synced.observe_write(rules, cleared.to, &cleared.payload, answer.as_ref()));
    let Some(merged) = cleared.then_back.take() else { return Vec::new() };
    let back = other(cleared.to);
    let event_id = format!("merged:{}", content_hash(&json!([job.event_id, merged])));
    vec![NewDelivery {
        connector_id: shared.id().to_string(),
        event_id,
        topic: job.topic.clone(),
        record_key: job.record_key.clone(),
        payload: Payload::shared(merged),
        origin: Origin::Merged(back),
        deleted: false,
    }]
}

/// The job for one external record. `origin` names where it came from (`pull`, `webhook`),
/// `change_id` is the sender's id for the change when it has one (a webhook id); otherwise
/// the record's id and version (or content) identify the change.
/// (Turning an external record, pulled or pushed by webhook, into a durable inbound job: the
/// mapping table read right to left, the record key in HMS terms, and an id that makes the
/// same change arriving twice a no-op.)
pub fn inbound_job(shared: &ConnectorShared, record: &Value, id_field: Option<&str>, version: Option<&Value>, origin: &str, change_id: Option<&str>) -> NewDelivery {
    let table = shared.spec.mapping_pairs();
    let payload = Payload::shared(if table.is_empty() { record.clone() } else { fields::map_in(record, &table) });
    let external_id = external_id_of(record, id_field);
    // Without a version from the feed, the record's own version field (in HMS names) tells
    // changes apart: A -> B -> A is three changes, not a replay of the first.
    let own_version = shared.spec.resolve.as_ref().and_then(|r| fields::get_path(&payload, &r.version_field)).filter(|v| !v.is_null()).cloned();
    let version = version.filter(|v| !v.is_null()).cloned().or(own_version);
    // In HMS terms when the connector has a key template, so both directions of one record
    // share a key (and so its order and its lock); else the external id.
    let record_key = no_nul(shared.compiled.record_key(&payload, &external_id).ok().filter(|k| !k.is_empty()).unwrap_or_else(|| external_id.clone()));
    let event_id = no_nul(match (change_id, version) {
        (Some(id), _) => format!("{origin}:{id}"),
        // The version and the content: two edits within one tick of a coarse clock (a
        // second) share a version but not their content.
        (None, Some(v)) => format!("{origin}:{external_id}:{}:#{}", scalar_text(&v), content_hash(record)),
        (None, None) => format!("{origin}:{external_id}:#{}", content_hash(record)),
    });
    let deleted = shared.compiled.is_delete(INBOUND_TOPIC, record);
    NewDelivery { connector_id: shared.id().to_string(), event_id, topic: INBOUND_TOPIC.into(), record_key, payload, origin: Origin::Inbound, deleted }
}

/// An external record's id (its `idField`), as text.
fn external_id_of(record: &Value, id_field: Option<&str>) -> String {
    no_nul(id_field.and_then(|f| fields::get_path(record, f)).map(scalar_text).unwrap_or_default())
}
