//! A connector's templates and filter, compiled once with minijinja, rendered per event.
//!
//! `${NAME}` secrets are rewritten to `{{ __secrets.NAME }}` before compiling, so a secret
//! is a *value* of the render context, never template source: an event payload that
//! contains `${OTHER}` stays literal text and cannot pull another secret out.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior, Value as JValue};
use serde::Serialize;
use serde_json::Value;

use super::Payload;
use super::context::RecordContext;
use crate::spec::templates::{replace_secret_refs, url_to_template};
use crate::spec::{ConnectorSpec, RequestSpec};

/// Secret values by name; for a dry run every value is a mask.
pub type Secrets = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum MappingError {
    #[error("template `{field}` cannot render: {reason}")]
    Render { field: String, reason: String },
    #[error("filter cannot be evaluated: {0}")]
    Filter(String),
    #[error("secret ${{{0}}} is not set in the environment")]
    MissingSecret(String),
}

/// The exact HTTP request a connector would send for one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderedRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Shared with the record when the body is the record as it is (no body template, no
    /// mapping): the common outbound case sends the job's payload without copying it.
    pub body: Option<Arc<Payload>>,
    /// How `body` goes on the wire (a string for xml and text).
    #[serde(skip_serializing_if = "Encoding::is_json")]
    pub encoding: Encoding,
}

impl RenderedRequest {
    /// The body as sent, with its `Content-Type`: JSON, a form (fields nested the Stripe
    /// way), or the rendered document. `None` without a body.
    pub fn wire_body(&self) -> Option<(String, &'static str)> {
        let body = self.body.as_deref()?;
        // JSON is the payload's own text ([`Payload::text`]): a body that is the job's record
        // as it is shares the text the job's row was written with, instead of serializing
        // the record again.
        let text = match self.encoding {
            Encoding::Json => body.text().to_owned(),
            Encoding::Form => crate::mapping::form::encode(body),
            Encoding::Xml | Encoding::Text => match body.value() {
                Value::String(s) => s.clone(),
                _ => body.text().to_owned(),
            },
        };
        Some((text, self.encoding.content_type()))
    }
}

/// Templates of one request, compiled.
struct RequestTemplates {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Value>,
    encoding: Encoding,
}

/// A connector's templates, compiled when it first needs them. Compiled templates are
/// large (minijinja reserves room for 256 instructions and 128 line records in each, about
/// 9.5 KiB, whatever the template's size), so a thousand idle connectors would hold about
/// 20 MiB of compiled templates they never render. The spec is compiled once when the
/// connector is made (so an error shows at start-up, not at the first event) and that
/// compilation is dropped; the one kept is made at the first render, the filter's first
/// check, and so on. Compiling is deterministic, so the second compilation cannot fail
/// where the first did not.
pub struct CompiledConnector {
    spec: Option<Arc<ConnectorSpec>>,
    /// Boxed: an idle connector keeps only a pointer's room for it.
    compiled: std::sync::OnceLock<Box<Compiled>>,
}

impl CompiledConnector {
    /// Compiles every template of the spec now (the dry run, the fuzzer).
    pub fn compile(spec: &ConnectorSpec) -> Result<Self, MappingError> {
        let compiled = Compiled::compile(spec)?;
        Ok(Self { spec: None, compiled: std::sync::OnceLock::from(Box::new(compiled)) })
    }

    /// Checks that the spec compiles, and compiles it for keeps at its first use (a running
    /// connector's templates).
    pub fn lazy(spec: Arc<ConnectorSpec>) -> Result<Self, MappingError> {
        drop(Compiled::compile(&spec)?);
        Ok(Self { spec: Some(spec), compiled: std::sync::OnceLock::new() })
    }

    /// Compiled now if not yet.
    fn get(&self) -> &Compiled {
        self.compiled.get_or_init(|| {
            let spec = self.spec.as_ref().expect("a CompiledConnector without its templates has its spec");
            // `lazy` compiled this very spec without an error, and compiling is
            // deterministic: this cannot fail.
            Box::new(Compiled::compile(spec).expect("the spec compiled when the connector was made"))
        })
    }
}

