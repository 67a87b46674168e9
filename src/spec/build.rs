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
    &["id", "type", "description", "trigger", "key", "mapping", "mappingFile", "rateLimit", "circuitBreaker", "auth", "tls", "map", "source", "resolve", "deleted", "retry", "timeoutMs", "concurrency", "supervision"];
const TRIGGER_KEYS: &[&str] = &["topic", "filter", "webhook"];
const MAP_KEYS: &[&str] = &["from", "to", "hms", "publish", "create", "delete", "hmsCreate", "hmsDelete"];
const CREATE_KEYS: &[&str] = &["url", "method", "headers", "body", "encoding", "idField", "match"];
const MATCH_KEYS: &[&str] = &["url", "method", "headers", "body", "encoding", "records"];
const WEBHOOK_KEYS: &[&str] = &["path", "verify", "records", "idField"];
const VERIFY_KEYS: &[&str] = &["scheme", "secret", "toleranceSecs"];
const NEXT_KEYS: &[&str] = &["link", "token", "page"];
const RESOLVE_KEYS: &[&str] = &["policy", "versionField", "owners", "conflicts", "rules", "fetch"];
const RULE_KEYS: &[&str] = &["when", "then"];
const FETCH_KEYS: &[&str] = &["hms", "legacy"];
const REQUEST_KEYS: &[&str] = &["url", "method", "headers", "body", "encoding"];
const SOURCE_KEYS: &[&str] = &["pull", "webhook"];
const PULL_KEYS: &[&str] = &["url", "method", "headers", "body", "encoding", "every", "records", "idField", "cursorField", "initialCursor", "next", "lookback"];
const RETRY_KEYS: &[&str] = &["max", "backoffMs", "maxBackoffMs", "on"];
const SUPERVISION_KEYS: &[&str] = &["maxRestarts", "withinSecs", "backoffMs", "maxBackoffMs", "immediateFirstRestart"];
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
    let id_text = id.clone().unwrap_or_default();
    let trigger = o.get("trigger").and_then(|n| trigger(cx, n, "trigger", &id_text));
    let key = o.string(cx, "key");
    if let (Some(k), Some(node)) = (&key, o.get("key")) {
        template(cx, node, "key", k);
    }
    let mapping_file = o.string(cx, "mappingFile");
    let mut mapping = match (&mapping_file, o.get("mappingFile")) {
        (Some(file), Some(node)) => super::mapping_file::rows(cx, node, file),
        _ => Vec::new(),
    };
    for (hms, external) in o.string_map(cx, "mapping") {
        match mapping.iter_mut().find(|(h, _)| *h == hms) {
            Some(row) => row.1 = external,
            None => mapping.push((hms, external)),
        }
    }
    let map = o.get("map").and_then(|n| map_spec(cx, n, "map"));
    let source = o.get("source").and_then(|n| source(cx, n, "source", &id_text));
    let resolve = o.get("resolve").and_then(|n| resolve(cx, n, "resolve"));
    let deleted = o.string(cx, "deleted");
    if let (Some(d), Some(n)) = (&deleted, o.get("deleted"))
        && let Err(e) = check_expression(d)
    {
        cx.error(n, "deleted", format!("invalid expression: {e}"));
    }
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
        mapping_file,
        rate_limit: o.get("rateLimit").and_then(|n| rate_limit(cx, n, "rateLimit")),
        auth: o.get("auth").and_then(|n| auth(cx, n, "auth")).map(Box::new),
        tls: o.get("tls").and_then(|n| {
            let t = Obj::open(cx, n, "tls", &["caFile", "certFile", "keyFile", "ca", "cert", "key"])?;
            let spec = TlsSpec {
                ca_file: t.string(cx, "caFile"),
                cert_file: t.string(cx, "certFile"),
                key_file: t.string(cx, "keyFile"),
                ca: t.string(cx, "ca"),
                cert: t.string(cx, "cert"),
                key: t.string(cx, "key"),
            };
            for (file, secret) in [("caFile", "ca"), ("certFile", "cert"), ("keyFile", "key")] {
                if t.has(file) && t.has(secret) {
                    cx.error(n, "tls", format!("`{file}` or `{secret}` (a secret holding the PEM), not both"));
                }
            }
            for secret in ["ca", "cert", "key"] {
                if let (Some(v), Some(node)) = (t.string(cx, secret), t.get(secret))
                    && super::templates::secret_refs(&v).len() != 1
                {
                    cx.error(node, &t.path_of(secret), format!("expected one secret holding the PEM, e.g. \"${{STATE_CA_PEM}}\"; found `{v}` (a file goes in `{secret}File`)"));
                }
            }
            let has_cert = spec.cert_file.is_some() || spec.cert.is_some();
            let has_key = spec.key_file.is_some() || spec.key.is_some();
            if has_cert != has_key {
                cx.error(n, "tls", "a client certificate needs both a certificate (`certFile` or `cert`) and its key (`keyFile` or `key`)");
            }
            Some(Box::new(spec))
        }),
        circuit_breaker: o.get("circuitBreaker").and_then(|n| {
            let b = Obj::open(cx, n, "circuitBreaker", &["failures", "coolDownMs"])?;
            Some(BreakerSpec {
                failures: b.uint(cx, "failures", 1, 1_000_000).map_or(5, |v| v as u32),
                cool_down_ms: b.uint(cx, "coolDownMs", 1, DAY_MS).unwrap_or(30_000),
            })
        }),
        map: map.map(Box::new),
        source: source.map(Box::new),
        resolve: resolve.map(Box::new),
        deleted,
        retry: retry?,
        timeout_ms,
        concurrency,
        supervision,
    };
    check_direction(cx, &o, &spec);
    cx.errors.is_empty().then_some(spec)
}

