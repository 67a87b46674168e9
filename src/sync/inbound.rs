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
    let external_id = id_field.and_then(|f| fields::get_path(record, f)).map(scalar_text).unwrap_or_default();
    // In HMS terms when the connector has a key template, so both directions of one record
    // share a key (and so its order and its lock); else the external id.
    let record_key = shared.compiled.record_key(&payload, &external_id).unwrap_or_else(|_| external_id.clone());
    let event_id = match (change_id, version.filter(|v| !v.is_null())) {
        (Some(id), _) => format!("{origin}:{id}"),
        (None, Some(v)) => format!("{origin}:{external_id}:{}", scalar_text(v)),
        (None, None) => format!("{origin}:{external_id}:#{}", content_hash(record)),
    };
    NewDelivery { connector_id: shared.id().to_string(), event_id, topic: INBOUND_TOPIC.into(), record_key, payload }
}