/// What every event of the connector's topics meets in the publishing request: the filter,
/// `deleted:` and the record key. Answered without compiling when the spec makes that
/// exact (no filter, no `deleted:`, a key that is one field holding a string or an integer,
/// rendered as minijinja renders it), so the first event for a thousand idle connectors
/// does not compile a thousand connectors in one request; anything else asks the templates.
impl CompiledConnector {
    pub fn matches(&self, topic: &str, payload: &Value) -> bool {
        if self.spec.as_ref().is_some_and(|s| s.filter().is_none()) {
            return true;
        }
        self.get().matches(topic, payload)
    }

    pub fn is_delete(&self, topic: &str, payload: &Value) -> bool {
        if self.spec.as_ref().is_some_and(|s| s.deleted.is_none()) {
            return false;
        }
        self.get().is_delete(topic, payload)
    }

    pub fn record_key(&self, payload: &Arc<Payload>, fallback: &str) -> Result<String, MappingError> {
        if let Some(spec) = &self.spec {
            let Some(key) = spec.key.as_deref() else { return Ok(fallback.to_string()) };
            match simple_path(key).and_then(|path| field(payload, path)) {
                Some(Value::String(s)) => return Ok(s.clone()),
                Some(Value::Number(n)) if n.is_i64() || n.is_u64() => return Ok(n.to_string()),
                _ => {}
            }
        }
        self.get().record_key(payload, fallback)
    }
}

/// `{{ a.b }}` (and nothing else): the field path `a.b`.
fn simple_path(template: &str) -> Option<&str> {
    let inner = template.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let ok = !inner.is_empty()
        && inner.split('.').all(|seg| seg.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    ok.then_some(inner)
}

/// The value at a dotted path of objects.
fn field<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, seg| v.as_object()?.get(seg))
}

/// The connector's compiled templates, reached through [`CompiledConnector`] (compiled at
/// first use).
impl std::ops::Deref for CompiledConnector {
    type Target = Compiled;
    fn deref(&self) -> &Compiled {
        self.get()
    }
}

/// Everything of a connector that turns an event into a request.
pub struct Compiled {
    env: Environment<'static>,
    /// The trigger filter, compiled once (see [`CompiledConnector::matches`]).
    filter: Option<Environment<'static>>,
    key: Option<String>,
    /// `map.to`: HMS event → request to the external system.
    request: Option<RequestTemplates>,
    /// `map.hms`: inbound record → request applying it to HMS.
    hms: Option<RequestTemplates>,
    /// `source.pull`: cursor → request to the external change feed.
    pull: Option<RequestTemplates>,
    /// `resolve.fetch`: record → request reading the other side's current record.
    fetch_hms: Option<RequestTemplates>,
    fetch_legacy: Option<RequestTemplates>,
    /// `resolve.rules` conditions, in order, each compiled like the filter.
    rules: Vec<Environment<'static>>,
    /// `deleted:`, compiled like the filter.
    deleted: Option<Environment<'static>>,
    /// `map.create`, `map.delete`, `map.hmsCreate`, `map.hmsDelete`.
    create: Option<RequestTemplates>,
    delete: Option<RequestTemplates>,
    hms_create: Option<RequestTemplates>,
    hms_delete: Option<RequestTemplates>,
    /// `map.create.match` / `map.hmsCreate.match`.
    lookup: Option<RequestTemplates>,
    hms_lookup: Option<RequestTemplates>,
    mapping: Vec<(String, String)>,
}

pub use crate::spec::model::{Encoding, Write};

/// Name of the filter template in its environment.
const FILTER: &str = "filter";