/// Is `id` a connector id (1 to 128 letters, digits, `.`, `_`, `-`)?
pub fn valid_id(id: &str) -> bool {
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
    // A request that is there but invalid has its own errors: only an absent one is
    // reported as missing.
    let map_has = |key: &str| o.get("map").map(super::reader::to_json).is_some_and(|m| m.get(key).is_some());
    if sends_out && spec.outbound_request().is_none() && !o.has("map") {
        o.missing(cx, "map", &format!("`map.to`, the request {ty} connector sends"));
    } else if sends_out && spec.outbound_request().is_none() && spec.map.is_some() && !map_has("to") {
        cx.error(o.get("map").unwrap_or(o.node), "map.to", format!("missing required key `to`: {ty} connector needs the request it sends"));
    }
    if takes_in && !o.has("source") {
        o.missing(cx, "source", &format!("where {ty} connector's changes come from: source.pull and/or source.webhook"));
    }
    let applies = spec.hms_request().is_some() || (spec.direction == Direction::Inbound && spec.publish_topic().is_some());
    if takes_in && !applies && spec.map.is_some() && !map_has("hms") && !map_has("publish") {
        let what = if spec.direction == Direction::Inbound { "`hms` or `publish`" } else { "`hms`" };
        cx.error(o.get("map").unwrap_or(o.node), "map.hms", format!("missing required key {what}: {ty} connector needs the request that applies a change to HMS"));
    } else if takes_in && !o.has("map") {
        o.missing(cx, "map", "`map.hms`, the request that applies a change to HMS (or `map.publish`, a topic)");
    }
    if spec.direction == Direction::TwoWay && spec.key.is_none() {
        o.missing(cx, "key", "the record's key in HMS fields, e.g. \"{{ id }}\": both directions of a record share it (links, order)");
    }
    if spec.direction != Direction::TwoWay
        && let Some(node) = o.get("resolve")
    {
        cx.error(node, "resolve", format!("{ty} connector has nothing to resolve: conflicts need type: two-way"));
    }
    if let (Some(r), Some(node)) = (&spec.resolve, o.get("resolve"))
        && r.policy == Policy::Fields
        && r.owners.is_empty()
    {
        cx.error(node, "resolve.owners", "the `fields` policy needs `owners`, e.g. { startAt: hms, assignee: legacy }");
    }
    let paths = spec.webhook_paths();
    if paths.len() == 2 && paths[0] == paths[1] {
        cx.error(o.node, "source.webhook.path", format!("the HMS webhook and the source webhook both use {}", paths[0]));
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
        if let Some(node) = o.get("map").filter(|_| spec.hms_request().is_some() || spec.publish_topic().is_some()) {
            cx.error(node, "map.hms", format!("{ty} connector applies nothing to HMS (map.hms, map.publish); use type: two-way"));
        }
    }
}

