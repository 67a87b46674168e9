//! The render context of one record, read by minijinja as a template asks for it: a field
//! becomes a minijinja value when a template looks it up, not every field ahead of every
//! render.
//!
//! A request's context holds the record's fields, the whole record as `event` and the
//! secrets as `__secrets`. Converting a whole record into minijinja values (twice: its fields
//! and `event`) cost more than the render of a URL such as `…/events/{{ n }}` that reads one
//! field. The context shares the record (an `Arc`) instead of copying it, and answers as the
//! map it replaces would: the same keys in the same (sorted) order, the same values.

use std::collections::BTreeSet;
use std::sync::Arc;

use minijinja::Value as JValue;
use minijinja::value::{Enumerator, Object, ObjectRepr};

use super::Payload;

/// The context of a render: the record's fields at the top, `event` (the whole record) and
/// `__secrets` (which win over fields of those names, as they did in the map).
#[derive(Debug)]
pub(crate) struct RecordContext {
    record: Arc<Payload>,
    secrets: JValue,
}

impl RecordContext {
    /// The context of `record` with `secrets` (already a minijinja value: they are few).
    pub(crate) fn value(record: Arc<Payload>, secrets: JValue) -> JValue {
        JValue::from_object(Self { record, secrets })
    }
}

impl Object for RecordContext {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<JValue> {
        match key {
            "__secrets" => Some(self.secrets.clone()),
            "event" => Some(record_value(&self.record)),
            _ => self.record.as_object()?.get(key).map(JValue::from_serialize),
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut keys: BTreeSet<&str> = self.record.as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
        keys.extend(["__secrets", "event"]);
        Enumerator::Values(keys.into_iter().map(JValue::from).collect())
    }
}

/// `event`: the whole record, its fields converted as they are looked up when it is an
/// object (anything else is converted at once, as it is small or rare).
fn record_value(record: &Arc<Payload>) -> JValue {
    if record.is_object() { JValue::from_object(Record(Arc::clone(record))) } else { JValue::from_serialize(&**record) }
}

/// A JSON object as a minijinja map, its keys in the object's order.
#[derive(Debug)]
struct Record(Arc<Payload>);

impl Object for Record {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<JValue> {
        self.0.as_object()?.get(key).map(JValue::from_serialize)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.as_object().map(|m| m.keys().map(|k| JValue::from(k.as_str())).collect()).unwrap_or_default())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.as_object().map_or(0, serde_json::Map::len))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use minijinja::Environment;
    use serde_json::{Value, json};

    use super::*;

    /// The context a render saw before: every field and `event` converted up front.
    fn eager(record: &Value, secrets: &BTreeMap<String, String>) -> JValue {
        let mut ctx: BTreeMap<String, JValue> = match record {
            Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), JValue::from_serialize(v))).collect(),
            _ => BTreeMap::new(),
        };
        ctx.insert("__secrets".into(), JValue::from_serialize(secrets));
        ctx.insert("event".into(), JValue::from_serialize(record));
        JValue::from(ctx)
    }

    /// Every template renders the same text (or fails the same way) over the lazy context
    /// as over the map it replaces: lookups, missing fields, iteration, length, `tojson`,
    /// printing a whole object, tests and comparisons.
    #[test]
    fn renders_as_the_eager_map_did() {
        let records = [
            json!({ "n": 42, "s": "RW-1", "f": 1.5, "o": { "id": "x", "deep": [1, { "k": null }] }, "b": true, "z": null, "a": [1, "two"], "event": "own", "big": 18446744073709551615u64, "neg": -7 }),
            json!({}),
            json!([1, 2]),
            json!("text"),
        ];
        let secrets: BTreeMap<String, String> = [("TOKEN".to_string(), "s3cret".to_string())].into();
        let templates = [
            "{{ n }}", "{{ s }}/{{ f }}", "{{ o.id }}", "{{ o['id'] }}", "{{ o.deep[1].k }}", "{{ b }}", "{{ z }}", "{{ a }}", "{{ a | length }}",
            "{{ event }}", "{{ event.n }}", "{{ event['s'] }}", "{{ event | length }}", "{{ event | tojson }}", "{{ event.o | tojson }}",
            "{% for k, v in event | items %}{{ k }}={{ v }};{% endfor %}", "{% for k in event %}{{ k }},{% endfor %}",
            "{{ __secrets.TOKEN }}", "{{ missing }}", "{{ missing.x }}", "{{ event.missing }}", "{{ o.missing }}",
            "{{ event is mapping }}", "{{ o is mapping }}", "{{ event is defined }}", "{{ n is defined }}", "{{ event.n is defined }}",
            "{% if event %}y{% else %}n{% endif %}", "{% if o %}y{% endif %}", "{{ event == event }}", "{{ s | upper }}", "{{ big }}", "{{ neg * 2 }}",
            "{{ event.o.id ~ '-' ~ n }}", "{{ event | dictsort }}",
        ];
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (i, t) in templates.iter().enumerate() {
            env.add_template_owned(format!("t{i}"), t.to_string()).unwrap();
        }
        for record in &records {
            let lazy = RecordContext::value(Payload::shared(record.clone()), JValue::from_serialize(&secrets));
            let old = eager(record, &secrets);
            for (i, t) in templates.iter().enumerate() {
                let tmpl = env.get_template(&format!("t{i}")).unwrap();
                let (l, e) = (tmpl.render(lazy.clone()), tmpl.render(old.clone()));
                assert_eq!(l.as_ref().ok(), e.as_ref().ok(), "{t} over {record}");
                assert_eq!(l.map_err(|e| e.kind()).err(), e.map_err(|e| e.kind()).err(), "{t} over {record}");
            }
        }
    }
}
