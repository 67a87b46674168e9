//! Seeded mutation fuzzing of connector documents, through everything a document meets:
//! parse and validate, compile, then (when accepted) an event rendered through every
//! request it has (dry run, writes to both sides, reads, the key, the filter, the delete
//! expression, the resolver rules). Used by `hms-sync bench --fuzz N` (the slowest case and
//! peak memory) and by `tests/fuzz_connectors.rs` (2,000 cases in CI): a panic, or a stack
//! overflow that takes the process down, is a defect.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::mapping::{CompiledConnector, Secrets, dry_run};
use crate::mapping::compiled::Write;
use crate::spec::model::Side;

/// The shipped connectors: the seeds the mutations start from.
const SEEDS: [&str; 3] = [
    include_str!("../../connectors/gis-ddot.yaml"),
    include_str!("../../connectors/notes-calendar.yaml"),
    include_str!("../../connectors/appointment.yaml"),
];

/// Values a mutation may put in place of a scalar: templates, secrets, selectors, numbers,
/// odd text.
const VALUES: &[&str] = &[
    "\"{{ id }}\"", "\"{{ a.b.c }}\"", "\"{{ x | upper }}\"", "\"{{\"", "\"{% for i in x %}{{ i }}{% endfor %}\"", "\"${SECRET}\"", "\"${\"",
    "\"$.a[*].b\"", "\"$..x\"", "99999999999999999999", "-1", "0", "1e308", "true", "null", "~", "[]", "{}", "\"\"", "\"\\u0000\"",
    "\"ünïcödé ✓\"", "\"http://127.0.0.1:1/{{ id }}\"", "\"object.a == 1 and not object.b\"", "\"(((\"", "&anchor x", "*anchor", "!!binary aGk=",
];

/// Keys a mutation may add at the top level or in `map.to` (known ones and strangers).
const KEYS: &[&str] = &[
    "id", "type", "trigger", "key", "map", "mapping", "source", "resolve", "retry", "deleted", "concurrency", "timeoutMs", "supervision", "to", "hms",
    "create", "delete", "hmsCreate", "hmsDelete", "body", "headers", "url", "method", "match", "idField", "rules", "policy", "fetch", "owners", "bogus",
];

/// A small deterministic generator (xorshift64*): the same seed, the same cases.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One mutation of `doc`'s text.
fn mutate(doc: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<String> = doc.lines().map(str::to_string).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let at = rng.below(lines.len());
    match rng.below(16) {
        12 | 13 => {
            // A request body nested deep but within the limits, holding a template: the
            // shape of the document that once passed validation and then aborted the
            // process at its first event (the render recursed).
            if let Some(to) = lines.iter().position(|l| l.trim_start().starts_with("to:")) {
                let depth = [1, 8, 30, 58][rng.below(4)];
                let indent = " ".repeat(lines[to].len() - lines[to].trim_start().len() + 2);
                let body = if rng.below(2) == 0 {
                    format!("{indent}body: {}\"{{{{ id }}}}\"{}", "[".repeat(depth), "]".repeat(depth))
                } else {
                    format!("{indent}body: {}\"{{{{ {} }}}}\"{}", "{ k: ".repeat(depth), rng.pick(&["id", "nested", "nested.a", "status | upper"]), " }".repeat(depth))
                };
                lines.retain(|l| !l.trim_start().starts_with("body:"));
                let to = lines.iter().position(|l| l.trim_start().starts_with("to:")).unwrap_or(0);
                lines.insert(to + 1, body);
            }
        }
        14 => {
            // A template swapped for another (quoted values only: the document stays YAML).
            if let Some(q) = lines[at].find("\"{{") {
                lines[at] = format!("{}{}", &lines[at][..q], rng.pick(&VALUES[..5]));
            }
        }
        15 => {
            let key = rng.pick(&["retry: { max: 3, backoffMs: 10 }", "concurrency: 1000000", "timeoutMs: 0", "retry: { max: 0 }", "key: \"{{ nested.a }}\""]);
            lines.push(key.to_string());
        }
        0 => {
            lines.remove(at);
        }
        1 => {
            let l = lines[at].clone();
            lines.insert(at, l);
        }
        2 => {
            let other = rng.below(lines.len());
            lines.swap(at, other);
        }
        3 => lines[at] = format!("  {}", lines[at]),
        4 => lines[at] = lines[at].trim_start().to_string(),
        5 => {
            // A scalar replaced.
            if let Some(colon) = lines[at].find(": ") {
                lines[at] = format!("{}: {}", &lines[at][..colon], rng.pick(VALUES));
            }
        }
        6 => {
            let indent = " ".repeat(2 * rng.below(4));
            lines.insert(at, format!("{indent}{}: {}", rng.pick(KEYS), rng.pick(VALUES)));
        }
        7 => {
            // Nesting, as deep as the limits and beyond.
            let depth = [2, 10, 63, 65, 200, 3_000][rng.below(6)];
            let nest = if rng.below(2) == 0 { "- ".repeat(depth) + "x" } else { "[".repeat(depth) + &"]".repeat(depth) };
            lines.insert(at, format!("{}: {nest}", rng.pick(KEYS)));
        }
        8 => {
            // Aliases that multiply.
            let fan = 2 + rng.below(9);
            let mut block = vec!["l0: &l0 [x, x, x, x, x, x, x, x, x, x]".to_string()];
            for i in 1..(2 + rng.below(8)) {
                block.push(format!("l{i}: &l{i} [{}]", vec![format!("*l{}", i - 1); fan].join(", ")));
            }
            lines.splice(at..at, block);
        }
        9 => lines.insert(at, format!("{}x: 1", "? ".repeat(1 + rng.below(40)))),
        10 => {
            // Bytes: one printable character in or out.
            let line = &mut lines[at];
            let chars: Vec<char> = line.chars().collect();
            let i = rng.below(chars.len() + 1);
            let c = *rng.pick(&['{', '}', '[', ']', ':', '-', '"', '\'', '#', '&', '*', '!', '|', '>', '%', '@', '`', '\t', ' ', 'x']);
            *line = chars[..i].iter().chain(std::iter::once(&c)).chain(chars[i..].iter().skip(rng.below(2))).collect();
        }
        _ => lines.truncate(at.max(1)),
    }
    lines.join("\n") + "\n"
}

