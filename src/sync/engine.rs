//! The two-way decision for one change of one record, as a pure function: given the change,
//! the record link (what was last synced) and what each side holds now, what is written
//! where. No I/O here: the lane reads the link and the two sides, then calls [`decide`].
//!
//! Content decides first, versions second. Every record is compared in one representation
//! (its mapped fields in HMS names, without the version field, hashed), so:
//! - a change whose content is what was last synced (or what we lately wrote to its side)
//!   is an echo, whatever version stamp the system put on it;
//! - a target whose content is what was last synced has not changed, so the change is
//!   applied, whatever the target's stamp says (systems re-stamp our own writes);
//! - only when both sides changed since the last sync is it a conflict, and only then do
//!   versions (compared as numbers or instants), the owners, the merge or a human decide.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::inbound::{content_hash, scalar_text};
use crate::mapping::compiled::Write;
use crate::mapping::fields;
use crate::spec::model::{FieldRule, Policy, ResolveSpec, Side};

/// How a conflict's reason (the parked job's last error) starts.
pub const CONFLICT: &str = "conflict: ";

/// How many of our recent writes to a side are remembered, to recognise their late echoes.
const WRITTEN_KEPT: usize = 8;

/// What a side holds now, as far as the service can tell.
#[derive(Debug, Clone, PartialEq)]
pub enum Current {
    /// Not read (the connector has no `resolve.fetch` for that side).
    Unknown,
    /// The side has no such record.
    Absent,
    /// Its record, in HMS fields.
    Present(Value),
}

/// Where a change comes from, and how freely it may be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A change seen on its source (webhook, pull, publish).
    Change,
    /// The same, sent before without its outcome being stored (a restart came between):
    /// its write may have landed.
    Resent,
    /// An operator resolved a conflict in favour of this record: applied unless the target
    /// already holds exactly it.
    Forced,
    /// The second half of a merge: the merged record, already written to one side, goes to
    /// the other. Not an echo although we wrote it; still checked against the target.
    Merged,
}

/// What a two-way write in flight was writing: the side and the content (hashed as
/// [`Rules::content`]). Stored with the job before the request goes, so that the attempt
/// after a restart that lost the write's outcome can tell whether it landed, whichever side
/// it went to: a change applied to its target, or the winner of a conflict written back to
/// the change's own source, a content the job itself does not carry (see [`landed`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    pub to: Side,
    pub content: String,
}

/// What the link of one record keeps between syncs (the `record_links` row, without ids).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Synced {
    /// The record last synced: its mapped fields in HMS names (the base of a merge).
    pub base: Option<Value>,
    /// Content hash of each side's record as that side holds it after the last sync (its
    /// own form: a target may reformat what we write).
    pub hms_hash: Option<String>,
    pub external_hash: Option<String>,
    /// The latest version seen from each side, in that side's own clock.
    pub hms_version: Option<Value>,
    pub external_version: Option<Value>,
    /// Contents we wrote to each side lately, newest last.
    pub hms_written: Vec<String>,
    pub external_written: Vec<String>,
    /// The version last seen from a side is the stamp it put on our own write (not one of
    /// its own edits): an older change from that side was then overwritten by us.
    pub hms_version_ours: bool,
    pub external_version_ours: bool,
    /// The side holds a change that lost a conflict and was not overwritten yet (the side
    /// could not be read to write the winner back): its hash is that change's content, which
    /// was never synced, and the other side's next notification goes there even when it
    /// shows the content last synced (see [`Synced::lost`]).
    pub hms_lost: bool,
    pub external_lost: bool,
}

impl Kind {
    /// A change seen on its source, sent before or not.
    pub fn is_change(self) -> bool {
        matches!(self, Kind::Change | Kind::Resent)
    }
}

impl Synced {
    /// The content hash `side` holds as last synced; none while it holds a change that lost
    /// (that content was never synced: nothing compares equal to it).
    pub fn hash(&self, side: Side) -> Option<&str> {
        if self.lost(side) {
            return None;
        }
        match side {
            Side::Hms => self.hms_hash.as_deref(),
            Side::Legacy => self.external_hash.as_deref(),
        }
    }

