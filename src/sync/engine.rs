//! The two-way decision for one change of one record, before it is applied to the other
//! side: is it our own echo, is it stale, does it conflict, and what exactly is applied.
//!
//! Every change is compared in one representation: the record in external fields (the
//! mapping table applied), without the version field, hashed. The link keeps the hash last
//! synced; a change whose hash equals it is an echo of our own write (or nothing new), so
//! nothing ping-pongs even when each system stamps its own `updatedAt` on our writes.
//! Both directions of a record share its key, so their jobs are serialised by the Pusher:
//! the decision and the link update never race.

use serde_json::{Map, Value};

use super::inbound::{content_hash, scalar_text};
use crate::actors::shared::ConnectorShared;
use crate::delivery::{Egress, Outcome, sender};
use crate::mapping::fields;
use crate::spec::model::{Policy, ResolveSpec, Side};
use crate::storage::{self, Db, Link, LinkUpdate};

/// How a conflict's reason (the parked job's last error) starts.
pub const CONFLICT: &str = "conflict: ";

/// What to do with the change.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Apply this record (in HMS fields) to the target side; then save `link`.
    Apply { record: Value, link: LinkUpdate },
    /// Nothing to do (ticket `skipped` with this reason).
    Skip(String),
    /// Both sides changed and the policy is `manual`: park it for a human (ticket `conflict`).
    Conflict(String),
    /// The target's current record could not be read; try again later.
    Retry(String),
}

/// The default resolver: last writer wins by `updatedAt`.
fn default_resolve() -> ResolveSpec {
    ResolveSpec { policy: Policy::LastWriterWins, version_field: "updatedAt".into(), owners: Vec::new(), fetch_hms: None, fetch_legacy: None }
}

fn side_name(s: Side) -> &'static str {
    match s {
        Side::Hms => "HMS",
        Side::Legacy => "the external system",
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

/// Orders two versions: numbers by value, anything else (RFC 3339 times) by text.
pub fn compare_versions(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => scalar_text(a).cmp(&scalar_text(b)),
    }
}

