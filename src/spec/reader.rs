//! Reading a marked YAML tree (saphyr keeps the line and column of every node) field by
//! field, collecting every error with its position instead of stopping at the first.
//! JSON documents go through the same parser: JSON is YAML's flow style.

use saphyr::{MarkedYaml, Scalar, YamlData};
use serde_json::{Map, Number, Value};

use super::error::SpecError;

/// The document being read and the errors found so far.
pub struct Cx {
    pub file: String,
    pub errors: Vec<SpecError>,
}

impl Cx {
    pub fn new(file: &str) -> Self {
        Self { file: file.to_string(), errors: Vec::new() }
    }

    /// Records an error at `node`.
    pub fn error(&mut self, node: &MarkedYaml, path: &str, message: impl Into<String>) {
        let (line, column) = position(node);
        self.error_at(line, column, path, message);
    }

    pub fn error_at(&mut self, line: usize, column: usize, path: &str, message: impl Into<String>) {
        self.errors.push(SpecError { file: self.file.clone(), line, column, path: path.to_string(), message: message.into() });
    }
}

/// 1-based line and column of a node.
pub fn position(node: &MarkedYaml) -> (usize, usize) {
    let m = node.span.start;
    (m.line().max(1), m.col() + 1)
}

/// `a` + `.` + `b`, or `b` at the root.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// What a node is, for "expected X, found Y" messages.
pub fn kind(node: &MarkedYaml) -> &'static str {
    match &node.data {
        YamlData::Value(Scalar::Null) => "null",
        YamlData::Value(Scalar::Boolean(_)) => "a boolean",
        YamlData::Value(Scalar::Integer(_)) | YamlData::Value(Scalar::FloatingPoint(_)) => "a number",
        YamlData::Value(Scalar::String(_)) | YamlData::Representation(..) => "a string",
        YamlData::Sequence(_) => "a list",
        YamlData::Mapping(_) => "a mapping",
        YamlData::Tagged(_, inner) => kind(inner),
        _ => "an invalid value",
    }
}

/// The text of a string scalar.
pub fn as_str<'a>(node: &'a MarkedYaml) -> Option<&'a str> {
    match &node.data {
        YamlData::Value(Scalar::String(s)) => Some(s.as_ref()),
        YamlData::Representation(s, ..) => Some(s.as_ref()),
        YamlData::Tagged(_, inner) => as_str(inner),
        _ => None,
    }
}

/// A node as JSON (for bodies and cursors). Non-string keys are written as text.
pub fn to_json(node: &MarkedYaml) -> Value {
    match &node.data {
        YamlData::Value(Scalar::Null) => Value::Null,
        YamlData::Value(Scalar::Boolean(b)) => Value::Bool(*b),
        YamlData::Value(Scalar::Integer(i)) => Value::Number((*i).into()),
        YamlData::Value(Scalar::FloatingPoint(f)) => Number::from_f64(f.into_inner()).map_or(Value::Null, Value::Number),
        YamlData::Value(Scalar::String(s)) => Value::String(s.to_string()),
        YamlData::Representation(s, ..) => Value::String(s.to_string()),
        YamlData::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        YamlData::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = as_str(k).map(str::to_string).unwrap_or_else(|| to_json(k).to_string());
                out.insert(key, to_json(v));
            }
            Value::Object(out)
        }
        YamlData::Tagged(_, inner) => to_json(inner),
        _ => Value::Null,
    }
}

/// A mapping whose keys were checked against the known ones.
pub struct Obj<'a, 'y> {
    pub path: String,
    pub node: &'a MarkedYaml<'y>,
    entries: Vec<(String, &'a MarkedYaml<'y>)>,
}

impl<'a, 'y> Obj<'a, 'y> {
    /// Opens `node` as a mapping with the given `known` keys. Reports a non-mapping, a
    /// non-string key and every unknown key (with the nearest known key as a hint).
    pub fn open(cx: &mut Cx, node: &'a MarkedYaml<'y>, path: &str, known: &[&str]) -> Option<Self> {
        let YamlData::Mapping(map) = &node.data else {
            cx.error(node, path, format!("expected a mapping, found {}", kind(node)));
            return None;
        };
        let mut entries = Vec::with_capacity(map.len());
        for (k, v) in map {
            let Some(key) = as_str(k) else {
                cx.error(k, path, format!("keys must be strings, found {}", kind(k)));
                continue;
            };
            if !known.contains(&key) {
                let hint = nearest(key, known).map(|n| format!("; did you mean `{n}`?")).unwrap_or_default();
                let list = known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
                cx.error(k, &join(path, key), format!("unknown key `{key}`{hint} (expected one of {list})"));
                continue;
            }
            entries.push((key.to_string(), v));
        }
        Some(Self { path: path.to_string(), node, entries })
    }

    pub fn get(&self, key: &str) -> Option<&'a MarkedYaml<'y>> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Reports that `key` is required here.
    pub fn missing(&self, cx: &mut Cx, key: &str, expected: &str) {
        cx.error(self.node, &self.path_of(key), format!("missing required key `{key}`: expected {expected}"));
    }

    /// An optional string.
    pub fn string(&self, cx: &mut Cx, key: &str) -> Option<String> {
        let node = self.get(key)?;
        match as_str(node) {
            Some(s) => Some(s.to_string()),
            None => {
                cx.error(node, &self.path_of(key), format!("expected a string, found {}", kind(node)));
                None
            }
        }
    }

    /// A required string.
    pub fn required_string(&self, cx: &mut Cx, key: &str, expected: &str) -> Option<String> {
        if !self.has(key) {
            self.missing(cx, key, expected);
            return None;
        }
        self.string(cx, key)
    }

    /// An optional whole number in `min..=max`.
    pub fn uint(&self, cx: &mut Cx, key: &str, min: u64, max: u64) -> Option<u64> {
        let node = self.get(key)?;
        let path = self.path_of(key);
        match &node.data {
            YamlData::Value(Scalar::Integer(i)) if *i >= 0 && (*i as u64) >= min && (*i as u64) <= max => Some(*i as u64),
            YamlData::Value(Scalar::Integer(i)) => {
                cx.error(node, &path, format!("expected a whole number from {min} to {max}, found {i}"));
                None
            }
            _ => {
                let shown = as_str(node).map(|s| format!(" `{s}`")).unwrap_or_default();
                cx.error(node, &path, format!("expected a whole number from {min} to {max}, found {}{shown}", kind(node)));
                None
            }
        }
    }

    /// A mapping of string → string, in file order (headers, mapping tables).
    pub fn string_map(&self, cx: &mut Cx, key: &str) -> Vec<(String, String)> {
        let Some(node) = self.get(key) else { return Vec::new() };
        let path = self.path_of(key);
        let YamlData::Mapping(map) = &node.data else {
            cx.error(node, &path, format!("expected a mapping of names to strings, found {}", kind(node)));
            return Vec::new();
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            let Some(name) = as_str(k) else {
                cx.error(k, &path, format!("keys must be strings, found {}", kind(k)));
                continue;
            };
            match as_str(v) {
                Some(value) => out.push((name.to_string(), value.to_string())),
                None => cx.error(v, &join(&path, name), format!("expected a string, found {}", kind(v))),
            }
        }
        out
    }
}

/// The known key closest to `key`, if it is close enough to be a likely typo.
fn nearest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(&key.to_lowercase(), &k.to_lowercase()), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_key_hints() {
        assert_eq!(nearest("backof", &["max", "backoffMs", "maxBackoffMs"]), Some("backoffMs"));
        assert_eq!(nearest("colour", &["id", "type", "trigger"]), None);
    }
}