    /// Does `side` hold a change that lost a conflict, not overwritten yet?
    pub fn lost(&self, side: Side) -> bool {
        match side {
            Side::Hms => self.hms_lost,
            Side::Legacy => self.external_lost,
        }
    }

    /// `side`'s hash and lost mark, which change together.
    fn hash_slots(&mut self, side: Side) -> (&mut Option<String>, &mut bool) {
        match side {
            Side::Hms => (&mut self.hms_hash, &mut self.hms_lost),
            Side::Legacy => (&mut self.external_hash, &mut self.external_lost),
        }
    }

    /// `side` holds content `hash` as synced (or nothing known): a lost change it held is
    /// overwritten.
    fn set_hash(&mut self, side: Side, hash: Option<String>) {
        let (slot, lost) = self.hash_slots(side);
        *slot = hash;
        *lost = false;
    }

    /// `side` holds its change of content `hash`, which lost a conflict: the winner is
    /// still to be written there.
    fn mark_lost(&mut self, side: Side, hash: String) {
        let (slot, lost) = self.hash_slots(side);
        *slot = Some(hash);
        *lost = true;
    }

    pub fn version(&self, side: Side) -> Option<&Value> {
        match side {
            Side::Hms => self.hms_version.as_ref(),
            Side::Legacy => self.external_version.as_ref(),
        }
    }

    fn version_mut(&mut self, side: Side) -> &mut Option<Value> {
        match side {
            Side::Hms => &mut self.hms_version,
            Side::Legacy => &mut self.external_version,
        }
    }

    pub fn written(&self, side: Side) -> &[String] {
        match side {
            Side::Hms => &self.hms_written,
            Side::Legacy => &self.external_written,
        }
    }

    /// Remembers a write of content `hash` to `side`, with the stamp the side put on it
    /// when its answer said (`hash@stamp`).
    fn remember_write(&mut self, side: Side, hash: String, stamp: Option<&Value>) {
        let list = match side {
            Side::Hms => &mut self.hms_written,
            Side::Legacy => &mut self.external_written,
        };
        list.retain(|h| h.split('@').next() != Some(hash.as_str()));
        list.push(match stamp {
            Some(v) => format!("{hash}@{}", scalar_text(v)),
            None => hash,
        });
        if list.len() > WRITTEN_KEPT {
            list.remove(0);
        }
    }

    /// Did we write content `hash` to `side` lately? `Some(stamp)`: yes, with the stamp the
    /// side put on it, when known.
    pub fn written_stamp(&self, side: Side, hash: &str) -> Option<Option<&str>> {
        self.written(side).iter().find_map(|w| {
            let mut parts = w.splitn(2, '@');
            (parts.next() == Some(hash)).then(|| parts.next())
        })
    }

    /// Raises the version last seen from `side` to `v` (never lowers it), seen in one of
    /// the side's own changes.
    fn saw_version(&mut self, side: Side, v: Option<&Value>) {
        self.saw(side, v, false);
    }

    fn saw(&mut self, side: Side, v: Option<&Value>, ours: bool) {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            let slot = self.version_mut(side);
            if slot.as_ref().is_none_or(|old| compare_versions(v, old) == Ordering::Greater) {
                *slot = Some(v.clone());
                *self.ours_mut(side) = ours;
            }
        }
    }

    fn ours_mut(&mut self, side: Side) -> &mut bool {
        match side {
            Side::Hms => &mut self.hms_version_ours,
            Side::Legacy => &mut self.external_version_ours,
        }
    }

    /// Was the version last seen from `side` its stamp on our own write?
    pub fn version_is_ours(&self, side: Side) -> bool {
        match side {
            Side::Hms => self.hms_version_ours,
            Side::Legacy => self.external_version_ours,
        }
    }

    /// After our write of `sent` to `side` succeeded: the side's own form of it is `answer`
    /// when the write's answer carries the record (else what we sent), and both are our
    /// writes, so their echoes are recognised.
    pub fn observe_write(&mut self, rules: &Rules, side: Side, sent: &Value, answer: Option<&Value>) {
        let sent_hash = rules.content(sent);
        let answered = answer.filter(|a| rules.carries(a, sent));
        let own = answered.map_or_else(|| sent_hash.clone(), |a| rules.content(a));
        let stamp = answered.and_then(|a| rules.version(a));
        self.remember_write(side, sent_hash, stamp);
        self.remember_write(side, own.clone(), stamp);
        self.set_hash(side, Some(own));
        self.saw(side, answered.and_then(|a| rules.version(a)), true);
    }
}