/// A condition (the trigger filter, a resolver rule), compiled once as
/// `{% if (expr) %}1{% endif %}` in an environment of its own with lenient undefined: a
/// missing field is simply false.
fn condition(expr: &str) -> Result<Environment<'static>, MappingError> {
    let mut env = Environment::new();
    env.add_template_owned(FILTER, format!("{{% if ({expr}) %}}1{{% endif %}}")).map_err(|e| MappingError::Filter(e.to_string()))?;
    Ok(env)
}

/// `${NAME}` → `{{ __secrets.NAME }}`.
fn secrets_to_vars(text: &str) -> String {
    replace_secret_refs(text, |name| format!("{{{{ __secrets.{name} }}}}"))
}

/// Compiles one request's templates under names prefixed with `prefix`.
fn compile_request(
    add: &mut impl FnMut(String, String) -> Result<(), MappingError>,
    prefix: &str,
    req: &RequestSpec,
) -> Result<RequestTemplates, MappingError> {
    let url = format!("{prefix}.url");
    add(url.clone(), url_to_template(&req.url))?;
    let mut headers = Vec::new();
    for (name, value) in &req.headers {
        let tname = format!("{prefix}.headers.{name}");
        add(tname.clone(), value.clone())?;
        headers.push((name.clone(), tname));
    }
    // An XML document's template escapes what it inserts (its name says so, see `compile`).
    let body_name = if req.encoding == Encoding::Xml { format!("{prefix}.body.xml") } else { format!("{prefix}.body") };
    let body = match &req.body {
        Some(body) => Some(register_body(add, &body_name, body)?),
        None => None,
    };
    Ok(RequestTemplates { method: req.method.clone(), url, headers, body, encoding: req.encoding })
}

