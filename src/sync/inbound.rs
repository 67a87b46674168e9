//! Turning an external record (pulled or pushed by webhook) into a durable inbound job: the
//! mapping table read right to left, the record key in HMS terms, and an id that makes the
//! same change arriving twice a no-op.

use serde_json::Value;

use crate::actors::shared::ConnectorShared;
use crate::mapping::fields;
use crate::storage::NewDelivery;

/// The topic of jobs that carry a change from the outside into HMS.
pub const INBOUND_TOPIC: &str = "inbound";

/// A scalar as text (`"72"` for 72, the string itself for a string, empty for null).
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `s` with NUL characters replaced: PostgreSQL refuses them in text columns, and one bad
/// id must not fail the batch it is stored in.
pub fn no_nul(s: String) -> String {
    if s.contains('\0') { s.replace('\0', "\u{fffd}") } else { s }
}

/// A short content hash of a JSON value (keys sorted, as serde_json writes them).
pub fn content_hash(v: &Value) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(v.to_string().as_bytes())[..12])
}

/// The job for one external record. `origin` names where it came from (`pull`, `webhook`),
/// `change_id` is the sender's id for the change when it has one (a webhook id); otherwise
/// the record's id and version (or content) identify the change.
pub fn inbound_job(shared: &ConnectorShared, record: &Value, id_field: Option<&str>, version: Option<&Value>, origin: &str, change_id: Option<&str>) -> NewDelivery {
    let table = shared.spec.mapping_pairs();
    let payload = if table.is_empty() { record.clone() } else { fields::map_in(record, &table) };
    let external_id = no_nul(id_field.and_then(|f| fields::get_path(record, f)).map(scalar_text).unwrap_or_default());
    // Without a version from the feed, the record's own version field (in HMS names) tells
    // changes apart: A -> B -> A is three changes, not a replay of the first.
    let own_version = shared.spec.resolve.as_ref().and_then(|r| fields::get_path(&payload, &r.version_field)).filter(|v| !v.is_null()).cloned();
    let version = version.filter(|v| !v.is_null()).cloned().or(own_version);
    // In HMS terms when the connector has a key template, so both directions of one record
    // share a key (and so its order and its lock); else the external id.
    let record_key = no_nul(shared.compiled.record_key(&payload, &external_id).unwrap_or_else(|_| external_id.clone()));
    let event_id = no_nul(match (change_id, version) {
        (Some(id), _) => format!("{origin}:{id}"),
        (None, Some(v)) => format!("{origin}:{external_id}:{}", scalar_text(&v)),
        (None, None) => format!("{origin}:{external_id}:#{}", content_hash(record)),
    });
    NewDelivery { connector_id: shared.id().to_string(), event_id, topic: INBOUND_TOPIC.into(), record_key, payload }
}