/// What the decision needs of the connector: its resolver and mapping table.
pub struct Rules<'a> {
    pub resolve: &'a ResolveSpec,
    pub table: &'a [(String, String)],
}

impl Rules<'_> {
    /// The comparable content of a record (HMS fields): its mapped fields without the
    /// version, hashed.
    pub fn content(&self, record: &Value) -> String {
        content(record, self.table, &self.resolve.version_field)
    }

    /// The record's mapped fields in HMS names, without the version.
    pub fn project(&self, record: &Value) -> Value {
        let mut r = record.clone();
        if let Value::Object(m) = &mut r {
            m.remove(&self.resolve.version_field);
        }
        if self.table.is_empty() { r } else { fields::map_in(&fields::map_out(&r, self.table), self.table) }
    }

    fn version<'v>(&self, record: &'v Value) -> Option<&'v Value> {
        fields::get_path(record, &self.resolve.version_field).filter(|v| !v.is_null())
    }

    /// Does a write's answer carry the record (every field we sent), rather than a status?
    fn carries(&self, answer: &Value, sent: &Value) -> bool {
        let (Value::Object(a), Value::Object(s)) = (self.project(answer), self.project(sent)) else { return false };
        !s.is_empty() && s.keys().all(|k| a.contains_key(k))
    }
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Write `record` (HMS fields) to side `to` (a create when that side has no such
    /// record); once it succeeds, save `link` (after [`Synced::observe_write`]).
    /// `then_back`: a merged record that the other side must get too (a follow-up job of
    /// kind [`Kind::Merged`]).
    Apply { to: Side, record: Value, link: Synced, why: String, then_back: Option<Value>, write: Write },
    /// Delete the record on side `to`; then save `link` (a tombstone).
    Delete { to: Side, link: Synced, why: String },
    /// The target already holds this content although the link did not say so (our write
    /// landed before a crash, or both sides were edited alike): the job is done, the link
    /// saved. Ticketed `completed`.
    AlreadyThere { link: Synced, why: String },
    /// Nothing to write (ticket `skipped` with `reason`); `link`, when set, is saved.
    Skip { reason: String, link: Option<Synced> },
    /// Both sides changed and a human decides (ticket `conflict`, job parked).
    Conflict { reason: String },
}

fn skip(reason: impl Into<String>) -> Verdict {
    Verdict::Skip { reason: reason.into(), link: None }
}

pub fn side_name(s: Side) -> &'static str {
    match s {
        Side::Hms => "HMS",
        Side::Legacy => "the external system",
    }
}

pub fn other(s: Side) -> Side {
    match s {
        Side::Hms => Side::Legacy,
        Side::Legacy => Side::Hms,
    }
}

/// The comparable content of a record (HMS fields): its external form without the version.
pub fn content(record: &Value, table: &[(String, String)], version_field: &str) -> String {
    let mut r = record.clone();
    if let Value::Object(m) = &mut r {
        m.remove(version_field);
    }
    let external = if table.is_empty() { r } else { fields::map_out(&r, table) };
    content_hash(&external)
}

/// Orders two versions: numbers by value, RFC 3339 times as instants (`…:00.5Z` is after
/// `…:00Z`, `+01:00` offsets are honoured), anything else by text.
pub fn compare_versions(a: &Value, b: &Value) -> Ordering {
    if let (Some(x), Some(y)) = (as_number(a), as_number(b)) {
        return x.total_cmp(&y);
    }
    let (ta, tb) = (scalar_text(a), scalar_text(b));
    match (chrono::DateTime::parse_from_rfc3339(&ta), chrono::DateTime::parse_from_rfc3339(&tb)) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => ta.cmp(&tb),
    }
}

