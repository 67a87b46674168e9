//! The JSONPath subset used to pick records out of a pulled response: `$`, `$.a.b`,
//! `$.a[0].b`, `$.items[*]`, and one `[*]` followed by a path within each item
//! (`$.results[*].doc`, CouchDB's `_changes` with its documents); spec validation checks
//! the syntax.

use serde_json::Value;

/// Selects a value; `None` when a step is missing.
pub fn select<'a>(root: &'a Value, selector: &str) -> Option<&'a Value> {
    let rest = selector.trim().strip_prefix('$')?;
    let mut current = root;
    for step in rest.split('.').filter(|s| !s.is_empty()) {
        let (name, indexes) = match step.find('[') {
            Some(i) => (&step[..i], &step[i..]),
            None => (step, ""),
        };
        if !name.is_empty() {
            current = current.get(name)?;
        }
        for idx in indexes.split('[').filter(|s| !s.is_empty()) {
            let idx = idx.strip_suffix(']')?;
            if idx == "*" {
                continue;
            }
            current = current.get(idx.parse::<usize>().ok()?)?;
        }
    }
    Some(current)
}

/// The records a selector designates: an array's items, or one object as one record.
/// With `[*].path`, that path within each item (items without it are left out).
pub fn records(root: &Value, selector: &str) -> Vec<Value> {
    if let Some((array, within)) = selector.split_once("[*].") {
        let Some(Value::Array(items)) = select(root, array) else { return Vec::new() };
        let path = format!("$.{within}");
        return items.iter().filter_map(|item| select(item, &path)).filter(|v| !v.is_null()).cloned().collect();
    }
    match select(root, selector) {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Null) | None => Vec::new(),
        Some(one) => vec![one.clone()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_paths() {
        let v = json!({"data": {"changes": [{"id": 1}, {"id": 2}]}, "next": "t2"});
        assert_eq!(records(&v, "$.data.changes").len(), 2);
        assert_eq!(select(&v, "$.data.changes[1].id"), Some(&json!(2)));
        assert_eq!(select(&v, "$.next"), Some(&json!("t2")));
        assert_eq!(records(&v, "$.missing"), Vec::<Value>::new());
        assert_eq!(records(&json!([1, 2, 3]), "$").len(), 3);
        let changes = json!({"results": [{"id": "a", "doc": {"_id": "a"}}, {"id": "b"}, {"id": "c", "doc": {"_id": "c", "_deleted": true}}]});
        assert_eq!(records(&changes, "$.results[*].doc"), vec![json!({"_id": "a"}), json!({"_id": "c", "_deleted": true})]);
    }
}