impl Compiled {
    /// Compiles every template of the spec. The spec was validated, so an error here is a
    /// bug or a spec changed under us; it is reported, never a panic.
    fn compile(spec: &ConnectorSpec) -> Result<Self, MappingError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Requests are JSON, forms and URLs: no escaping, except in an XML document's
        // template, whose inserted values are escaped (`&`, `<`, `>`, quotes).
        env.set_auto_escape_callback(|name| if name.ends_with(".xml") { minijinja::AutoEscape::Html } else { minijinja::AutoEscape::None });
        let mut add = |name: String, source: String| {
            env.add_template_owned(name.clone(), secrets_to_vars(&source))
                .map_err(|e| MappingError::Render { field: name, reason: e.to_string() })
        };
        let request = spec.outbound_request().map(|r| compile_request(&mut add, "map.to", r)).transpose()?;
        let hms = spec.hms_request().map(|r| compile_request(&mut add, "map.hms", r)).transpose()?;
        let pull = spec.pull_view().map(|p| compile_request(&mut add, "source.pull", &p.request)).transpose()?;
        let map = spec.map.as_ref();
        let create = map.and_then(|m| m.create.as_ref()).map(|c| compile_request(&mut add, "map.create", &c.request)).transpose()?;
        let delete = map.and_then(|m| m.delete.as_ref()).map(|r| compile_request(&mut add, "map.delete", r)).transpose()?;
        let hms_create = map.and_then(|m| m.hms_create.as_ref()).map(|c| compile_request(&mut add, "map.hmsCreate", &c.request)).transpose()?;
        let hms_delete = map.and_then(|m| m.hms_delete.as_ref()).map(|r| compile_request(&mut add, "map.hmsDelete", r)).transpose()?;
        let lookup = map.and_then(|m| m.create.as_ref()).and_then(|c| c.lookup.as_ref()).map(|l| compile_request(&mut add, "map.create.match", &l.request)).transpose()?;
        let hms_lookup = map.and_then(|m| m.hms_create.as_ref()).and_then(|c| c.lookup.as_ref()).map(|l| compile_request(&mut add, "map.hmsCreate.match", &l.request)).transpose()?;
        let resolve = spec.resolve.as_ref();
        let fetch_hms = resolve.and_then(|r| r.fetch_hms.as_ref()).map(|r| compile_request(&mut add, "resolve.fetch.hms", r)).transpose()?;
        let fetch_legacy = resolve.and_then(|r| r.fetch_legacy.as_ref()).map(|r| compile_request(&mut add, "resolve.fetch.legacy", r)).transpose()?;
        let key = match &spec.key {
            Some(k) => {
                add("key".into(), k.clone())?;
                Some("key".to_string())
            }
            None => None,
        };
        drop(add);
        let filter = spec.filter().map(condition).transpose()?;
        let rules = resolve.map(|r| r.rules.iter().map(|rule| condition(&rule.when)).collect::<Result<_, _>>()).transpose()?.unwrap_or_default();
        let deleted = spec.deleted.as_deref().map(condition).transpose()?;
        Ok(Self { env, filter, key, request, hms, pull, fetch_hms, fetch_legacy, rules, deleted, create, delete, hms_create, hms_delete, lookup, hms_lookup, mapping: spec.mapping_pairs() })
    }

    /// Does this change delete its record (`deleted:` over `object` and `topic`)?
    pub fn is_delete(&self, topic: &str, payload: &Value) -> bool {
        let Some(env) = &self.deleted else { return false };
        let ctx = minijinja::context! { object => JValue::from_serialize(payload), topic => topic };
        env.get_template(FILTER).ok().and_then(|t| t.render(ctx).ok()).is_some_and(|out| out == "1")
    }

    /// Renders the write of a job to `to`: the create request when `op` is a create and the
    /// connector has one, the delete request for a delete, else the update (`map.to` /
    /// `map.hms`). Without a body template the body is the record, mapped to the external
    /// system's fields for it. `extras` (an object, or null) stand beside the record's
    /// fields: two-way writes see the side's record as read (`current`), its `etag` and the
    /// record's `link` (`hmsId`, `externalId`). `None`: the connector has no such request.
    pub fn render_write(&self, to: crate::spec::model::Side, op: Write, payload: &Arc<Payload>, extras: &Value, secrets: &Secrets) -> Result<Option<RenderedRequest>, MappingError> {
        use crate::spec::model::Side;
        let (update, create, delete) = match to {
            Side::Legacy => (&self.request, &self.create, &self.delete),
            Side::Hms => (&self.hms, &self.hms_create, &self.hms_delete),
        };
        let req = match op {
            Write::Update => update.as_ref(),
            Write::Create => create.as_ref().or(update.as_ref()),
            Write::Delete => delete.as_ref(),
        };
        let Some(req) = req else { return Ok(None) };
        let default_body = match (op, to) {
            (Write::Delete, _) => None,
            (_, Side::Legacy) if !self.mapping.is_empty() => Some(Payload::shared(crate::mapping::fields::map_out(payload, &self.mapping))),
            _ => Some(Arc::clone(payload)),
        };
        self.render_request(req, &with_extras(payload, extras), default_body, secrets).map(Some)
    }

    /// Renders the lookup (`match`) of side `to` for `record` (HMS fields), if it has one.
    pub fn render_lookup(&self, to: crate::spec::model::Side, record: &Value, extras: &Value, secrets: &Secrets) -> Result<Option<RenderedRequest>, MappingError> {
        let req = match to {
            crate::spec::model::Side::Legacy => &self.lookup,
            crate::spec::model::Side::Hms => &self.hms_lookup,
        };
        req.as_ref().map(|r| self.render_request(r, &record_with_extras(record, extras), None, secrets)).transpose()
    }

    /// The first resolver rule whose condition holds for these records (`hms` and `legacy`,
    /// each as its side holds it). A condition that errors at run time does not hold.
    pub fn rule_hit(&self, hms: &Value, legacy: &Value) -> Option<usize> {
        self.rules.iter().position(|env| {
            let ctx = minijinja::context! { hms => JValue::from_serialize(hms), legacy => JValue::from_serialize(legacy) };
            env.get_template(FILTER).ok().and_then(|t| t.render(ctx).ok()).is_some_and(|out| out == "1")
        })
    }

    /// Does the event pass the connector's filter? `object` is the payload, `topic` the
    /// topic. A field the event lacks is undefined (falsy), so such an event does not match
    /// rather than failing; an expression that errors at run time does not match either.
    pub fn matches(&self, topic: &str, payload: &Value) -> bool {
        let Some(env) = &self.filter else { return true };
        let Ok(tmpl) = env.get_template(FILTER) else { return false };
        let ctx = minijinja::context! { object => JValue::from_serialize(payload), topic => topic };
        tmpl.render(ctx).is_ok_and(|out| out == "1")
    }

    /// The record key used for ordering; `fallback` (the event id) when the spec has none.
    /// The payload is shared: the render context reads it where it is (the Bus holds each
    /// event in an `Arc` already).
    pub fn record_key(&self, payload: &Arc<Payload>, fallback: &str) -> Result<String, MappingError> {
        match &self.key {
            Some(name) => self.render_str_in(name, payload, &Secrets::new(), &mut None),
            None => Ok(fallback.to_string()),
        }
    }

    /// Renders the outbound request (`map.to`) for an HMS event (the dry run's request).
    pub fn render(&self, payload: &Value, secrets: &Secrets) -> Result<Option<RenderedRequest>, MappingError> {
        self.render_write(crate::spec::model::Side::Legacy, Write::Update, &Payload::shared(payload.clone()), &Value::Null, secrets)
    }

    /// Renders the request reading `side`'s current copy of `record` (in HMS fields), if the
    /// connector has one.
    pub fn render_fetch(&self, side: crate::spec::model::Side, record: &Value, extras: &Value, secrets: &Secrets) -> Result<Option<RenderedRequest>, MappingError> {
        let req = match side {
            crate::spec::model::Side::Hms => &self.fetch_hms,
            crate::spec::model::Side::Legacy => &self.fetch_legacy,
        };
        req.as_ref().map(|r| self.render_request(r, &record_with_extras(record, extras), None, secrets)).transpose()
    }

    /// Renders the change-feed request for the current cursor (`{{ cursor }}`).
    /// `page` is the pagination token or page number (`{{ page }}`), empty for the first page.
    pub fn render_pull(&self, cursor: &Value, page: &Value, secrets: &Secrets) -> Result<RenderedRequest, MappingError> {
        let req = self.pull.as_ref().ok_or_else(|| MappingError::Render { field: "source.pull".into(), reason: "connector has no pull".into() })?;
        // Before the first pull with no initialCursor the cursor is empty, not `none`.
        let cursor = if cursor.is_null() { Value::String(String::new()) } else { cursor.clone() };
        let page = if page.is_null() { Value::String(String::new()) } else { page.clone() };
        let ctx = serde_json::json!({ "cursor": cursor, "page": page });
        self.render_request(req, &Payload::shared(ctx), None, secrets)
    }

    fn render_request(&self, req: &RequestTemplates, payload: &Arc<Payload>, default_body: Option<Arc<Payload>>, secrets: &Secrets) -> Result<RenderedRequest, MappingError> {
        // One render context for the URL, every header and the body's templates (made at the
        // first that needs it).
        let mut ctx = None;
        let url = self.render_str_in(&req.url, payload, secrets, &mut ctx)?;
        let mut headers = Vec::with_capacity(req.headers.len());
        for (name, tname) in &req.headers {
            headers.push((name.clone(), self.render_str_in(tname, payload, secrets, &mut ctx)?));
        }
        let body = match &req.body {
            Some(shape) => Some(Payload::shared(self.render_value(shape, payload, secrets, &mut ctx)?.unwrap_or(Value::Null))),
            None => default_body.filter(|b| !b.is_null()),
        };
        let body = if req.method == "GET" || req.method == "DELETE" { None } else { body };
        Ok(RenderedRequest { method: req.method.clone(), url, headers, body, encoding: req.encoding })
    }

    /// Renders template `name` with the render context `ctx`, made here if it is not yet (the
    /// payload's fields, `event` and the secrets, converted as a template looks them up: see
    /// [`RecordContext`]). A template without template syntax is its own text, and needs
    /// neither the context nor a render: most URLs and headers (`Content-Type`, a fixed
    /// endpoint) are such literals, and they cost a third of a delivery's CPU when rendered.
    fn render_str_in(&self, name: &str, payload: &Arc<Payload>, secrets: &Secrets, ctx: &mut Option<JValue>) -> Result<String, MappingError> {
        let tmpl = self.env.get_template(name).map_err(|e| render_err(name, e))?;
        if let Some(text) = literal(tmpl.source()) {
            return Ok(text.to_owned());
        }
        let ctx = ctx.get_or_insert_with(|| RecordContext::value(Arc::clone(payload), JValue::from_serialize(secrets)));
        tmpl.render(ctx.clone()).map_err(|e| {
            if e.kind() != minijinja::ErrorKind::UndefinedError {
                return render_err(name, e);
            }
            // Name the fields the event lacks: more useful to an operator than "undefined".
            let mut missing: Vec<String> = tmpl
                .undeclared_variables(true)
                .into_iter()
                .filter(|v| v != "__secrets" && !v.starts_with("__secrets.") && crate::mapping::fields::get_path(payload, v.strip_prefix("event.").unwrap_or(v)).is_none())
                .collect();
            missing.sort();
            // `a` and `a.b` both missing: report the deepest.
            let deepest: Vec<&String> = missing.iter().filter(|m| !missing.iter().any(|o| o.starts_with(&format!("{m}.")))).collect();
            match deepest.as_slice() {
                [] => render_err(name, e),
                fields => MappingError::Render {
                    field: name.to_string(),
                    reason: format!("the event has no {}", fields.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")),
                },
            }
        })
    }

    /// Walks the body shape. A string that is one single `{{ x }}` keeps x's JSON type, and
    /// when x is absent from the event the field is left out (`None`): a PATCH then leaves
    /// that field alone instead of failing the whole change (the seed's permit event has no
    /// `endDate`). Any other template with a missing field fails the render.
    /// `ctx`: the request's render context, shared with its URL and headers (see
    /// [`Self::render_str_in`]).
    fn render_value(&self, shape: &Value, payload: &Arc<Payload>, secrets: &Secrets, ctx: &mut Option<JValue>) -> Result<Option<Value>, MappingError> {
        Ok(Some(match shape {
            Value::String(name) => match single_placeholder(&self.source_of(name)) {
                Some(path) => {
                    let path = path.strip_prefix("event.").unwrap_or(&path);
                    return Ok(crate::mapping::fields::get_path(payload, path).cloned());
                }
                None => Value::String(self.render_str_in(name, payload, secrets, ctx)?),
            },
            Value::Array(items) => Value::Array(
                items.iter().map(|v| Ok(self.render_value(v, payload, secrets, ctx)?.unwrap_or(Value::Null))).collect::<Result<_, MappingError>>()?,
            ),
            Value::Object(map) => {
                let mut out = serde_json::Map::with_capacity(map.len());
                for (k, v) in map {
                    if let Some(rendered) = self.render_value(v, payload, secrets, ctx)? {
                        out.insert(k.clone(), rendered);
                    }
                }
                Value::Object(out)
            }
            other => other.clone(),
        }))
    }

    fn source_of(&self, name: &str) -> String {
        self.env.get_template(name).map(|t| t.source().to_string()).unwrap_or_default()
    }
}