fn as_number(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse::<f64>().ok()).filter(|f| f.is_finite()))
}

/// Steps 1 and 2 of [`decide`] for a change seen on its source: superseded, an echo, or
/// stale (and, without a read, an edit we overwrote: a conflict). `None`: a new change.
#[allow(clippy::too_many_arguments)]
fn already_seen(rules: &Rules, link: Option<&Synced>, source: Side, record: &Value, c: &str, v: Option<&Value>, base_hash: Option<&str>, source_now: &Current, target_now: &Current, resent: bool) -> Option<Verdict> {
    match source_now {
        Current::Present(now) if rules.content(now) != c => {
            // Sent before, and the target holds this superseded content: that attempt
            // landed there, its outcome lost in a restart. Linked now, so the source's newer
            // change finds the target unchanged instead of "changed" by our own write. (Never
            // sent: the target holding it is someone's edit, which brings itself.)
            if resent
                && let Current::Present(t) = target_now
                && rules.content(t) == c
            {
                let target = other(source);
                let l = linked_to_our_write(rules, link, target, record, c, rules.version(t));
                return Some(Verdict::Skip { reason: format!("superseded: {} no longer holds this content (it reached {} before a restart: linked)", side_name(source), side_name(target)), link: Some(l) });
            }
            return Some(skip(format!("superseded: {} no longer holds this content", side_name(source))));
        }
        Current::Absent => return Some(skip(format!("superseded: {} no longer has this record", side_name(source)))),
        _ => {}
    }
    if let Some(l) = link {
        // (Unless the other side holds a change that lost to this side's state, unread: then
        // this state, even unchanged, goes there.)
        if !l.lost(other(source)) && (l.hash(source) == Some(c) || base_hash == Some(c)) {
            let mut seen = l.clone();
            seen.saw_version(source, v);
            let link = (seen != *l).then_some(seen);
            return Some(Verdict::Skip { reason: format!("echo: {} holds the content last synced", side_name(source)), link });
        }
        if *source_now == Current::Unknown {
            if let Some(stamp) = l.written_stamp(source, c) {
                // The content of a write of ours. Its stamp known: this notification is that
                // write (same stamp), an older state (older), or a new edit that happens to
                // restore it, a revert (newer), which is a change like any other.
                let revert = match (stamp, v) {
                    (Some(stamp), Some(v)) => {
                        if compare_versions(v, &Value::String(stamp.to_string())) != Ordering::Greater {
                            return Some(skip(format!("echo: an earlier write of ours to {}", side_name(source))));
                        }
                        true
                    }
                    _ => false,
                };
                // Its stamp unknown, and reported with a stamp newer than anything seen
                // from the source: the source holds that write now, over the edit we last
                // saw from it, which was overwritten. Never silent: a conflict. (A revert to
                // it looks the same: a person settles it.)
                let newer = match (v, l.version(source)) {
                    (Some(v), Some(seen)) => compare_versions(v, seen) == Ordering::Greater && !l.version_is_ours(source),
                    _ => false,
                };
                if newer && !revert {
                    return Some(Verdict::Conflict {
                        reason: format!(
                            "{CONFLICT}{} holds an earlier write of ours (stamped {}) over its later edit: that edit was overwritten; resolve it: POST /parked/{{id}}/resolve",
                            side_name(source),
                            shown(&v.cloned())
                        ),
                    });
                }
                if !revert {
                    return Some(skip(format!("echo: an earlier write of ours to {}", side_name(source))));
                }
                // A revert, unless it is itself a late notification (the stale test below).
            }
            if let (Some(v), Some(seen)) = (v, l.version(source))
                && compare_versions(v, seen) == Ordering::Less
            {
                // Older than our own later write there: that write overwrote this edit
                // (no read could show the edit in time). Never silent: a conflict, parked
                // with both records, which a person can still apply.
                if l.version_is_ours(source) {
                    return Some(Verdict::Conflict {
                        reason: format!(
                            "{CONFLICT}this edit on {} ({}) was overwritten by a sync written there later ({}); resolve it: POST /parked/{{id}}/resolve",
                            side_name(source),
                            scalar_text(v),
                            scalar_text(seen)
                        ),
                    });
                }
                return Some(skip(format!("stale: older than the version last seen from {} ({})", side_name(source), scalar_text(seen))));
            }
        }
    }
    None
}

