//! A job's record as it travels from the route to the request: its JSON value and its JSON
//! text, made once.
//!
//! An outbound event's record was serialized twice: for the job's row and again for the
//! request's body when the body is the record as it is (the common case: no body template,
//! no mapping table). Both are the same compact text (`serde_json::to_string`), so the
//! record keeps the first one made, and the second use copies it.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

/// A record (an event's payload, a job's) with its compact JSON text, made at the first
/// [`Payload::text`] and kept. Reads as its [`Value`] (`Deref`); compares, prints and
/// serializes as it.
#[derive(Clone)]
pub struct Payload {
    value: Value,
    text: OnceLock<String>,
}

impl Payload {
    pub fn new(value: Value) -> Self {
        Self { value, text: OnceLock::new() }
    }

    /// `value` as a payload to share (the jobs of one event, the job and its request's body).
    pub fn shared(value: Value) -> Arc<Self> {
        Arc::new(Self::new(value))
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The compact JSON text of the value (as `serde_json::to_string` writes it), made at the
    /// first call and kept.
    pub fn text(&self) -> &str {
        // Serializing a `Value` cannot fail (its map keys are strings).
        self.text.get_or_init(|| serde_json::to_string(&self.value).unwrap_or_default())
    }
}

impl Deref for Payload {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.value
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Eq for Payload {}

impl PartialEq<Value> for Payload {
    fn eq(&self, other: &Value) -> bool {
        self.value == *other
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value.fmt(f)
    }
}

impl serde::Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::Payload;
    use serde_json::json;

    /// The text is the value's compact JSON, the same made first or kept; the payload reads,
    /// compares and serializes as its value.
    #[test]
    fn a_payload_is_its_value_with_its_text_made_once() {
        let value = json!({"b": [1, 2.5, null], "a": "x\"y", "n": {"z": true}});
        let p = Payload::new(value.clone());
        let text = serde_json::to_string(&value).unwrap();
        assert_eq!(p.text(), text);
        assert!(std::ptr::eq(p.text(), p.text()), "made once, then kept");
        assert_eq!(p.clone().text(), text);
        assert_eq!(*p, value);
        assert_eq!(p, value);
        assert_eq!(p, Payload::new(value.clone()));
        assert_eq!(serde_json::to_value(&p).unwrap(), value);
        assert_eq!(format!("{p:?}"), format!("{value:?}"));
        assert_eq!(p["a"], "x\"y");
    }
}