/// Decides for a change of record `key` from `source` (the other side is the target).
/// `forced`: an operator resolved a conflict in favour of this change; it is applied
/// unless the target already holds exactly this content.
///
/// The order matters:
/// 0. A notification the source has since moved past is superseded (when the source can
///    be read).
/// 1. What the target holds now: read it when the connector says how (`resolve.fetch`,
///    the seed's `lotus.get`), else assume what was last synced (the link).
/// 2. The target already has this content: nothing to do (this is also how our own echo
///    is recognised). Checked against the fresh read when there is one, so a real change
///    that happens to restore the last synced content is not mistaken for an echo.
/// 3. A change older than the version last synced is superseded (a late webhook).
/// 4. The policy.
#[allow(clippy::too_many_arguments)]
pub async fn decide(db: &Db, client: &awc::Client, egress: &Egress, shared: &ConnectorShared, key: &str, record: &Value, source: Side, forced: bool) -> Verdict {
    let resolve = shared.spec.resolve.clone().unwrap_or_else(default_resolve);
    let table = shared.spec.mapping_pairs();
    let target = if source == Side::Hms { Side::Legacy } else { Side::Hms };
    let h = content(record, &table, &resolve.version_field);
    let v = fields::get_path(record, &resolve.version_field).cloned().unwrap_or(Value::Null);
    let link = match storage::get_link(db, shared.id(), key).await {
        Ok(l) => l,
        Err(e) => return Verdict::Retry(format!("cannot read the record link: {e}")),
    };
    let synced_hash = link.as_ref().and_then(|l| l.hms_hash.clone());
    let synced_version = link.as_ref().and_then(|l| l.hms_version.clone()).map(parse_version);
    // A late or replayed notification: the source itself no longer holds this content
    // (its record moved on, possibly overwritten by our own sync). Checked when the source
    // can be read; an operator's forced choice is applied as given.
    if !forced {
        match fetch_current(client, egress, shared, source, record).await {
            Ok(Some(Some(now))) if content(&now, &table, &resolve.version_field) != h => {
                return Verdict::Skip(format!("superseded: {} no longer holds this content", side_name(source)));
            }
            Ok(Some(None)) => return Verdict::Skip(format!("superseded: {} no longer has this record", side_name(source))),
            Ok(_) => {}
            Err(e) => return Verdict::Retry(e),
        }
    }
    let current = match fetch_current(client, egress, shared, target, record).await {
        Ok(c) => c,
        Err(e) => return Verdict::Retry(e),
    };
    let fetched = matches!(current, Some(Some(_)));
    let (current_hash, current_version) = match &current {
        Some(Some(c)) => (Some(content(c, &table, &resolve.version_field)), fields::get_path(c, &resolve.version_field).cloned().filter(|v| !v.is_null())),
        Some(None) => (None, None),
        None => (synced_hash.clone(), synced_version.clone()),
    };
    // (Without a fresh read, a forced change is applied even when the link says the target
    // has it: the link speaks of the last sync, which the operator's choice may follow.)
    if current_hash.as_deref() == Some(h.as_str()) && !(forced && current.is_none()) {
        let why = if current.is_some() { "no change" } else { "echo" };
        return Verdict::Skip(format!("{why}: {} already has this content", side_name(target)));
    }
    let apply = |record: Value, hash: &str, version: &Value| Verdict::Apply { record, link: link_update(shared, key, link.as_ref(), hash, version) };
    if forced {
        return apply(record.clone(), &h, &v);
    }
    if let Some(sv) = &synced_version
        && !v.is_null()
        && compare_versions(&v, sv) == std::cmp::Ordering::Less
    {
        return Verdict::Skip(format!("stale: older than the version last synced ({})", scalar_text(sv)));
    }
    // Did the target change since the last sync? Only a fresh read can tell.
    let target_changed = fetched && link.is_some() && current_hash != synced_hash;
    match resolve.policy {
        Policy::LastWriterWins => match current_version {
            Some(cv) if !v.is_null() => match compare_versions(&v, &cv) {
                std::cmp::Ordering::Greater => apply(record.clone(), &h, &v),
                std::cmp::Ordering::Less => Verdict::Skip(format!("stale: {} has a newer version ({})", side_name(target), scalar_text(&cv))),
                std::cmp::Ordering::Equal => Verdict::Skip(format!("no-op: equal versions ({}) on both sides", scalar_text(&cv))),
            },
            _ => apply(record.clone(), &h, &v),
        },
        Policy::HmsWins if source == Side::Legacy && target_changed => Verdict::Skip("hms-wins: HMS changed this record too".into()),
        Policy::LegacyWins if source == Side::Hms && target_changed => Verdict::Skip("legacy-wins: the external system changed this record too".into()),
        Policy::HmsWins | Policy::LegacyWins => apply(record.clone(), &h, &v),
        Policy::Manual if target_changed => Verdict::Conflict(format!("{CONFLICT}both sides changed record {key} since the last sync; resolve it: POST /parked/{{id}}/resolve")),
        Policy::Manual => apply(record.clone(), &h, &v),
        Policy::Fields => {
            let current_record = current.clone().flatten();
            let Some(mut owned) = owned_fields(record, &resolve, source, current_record.as_ref()) else { return apply(record.clone(), &h, &v) };
            // The applied record carries the newer of the two versions: never wind it back.
            let version = match &current_version {
                Some(cv) if v.is_null() || compare_versions(cv, &v) == std::cmp::Ordering::Greater => cv.clone(),
                _ => v.clone(),
            };
            if let Value::Object(m) = &mut owned
                && !version.is_null()
            {
                m.insert(resolve.version_field.clone(), version.clone());
            }
            let owned_hash = content(&owned, &table, &resolve.version_field);
            if current_hash.as_deref() == Some(owned_hash.as_str()) {
                Verdict::Skip(format!("no change to fields owned by {}", side_name(source)))
            } else {
                apply(owned, &owned_hash, &version)
            }
        }
    }
}

/// The record to apply under per-field ownership: the source's values for the fields it
/// owns (and unlisted fields), the target's current values for fields the target owns.
fn owned_fields(record: &Value, resolve: &ResolveSpec, source: Side, current: Option<&Value>) -> Option<Value> {
    let Value::Object(incoming) = record else { return None };
    let mut out = match current {
        Some(Value::Object(c)) => c.clone(),
        _ => Map::new(),
    };
    for (k, v) in incoming {
        let owner = resolve.owners.iter().find(|(f, _)| f == k).map(|(_, s)| *s);
        if owner.is_none_or(|o| o == source) {
            out.insert(k.clone(), v.clone());
        }
    }
    Some(Value::Object(out))
}

