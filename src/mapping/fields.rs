//! Mapping tables (HMS field ↔ external field) applied to JSON records, both ways.

use serde_json::{Map, Value};

/// Reads a dotted path (`a.b.c`) out of a JSON value.
pub fn get_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, part| v.get(part))
}

/// Writes `new` at a dotted path, creating objects on the way.
pub fn set_path(target: &mut Map<String, Value>, path: &str, new: Value) {
    let mut parts = path.split('.').peekable();
    let mut current = target;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            current.insert(part.to_string(), new);
            return;
        }
        let slot = current.entry(part.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else { return };
        current = next;
    }
}

/// HMS record → external record: each mapped field renamed; unmapped fields are dropped,
/// because the external system should only see what the table allows.
pub fn map_out(record: &Value, table: &[(String, String)]) -> Value {
    rename(record, table.iter().map(|(h, e)| (h.as_str(), e.as_str())))
}

/// External record → HMS record: the same table read right to left.
pub fn map_in(record: &Value, table: &[(String, String)]) -> Value {
    rename(record, table.iter().map(|(h, e)| (e.as_str(), h.as_str())))
}

fn rename<'a>(record: &Value, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let mut out = Map::new();
    for (from, to) in pairs {
        if let Some(v) = get_path(record, from) {
            set_path(&mut out, to, v.clone());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> Vec<(String, String)> {
        [("id", "ShiftID"), ("startAt", "BeginTime"), ("crew.lead", "RangerName")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn maps_both_ways_and_drops_unmapped() {
        let hms = json!({"id": 72, "startAt": "08:00", "crew": {"lead": "Ana"}, "secret": 1});
        let lotus = map_out(&hms, &table());
        assert_eq!(lotus, json!({"ShiftID": 72, "BeginTime": "08:00", "RangerName": "Ana"}));
        assert_eq!(map_in(&lotus, &table()), json!({"id": 72, "startAt": "08:00", "crew": {"lead": "Ana"}}));
    }
}