/// The link once our write of content `c` (the record `base`) landed on side `to`, stamped
/// `stamp` there, both sides holding that content: its echo and the stamp are known as ours.
fn linked_to_our_write(rules: &Rules, link: Option<&Synced>, to: Side, base: &Value, c: &str, stamp: Option<&Value>) -> Synced {
    let mut l = link.cloned().unwrap_or_default();
    l.base = Some(rules.project(base));
    l.set_hash(Side::Hms, Some(c.to_string()));
    l.set_hash(Side::Legacy, Some(c.to_string()));
    l.remember_write(to, c.to_string(), stamp);
    l.saw(to, stamp, true);
    l
}

/// A job sent before whose outcome was not stored (a restart, a refused commit), and whose
/// write (`written`) its side holds now: that write landed, and the job is done: the link
/// to save, and why (`None`: it did not land, or it cannot be told; the job is decided
/// again). The record is linked as the write would have linked it. Both sides held its
/// content when it was decided (it was the change, or the other side's record that won),
/// so both are linked to that content: a change made on either side since then is a
/// change against the link, and comes with its own job.
///
/// Without this a lost conflict's write-back looked, after the restart, like an edit on
/// that side: the newer change of the other side then lost to our own write, and was
/// overwritten with it.
pub fn landed(rules: &Rules, link: Option<&Synced>, written: &Written, source: Side, source_now: &Current, target_now: &Current) -> Option<(Synced, String)> {
    let now = if written.to == source { source_now } else { target_now };
    let Current::Present(held) = now else { return None };
    if rules.content(held) != written.content {
        return None;
    }
    let mut l = linked_to_our_write(rules, link, written.to, held, &written.content, rules.version(held));
    // The other side's stamp too, when it still holds that content (its own edit's stamp).
    let (o, o_now) = if written.to == source { (other(source), target_now) } else { (source, source_now) };
    if let Current::Present(r) = o_now
        && rules.content(r) == written.content
    {
        l.saw_version(o, rules.version(r));
    }
    Some((l, format!("{} already holds what we wrote to it (a write whose outcome was not stored: a restart, or a failed commit)", side_name(written.to))))
}