fn parse_version(text: String) -> Value {
    text.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or(Value::String(text), Value::Number)
}

fn link_update(shared: &ConnectorShared, key: &str, link: Option<&Link>, hash: &str, version: &Value) -> LinkUpdate {
    LinkUpdate {
        connector_id: shared.id().to_string(),
        hms_id: key.to_string(),
        external_id: link.map_or_else(|| key.to_string(), |l| l.external_id.clone()),
        hash: hash.to_string(),
        version: (!version.is_null()).then(|| scalar_text(version)),
    }
}

/// `Ok(None)`: no fetch configured for `side`. `Ok(Some(None))`: the side has no such
/// record. `Ok(Some(Some(r)))`: its record, in HMS fields.
pub async fn fetch_current(client: &awc::Client, egress: &Egress, shared: &ConnectorShared, side: Side, record: &Value) -> Result<Option<Option<Value>>, String> {
    let resolve = shared.spec.resolve.as_ref();
    let spec_req = match side {
        Side::Hms => resolve.and_then(|r| r.fetch_hms.as_ref()),
        Side::Legacy => resolve.and_then(|r| r.fetch_legacy.as_ref()),
    };
    let Some(spec_req) = spec_req else { return Ok(None) };
    let secrets = egress.secrets(&spec_req.secret_names()).map_err(|e| e.to_string())?;
    let Some(req) = shared.compiled.render_fetch(side, record, &secrets).map_err(|e| e.to_string())? else { return Ok(None) };
    match sender::fetch_optional_json(client, &req, egress).await {
        Ok(None) => Ok(Some(None)),
        Ok(Some(found)) => {
            let table = shared.spec.mapping_pairs();
            let in_hms = if side == Side::Legacy && !table.is_empty() { fields::map_in(&found, &table) } else { found };
            Ok(Some(Some(in_hms)))
        }
        Err(Outcome::Retryable { error, .. } | Outcome::Permanent { error }) => Err(format!("cannot read {}'s current record: {error}", side_name(side))),
        Err(Outcome::Delivered { status }) => Err(format!("cannot read the current record: HTTP {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_ignores_the_version_and_unmapped_fields() {
        let table = vec![("id".to_string(), "ShiftID".to_string()), ("startAt".to_string(), "BeginTime".to_string())];
        let a = content(&json!({"id": 72, "startAt": "08:00", "updatedAt": 5, "x": 1}), &table, "updatedAt");
        let b = content(&json!({"id": 72, "startAt": "08:00", "updatedAt": 9}), &table, "updatedAt");
        let c = content(&json!({"id": 72, "startAt": "09:00", "updatedAt": 5}), &table, "updatedAt");
        assert_eq!(a, b, "a new timestamp alone is not a change");
        assert_ne!(a, c);
    }

    #[test]
    fn versions_compare_as_numbers_or_times() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions(&json!(10), &json!(9)), Greater);
        assert_eq!(compare_versions(&json!("2024-05-10T08:00:00Z"), &json!("2024-05-10T09:00:00Z")), Less);
        assert_eq!(compare_versions(&json!(3), &json!(3.0)), Equal);
    }

    #[test]
    fn field_ownership_keeps_the_owners_values() {
        let r = ResolveSpec {
            policy: Policy::Fields,
            version_field: "updatedAt".into(),
            owners: vec![("startAt".into(), Side::Hms), ("assignee".into(), Side::Legacy)],
            fetch_hms: None,
            fetch_legacy: None,
        };
        let incoming = json!({"id": 1, "startAt": "07:00", "assignee": "Bo"});
        let current = json!({"id": 1, "startAt": "08:00", "assignee": "Ana"});
        // From the external system: its assignee wins, HMS keeps its startAt.
        assert_eq!(owned_fields(&incoming, &r, Side::Legacy, Some(&current)), Some(json!({"id": 1, "startAt": "08:00", "assignee": "Bo"})));
        assert_eq!(owned_fields(&incoming, &r, Side::Hms, Some(&current)), Some(json!({"id": 1, "startAt": "07:00", "assignee": "Ana"})));
    }
}
