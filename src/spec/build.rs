//! The connector schema: reads a marked document into a [`ConnectorSpec`], checking every
//! field (types, ranges, template and filter syntax, what each direction needs) and
//! collecting every error. Pure: no I/O, no environment.

use std::time::Duration;

use saphyr::MarkedYaml;
use serde_json::Value;

use super::model::*;
use super::reader::{Cx, Obj, as_str, kind, to_json};
use super::templates::{check_expression, check_template, url_to_template};

const ROOT_KEYS: &[&str] =
    &["id", "type", "description", "trigger", "key", "mapping", "map", "source", "retry", "timeoutMs", "concurrency", "supervision"];
const TRIGGER_KEYS: &[&str] = &["topic", "filter"];
const MAP_KEYS: &[&str] = &["from", "to", "hms"];
const REQUEST_KEYS: &[&str] = &["url", "method", "headers", "body"];
const SOURCE_KEYS: &[&str] = &["pull"];
const PULL_KEYS: &[&str] = &["url", "method", "headers", "body", "every", "records", "idField", "cursorField", "initialCursor"];
const RETRY_KEYS: &[&str] = &["max", "backoffMs", "maxBackoffMs"];
const SUPERVISION_KEYS: &[&str] = &["maxRestarts", "withinSecs", "backoffMs", "maxBackoffMs"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// A day, in milliseconds: the upper bound of every back-off setting.
const DAY_MS: u64 = 86_400_000;

/// Reads the whole document; `None` when any error was recorded in `cx`.
pub fn connector(cx: &mut Cx, root: &MarkedYaml) -> Option<ConnectorSpec> {
    let o = Obj::open(cx, root, "", ROOT_KEYS)?;
    let id = o.required_string(cx, "id", "the connector's unique name, e.g. ddot.gis.outbound.v1");
    if let (Some(id), Some(node)) = (&id, o.get("id"))
        && !valid_id(id)
    {
        cx.error(node, "id", "expected 1 to 128 letters, digits, `.`, `_` or `-`");
    }
    let direction = direction(cx, &o);
    let description = o.string(cx, "description");
    let trigger = o.get("trigger").and_then(|n| trigger(cx, n, "trigger"));
    let key = o.string(cx, "key");
    if let (Some(k), Some(node)) = (&key, o.get("key")) {
        template(cx, node, "key", k);
    }
    let mapping = o.string_map(cx, "mapping");
    let map = o.get("map").and_then(|n| map_spec(cx, n, "map"));
    let source = o.get("source").and_then(|n| source(cx, n, "source"));
    let retry = o.get("retry").map_or(Some(RetrySpec::default()), |n| retry(cx, n, "retry"));
    let timeout_ms = o.uint(cx, "timeoutMs", 1, 600_000).unwrap_or(DEFAULT_TIMEOUT_MS);
    let concurrency = o.uint(cx, "concurrency", 1, 1024).map_or(DEFAULT_CONCURRENCY, |c| c as u32);
    let supervision = o.get("supervision").and_then(|n| supervision(cx, n, "supervision"));

    let spec = ConnectorSpec {
        id: id?,
        direction: direction?,
        description,
        trigger,
        key,
        mapping,
        map,
        source,
        retry: retry?,
        timeout_ms,
        concurrency,
        supervision,
    };
    check_direction(cx, &o, &spec);
    cx.errors.is_empty().then_some(spec)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn direction(cx: &mut Cx, o: &Obj) -> Option<Direction> {
    let expected = "one of `outbound`, `inbound`, `two-way`";
    let text = o.required_string(cx, "type", expected)?;
    let parsed = Direction::parse(&text);
    if parsed.is_none()
        && let Some(node) = o.get("type")
    {
        cx.error(node, "type", format!("unknown type `{text}`: expected {expected}"));
    }
    parsed
}

/// What each direction needs, and what it must not have.
fn check_direction(cx: &mut Cx, o: &Obj, spec: &ConnectorSpec) {
    let sends_out = matches!(spec.direction, Direction::Outbound | Direction::TwoWay);
    let takes_in = matches!(spec.direction, Direction::Inbound | Direction::TwoWay);
    // "an outbound", "an inbound", "a two-way": the article that reads right.
    let ty = match spec.direction {
        Direction::Outbound => "an outbound",
        Direction::Inbound => "an inbound",
        Direction::TwoWay => "a two-way",
    };
    if sends_out && spec.trigger.is_none() && !o.has("trigger") {
        o.missing(cx, "trigger", &format!("the HMS topic {ty} connector listens on, e.g. {{ topic: permit.updated }}"));
    }
    if sends_out && spec.outbound_request().is_none() && !o.has("map") {
        o.missing(cx, "map", &format!("`map.to`, the request {ty} connector sends"));
    } else if sends_out && spec.outbound_request().is_none() && spec.map.is_some() {
        cx.error(o.get("map").unwrap_or(o.node), "map.to", format!("missing required key `to`: {ty} connector needs the request it sends"));
    }
    if takes_in && spec.pull_view().is_none() && !o.has("source") {
        o.missing(cx, "source", &format!("where {ty} connector's changes come from, e.g. source.pull"));
    }
    if takes_in && spec.hms_request().is_none() && spec.map.is_some() {
        cx.error(o.get("map").unwrap_or(o.node), "map.hms", format!("missing required key `hms`: {ty} connector needs the request that applies a change to HMS"));
    } else if takes_in && !o.has("map") {
        o.missing(cx, "map", &format!("`map.hms`, the request that applies a change to HMS"));
    }
    if !sends_out {
        if let Some(node) = o.get("trigger") {
            cx.error(node, "trigger", "an inbound connector takes no HMS events; use type: two-way to send them too");
        }
        if let Some(node) = spec.map.as_ref().and(o.get("map")).filter(|_| spec.outbound_request().is_some()) {
            cx.error(node, "map.to", "an inbound connector sends no outbound request; use type: two-way");
        }
    }
    if !takes_in {
        if let Some(node) = o.get("source") {
            cx.error(node, "source", format!("{ty} connector has no source; use type: two-way to take changes in too"));
        }
        if let Some(node) = o.get("map").filter(|_| spec.hms_request().is_some()) {
            cx.error(node, "map.hms", format!("{ty} connector applies nothing to HMS; use type: two-way"));
        }
    }
}

fn trigger(cx: &mut Cx, node: &MarkedYaml, path: &str) -> Option<Trigger> {
    let o = Obj::open(cx, node, path, TRIGGER_KEYS)?;
    let topic = match o.get("topic") {
        None => {
            o.missing(cx, "topic", "an HMS topic such as permit.updated, or a list of them");
            None
        }
        Some(t) => topics(cx, t, &o.path_of("topic")),
    };
    let filter = o.string(cx, "filter");
    if let (Some(f), Some(n)) = (&filter, o.get("filter"))
        && let Err(e) = check_expression(f)
    {
        cx.error(n, &o.path_of("filter"), format!("invalid filter expression: {e}"));
    }
    Some(Trigger { topic: topic?, filter })
}

fn topics(cx: &mut Cx, node: &MarkedYaml, path: &str) -> Option<Vec<String>> {
    let expected = "a topic name (letters, digits, `.`, `_`, `-`) or a list of them";
    let items: Vec<&MarkedYaml> = match &node.data {
        saphyr::YamlData::Sequence(items) => items.iter().collect(),
        _ => vec![node],
    };
    let mut out = Vec::new();
    for item in items {
        match as_str(item) {
            Some(t) if valid_id(t) => out.push(t.to_string()),
            _ => cx.error(item, path, format!("expected {expected}, found {}", kind(item))),
        }
    }
    (!out.is_empty()).then_some(out)
}

fn map_spec(cx: &mut Cx, node: &MarkedYaml, path: &str) -> Option<MapSpec> {
    let o = Obj::open(cx, node, path, MAP_KEYS)?;
    let from = o.string(cx, "from");
    let to = o.get("to").and_then(|n| request(cx, n, &o.path_of("to"), REQUEST_KEYS, "POST").map(|(r, _)| r));
    let hms = o.get("hms").and_then(|n| request(cx, n, &o.path_of("hms"), REQUEST_KEYS, "POST").map(|(r, _)| r));
    Some(MapSpec { from, to, hms })
}

/// A request template; also returns the opened mapping so callers can read extra keys.
fn request<'a, 'y>(cx: &mut Cx, node: &'a MarkedYaml<'y>, path: &str, keys: &[&str], default_method: &str) -> Option<(RequestSpec, Obj<'a, 'y>)> {
    let o = Obj::open(cx, node, path, keys)?;
    let url = o.required_string(cx, "url", "the URL template, e.g. https://host/items/{{ id }}");
    if let (Some(u), Some(n)) = (&url, o.get("url")) {
        let lower = u.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://") || u.starts_with("${") || u.starts_with("{{")) {
            cx.error(n, &o.path_of("url"), format!("expected an http:// or https:// URL, found `{u}`"));
        }
        template(cx, n, &o.path_of("url"), &url_to_template(u));
    }
    let method = match o.string(cx, "method") {
        None => default_method.to_string(),
        Some(m) => {
            let upper = m.to_ascii_uppercase();
            if !METHODS.contains(&upper.as_str())
                && let Some(n) = o.get("method")
            {
                cx.error(n, &o.path_of("method"), format!("unknown method `{m}`: expected one of {}", METHODS.join(", ")));
            }
            upper
        }
    };
    let headers = o.string_map(cx, "headers");
    if let Some(hnode) = o.get("headers")
        && let saphyr::YamlData::Mapping(map) = &hnode.data
    {
        for (k, v) in map {
            if let (Some(name), Some(value)) = (as_str(k), as_str(v)) {
                template(cx, v, &format!("{}.{name}", o.path_of("headers")), value);
            }
        }
    }
    let body = o.get("body").map(|n| {
        body_templates(cx, n, &o.path_of("body"));
        to_json(n)
    });
    Some((RequestSpec { url: url?, method, headers, body }, o))
}

/// Checks every string of a body shape as a template, with the string's own position.
fn body_templates(cx: &mut Cx, node: &MarkedYaml, path: &str) {
    match &node.data {
        saphyr::YamlData::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                body_templates(cx, item, &format!("{path}[{i}]"));
            }
        }
        saphyr::YamlData::Mapping(map) => {
            for (k, v) in map {
                let key = as_str(k).unwrap_or("?");
                body_templates(cx, v, &super::reader::join(path, key));
            }
        }
        _ => {
            if let Some(s) = as_str(node) {
                template(cx, node, path, s);
            }
        }
    }
}