fn trigger(cx: &mut Cx, node: &MarkedYaml, path: &str, id: &str) -> Option<Trigger> {
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
    let webhook = o.get("webhook").and_then(|n| webhook(cx, n, &o.path_of("webhook"), &format!("/webhooks/{id}.hms")));
    Some(Trigger { topic: topic?, filter, webhook })
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
    let publish = o.get("publish").and_then(|n| topics(cx, n, &o.path_of("publish"))).and_then(|t| t.into_iter().next());
    // With `idField` the side numbers the records we create; the id it gives is kept in the
    // record link (`{{ link.externalId }}` / `{{ link.hmsId }}` in later requests).
    let create = |cx: &mut Cx, key: &str| {
        let (create_req, c) = request(cx, o.get(key)?, &o.path_of(key), CREATE_KEYS, "POST")?;
        let id_field = c.string(cx, "idField");
        if let (Some(sel), Some(n)) = (&id_field, c.get("idField")) {
            selector_check(cx, Some(n), &c.path_of("idField"), &selector_of(sel));
        }
        let lookup = c.get("match").and_then(|n| {
            let at = c.path_of("match");
            let (lookup_req, m) = request(cx, n, &at, MATCH_KEYS, "GET")?;
            let records = m.string(cx, "records").unwrap_or_else(|| "$".to_string());
            selector_check(cx, m.get("records"), &m.path_of("records"), &records);
            Some(LookupSpec { request: lookup_req, records })
        });
        Some(CreateSpec { request: create_req, id_field, lookup })
    };
    let create_out = create(cx, "create");
    let hms_create = create(cx, "hmsCreate");
    let delete = o.get("delete").and_then(|n| request(cx, n, &o.path_of("delete"), REQUEST_KEYS, "DELETE").map(|(r, _)| r));
    let hms_delete = o.get("hmsDelete").and_then(|n| request(cx, n, &o.path_of("hmsDelete"), REQUEST_KEYS, "DELETE").map(|(r, _)| r));
    Some(MapSpec { from, to, hms, publish, create: create_out, delete, hms_create, hms_delete })
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
    let encoding = match (o.string(cx, "encoding"), o.get("encoding")) {
        (Some(e), Some(n)) => Encoding::parse(&e).unwrap_or_else(|| {
            cx.error(n, &o.path_of("encoding"), format!("unknown encoding `{e}`: expected one of {}", Encoding::NAMES.join(", ")));
            Encoding::Json
        }),
        _ => Encoding::Json,
    };
    // What each encoding writes: a shape of fields (json, form) or one document (xml, text).
    if let Some(n) = o.get("body") {
        let document = matches!(encoding, Encoding::Xml | Encoding::Text);
        let is_text = as_str(n).is_some();
        if document && !is_text {
            cx.error(n, &o.path_of("body"), format!("expected the {} document as one template (a string), found {}", if encoding == Encoding::Xml { "XML" } else { "text" }, kind(n)));
        } else if encoding == Encoding::Form && !matches!(n.data, saphyr::YamlData::Mapping(_)) {
            cx.error(n, &o.path_of("body"), format!("expected the form's fields (a mapping), found {}", kind(n)));
        }
    } else if matches!(encoding, Encoding::Xml | Encoding::Text)
        && let Some(n) = o.get("encoding")
    {
        cx.error(n, &o.path_of("body"), "missing required key `body`: the document to send, as one template");
    }
    Some((RequestSpec { url: url?, method, headers, body, encoding }, o))
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

fn source(cx: &mut Cx, node: &MarkedYaml, path: &str, id: &str) -> Option<SourceSpec> {
    let o = Obj::open(cx, node, path, SOURCE_KEYS)?;
    let pull = o.get("pull").and_then(|n| pull(cx, n, &o.path_of("pull")));
    let webhook = o.get("webhook").and_then(|n| webhook(cx, n, &o.path_of("webhook"), &format!("/webhooks/{id}")));
    if !o.has("pull") && !o.has("webhook") {
        o.missing(cx, "pull", "the change feed to poll ({ url, every, records, … }) and/or a `webhook` the system pushes to");
    }
    Some(SourceSpec { pull, webhook })
}

/// A webhook endpoint: `{ path, verify: { scheme, secret, toleranceSecs }, records, idField }`.
fn webhook(cx: &mut Cx, node: &MarkedYaml, path: &str, default_path: &str) -> Option<WebhookSpec> {
    let o = Obj::open(cx, node, path, WEBHOOK_KEYS)?;
    let hook_path = o.string(cx, "path").unwrap_or_else(|| default_path.to_string());
    if let Some(n) = o.get("path") {
        let name = hook_path.strip_prefix("/webhook/").or_else(|| hook_path.strip_prefix("/webhooks/"));
        let ok = name.is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
        if !ok {
            cx.error(n, &o.path_of("path"), format!("expected /webhook/NAME or /webhooks/NAME (NAME: letters, digits, `._-`), found `{hook_path}`"));
        }
    }
    let verify = match o.get("verify") {
        Some(n) => verify(cx, n, &o.path_of("verify")),
        None => {
            o.missing(cx, "verify", "how requests are verified: { scheme: standard-webhooks|github|token|none, secret: ${NAME} }");
            None
        }
    };
    let records = o.string(cx, "records").unwrap_or_else(|| "$".to_string());
    selector_check(cx, o.get("records"), &o.path_of("records"), &records);
    let id_field = o.string(cx, "idField");
    Some(WebhookSpec { path: hook_path, verify: verify?, records, id_field })
}

fn verify(cx: &mut Cx, node: &MarkedYaml, path: &str) -> Option<VerifySpec> {
    let o = Obj::open(cx, node, path, VERIFY_KEYS)?;
    let expected = Scheme::NAMES.join(", ");
    let scheme_text = o.required_string(cx, "scheme", &format!("one of {expected}"))?;
    let scheme = Scheme::parse(&scheme_text);
    if scheme.is_none()
        && let Some(n) = o.get("scheme")
    {
        cx.error(n, &o.path_of("scheme"), format!("unknown scheme `{scheme_text}`: expected one of {expected}"));
    }
    // The secret itself never sits in a file: only a `${NAME}` reference to the environment.
    let secret = match o.string(cx, "secret") {
        Some(text) => {
            let name = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')).filter(|n| super::templates::is_secret_name(n));
            if name.is_none()
                && let Some(n) = o.get("secret")
            {
                cx.error(n, &o.path_of("secret"), "expected a reference to an environment variable, `${NAME}`: secrets are never written in connector files");
            }
            name.map(str::to_string)
        }
        None => None,
    };
    if scheme.is_some_and(|s| s != Scheme::None) && secret.is_none() && !o.has("secret") {
        o.missing(cx, "secret", "`${NAME}`, the environment variable holding the secret");
    }
    let tolerance_secs = o.uint(cx, "toleranceSecs", 1, 86_400).unwrap_or(300);
    Some(VerifySpec { scheme: scheme?, secret, tolerance_secs })
}

/// JSONPath subset: `$`, `$.a.b`, `$.a[0]`, `$.items[*]`, `$.items[*].a` (one `[*]`).
fn selector_check(cx: &mut Cx, node: Option<&MarkedYaml>, path: &str, selector: &str) {
    let Some(rest) = selector.strip_prefix('$') else {
        if let Some(n) = node {
            cx.error(n, path, format!("expected a selector starting with `$` such as `$.changes`, found `{selector}`"));
        }
        return;
    };
    let steps: Vec<&str> = rest.split('.').collect();
    let ok = (rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
        && selector.matches("[*]").count() <= 1
        && steps.iter().enumerate().all(|(i, step)| {
            let (name, idx) = step.find('[').map_or((*step, ""), |p| (&step[..p], &step[p..]));
            let name_ok = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') && (i == 0 || !name.is_empty());
            let idx_ok = idx.split('[').filter(|s| !s.is_empty()).all(|s| s.strip_suffix(']').is_some_and(|inner| inner.parse::<usize>().is_ok() || inner == "*"));
            name_ok && idx_ok
        });
    if !ok && let Some(n) = node {
        cx.error(n, path, format!("unsupported selector `{selector}`: expected `$`, `$.a.b`, `$.a[0].b`, `$.items[*]` or `$.items[*].a` (one `[*]`)"));
    }
}

/// `resolve: last-writer-wins` or `{ policy, versionField, owners, fetch: { hms, legacy } }`.
fn resolve(cx: &mut Cx, node: &MarkedYaml, path: &str) -> Option<ResolveSpec> {
    let expected = Policy::NAMES.join(", ");
    let parse_policy = |cx: &mut Cx, n: &MarkedYaml, at: &str| -> Option<Policy> {
        let text = as_str(n)?;
        let p = Policy::parse(text);
        if p.is_none() {
            cx.error(n, at, format!("unknown policy `{text}`: expected one of {expected}"));
        }
        p
    };
    if as_str(node).is_some() {
        let policy = parse_policy(cx, node, path)?;
        return Some(ResolveSpec { policy, ..ResolveSpec::default() });
    }
    let o = Obj::open(cx, node, path, RESOLVE_KEYS)?;
    let policy = match o.get("policy") {
        Some(n) => parse_policy(cx, n, &o.path_of("policy")),
        None => Some(Policy::LastWriterWins),
    };
    let version_field = o.string(cx, "versionField").unwrap_or_else(|| "updatedAt".into());
    let mut owners = Vec::new();
    for (field, side) in o.string_map(cx, "owners") {
        match side.as_str() {
            "hms" => owners.push((field, Side::Hms)),
            "legacy" => owners.push((field, Side::Legacy)),
            other => cx.error(o.get("owners").unwrap_or(o.node), &format!("{}.{field}", o.path_of("owners")), format!("unknown side `{other}`: expected hms or legacy")),
        }
    }
    let conflicts = match o.get("conflicts") {
        None => FieldRule::LastWriter,
        Some(n) => match as_str(n).and_then(FieldRule::parse) {
            Some(r) => r,
            None => {
                cx.error(n, &o.path_of("conflicts"), format!("expected one of {}, found {}", FieldRule::NAMES.join(", "), shown(n)));
                FieldRule::LastWriter
            }
        },
    };
    let rules = o.get("rules").map(|n| rules(cx, n, &o.path_of("rules"), &parse_policy)).unwrap_or_default();
    let (mut fetch_hms, mut fetch_legacy) = (None, None);
    if let Some(n) = o.get("fetch")
        && let Some(f) = Obj::open(cx, n, &o.path_of("fetch"), FETCH_KEYS)
    {
        fetch_hms = f.get("hms").and_then(|n| request(cx, n, &f.path_of("hms"), REQUEST_KEYS, "GET").map(|(r, _)| r));
        fetch_legacy = f.get("legacy").and_then(|n| request(cx, n, &f.path_of("legacy"), REQUEST_KEYS, "GET").map(|(r, _)| r));
    }
    if !rules.is_empty() && fetch_hms.is_none() && fetch_legacy.is_none()
        && let Some(n) = o.get("rules")
    {
        cx.error(n, &o.path_of("rules"), "rules compare both sides' records: add `fetch` (hms, legacy or both) so the service can read them");
    }
    Some(ResolveSpec { policy: policy?, version_field, owners, conflicts, rules, fetch_hms, fetch_legacy })
}

/// `rules: [{ when: 'hms.editedBy.role == "manager"', then: hms-wins }, …]`.
fn rules(cx: &mut Cx, node: &MarkedYaml, path: &str, parse_policy: &dyn Fn(&mut Cx, &MarkedYaml, &str) -> Option<Policy>) -> Vec<RuleSpec> {
    let saphyr::YamlData::Sequence(items) = &node.data else {
        cx.error(node, path, format!("expected a list of rules such as [{{ when: 'hms.editedBy.role == \"manager\"', then: hms-wins }}], found {}", shown(node)));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some(r) = Obj::open(cx, item, &at, RULE_KEYS) else { continue };
        let when = r.required_string(cx, "when", "an expression over `hms` and `legacy`, e.g. hms.editedBy.role == \"manager\"");
        if let (Some(w), Some(n)) = (&when, r.get("when"))
            && let Err(e) = check_expression(w)
        {
            cx.error(n, &r.path_of("when"), format!("invalid rule condition: {e}"));
        }
        let then = match r.get("then") {
            Some(n) => parse_policy(cx, n, &r.path_of("then")),
            None => {
                r.missing(cx, "then", "the policy that decides when the rule holds: hms-wins, legacy-wins, merge, manual or last-writer-wins");
                None
            }
        };
        if let (Some(when), Some(then)) = (when, then) {
            out.push(RuleSpec { when, then });
        }
    }
    out
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
    selector_check(cx, o.get("records"), &o.path_of("records"), &records);
    let id_field = o.string(cx, "idField");
    let cursor_field = o.string(cx, "cursorField");
    let initial_cursor = o.get("initialCursor").map_or(Value::Null, to_json);
    let next = o.get("next").and_then(|n| pagination(cx, n, &o.path_of("next")));
    let lookback = o.uint(cx, "lookback", 0, 86_400 * 365);
    Some(PullSpec { request, every: every?, records, id_field, cursor_field, initial_cursor, next, lookback })
}

/// `next: { link: $.next }`, `{ token: $.nextPageToken }` or `{ page: 1 }`: exactly one.
fn pagination(cx: &mut Cx, node: &MarkedYaml, path: &str) -> Option<Pagination> {
    let o = Obj::open(cx, node, path, NEXT_KEYS)?;
    let given: Vec<&str> = NEXT_KEYS.iter().copied().filter(|k| o.has(k)).collect();
    if given.len() != 1 {
        cx.error(node, path, format!("expected exactly one of `link`, `token`, `page`, found {}", given.len()));
        return None;
    }
    match given[0] {
        "link" | "token" => {
            let sel = o.string(cx, given[0])?;
            selector_check(cx, o.get(given[0]), &o.path_of(given[0]), &sel);
            Some(if given[0] == "link" { Pagination::Link(sel) } else { Pagination::Token(sel) })
        }
        _ => o.uint(cx, "page", 0, 1_000_000).map(Pagination::Page),
    }
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
    let on = o.get("on").and_then(|n| statuses(cx, n, &o.path_of("on")));
    (cx.errors.len() == before).then_some(RetrySpec { max, backoff_ms, max_backoff_ms, on })
}

/// `[408, 429, 5xx, 409]`: status codes (100–599) or whole classes (`4xx`, `5xx`).
fn statuses(cx: &mut Cx, node: &MarkedYaml, path: &str) -> Option<StatusSet> {
    let saphyr::YamlData::Sequence(items) = &node.data else {
        cx.error(node, path, format!("expected a list of HTTP statuses such as [408, 429, 5xx, 409], found {}", shown(node)));
        return None;
    };
    let mut set = StatusSet::default();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let text = match to_json(item) {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s,
            _ => String::new(),
        };
        let class = text.strip_suffix("xx").or_else(|| text.strip_suffix("XX")).and_then(|c| c.parse::<u16>().ok()).filter(|c| (1..=5).contains(c));
        match (class, text.parse::<u16>().ok().filter(|c| (100..600).contains(c))) {
            (Some(c), _) => (c * 100..c * 100 + 100).for_each(|s| set.insert(s)),
            (None, Some(code)) => set.insert(code),
            _ => {
                cx.error(item, &format!("{path}[{i}]"), format!("expected an HTTP status (100-599) or a class such as 5xx, found {}", shown(item)));
                ok = false;
            }
        }
    }
    ok.then_some(set)
}

fn supervision(cx: &mut Cx, node: &MarkedYaml, path: &str) -> Option<SupervisionSpec> {
    let o = Obj::open(cx, node, path, SUPERVISION_KEYS)?;
    let spec = SupervisionSpec {
        max_restarts: o.uint(cx, "maxRestarts", 0, 10_000).map(|v| v as u32),
        within_secs: o.uint(cx, "withinSecs", 1, 86_400),
        backoff_ms: o.uint(cx, "backoffMs", 0, DAY_MS),
        max_backoff_ms: o.uint(cx, "maxBackoffMs", 0, DAY_MS),
        immediate_first_restart: o.get("immediateFirstRestart").and_then(|n| bool_value(cx, n, &o.path_of("immediateFirstRestart"))),
    };
    if let (Some(b), Some(m), Some(n)) = (spec.backoff_ms, spec.max_backoff_ms, o.get("maxBackoffMs"))
        && m < b
    {
        cx.error(n, &o.path_of("maxBackoffMs"), format!("expected at least backoffMs ({b}), found {m}"));
    }
    Some(spec)
}

/// A `true` or `false` value.
fn bool_value(cx: &mut Cx, node: &MarkedYaml, path: &str) -> Option<bool> {
    let value = to_json(node).as_bool();
    if value.is_none() {
        cx.error(node, path, format!("expected true or false, found {}", kind(node)));
    }
    value
}

/// `rateLimit: { perSecond, burst }`: perSecond a number over 0 (0.5 is one request every
/// two seconds), burst a whole number from 1 (default: perSecond rounded up).
fn rate_limit(cx: &mut Cx, node: &MarkedYaml, path: &str) -> Option<RateLimitSpec> {
    let o = Obj::open(cx, node, path, &["perSecond", "burst"])?;
    let Some(n) = o.get("perSecond") else {
        o.missing(cx, "perSecond", "requests per second, e.g. 50 (0.5: one every two seconds)");
        return None;
    };
    let per_second = to_json(n).as_f64().filter(|v| *v > 0.0 && *v <= 1_000_000.0);
    if per_second.is_none() {
        cx.error(n, &o.path_of("perSecond"), format!("expected a number over 0 (at most 1000000), found {}", kind(n)));
    }
    let per_second = per_second?;
    let burst = o.uint(cx, "burst", 1, 1_000_000).map_or(per_second.ceil().max(1.0) as u32, |b| b as u32);
    Some(RateLimitSpec { per_second, burst })
}

/// `auth:` `{ type: basic, username, password }`, `{ type: bearer, token }`,
/// `{ type: apiKey, header | query, value }`, or `{ type: oauth2, grant: client_credentials |
/// refresh_token, tokenUrl, clientId, clientSecret, refreshToken, scope }`.
fn auth(cx: &mut Cx, node: &MarkedYaml, path: &str) -> Option<AuthSpec> {
    let o = Obj::open(cx, node, path, &["type", "username", "password", "token", "header", "query", "value", "grant", "tokenUrl", "clientId", "clientSecret", "refreshToken", "scope", "privateKey"])?;
    let ty = o.required_string(cx, "type", "basic, bearer, apiKey or oauth2")?;
    let need = |cx: &mut Cx, key: &str, what: &str| o.required_string(cx, key, what);
    let unused = |cx: &mut Cx, keys: &[&str]| {
        for key in keys {
            if let Some(n) = o.get(key) {
                cx.error(n, &o.path_of(key), format!("`{key}` is not used by auth type `{ty}`"));
            }
        }
    };
    match ty.as_str() {
        "basic" => {
            unused(cx, &["token", "header", "query", "value", "grant", "tokenUrl", "clientId", "clientSecret", "refreshToken", "scope"]);
            Some(AuthSpec::Basic { username: need(cx, "username", "the user name, e.g. ${API_USER}")?, password: need(cx, "password", "the password, e.g. ${API_PASSWORD}")? })
        }
        "bearer" => {
            unused(cx, &["username", "password", "header", "query", "value", "grant", "tokenUrl", "clientId", "clientSecret", "refreshToken", "scope"]);
            Some(AuthSpec::Bearer { token: need(cx, "token", "the token, e.g. ${API_TOKEN}")? })
        }
        "apiKey" => {
            unused(cx, &["username", "password", "token", "grant", "tokenUrl", "clientId", "clientSecret", "refreshToken", "scope"]);
            let (header, query) = (o.string(cx, "header"), o.string(cx, "query"));
            if header.is_some() == query.is_some() {
                cx.error(node, path, "an apiKey goes in a `header` (e.g. X-Api-Key) or a `query` parameter (e.g. api_key): name exactly one");
            }
            Some(AuthSpec::ApiKey { header, query, value: need(cx, "value", "the key, e.g. ${API_KEY}")? })
        }
        "oauth2" => {
            unused(cx, &["username", "password", "token", "header", "query", "value"]);
            let grant = match o.string(cx, "grant").as_deref() {
                None | Some("client_credentials") => OAuthGrant::ClientCredentials,
                Some("refresh_token") => OAuthGrant::RefreshToken,
                Some("jwt_bearer") => OAuthGrant::JwtBearer,
                Some(other) => {
                    if let Some(n) = o.get("grant") {
                        cx.error(n, &o.path_of("grant"), format!("unknown grant `{other}`: expected client_credentials, refresh_token or jwt_bearer"));
                    }
                    return None;
                }
            };
            let private_key = o.string(cx, "privateKey");
            if grant == OAuthGrant::JwtBearer && private_key.is_none() {
                o.missing(cx, "privateKey", "the service account's private key (PKCS#8 PEM) as a secret, e.g. ${GOOGLE_SA_PRIVATE_KEY}");
            }
            let refresh_token = o.string(cx, "refreshToken");
            if grant == OAuthGrant::RefreshToken && refresh_token.is_none() {
                o.missing(cx, "refreshToken", "the refresh token, e.g. ${CRM_REFRESH_TOKEN}");
            }
            let token_url = need(cx, "tokenUrl", "the token endpoint, e.g. https://login.example.gov/oauth2/token")?;
            Some(AuthSpec::Oauth2 { grant, token_url, client_id: need(cx, "clientId", "the client id")?, client_secret: o.string(cx, "clientSecret"), refresh_token, scope: o.string(cx, "scope"), private_key })
        }
        other => {
            if let Some(n) = o.get("type") {
                cx.error(n, &o.path_of("type"), format!("unknown auth type `{other}`: expected basic, bearer, apiKey or oauth2"));
            }
            None
        }
    }
}