/// Decides a change of one record from `source` (the other side is the target).
///
/// The order:
/// 1. A notification its source has since moved past is superseded (when the source can be
///    read): the source's newer state comes with its own notification.
/// 2. An echo: the content last synced on the source, or one of our recent writes there
///    (that last test only when the source cannot be read: a read proves the content real).
///    A change older than the source's version last seen is stale (a late webhook), again
///    only without a read of the source.
/// 3. The target already holds this content: done (linking it, ticket `completed` when the
///    link did not know it: our write landed before a crash).
/// 4. The target has not changed since the last sync: apply, whatever the versions say.
/// 5. Both changed: the policy (last writer by version, a side, merge, owners, manual).
pub fn decide(rules: &Rules, link: Option<&Synced>, source: Side, record: &Value, kind: Kind, source_now: &Current, target_now: &Current, rule: Option<usize>) -> Verdict {
    let target = other(source);
    let c = rules.content(record);
    let v = rules.version(record).cloned();
    let base_hash = link.and_then(|l| l.base.as_ref()).filter(|b| !b.is_null()).map(|b| rules.content(b));
    if kind.is_change()
        && let Some(settled) = already_seen(rules, link, source, record, &c, v.as_ref(), base_hash.as_deref(), source_now, target_now, kind == Kind::Resent)
    {
        return settled;
    }
    let (t_hash, t_version) = match target_now {
        Current::Present(t) => (Some(rules.content(t)), rules.version(t).cloned()),
        Current::Absent => (None, None),
        Current::Unknown => (link.and_then(|l| l.hash(target).map(str::to_string)), None),
    };
    // What the link becomes once the target holds the record and the source `source_holds`.
    // Each side's version is only ever compared with that side's own stamps.
    let after = |source_holds: &Value, base: &Value| {
        let mut l = link.cloned().unwrap_or_default();
        l.base = Some(rules.project(base));
        l.set_hash(source, Some(rules.content(source_holds)));
        if let Current::Present(s) = source_now {
            l.saw_version(source, rules.version(s));
        } else if kind.is_change() {
            l.saw_version(source, rules.version(record));
        }
        if let Current::Present(t) = target_now {
            l.saw_version(target, rules.version(t));
        }
        l
    };
    if t_hash.as_deref() == Some(c.as_str()) {
        let mut l = after(record, record);
        l.set_hash(target, t_hash.clone());
        let known = link.is_some_and(|l| l.hash(target) == Some(c.as_str()) && base_hash.as_deref() == Some(c.as_str()));
        // Unlinked, it is a record found by its natural key (nothing to write), unless this
        // job was sent before: then it is our create that landed before a restart.
        return if known || (link.is_none() && kind != Kind::Resent) {
            Verdict::Skip { reason: format!("no change: {} already has this content", side_name(target)), link: Some(l) }
        } else {
            Verdict::AlreadyThere { link: l, why: format!("{} already holds this content (a write of ours that landed before a restart, or the same edit on both sides)", side_name(target)) }
        };
    }
    let write = if *target_now == Current::Absent { Write::Create } else { Write::Update };
    let apply = |record: Value, why: String| {
        let link = after(&record, &record);
        Verdict::Apply { to: target, record, link, why, then_back: None, write }
    };
    if kind == Kind::Forced {
        return apply(record.clone(), "chosen by an operator".into());
    }
    // The target's record when it changed since the last sync (only a read one can show it;
    // never synced, both sides holding it differently, counts as changed).
    let changed = match (link, target_now) {
        (None, Current::Present(t)) => Some(t),
        (Some(l), Current::Present(t)) if t_hash.as_deref() != l.hash(target) && t_hash != base_hash => Some(t),
        _ => None,
    };
    let Some(current) = changed else {
        return apply(record.clone(), format!("{} has not changed since the last sync", side_name(target)));
    };
    // The source's own stamp of this content: a late notification carries an old stamp,
    // but a read shows the source holding the same content as of now.
    let v = match source_now {
        Current::Present(now) => rules.version(now).cloned().or(v),
        _ => v,
    };
    // Both sides changed. The target's version, when it wins, goes back to the source;
    // writing it there is safe only when the source was read (else the source's own
    // notification of a newer edit could be overwritten): without a read the target's own
    // notification brings it.
    let take = |why: String| -> Verdict {
        if let Current::Present(_) = source_now {
            let mut l = after(current, current);
            l.set_hash(target, t_hash.clone());
            Verdict::Apply { to: source, record: current.clone(), link: l, why, then_back: None, write: Write::Update }
        } else {
            // The link remembers that the source holds a change that lost: the target's next
            // notification goes there even when it shows the content last synced.
            let mut l = link.cloned().unwrap_or_default();
            l.mark_lost(source, c.clone());
            Verdict::Skip { reason: format!("{why}; its own change brings it here"), link: Some(l) }
        }
    };
    let later = match (&v, &t_version) {
        (Some(a), Some(b)) => compare_versions(a, b),
        _ => Ordering::Equal,
    };
    let lww = || match later {
        Ordering::Greater => apply(record.clone(), format!("conflict won (last-writer-wins): {} {} is newer than {}", side_name(source), shown(&v), shown(&t_version))),
        Ordering::Less => take(format!("conflict lost (last-writer-wins): {} has a newer version ({})", side_name(target), shown(&t_version))),
        // Equal stamps: the change seen later wins, and the target's state was seen now.
        Ordering::Equal => take(format!("conflict tie (last-writer-wins): equal versions ({}); {} was seen later", shown(&v), side_name(target))),
    };
    // A resolver rule that holds decides instead of the policy, and says so.
    let (policy, by_rule) = match rule.and_then(|i| rules.resolve.rules.get(i).map(|r| (i, r))) {
        Some((i, r)) => (r.then, format!("rule {} ({}): ", i + 1, r.when)),
        None => (rules.resolve.policy, String::new()),
    };
    let verdict = decide_conflict(rules, policy, link, source, record, current, &t_hash, &c, later, &after, &apply, &take, &lww);
    match verdict {
        Verdict::Apply { to, record, link, why, then_back, write } => Verdict::Apply { to, record, link, why: format!("{by_rule}{why}"), then_back, write },
        Verdict::Skip { reason, link } => Verdict::Skip { reason: format!("{by_rule}{reason}"), link },
        Verdict::Conflict { reason } if !by_rule.is_empty() => Verdict::Conflict { reason: format!("{CONFLICT}{by_rule}{}", reason.trim_start_matches(CONFLICT)) },
        other => other,
    }
}

