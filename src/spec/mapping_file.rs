//! `mappingFile`: a connector's mapping table kept in a JSON file of its own (seed 000's
//! `mapping.json`: "no code changes if the Lotus admin renames a column, just update this
//! JSON"), read next to the connector file with it, validated with it (errors name the
//! mapping file, its line and key), and inlined when the connector is stored in the
//! database (the API cannot read the files of the machine that sends a document).

use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, MarkedYaml, YamlData};
use serde_json::{Map, Value};

use super::error::SpecError;
use super::reader::{Cx, as_str, kind, position};

/// Where `file` is, for the connector document read as `origin` (its path), if it has one.
fn locate(origin: &str, file: &str) -> Option<PathBuf> {
    let connector = Path::new(origin);
    (!origin.starts_with('<') && connector.is_file()).then(|| connector.parent().unwrap_or(Path::new(".")).join(file))
}

/// The rows of the mapping file `file` named at `node`, in file order; errors go to `cx`.
pub fn rows(cx: &mut Cx, node: &MarkedYaml, file: &str) -> Vec<(String, String)> {
    let Some(path) = locate(&cx.file, file) else {
        cx.error(node, "mappingFile", "a mapping file is read next to its connector file; a document sent over the API holds its mapping inline (`hms-sync deploy` inlines the file)");
        return Vec::new();
    };
    let shown = path.display().to_string();
    let at = |line: usize, column: usize, path: &str, message: String| SpecError { file: shown.clone(), line, column, path: path.to_string(), message };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            cx.error(node, "mappingFile", format!("cannot read the mapping file {shown}: {e}"));
            return Vec::new();
        }
    };
    if let Err(b) = super::limits::check(&text) {
        cx.errors.push(at(b.line, b.column, "", b.message));
        return Vec::new();
    }
    let docs = match MarkedYaml::load_from_str(&text) {
        Ok(d) => d,
        Err(e) => {
            cx.errors.push(at(e.marker().line().max(1), e.marker().col() + 1, "", format!("not valid JSON: {}", e.info())));
            return Vec::new();
        }
    };
    let Some(root) = docs.first() else {
        cx.errors.push(at(1, 1, "", "the mapping file is empty: expected an object of HMS field → external field, e.g. {\"id\": \"ShiftID\"}".into()));
        return Vec::new();
    };
    let YamlData::Mapping(map) = &root.data else {
        let (line, column) = position(root);
        cx.errors.push(at(line, column, "", format!("expected an object of HMS field → external field, found {}", kind(root))));
        return Vec::new();
    };
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let Some(name) = as_str(k) else {
            let (line, column) = position(k);
            cx.errors.push(at(line, column, "", format!("keys must be field names, found {}", kind(k))));
            continue;
        };
        match as_str(v) {
            Some(value) => out.push((name.to_string(), value.to_string())),
            None => {
                let (line, column) = position(v);
                cx.errors.push(at(line, column, name, format!("expected the external field's name (a string), found {}", kind(v))));
            }
        }
    }
    out
}

/// The document to store for a connector whose file is `source`: as written, or, when it
/// has a `mappingFile`, as JSON with the file's rows inlined into `mapping` (`rows` in the
/// order the spec has them) and no `mappingFile` key.
pub fn inlined(source: &str, rows: &[(String, String)]) -> String {
    let Ok(docs) = MarkedYaml::load_from_str(source) else { return source.to_string() };
    let Some(Value::Object(mut doc)) = docs.first().map(super::reader::to_json) else { return source.to_string() };
    if doc.remove("mappingFile").is_none() {
        return source.to_string();
    }
    let table: Map<String, Value> = rows.iter().map(|(h, e)| (h.clone(), Value::String(e.clone()))).collect();
    doc.insert("mapping".into(), Value::Object(table));
    serde_json::to_string_pretty(&Value::Object(doc)).unwrap_or_else(|_| source.to_string())
}