/// The text a template renders to when `source` has no template syntax (no `{` at all):
/// `source` itself, but for a trailing `\n` and then a trailing `\r`, which minijinja's lexer
/// drops (its `keep_trailing_newline` is off). `None`: it must be rendered.
fn literal(source: &str) -> Option<&str> {
    if source.contains('{') {
        return None;
    }
    let text = source.strip_suffix('\n').unwrap_or(source);
    Some(text.strip_suffix('\r').unwrap_or(text))
}

/// The render context of a payload with `extras` added (they win over same-named fields);
/// the payload itself, shared, not a copy, when there are none (every plain outbound event).
fn with_extras(payload: &Arc<Payload>, extras: &Value) -> Arc<Payload> {
    merged(payload, extras).map_or_else(|| Arc::clone(payload), Payload::shared)
}

/// [`with_extras`] for a record not shared yet (a two-way read's): copied once, merged or not.
fn record_with_extras(record: &Value, extras: &Value) -> Arc<Payload> {
    Payload::shared(merged(record, extras).unwrap_or_else(|| record.clone()))
}

/// `payload`'s fields with `extras` added, when there are extras to add.
fn merged(payload: &Value, extras: &Value) -> Option<Value> {
    match (payload, extras) {
        (Value::Object(p), Value::Object(x)) if !x.is_empty() => {
            let mut m = p.clone();
            m.extend(x.iter().map(|(k, v)| (k.clone(), v.clone())));
            Some(Value::Object(m))
        }
        _ => None,
    }
}