fn template(cx: &mut Cx, node: &MarkedYaml, path: &str, text: &str) {
    if let Err(e) = check_template(text) {
        cx.error(node, path, format!("invalid template `{text}`: {e}"));
    }
}

fn source(cx: &mut Cx, node: &MarkedYaml, path: &str) -> Option<SourceSpec> {
    let o = Obj::open(cx, node, path, SOURCE_KEYS)?;
    let pull = o.get("pull").and_then(|n| pull(cx, n, &o.path_of("pull")));
    if pull.is_none() && !o.has("pull") {
        o.missing(cx, "pull", "the change feed to poll: { url, every, records, … }");
    }
    Some(SourceSpec { pull })
}

fn pull(cx: &mut Cx, node: &MarkedYaml, path: &str) -> Option<PullSpec> {
    let (request, o) = request(cx, node, path, PULL_KEYS, "GET")?;
    let every = match o.get("every") {
        None => Some(Duration::from_secs(30)),
        Some(n) => match duration(n) {
            Some(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(86_400) => Some(d),
            _ => {
                cx.error(n, &o.path_of("every"), format!("expected a duration from 100ms to 24h such as `30s`, `5m`, `500ms` (a bare number is seconds), found {}", shown(n)));
                None
            }
        },
    };
    let records = o.string(cx, "records").unwrap_or_else(|| "$".to_string());
    if !records.starts_with('$')
        && let Some(n) = o.get("records")
    {
        cx.error(n, &o.path_of("records"), format!("expected a selector starting with `$` such as `$.changes`, found `{records}`"));
    }
    let id_field = o.string(cx, "idField");
    let cursor_field = o.string(cx, "cursorField");
    let initial_cursor = o.get("initialCursor").map_or(Value::Null, to_json);
    Some(PullSpec { request, every: every?, records, id_field, cursor_field, initial_cursor })
}

/// `30s`, `5m`, `1h`, `500ms`, or a whole number of seconds.
fn duration(node: &MarkedYaml) -> Option<Duration> {
    if let Value::Number(n) = to_json(node) {
        return n.as_u64().map(Duration::from_secs);
    }
    let text = as_str(node)?.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        "h" => Some(Duration::from_secs(n * 3600)),
        _ => None,
    }
}

