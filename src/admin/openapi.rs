//! `GET /openapi.json`: an OpenAPI 3.0 document generated from the [endpoint
//! table](super::endpoints), so it lists exactly the routes the server registers, with
//! their bodies, errors (one shared shape) and auth.

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use super::AppState;
use super::endpoints::{self, Body, Endpoint};

/// Reason phrases for the error statuses the API uses.
fn describe_error(status: u16) -> &'static str {
    match status {
        400 => "Bad request: the body, a parameter or the document is invalid (details list every error).",
        401 => "Missing or wrong bearer token.",
        404 => "No such connector, ticket or job.",
        409 => "Conflict: the id exists, the connector is owned by a file, or the job is not parked.",
        413 => "Body over server.max_body_bytes.",
        503 => "Storage or runtime unavailable; nothing was accepted.",
        _ => "Error.",
    }
}

/// A connector id or a topic: 1 to 128 letters, digits, `.`, `_`, `-`.
const NAME: &str = "^[A-Za-z0-9._-]{1,128}$";

/// The schema of a parameter, by its name (and for `id`, the path it is in): every
/// constraint the server enforces, so a request the document calls valid is served.
fn param_schema(path: &str, name: &str) -> Value {
    match name {
        "id" if path.starts_with("/tickets") => json!({ "type": "string", "pattern": "^SYNC-[0-9]{1,18}$", "example": "SYNC-42" }),
        "id" if path.starts_with("/parked") => json!({ "type": "integer", "format": "int64", "minimum": 1 }),
        "id" | "connector" | "topic" => json!({ "type": "string", "pattern": NAME }),
        "name" => json!({ "type": "string", "minLength": 1 }),
        "status" => json!({ "type": "string", "enum": crate::storage::TicketStatus::NAMES }),
        "direction" => json!({ "type": "string", "enum": crate::storage::Direction::NAMES }),
        "since" | "until" => json!({ "anyOf": [
            { "type": "string", "format": "date-time" },
            { "type": "string", "format": "date" },
            { "type": "string", "pattern": "^[0-9]{1,6}[smhdw]$", "description": "an age: that long before now" } ] }),
        "record" | "reason" | "target" => text_schema(),
        "cursor" => json!({ "type": "integer", "format": "int64", "minimum": 0 }),
        "limit" => json!({ "type": "integer", "minimum": 1, "maximum": 500 }),
        "expand" => json!({ "type": "string", "pattern": "^((status|info)(,(status|info))*)?$" }),
        _ => json!({ "type": "string" }),
    }
}

