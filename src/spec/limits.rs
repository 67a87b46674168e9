//! The bounds a connector document must keep before it is loaded into a tree: its size, its
//! nesting depth, its node count with aliases expanded, and plain mapping keys. Checked on
//! the parser's event stream (no recursion, no tree), so a hostile document (thousands of
//! nested sequences, a "billion laughs" of aliases, nested complex keys) costs a bounded
//! scan and gets an error at its line instead of exhausting a stack or the memory.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

/// The largest document accepted, in bytes (the shipped connectors are 1–3 KiB).
pub const MAX_BYTES: usize = 256 * 1024;
/// The deepest nesting of sequences and mappings accepted (the shipped connectors: 4).
pub const MAX_DEPTH: usize = 64;
/// The most nodes a document may hold, each alias counted as the nodes it stands for.
pub const MAX_NODES: u64 = 20_000;

/// Where and how a document breaks a limit (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// An open sequence or mapping.
struct Open {
    mapping: bool,
    /// Nodes read inside it so far (in a mapping: keys and values in turn).
    children: u64,
    /// Its anchor (0: none) and the node count when it began.
    anchor: usize,
    nodes_before: u64,
}

/// Checks `text` against the limits. A document the parser refuses passes here: loading
/// it reports the parser's own error.
pub fn check(text: &str) -> Result<(), Breach> {
    if text.len() > MAX_BYTES {
        return Err(Breach { line: 1, column: 1, message: format!("the document is {} bytes; at most {MAX_BYTES} are accepted", text.len()) });
    }
    let mut open: Vec<Open> = Vec::new();
    let mut anchors: HashMap<usize, u64> = HashMap::new();
    let mut nodes: u64 = 0;
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { return Ok(()) };
        let at = |message: String| Breach { line: span.start.line().max(1), column: span.start.col() + 1, message };
        let is_node = matches!(event, Event::Scalar(..) | Event::Alias(_) | Event::SequenceStart(..) | Event::MappingStart(..));
        if is_node && let Some(parent) = open.last_mut() {
            let is_key = parent.mapping && parent.children % 2 == 0;
            parent.children += 1;
            if is_key && matches!(event, Event::SequenceStart(..) | Event::MappingStart(..)) {
                return Err(at("a mapping key must be a plain value (a name, a number), not a sequence or a mapping".into()));
            }
        }
        match event {
            Event::Scalar(_, _, anchor, _) => {
                nodes += 1;
                if anchor != 0 {
                    anchors.insert(anchor, 1);
                }
            }
            Event::Alias(anchor) => nodes += anchors.get(&anchor).copied().unwrap_or(1),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                nodes += 1;
                open.push(Open { mapping: matches!(event, Event::MappingStart(..)), children: 0, anchor, nodes_before: nodes - 1 });
                if open.len() > MAX_DEPTH {
                    return Err(at(format!("sequences and mappings are nested more than {MAX_DEPTH} levels deep here")));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(done) = open.pop()
                    && done.anchor != 0
                {
                    anchors.insert(done.anchor, nodes - done.nodes_before);
                }
            }
            _ => {}
        }
        if nodes > MAX_NODES {
            return Err(at(format!("the document holds more than {MAX_NODES} values (each alias counted as the values it repeats)")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread with a small stack (as small as an actix worker's is not needed:
    /// 128 KiB proves the check does not recurse).
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new().stack_size(128 * 1024).spawn(f).unwrap().join().unwrap()
    }

    #[test]
    fn deep_nesting_is_refused_at_its_line_without_recursion() {
        let block = "- ".repeat(20_000) + "x";
        let b = on_small_stack(move || check(&block)).unwrap_err();
        assert!(b.message.contains("nested more than 64"), "{b:?}");
        assert_eq!(b.line, 1);
        let flow = format!("id: a\nmap:\n  to:\n    body: {}1{}\n", "[".repeat(100), "]".repeat(100));
        let b = on_small_stack(move || check(&flow)).unwrap_err();
        assert_eq!((b.line, b.message.contains("nested")), (4, true), "{b:?}");
        assert!(check(&format!("a: {}1{}", "[".repeat(60), "]".repeat(60))).is_ok());
    }

    #[test]
    fn alias_expansion_is_counted() {
        // Nine levels of ten aliases each: 10^9 values once expanded, 1 KiB of text.
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            doc += &format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n");
        }
        let b = check(&doc).unwrap_err();
        assert!(b.message.contains("more than 20000 values"), "{b:?}");
        assert_eq!(b.line, 5, "the line where the count passed the limit: {b:?}");
        // A few aliases (as in a shared header block) are fine.
        assert!(check("h: &h { Authorization: x }\nmap:\n  to: { headers: *h }\n  hms: { headers: *h }\n").is_ok());
    }

    #[test]
    fn complex_keys_are_refused() {
        let doc = format!("a:\n  {}x\n", "? ".repeat(40));
        let b = check(&doc).unwrap_err();
        assert!(b.message.contains("mapping key must be a plain value"), "{b:?}");
        assert!(check("? [a, b]\n: 1\n").is_err());
        assert!(check("1: one\ntrue: yes\n").is_ok());
    }

    #[test]
    fn size_is_bounded_and_parse_errors_are_left_to_the_loader() {
        assert!(check(&"#".repeat(MAX_BYTES + 1)).unwrap_err().message.contains("bytes"));
        assert!(check("a: [1, 2").is_ok());
    }
}