/// Both sides changed: what `policy` makes of it.
#[allow(clippy::too_many_arguments)]
fn decide_conflict(
    rules: &Rules,
    policy: Policy,
    link: Option<&Synced>,
    source: Side,
    record: &Value,
    current: &Value,
    t_hash: &Option<String>,
    c: &str,
    later: Ordering,
    after: &dyn Fn(&Value, &Value) -> Synced,
    apply: &dyn Fn(Value, String) -> Verdict,
    take: &dyn Fn(String) -> Verdict,
    lww: &dyn Fn() -> Verdict,
) -> Verdict {
    let target = other(source);
    match policy {
        Policy::LastWriterWins => lww(),
        Policy::HmsWins | Policy::LegacyWins => {
            let winner = if policy == Policy::HmsWins { Side::Hms } else { Side::Legacy };
            let name = if winner == Side::Hms { "hms-wins" } else { "legacy-wins" };
            if winner == source { apply(record.clone(), format!("conflict: {name}")) } else { take(format!("{name}: {} changed this record too", side_name(target))) }
        }
        Policy::Manual => Verdict::Conflict { reason: format!("{CONFLICT}both sides changed this record since the last sync; resolve it: POST /parked/{{id}}/resolve") },
        Policy::Merge | Policy::Fields => {
            let base = link.and_then(|l| l.base.as_ref());
            let merged = match merge3(rules, base, record, current, source, later) {
                Ok(m) => m,
                Err(fields) => return Verdict::Conflict { reason: format!("{CONFLICT}both sides changed {} since the last sync; resolve it: POST /parked/{{id}}/resolve", fields.join(", ")) },
            };
            let m_hash = rules.content(&merged);
            if m_hash == c {
                return apply(record.clone(), "merged: every change of the target was already here".into());
            }
            if Some(&m_hash) == t_hash.as_ref() {
                return take("merged: the target already holds every change".into());
            }
            // The merged record goes to the target now and to the source next; until then the
            // source holds `record`, which is the base its next edit starts from.
            Verdict::Apply { to: target, record: merged.clone(), link: after(record, record), why: "merged field by field".into(), then_back: Some(merged), write: Write::Update }
        }
    }
}