fn shown(node: &MarkedYaml) -> String {
    match as_str(node) {
        Some(s) => format!("`{s}`"),
        None => kind(node).to_string(),
    }
}

fn retry(cx: &mut Cx, node: &MarkedYaml, path: &str) -> Option<RetrySpec> {
    let o = Obj::open(cx, node, path, RETRY_KEYS)?;
    let d = RetrySpec::default();
    let before = cx.errors.len();
    let max = o.uint(cx, "max", 1, 100).map_or(d.max, |m| m as u32);
    let backoff_ms = o.uint(cx, "backoffMs", 1, DAY_MS).unwrap_or(d.backoff_ms);
    let max_backoff_ms = o.uint(cx, "maxBackoffMs", 1, DAY_MS).unwrap_or(d.max_backoff_ms.max(backoff_ms));
    if max_backoff_ms < backoff_ms
        && let Some(n) = o.get("maxBackoffMs")
    {
        cx.error(n, &o.path_of("maxBackoffMs"), format!("expected at least backoffMs ({backoff_ms}), found {max_backoff_ms}"));
    }
    (cx.errors.len() == before).then_some(RetrySpec { max, backoff_ms, max_backoff_ms })
}

fn supervision(cx: &mut Cx, node: &MarkedYaml, path: &str) -> Option<SupervisionSpec> {
    let o = Obj::open(cx, node, path, SUPERVISION_KEYS)?;
    let spec = SupervisionSpec {
        max_restarts: o.uint(cx, "maxRestarts", 0, 10_000).map(|v| v as u32),
        within_secs: o.uint(cx, "withinSecs", 1, 86_400),
        backoff_ms: o.uint(cx, "backoffMs", 0, DAY_MS),
        max_backoff_ms: o.uint(cx, "maxBackoffMs", 0, DAY_MS),
    };
    if let (Some(b), Some(m), Some(n)) = (spec.backoff_ms, spec.max_backoff_ms, o.get("maxBackoffMs"))
        && m < b
    {
        cx.error(n, &o.path_of("maxBackoffMs"), format!("expected at least backoffMs ({b}), found {m}"));
    }
    Some(spec)
}