fn render_err(name: &str, e: minijinja::Error) -> MappingError {
    MappingError::Render { field: name.to_string(), reason: e.to_string() }
}

/// Registers every string of a body shape as a template named by its path; the returned
/// shape holds template names where the strings were.
fn register_body(
    add: &mut impl FnMut(String, String) -> Result<(), MappingError>,
    path: &str,
    value: &Value,
) -> Result<Value, MappingError> {
    Ok(match value {
        Value::String(s) => {
            add(path.to_string(), s.clone())?;
            Value::String(path.to_string())
        }
        Value::Array(items) => Value::Array(
            items.iter().enumerate().map(|(i, v)| register_body(add, &format!("{path}[{i}]"), v)).collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter().map(|(k, v)| Ok((k.clone(), register_body(add, &format!("{path}.{k}"), v)?))).collect::<Result<_, MappingError>>()?,
        ),
        other => other.clone(),
    })
}

/// `"{{ a.b }}"` → `Some("a.b")`: a body value that is only a placeholder keeps its type.
fn single_placeholder(source: &str) -> Option<String> {
    let inner = source.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    // A lone secret (`${NAME}` became `__secrets.NAME`) renders as text like any other.
    let ok = !inner.is_empty() && !inner.starts_with("__secrets.") && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    ok.then(|| inner.to_string())
}