/// Decides a change that deletes record from `source` (its `record` is what the
/// notification carried). A delete applies where the target has not changed since the
/// last sync; against an edit made since, the edit wins (nothing entered by a person is
/// lost): it is written back to the side that deleted, when that side was read, else its
/// own notification brings it; under `manual` a person decides.
pub fn decide_delete(rules: &Rules, link: Option<&Synced>, source: Side, record: &Value, source_now: &Current, target_now: &Current) -> Verdict {
    let target = other(source);
    if let Current::Present(_) = source_now {
        return skip(format!("superseded: {} has this record again", side_name(source)));
    }
    let tombstone = |l: Option<&Synced>| {
        let mut t = l.cloned().unwrap_or_default();
        t.base = Some(Value::Null);
        t.set_hash(Side::Hms, None);
        t.set_hash(Side::Legacy, None);
        t
    };
    if link.is_some_and(|l| l.base == Some(Value::Null)) {
        return skip(format!("echo: the record is already deleted on both sides"));
    }
    let current = match target_now {
        Current::Absent => {
            return Verdict::Skip { reason: format!("no change: {} has no such record", side_name(target)), link: Some(tombstone(link)) };
        }
        Current::Unknown => return Verdict::Delete { to: target, link: tombstone(link), why: format!("deleted on {}", side_name(source)) },
        Current::Present(c) => c,
    };
    let t_hash = rules.content(current);
    let base_hash = link.and_then(|l| l.base.as_ref()).filter(|b| !b.is_null()).map(|b| rules.content(b));
    let unchanged = link.is_some_and(|l| l.hash(target) == Some(t_hash.as_str()) || base_hash.as_deref() == Some(t_hash.as_str()));
    if unchanged {
        return Verdict::Delete { to: target, link: tombstone(link), why: format!("deleted on {}; {} had not changed since the last sync", side_name(source), side_name(target)) };
    }
    let _ = record;
    if rules.resolve.policy == Policy::Manual {
        return Verdict::Conflict { reason: format!("{CONFLICT}{} deleted this record and {} changed it since the last sync; resolve it: POST /parked/{{id}}/resolve", side_name(source), side_name(target)) };
    }
    let why = format!("delete lost to an edit: {} changed this record since the last sync", side_name(target));
    if *source_now == Current::Absent {
        let mut l = link.cloned().unwrap_or_default();
        l.base = Some(rules.project(current));
        l.set_hash(target, Some(t_hash));
        l.saw_version(target, rules.version(current));
        Verdict::Apply { to: source, record: current.clone(), link: l, why: format!("{why}; written back to {}", side_name(source)), then_back: None, write: Write::Create }
    } else {
        skip(format!("{why}; its own change brings it back"))
    }
}

fn shown(v: &Option<Value>) -> String {
    v.as_ref().map_or_else(|| "(none)".to_string(), scalar_text)
}

/// Three-way merge of the source's `record` and the target's `current` over `base` (the
/// record last synced), field by field over the mapped fields: a field changed on one side
/// takes that side's value; one changed on both goes to its owner, else to the rule
/// (`last-writer`: the newer record by `later`, ties to the target, seen later; `manual`:
/// `Err` with the fields). Unmapped fields of `record` are kept; the version is the newer.
fn merge3(rules: &Rules, base: Option<&Value>, record: &Value, current: &Value, source: Side, later: Ordering) -> Result<Value, Vec<String>> {
    let (Value::Object(ours), Value::Object(theirs)) = (rules.project(record), rules.project(current)) else {
        return Err(vec!["the record (not an object)".into()]);
    };
    let empty = Map::new();
    let base = match base.map(|b| rules.project(b)) {
        Some(Value::Object(b)) => b,
        _ => empty,
    };
    let mut out = match record {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let mut both = Vec::new();
    let keys: std::collections::BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
    for k in keys {
        let (x, y, b) = (ours.get(k), theirs.get(k), base.get(k));
        let pick_theirs = if x == y || y == b {
            false
        } else if x == b {
            true
        } else {
            match rules.resolve.owners.iter().find(|(f, _)| f == k).map(|(_, s)| *s) {
                Some(owner) => owner != source,
                None if rules.resolve.conflicts == FieldRule::Manual => {
                    both.push(k.clone());
                    false
                }
                None => later != Ordering::Greater,
            }
        };
        if pick_theirs {
            match y {
                Some(y) => fields::set_path(&mut out, k, y.clone()),
                None => {
                    out.remove(k.as_str());
                }
            }
        }
    }
    if !both.is_empty() {
        return Err(both);
    }
    let vf = &rules.resolve.version_field;
    let newer = match (fields::get_path(record, vf), fields::get_path(current, vf)) {
        (Some(a), Some(b)) if !b.is_null() && (a.is_null() || compare_versions(b, a) == Ordering::Greater) => Some(b.clone()),
        _ => None,
    };
    if let Some(v) = newer {
        fields::set_path(&mut out, vf, v);
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests;