/// A free-text filter: at most 200 characters, none a control character (see
/// `tickets::text_filter`).
fn text_schema() -> Value {
    json!({ "type": "string", "maxLength": 200, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$" })
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": param_schema(path, name) }))
        .collect()
}

fn operation(e: &Endpoint, secured: bool) -> Value {
    let mut params = path_params(e.path);
    params.extend(e.query.iter().map(|(name, d)| json!({ "name": name, "in": "query", "required": false, "description": d, "schema": param_schema(e.path, name) })));
    if e.path == "/events/{topic}" {
        params.push(json!({ "name": "Idempotency-Key", "in": "header", "required": false, "description": "The event id; the same id is delivered once per connector. Default: a new UUIDv7.",
            "schema": { "type": "string", "pattern": "^[!-~]([ -~]{0,198}[!-~])?$", "description": "1 to 200 printable ASCII characters, no blank at either end" } }));
    }
    let mut responses = Map::new();
    responses.insert(e.ok.0.to_string(), json!({ "description": e.ok.1 }));
    if let Some((status, text)) = e.also {
        responses.insert(status.to_string(), json!({ "description": text }));
    }
    // With tokens, a token whose role is too low is refused (403) on every admin route.
    let forbidden = (!e.public && secured).then_some(&403);
    for status in e.errors.iter().chain(forbidden) {
        responses.insert(status.to_string(), json!({ "description": describe_error(*status), "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }));
    }
    let mut op = json!({ "summary": e.summary, "operationId": operation_id(e), "parameters": params, "responses": responses });
    let body = match e.body {
        Body::None => None,
        Body::Json(schema) => Some(json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })),
        Body::OptionalJson(schema) => Some(json!({ "required": false, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })),
        Body::Connector => Some(json!({ "required": true, "description": "A connector document (docs/connectors.md), YAML or JSON.", "content": {
            "application/yaml": { "schema": { "type": "string" } },
            "application/json": { "schema": { "$ref": "#/components/schemas/Connector" } } } })),
    };
    if let Some(b) = body {
        op["requestBody"] = b;
    }
    op["security"] = if e.public || !secured { json!([]) } else { json!([{ "bearer": [] }]) };
    if !e.public {
        op["x-role"] = json!(e.role.as_str());
        op["description"] = json!(format!("Needs the `{}` role (or higher) when tokens are configured.", e.role.as_str()));
    }
    op
}

/// `GET /connectors/{id}/status` → `get_connectors_id_status`.
fn operation_id(e: &Endpoint) -> String {
    let path: String = e.path.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let path = path.split('_').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("_");
    format!("{}_{}", e.method.as_str().to_lowercase(), path)
}

/// The whole document for the given endpoint table; `secured`: the admin routes need the
/// bearer token (one is configured), so the document says so only then.
pub fn build(all: &[Endpoint], secured: bool) -> Value {
    let mut paths = Map::new();
    for e in all {
        let entry = paths.entry(e.path.to_string()).or_insert_with(|| json!({}));
        entry[e.method.as_str().to_lowercase()] = operation(e, secured);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "hms-sync admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Connectors, events, tickets, parked jobs, governance, probes and metrics. Admin routes need `Authorization: Bearer <token>` when tokens are configured (`server.admin_token`, or a named token of `server.tokens` whose role — viewer, operator or admin — is at least the route's; without any the service listens on loopback only). The console's session cookie is accepted too, with `X-CSRF-Token` on every change. Every error has one JSON shape: {error_code, message, details?}."
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error_code", "message"], "properties": {
                    "error_code": { "type": "integer", "description": "The HTTP status." },
                    "message": { "type": "string" },
                    "details": { "type": "array", "description": "Validation errors of a connector document.", "items": { "$ref": "#/components/schemas/SpecError" } } } },
                "SpecError": { "type": "object", "properties": {
                    "file": { "type": "string" }, "line": { "type": "integer" }, "column": { "type": "integer" },
                    "path": { "type": "string", "description": "Dotted field path, e.g. retry.max." }, "message": { "type": "string" } } },
                "Connector": { "type": "object", "required": ["id", "type"], "description": "See docs/connectors.md: the rules between keys (what each type needs, templates, selectors) are checked there, and a document that breaks one gets 400 with every error.", "properties": {
                    "id": { "type": "string", "pattern": NAME }, "type": { "type": "string", "enum": ["outbound", "inbound", "two-way"] } }, "additionalProperties": true },
                "Event": { "type": "object", "description": "An HMS event: a JSON object, whose fields connectors map." },
                "WebhookBody": { "description": "What the sender pushes: a JSON object (or any JSON the connector's `records` selector reads)." },
                "Governance": { "type": "object", "required": ["sync_enabled"], "properties": { "sync_enabled": { "type": "boolean" } }, "additionalProperties": false },
                "Resolve": { "type": "object", "additionalProperties": false, "description": "Exactly one of side or record.", "properties": {
                    "side": { "type": "string", "enum": ["hms", "legacy"] }, "record": { "type": "object" } } },
                "Replay": { "type": "object", "properties": {
                    "payload": { "type": "object", "description": "Replaces the event before it is sent again." },
                    "force": { "type": "boolean", "description": "Send it even when a newer change of its record was delivered since." } }, "additionalProperties": false },
                "BulkReplay": { "type": "object", "required": ["connector", "since"], "additionalProperties": false, "properties": {
                    "connector": { "type": "string", "pattern": NAME },
                    "since": param_schema("/parked/replay", "since"),
                    "until": param_schema("/parked/replay", "until"),
                    "reason": text_schema(),
                    "force": { "type": "boolean", "description": "Also jobs older than their record's last delivered change." } } },
                "Fault": { "type": "object", "required": ["child", "fault"], "additionalProperties": false, "properties": {
                    "child": { "type": "string", "enum": ["pusher", "puller", "retrier"] },
                    "fault": { "type": "string", "enum": ["panic", "stop", "arbiter"] } } }
            }
        }
    })
}

pub async fn document(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(build(&endpoints::all(state.fault_injection), !state.tokens.is_empty()))
}