/// A shipped connector as one document (its mapping file's rows inline: a fuzzed
/// document has no folder to read one from).
fn seed_doc(text: &str) -> String {
    if !text.contains("\nmappingFile: notes-calendar.mapping.json") {
        return text.to_string();
    }
    text.replace("\nmappingFile: notes-calendar.mapping.json", "\n")
        .replace("\nmapping:", "\nmapping:\n  id: ShiftID\n  startAt: BeginTime\n  endAt: FinishTime\n  assignee: RangerName")
}

/// The document of case `seed`: a shipped connector, mutated one to three times.
pub fn case(seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut doc = seed_doc(SEEDS[rng.below(SEEDS.len())]);
    for _ in 0..(1 + rng.below(3)) {
        doc = mutate(&doc, &mut rng);
    }
    doc
}

/// What one case did.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Refused with errors (what a bad document should get).
    Refused,
    /// Accepted, compiled and rendered (whatever the renders said).
    Accepted,
    /// Accepted, but it does not compile (reported as an error to the API, not a panic).
    CompileError,
}

/// Runs one document through everything: parse and validate, compile, and an event
/// rendered through each of its requests. Panics propagate (the caller catches them).
pub fn run(doc: &str) -> Verdict {
    let Ok(spec) = crate::spec::parse("<fuzz>", doc) else { return Verdict::Refused };
    let Ok(compiled) = CompiledConnector::compile(&spec) else { return Verdict::CompileError };
    let event = json!({
        "id": 72, "permitId": "RW-481", "agency": "DDOT", "startDate": "2024-05-10", "status": "APPROVED", "deleted": false,
        "startAt": "08:00", "assignee": "Ana", "updatedAt": "2024-05-10T08:00:00Z", "editedBy": { "role": "manager" },
        "nested": { "a": [1, 2, { "b": "c" }] }, "n": 1,
    });
    let secrets: Secrets = spec.secret_names().into_iter().map(|n| (n.clone(), format!("fuzz-{n}"))).collect();
    let extras = json!({ "current": event, "etag": "\"1\"", "link": { "hmsId": "72", "externalId": "E-72" } });
    let _ = dry_run::dry_run(&spec, None, &event, "fuzz-event");
    let _ = crate::sync::explain::explain(&spec, &event, Some(&event));
    let shared = crate::mapping::Payload::shared(event.clone());
    for side in [Side::Legacy, Side::Hms] {
        for write in [Write::Update, Write::Create, Write::Delete] {
            let _ = compiled.render_write(side, write, &shared, &extras, &secrets);
        }
        let _ = compiled.render_fetch(side, &event, &extras, &secrets);
    }
    let _ = compiled.record_key(&shared, "fallback");
    for topic in spec.topics() {
        let _ = compiled.matches(&topic, &event);
        let _ = compiled.is_delete(&topic, &event);
    }
    let _ = compiled.rule_hit(&event, &event);
    Verdict::Accepted
}

/// A run of cases `first..first + n`.
#[derive(Debug, Default)]
pub struct Report {
    pub cases: u64,
    pub accepted: u64,
    pub refused: u64,
    pub compile_errors: u64,
    /// Seeds whose case panicked, with the message.
    pub panics: Vec<(u64, String)>,
    /// The slowest case: its seed and time.
    pub slowest: (u64, Duration),
}

/// Runs `n` cases from seed `first`, each caught so that one panic does not hide others.
pub fn run_cases(first: u64, n: u64) -> Report {
    let mut report = Report::default();
    for seed in first..first + n {
        let doc = case(seed);
        let started = Instant::now();
        let result = std::panic::catch_unwind(|| run(&doc));
        let took = started.elapsed();
        if took > report.slowest.1 {
            report.slowest = (seed, took);
        }
        report.cases += 1;
        match result {
            Ok(Verdict::Accepted) => report.accepted += 1,
            Ok(Verdict::Refused) => report.refused += 1,
            Ok(Verdict::CompileError) => report.compile_errors += 1,
            Err(panic) => report.panics.push((seed, crate::actors::panics::message(&*panic).unwrap_or_else(|| "a panic".into()))),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_are_reproducible_from_their_seed() {
        assert_eq!(case(7), case(7));
        assert_ne!(case(7), case(8));
        // The seeds themselves are accepted: the run reaches the renders.
        for doc in SEEDS {
            assert_eq!(run(&seed_doc(doc)), Verdict::Accepted, "{}", seed_doc(doc));
        }
    }
}