/// Masks for a dry run: the request shows where each secret goes, never its value.
pub fn masked_secrets(names: &[String]) -> Secrets {
    names.iter().map(|n| (n.clone(), format!("${{{n}:****}}"))).collect()
}

#[cfg(test)]
mod lazy_tests {
    use super::*;

    fn spec(key: &str, extra: &str) -> Arc<ConnectorSpec> {
        let yaml = format!("id: k\ntype: outbound\ntrigger: {{ topic: t{extra} }}\nkey: \"{key}\"\nmap:\n  to:\n    url: \"http://127.0.0.1:9/x\"\n");
        Arc::new(crate::spec::parse("k.yaml", &yaml).unwrap())
    }

    #[test]
    fn the_accept_path_answers_as_the_templates_do_without_compiling() {
        let payload = Payload::shared(serde_json::json!({ "n": 42, "s": "RW-1", "f": 1.5, "o": { "id": "x" }, "b": true, "z": null }));
        for key in ["{{ n }}", "{{ s }}", "{{ f }}", "{{ o.id }}", "{{ b }}", "{{ z }}", "{{ missing }}", "{{ s | upper }}", "k-{{ n }}"] {
            let lazy = CompiledConnector::lazy(spec(key, "")).unwrap();
            let eager = CompiledConnector::compile(&spec(key, "")).unwrap();
            let (l, e) = (lazy.record_key(&payload, "fb"), eager.record_key(&payload, "fb"));
            assert_eq!(l.as_ref().ok(), e.as_ref().ok(), "{key}");
            assert_eq!(l.is_err(), e.is_err(), "{key}");
        }
        let simple = CompiledConnector::lazy(spec("{{ s }}", "")).unwrap();
        assert_eq!(simple.record_key(&payload, "fb").unwrap(), "RW-1");
        assert!(simple.matches("t", &payload) && !simple.is_delete("t", &payload));
        assert!(simple.compiled.get().is_none(), "nothing compiled for the accept path");
        let filtered = CompiledConnector::lazy(spec("{{ s }}", ", filter: 'object.n > 100'")).unwrap();
        assert!(!filtered.matches("t", &payload), "a filter is asked of the templates");
    }

