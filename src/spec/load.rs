//! Loading connector documents: from text (the API), from a file (`validate`, `deploy`)
//! and from the connectors folder at start-up, with every error of every file at once.

use std::path::Path;

use saphyr::{LoadableYamlNode, MarkedYaml};

use super::{build, limits};
use super::error::{SpecError, SpecErrors};
use super::model::ConnectorSpec;
use super::reader::Cx;

/// A validated spec with the text it came from (stored as written, re-validated on start).
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    pub spec: ConnectorSpec,
    pub source: String,
    /// The file path, or `<api>` / `<database:ID>`.
    pub origin: String,
}

/// Parses and validates one YAML or JSON document; `origin` names it in errors.
pub fn parse(origin: &str, text: &str) -> Result<ConnectorSpec, SpecErrors> {
    let mut cx = Cx::new(origin);
    if let Err(b) = limits::check(text) {
        cx.error_at(b.line, b.column, "", b.message);
        return Err(SpecErrors(cx.errors));
    }
    let docs = match MarkedYaml::load_from_str(text) {
        Ok(docs) => docs,
        Err(e) => {
            let m = e.marker();
            cx.error_at(m.line().max(1), m.col() + 1, "", format!("not valid YAML or JSON: {}", e.info()));
            return Err(SpecErrors(cx.errors));
        }
    };
    match docs.as_slice() {
        [] => cx.error_at(1, 1, "", "the document is empty: expected a connector with at least `id` and `type`"),
        [doc] => {
            if let Some(spec) = build::connector(&mut cx, doc) {
                return Ok(spec);
            }
        }
        [_, second, ..] => cx.error(second, "", "expected one connector per file, found several YAML documents"),
    }
    // In document order, as a reader goes through the file.
    cx.errors.sort_by_key(|e| (e.line, e.column));
    Err(SpecErrors(cx.errors))
}

/// Reads and validates one file.
pub fn load_file(path: &Path) -> Result<LoadedSpec, SpecErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        SpecErrors(vec![SpecError { file: origin.clone(), line: 1, column: 1, path: String::new(), message: format!("cannot read the file: {e}") }])
    })?;
    let spec = parse(&origin, &text)?;
    Ok(LoadedSpec { spec, source: text, origin })
}

/// Is this a connector file by its name (`*.yaml`, `*.yml`, `*.json`)?
fn is_connector_file(path: &Path) -> bool {
    path.is_file() && path.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
}

/// The connector files of `dir`, sorted by name. A missing folder holds none.
fn connector_paths(dir: &Path) -> Result<Vec<std::path::PathBuf>, SpecErrors> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            let file = dir.display().to_string();
            return Err(SpecErrors(vec![SpecError { file, line: 1, column: 1, path: String::new(), message: format!("cannot read the connectors folder: {e}") }]));
        }
    };
    let mut paths: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| is_connector_file(p)).collect();
    paths.sort();
    Ok(paths)
}

/// A fingerprint of the connector files of `dir` (names and contents): it changes when a
/// file is added, removed or edited. (`up --watch` polls it; mtimes can be too coarse.)
pub fn folder_fingerprint(dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for path in connector_paths(dir).unwrap_or_default() {
        path.hash(&mut h);
        std::fs::read(&path).unwrap_or_default().hash(&mut h);
    }
    h.finish()
}

/// Every connector file of `dir`, each on its own: the valid ones (a second file with an
/// id already taken counts as invalid), and the errors of the others by file. What a
/// reload needs: an invalid file keeps its old version running.
pub fn load_each(dir: &Path) -> Result<(Vec<LoadedSpec>, Vec<(String, SpecErrors)>), SpecErrors> {
    let mut loaded: Vec<LoadedSpec> = Vec::new();
    let mut invalid = Vec::new();
    for path in connector_paths(dir)? {
        match load_file(&path) {
            Ok(l) => match loaded.iter().find(|o| o.spec.id == l.spec.id) {
                Some(first) => {
                    let message = format!("id `{}` is already defined in {}", l.spec.id, first.origin);
                    invalid.push((l.origin.clone(), SpecErrors(vec![SpecError { file: l.origin, line: 1, column: 1, path: "id".into(), message }])));
                }
                None => loaded.push(l),
            },
            Err(e) => invalid.push((path.display().to_string(), e)),
        }
    }
    // A connector's mapping file in the folder is no connector (it has no `id`, so it was
    // taken for an invalid one): it is read with the connector that names it.
    let tables: Vec<std::path::PathBuf> = loaded
        .iter()
        .filter_map(|l| l.spec.mapping_file.as_ref().map(|f| Path::new(&l.origin).parent().unwrap_or(Path::new(".")).join(f)))
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    invalid.retain(|(file, _)| std::fs::canonicalize(file).map_or(true, |p| !tables.contains(&p)));
    Ok((loaded, invalid))
}

/// Every connector file of `dir`, sorted by name. A missing folder holds no connectors.
/// Two files with one id are an error, as is any invalid file; all are reported together.
pub fn load_dir(dir: &Path) -> Result<Vec<LoadedSpec>, SpecErrors> {
    let (loaded, invalid) = load_each(dir)?;
    if invalid.is_empty() { Ok(loaded) } else { Err(SpecErrors(invalid.into_iter().flat_map(|(_, e)| e.0).collect())) }
}
