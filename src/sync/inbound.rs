//! The pure pieces of inbound changes and record comparison: scalars as text, content
//! hashes, and the topic of jobs that carry a change into HMS.

use serde_json::Value;

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