    /// A body that is the record as it is is the job's payload itself, and goes on the wire
    /// as the payload's text (the one its row was written with); a body the templates made is
    /// the same JSON as serde_json writes it.
    #[test]
    fn a_record_as_it_is_goes_as_the_payloads_own_text() {
        let payload = Payload::shared(serde_json::json!({ "n": 42, "s": "RW-1", "o": { "b": [1, 2.5, null], "a": "x\"y" } }));
        let text = payload.text().as_ptr();
        let as_is = Compiled::compile(&spec("{{ n }}", "")).unwrap();
        let req = as_is.render_write(crate::spec::model::Side::Legacy, Write::Update, &payload, &Value::Null, &Secrets::new()).unwrap().unwrap();
        let body = req.body.as_ref().unwrap();
        assert!(Arc::ptr_eq(body, &payload) && body.text().as_ptr() == text, "shared, text and all");
        assert_eq!(req.wire_body(), Some((serde_json::to_string(payload.value()).unwrap(), "application/json")));
        let yaml = "id: k\ntype: outbound\ntrigger: { topic: t }\nkey: \"{{ n }}\"\nmap:\n  to:\n    url: \"http://127.0.0.1:9/x\"\n    body: { id: \"{{ s }}\", o: \"{{ o }}\" }\n";
        let shaped = Compiled::compile(&crate::spec::parse("k.yaml", yaml).unwrap()).unwrap();
        let req = shaped.render_write(crate::spec::model::Side::Legacy, Write::Update, &payload, &Value::Null, &Secrets::new()).unwrap().unwrap();
        let expected = serde_json::json!({ "id": "RW-1", "o": { "b": [1, 2.5, null], "a": "x\"y" } });
        assert_eq!(req.wire_body(), Some((serde_json::to_string(&expected).unwrap(), "application/json")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_become_context_variables() {
        assert_eq!(secrets_to_vars("Bearer ${ARC_TOKEN}"), "Bearer {{ __secrets.ARC_TOKEN }}");
        assert_eq!(secrets_to_vars("${bad} and $5"), "${bad} and $5");
    }

    #[test]
    fn single_placeholder_detection() {
        assert_eq!(single_placeholder("{{ amount }}"), Some("amount".into()));
        assert_eq!(single_placeholder("{{ a.b }}"), Some("a.b".into()));
        assert_eq!(single_placeholder("x {{ a }}"), None);
        assert_eq!(single_placeholder("{{ a | upper }}"), None);
    }

    /// A template without template syntax is given as its text, without a render: exactly
    /// what minijinja would render (trailing line ends included), and the others are rendered.
    #[test]
    fn a_literal_is_what_minijinja_renders() {
        let sources = ["", "https://x.test/a?b=c&d=%20", "application/json", "a\n", "a\r\n", "a\r", "a\n\n", "\n", "a } b", "{{ 'x' }}", "{# c #}", "{% if true %}y{% endif %}"];
        let mut env = Environment::new();
        for (i, source) in sources.iter().enumerate() {
            env.add_template_owned(format!("t{i}"), source.to_string()).unwrap();
        }
        for (i, source) in sources.iter().enumerate() {
            let rendered = env.get_template(&format!("t{i}")).unwrap().render(()).unwrap();
            match literal(source) {
                Some(text) => assert_eq!(text, rendered, "{source:?}"),
                None => assert!(source.contains('{'), "{source:?} is a literal"),
            }
        }
        assert_eq!(literal("a\n"), Some("a"));
        assert_eq!(literal("{{ x }}"), None);
    }
}
