//! The table of every HTTP endpoint: method, path, handler, and what the OpenAPI document
//! says about it. Routes are registered FROM this table, so a route cannot exist without
//! its description (and `GET /openapi.json` is generated from the same rows).

use actix_web::http::Method;
use actix_web::{Route, Scope, web};

use super::auth::Role;
use super::{audit, cluster, connectors, events, governance, health, metrics, openapi, parked, tickets};
use super::webhooks;

/// What a request body is, for the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    /// JSON matching the named schema in `components.schemas`.
    Json(&'static str),
    /// JSON, optional (an empty body is accepted).
    OptionalJson(&'static str),
    /// A connector document, YAML or JSON.
    Connector,
}

/// One endpoint.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    /// Open without the admin token (probes, metrics, the document itself).
    pub public: bool,
    /// The role a token needs (`role Operator` in the row; else reading needs a viewer and
    /// changing an admin).
    pub role: Role,
    pub summary: &'static str,
    /// Query parameters: (name, description).
    pub query: &'static [(&'static str, &'static str)],
    pub body: Body,
    /// The success status and what it returns.
    pub ok: (u16, &'static str),
    /// Another success status it can answer, and what it returns then.
    pub also: Option<(u16, &'static str)>,
    /// Error statuses it can answer (each with the shared error shape).
    pub errors: &'static [u16],
    pub route: fn() -> Route,
    /// Registered as this scope instead of `route` (a hot `{param}` route that matches its
    /// literal prefix as text and reads the param itself, see `events::scope`).
    pub scope: Option<fn() -> Scope>,
}

/// The given value, or the default when the row leaves it out.
macro_rules! or_default {
    ($default:expr) => {
        $default
    };
    ($default:expr, $value:expr) => {
        $value
    };
}

/// One row of the table: `endpoint!(GET "/path" => handler, "summary", ok 200 "what", …)`.
macro_rules! endpoint {
    ($method:ident $path:literal => $handler:path, $summary:literal, ok $ok:literal $ok_text:literal $(, also $also:literal $also_text:literal)? $(, public $public:literal)? $(, role $role:ident)? $(, query $query:expr)? $(, body $body:expr)? $(, errors $errors:expr)? $(, scope $scope:path)?) => {
        Endpoint {
            method: Method::$method,
            path: $path,
            public: false $(|| $public)?,
            role: or_default!(if Method::$method == Method::GET { Role::Viewer } else { Role::Admin } $(, Role::$role)?),
            summary: $summary,
            query: or_default!(&[] $(, $query)?),
            body: or_default!(Body::None $(, $body)?),
            ok: ($ok, $ok_text),
            also: or_default!(None $(, Some(($also, $also_text)))?),
            errors: or_default!(&[] $(, $errors)?),
            route: || web::method(Method::$method).to($handler),
            scope: or_default!(None $(, Some($scope))?),
        }
    };
}

/// Every endpoint, in registration order (a literal path before a `{param}` sibling). The
/// router tries routes in this order, public ones first (see [`register`]), so the hot one,
/// `POST /events/{topic}`, comes first of the admin routes: each `{param}` route it passes
/// costs a regex match per request (two before it were a tenth of an HTTP worker's time at
/// saturation), and it is itself registered as the scope `/events` (see
/// [`events::scope`]), matched as text.
pub fn all(fault_injection: bool) -> Vec<Endpoint> {
    let mut all = vec![
        endpoint!(GET "/healthz" => health::healthz, "Liveness: the process answers.", ok 200 "`{\"status\":\"ok\"}`", public true),
        endpoint!(GET "/readyz" => health::readyz, "Readiness: the database answers and the registry runs.", ok 200 "readiness report", public true, errors &[503]),
        endpoint!(GET "/metrics" => metrics::metrics, "Prometheus metrics (text format 0.0.4), labelled by connector.", ok 200 "exposition text", public true, errors &[503]),
        endpoint!(GET "/openapi.json" => openapi::document, "This document.", ok 200 "OpenAPI 3 document", public true),
        endpoint!(POST "/events/{topic}" => events::route, "Publish an HMS event. Answers 202 only once a job per matching connector is stored. `Idempotency-Key` header: the event id.", ok 202 "`{event_id, topic, connectors, filtered}`", role Operator,
            body Body::Json("Event"), errors &[400, 401, 413, 503], scope events::scope),
        endpoint!(POST "/webhooks/{name}" => webhooks::receive, "A webhook for the connector whose path this is (default /webhooks/ID): verified by its scheme (Standard Webhooks, GitHub, token), stored before the answer. A replayed webhook id changes nothing.", ok 200 "`{ok, duplicate, stored}`; for HMS pushes (trigger.webhook) `{ok, event_id, connectors}`",
            public true, body Body::Json("WebhookBody"), errors &[400, 401, 404, 413, 503]),
        endpoint!(POST "/webhook/{name}" => webhooks::receive, "The same for paths a connector names itself (the seeds' /webhook/hms, /webhook/appointment).", ok 200 "`{ok, duplicate, stored}`; for HMS pushes `{ok, event_id, connectors}`",
            public true, body Body::Json("WebhookBody"), errors &[400, 401, 404, 413, 503]),
        endpoint!(GET "/connectors" => connectors::list, "List connectors: their ids, or a map with status and/or info.", ok 200 "ids, or a map id → {status, info}",
            query &[("expand", "`status`, `info` or both, comma-separated or repeated (anything else: 400)")], errors &[400, 401]),
        endpoint!(POST "/connectors" => connectors::create, "Register a connector at run time (persisted).", ok 201 "`{id, config}`",
            body Body::Connector, errors &[400, 401, 409, 503]),
        endpoint!(POST "/reload" => connectors::reload, "Re-read the connectors folder: validate every file, then add, hot-replace (queued work kept) and remove file connectors to match it. An invalid file keeps its old version running and is listed under `refused`.", ok 200 "`{added, replaced, removed, unchanged, refused: [{file, reason}]}`", errors &[401, 503]),
        endpoint!(GET "/connectors/{id}" => connectors::get, "One connector: origin, source and validated config.", ok 200 "connector info", errors &[401, 404]),
        endpoint!(PUT "/connectors/{id}" => connectors::replace, "Replace a connector (hot reload; queued work is kept) or create it.", ok 200 "`{id, config}` (201 when created)",
            body Body::Connector, errors &[400, 401, 409, 503]),
        endpoint!(DELETE "/connectors/{id}" => connectors::delete, "Remove a connector registered over the API.", ok 204 "nothing", errors &[401, 404, 409, 503]),
        endpoint!(GET "/connectors/{id}/status" => connectors::status, "State, children, restarts, last error, queue depth, counters, alerts.", ok 200 "connector status", errors &[401, 404]),
        endpoint!(PUT "/connectors/{id}/pause" => connectors::pause, "Pause one connector (persisted); events are still accepted and stored.", ok 202 "`{id, paused: true}`", role Operator, errors &[401, 404, 503]),
        endpoint!(PUT "/connectors/{id}/resume" => connectors::resume, "Resume one connector; its backlog drains in order per key.", ok 202 "`{id, paused: false}`", role Operator, errors &[401, 404, 503]),
        endpoint!(POST "/connectors/{id}/restart" => connectors::restart, "Restart a connector's children; the way out of `failed`.", ok 202 "`{id, restarting: true}`", role Operator, errors &[401, 404]),
        endpoint!(POST "/connectors/{id}/test" => connectors::test, "Dry run: the exact request for an event (secrets masked), or why it would be filtered or parked. Sends and stores nothing.", ok 200 "dry-run verdict", role Viewer,
            query &[("topic", "the topic the event is published on (default: the connector's first)")], body Body::Json("Event"), errors &[400, 401, 404]),
        endpoint!(POST "/connectors/{id}/sync" => connectors::sync, "Run one reconciliation now (the seed's svc:syncNow): pull the change feed from the cursor and store what changed.", ok 200 "`{id, pull: {records, pages, stored, cursor}}`", also 202 "On a cluster, when another instance holds the pull's lease: passed on to it, `{id, forwarded_to}`", role Operator, errors &[401, 404, 409]),
        endpoint!(GET "/cluster" => cluster::list, "The instances on this database: id, address, version, start, last heartbeat (the database's clock), alive (a heartbeat within `cluster.lease_secs`) and what each holds; `self` is the one answering.", ok 200 "`{self, lease_secs, instances}`", errors &[401, 503]),
        endpoint!(GET "/governance" => governance::get, "The global toggle (the seed's `sync.enabled`).", ok 200 "`{sync_enabled}`", errors &[401]),
        endpoint!(PUT "/governance" => governance::put, "Pause or resume every connector (persisted).", ok 200 "`{sync_enabled}`", body Body::Json("Governance"), errors &[400, 401, 503]),
        endpoint!(GET "/tickets" => tickets::list, "Sync tickets, oldest first, with filters and cursor pagination.", ok 200 "`{tickets, next}`",
            query &[("connector", "connector id"), ("status", "completed, parked, skipped or conflict"), ("direction", "outbound or inbound"), ("record", "a record id: the HMS id or the external id"), ("since", "inclusive: RFC 3339, a date (2026-11-30) or an age (90s, 15m, 1h, 2d, 1w)"), ("until", "exclusive: the same forms as since"), ("cursor", "`next` of the previous page"), ("limit", "1 to 500, default 100")],
            errors &[400, 401, 503]),
        endpoint!(GET "/tickets/verify" => tickets::verify, "Walk the tickets' hash chain; names the first broken link.", ok 200 "`{ok, checked, anchor, firstBroken}`", errors &[401, 503]),
        endpoint!(GET "/tickets/{id}" => tickets::get, "One ticket, by `SYNC-n` or `n`.", ok 200 "ticket", errors &[400, 401, 404, 503]),
        endpoint!(GET "/parked" => parked::list, "Parked jobs, oldest first.", ok 200 "`{parked, next}`",
            query &[("connector", "connector id"), ("reason", "only jobs whose error contains this text"), ("cursor", "`next` of the previous page"), ("limit", "1 to 500, default 100")], errors &[400, 401, 503]),
        endpoint!(POST "/parked/replay" => parked::replay_many, "Bulk replay: every parked job of a connector parked since a time (optionally until a time, with a reason containing a text), sent again through the normal path. A job older than its record's last delivered one is left parked and listed under `refused` unless `force` is set.", ok 200 "`{replayed: [ids], refused: [{id, reason}]}`",
            role Operator, body Body::Json("BulkReplay"), errors &[400, 401, 404, 503]),
        endpoint!(GET "/audit" => audit::list, "Who changed what: connectors, governance and parked jobs, through the API, the CLI or the console, newest first.", ok 200 "`{entries, next}`",
            query &[("target", "a connector id, a job id or `sync_enabled`"), ("cursor", "`next` of the previous page"), ("limit", "1 to 500, default 100")], errors &[400, 401, 503]),
        endpoint!(GET "/parked/{id}" => parked::get, "One parked job.", ok 200 "job", errors &[401, 404, 409, 503]),
        endpoint!(DELETE "/parked/{id}" => parked::discard, "Discard a parked job (kept as history, ticketed `skipped`).", ok 204 "nothing", role Operator, errors &[401, 404, 409, 503]),
        endpoint!(POST "/parked/{id}/resolve" => parked::resolve, "Resolve a parked conflict of a two-way connector: `{side: hms|legacy}` picks the winner, `{record}` applies a merged record to both sides.", ok 202 "`{id, resolution}`", role Operator,
            body Body::Json("Resolve"), errors &[400, 401, 404, 409, 503]),
        endpoint!(POST "/parked/{id}/replay" => parked::replay, "Send a parked job again through the normal path, optionally with an edited payload.", ok 202 "the job, pending again", role Operator,
            body Body::OptionalJson("Replay"), errors &[400, 401, 404, 409, 503]),
    ];
    if fault_injection {
        all.push(endpoint!(POST "/connectors/{id}/faults" => connectors::fault, "Test hook (server.fault_injection): make a child panic or stop, or kill the connector's arbiter.", ok 202 "`{id, injected}`",
            body Body::Json("Fault"), errors &[400, 401, 404]));
    }
    all
}

/// Every (method, path pattern, role) the server routes behind the token check, fault
/// hooks included: built once, read per request (the gate and the 404/405 answer).
pub fn routed() -> &'static [(Method, &'static str, Option<Role>)] {
    static ROUTES: std::sync::LazyLock<Vec<(Method, &'static str, Option<Role>)>> =
        std::sync::LazyLock::new(|| all(true).into_iter().map(|e| (e.method, e.path, (!e.public).then_some(e.role))).collect());
    &ROUTES
}

/// The role an admin request needs; `None` for a public route or one nobody routes.
pub fn role_for(method: &Method, path: &str) -> Option<Role> {
    routed().iter().find(|(m, p, _)| m == method && super::error::path_matches(p, path)).and_then(|(_, _, role)| *role)
}

/// Registers every endpoint: public ones at the top level (a `{param}` one in a scope of
/// its literal prefix), the rest in a scope that checks who asks
/// ([`super::auth::require_token`]), tried after them.
pub fn register(cfg: &mut web::ServiceConfig, fault_injection: bool) {
    let mut admin = web::scope("").wrap(actix_web::middleware::from_fn(super::auth::require_token));
    let all = all(fault_injection);
    for (i, e) in all.iter().enumerate() {
        // A route that is its own scope (the hot `POST /events/{topic}`: no regex per event).
        if let Some(scope) = e.scope {
            if e.public {
                cfg.service(scope());
            } else {
                admin = admin.service(scope());
            }
            continue;
        }
        if e.public {
            match e.path.split_once("/{") {
                // Under a scope of its literal prefix: the router compares a scope's prefix
                // as text, so only requests under it test the route's pattern (a regex).
                // Registered at the top level, the webhook routes cost every admin request
                // (the hot `POST /events/{topic}` among them) two regex matches.
                Some((prefix, rest)) if !prefix.is_empty() => cfg.service(web::scope(prefix).route(&format!("/{{{rest}"), (e.route)())),
                _ => cfg.route(e.path, (e.route)()),
            };
        } else {
            admin = admin.route(e.path, (e.route)());
        }
        // A literal path that a `{param}` route also matches (`/parked/replay`, under
        // `/parked/{id}`): any other method on it is answered 405 here, before the `{param}`
        // route takes it for an id it cannot parse.
        let last_of_path = all.get(i + 1).is_none_or(|next| next.path != e.path);
        let shadowed = !e.path.contains('{') && all.iter().any(|o| o.path.contains('{') && super::error::path_matches(o.path, e.path));
        if last_of_path && shadowed {
            admin = admin.route(e.path, web::route().to(super::error::no_route));
        }
    }
    cfg.service(admin);
}
