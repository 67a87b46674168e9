//! The top-level modules of `src/` import each other one way only, from the layer table
//! below: a module may use modules of lower layers, never of its own or a higher one. So no
//! import cycle can come back, and `spec` stays the pure bottom (docs/architecture.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module's layer, bottom first.
const LAYERS: &[(&str, u8)] = &[
    ("settings", 0),
    ("telemetry", 0),
    ("spec", 1),
    ("mapping", 2),
    ("webhook", 2),
    ("delivery", 3),
    ("sync", 3),
    ("storage", 4),
    ("metrics", 5),
    ("actors", 6),
    ("demo", 7),
    ("admin", 8),
    ("console", 9),
    ("startup", 10),
    ("cli", 11),
];

/// The `.rs` files of module `name`: `src/name.rs` and everything under `src/name/`.
fn files_of(src: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let single = src.join(format!("{name}.rs"));
    if single.is_file() {
        files.push(single);
    }
    let mut dirs = vec![src.join(name)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The top-level modules a source text names through `crate::…` (comments and the unit
/// tests at the end of a file left out: tests may reach anywhere).
fn imports(text: &str) -> BTreeSet<String> {
    let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let code = code.split("#[cfg(test)]").next().unwrap_or("");
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::X, b, c::{…}}`: the names at the group's top level.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(ident(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            found.insert(ident(item.trim()));
        } else {
            found.insert(ident(rest));
        }
    }
    found
}

#[test]
fn modules_import_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().trim_end_matches(".rs").to_string();
        if ["lib", "main", "bin"].contains(&name.as_str()) {
            continue;
        }
        let Some(&own) = layer.get(name.as_str()) else {
            unknown.push(name);
            continue;
        };
        for file in files_of(&src, &name) {
            let text = std::fs::read_to_string(&file).unwrap();
            for target in imports(&text) {
                if target == name {
                    continue;
                }
                match layer.get(target.as_str()) {
                    Some(&theirs) if theirs < own => {}
                    Some(&theirs) => wrong.push(format!("{} (layer {own}) uses `{target}` (layer {theirs})", file.strip_prefix(&src).unwrap().display())),
                    None => {}
                }
            }
        }
    }
    assert!(unknown.is_empty(), "top-level modules missing from the layer table: {unknown:?}");
    assert!(wrong.is_empty(), "imports against the layers (a module may use only lower layers):\n{}", wrong.join("\n"));
}

#[test]
fn the_import_reader_sees_paths_and_groups_but_not_comments() {
    let text = "use crate::spec::X;\nuse crate::{mapping::Y, delivery};\n// crate::admin in a comment\nfn f() { crate::storage::g(); }\n#[cfg(test)]\nmod tests { use crate::cli; }\n";
    let got: Vec<_> = imports(text).into_iter().collect();
    assert_eq!(got, ["delivery", "mapping", "spec", "storage"]);
}
