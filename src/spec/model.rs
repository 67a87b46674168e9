//! The typed connector spec: what a validated connector file means. Built only by
//! [`super::build`] from a document that passed validation, so every value here is usable.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::settings::SupervisionSettings;

/// Which way changes flow (`type:` in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Direction {
    /// HMS → external: events on the trigger topic become requests to the external system.
    #[serde(rename = "outbound")]
    Outbound,
    /// External → HMS: pulled (or pushed) records are applied to HMS.
    #[serde(rename = "inbound")]
    Inbound,
    /// Both of the above on one record set.
    #[serde(rename = "two-way")]
    TwoWay,
}

impl Direction {
    pub const NAMES: [&'static str; 3] = ["outbound", "inbound", "two-way"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "outbound" => Some(Self::Outbound),
            "inbound" => Some(Self::Inbound),
            "two-way" => Some(Self::TwoWay),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// Which HMS events a connector takes (`trigger:`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trigger {
    /// One topic, or several (`topic: [a, b]`).
    pub topic: Vec<String>,
    /// A minijinja expression over `object` (the payload) and `topic`, e.g. the seed's
    /// `object.agency == "DDOT"`. Events for which it is false are counted, not delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// A path where HMS pushes its changes for this connector (the seed's `/webhook/hms`);
    /// a push there is published on the first topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,
}

/// An inbound webhook endpoint and how its requests are verified.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// `/webhook/…` or `/webhooks/…`; default `/webhooks/{connector id}`.
    pub path: String,
    pub verify: VerifySpec,
    /// Selector of the records in the body (`$`: the body is one record).
    pub records: String,
    /// External field holding a record's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifySpec {
    pub scheme: Scheme,
    /// The environment variable holding the secret (written `${NAME}` in the file).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "secret_ref")]
    pub secret: Option<String>,
    pub tolerance_secs: u64,
}

/// How a connector's webhooks are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    StandardWebhooks,
    Github,
    Token,
    /// Explicitly unverified (a trusted network only); must be written out.
    None,
}

impl Scheme {
    pub const NAMES: [&'static str; 4] = ["standard-webhooks", "github", "token", "none"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "standard-webhooks" => Some(Self::StandardWebhooks),
            "github" => Some(Self::Github),
            "token" => Some(Self::Token),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

fn secret_ref<S: serde::Serializer>(name: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match name {
        Some(n) => s.serialize_str(&format!("${{{n}}}")),
        None => s.serialize_none(),
    }
}

/// How a change feed is paged.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Pagination {
    /// The answer holds the next page's URL at this selector (absolute, or relative to the feed).
    Link(String),
    /// The answer holds a token at this selector; the URL template uses it as `{{ page }}`.
    Token(String),
    /// Pages numbered from this number, as `{{ page }}`, until a page has no records.
    Page(u64),
}

/// `resolve:` — what wins when both sides changed one record (two-way connectors).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolveSpec {
    pub policy: Policy,
    /// HMS field with the record's modification time or version (compared by value).
    pub version_field: String,
    /// Which side owns each HMS field when both changed it (`fields` and `merge`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<(String, Side)>,
    /// `merge` / `fields`: a field both sides changed that no owner settles.
    pub conflicts: FieldRule,
    /// Resolver rules, in order: the first whose condition holds decides a conflict
    /// instead of `policy` (seed 000: "manager edits outrank ranger edits").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleSpec>,
    /// Read the target side's current record before deciding (the seed's `lotus.get`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_hms: Option<RequestSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_legacy: Option<RequestSpec>,
}

/// A two-way connector without `resolve:`: last writer wins by `updatedAt`, no reads.
impl Default for ResolveSpec {
    fn default() -> Self {
        Self {
            policy: Policy::LastWriterWins,
            version_field: "updatedAt".into(),
            owners: Vec::new(),
            conflicts: FieldRule::LastWriter,
            rules: Vec::new(),
            fetch_hms: None,
            fetch_legacy: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    LastWriterWins,
    HmsWins,
    LegacyWins,
    /// Three-way merge over the record last synced, field by field.
    Merge,
    /// The merge, with `owners` naming who wins each field both sides changed.
    Fields,
    Manual,
}

impl Policy {
    pub const NAMES: [&'static str; 6] = ["last-writer-wins", "hms-wins", "legacy-wins", "merge", "fields", "manual"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "last-writer-wins" => Some(Self::LastWriterWins),
            "hms-wins" => Some(Self::HmsWins),
            "legacy-wins" => Some(Self::LegacyWins),
            "merge" => Some(Self::Merge),
            "fields" => Some(Self::Fields),
            "manual" => Some(Self::Manual),
            _ => None,
        }
    }
}

/// One resolver rule: `when` is an expression over `hms` and `legacy` (each side's record
/// as that side holds it), `then` the policy that decides when it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleSpec {
    pub when: String,
    pub then: Policy,
}

/// Under `merge`: who takes a field that both sides changed since the last sync (and that
/// `owners` does not name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FieldRule {
    /// The side whose record has the later version (equal versions: the one seen later).
    #[default]
    LastWriter,
    /// Park the change as a conflict for a person.
    Manual,
}

impl FieldRule {
    pub const NAMES: [&'static str; 2] = ["last-writer", "manual"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "last-writer" => Some(Self::LastWriter),
            "manual" => Some(Self::Manual),
            _ => None,
        }
    }
}

/// Which write a job makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Update (or upsert) the record: `map.to` / `map.hms`.
    Update,
    /// The side has no such record: `map.create` / `map.hmsCreate` when there is one,
    /// else the update request.
    Create,
    /// `map.delete` / `map.hmsDelete`.
    Delete,
}

/// `id` or `$.id`: an answer's field as a selector.
pub fn selector_of(field: &str) -> String {
    if field.starts_with('$') { field.to_string() } else { format!("$.{field}") }
}

/// A side of a two-way connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Hms,
    Legacy,
}

/// One HTTP request template (`map.to`, `map.hms`, `source.pull`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestSpec {
    /// `{{ field }}` template; the seed's single-brace `{field}` is accepted too.
    pub url: String,
    /// Upper-case HTTP method.
    pub method: String,
    /// Header templates, in file order.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "pairs_as_map")]
    pub headers: Vec<(String, String)>,
    /// Body shape: every string in it is a template. `None`: the (mapped) record itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// How the body is written on the wire (`encoding:`).
    #[serde(skip_serializing_if = "Encoding::is_json")]
    pub encoding: Encoding,
}

/// `rateLimit: { perSecond, burst }`: at most `perSecond` requests a second on average,
/// `burst` at once, over all of a connector's requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSpec {
    pub per_second: f64,
    pub burst: u32,
}

/// `auth:` how every request of a connector authenticates (see `delivery::auth`). Every
/// value may hold `${NAME}` secrets, read at request time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum AuthSpec {
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: String },
    /// `Authorization: Bearer token`.
    Bearer { token: String },
    /// A key in a header (`header: X-Api-Key`) or a query parameter (`query: api_key`).
    #[serde(rename_all = "camelCase")]
    ApiKey { header: Option<String>, query: Option<String>, value: String },
    /// An OAuth2 access token, fetched and cached (client credentials, refresh token, or a
    /// JWT signed with a service account's private key).
    #[serde(rename_all = "camelCase")]
    Oauth2 { grant: OAuthGrant, token_url: String, client_id: String, client_secret: Option<String>, refresh_token: Option<String>, scope: Option<String>, private_key: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthGrant {
    ClientCredentials,
    RefreshToken,
    /// RFC 7523 `urn:ietf:params:oauth:grant-type:jwt-bearer`: a JWT signed RS256 with
    /// `privateKey` (PKCS#8 PEM), as Google service accounts use.
    JwtBearer,
}

impl AuthSpec {
    /// The secrets its values name.
    pub fn secret_names(&self) -> Vec<String> {
        let texts: Vec<&str> = match self {
            Self::Basic { username, password } => vec![username, password],
            Self::Bearer { token } => vec![token],
            Self::ApiKey { value, .. } => vec![value],
            Self::Oauth2 { token_url, client_id, client_secret, refresh_token, scope, private_key, .. } => {
                [Some(token_url), Some(client_id), client_secret.as_ref(), refresh_token.as_ref(), scope.as_ref(), private_key.as_ref()].into_iter().flatten().map(String::as_str).collect()
            }
        };
        texts.into_iter().flat_map(super::templates::secret_refs).collect()
    }
}

/// `tls: { caFile, certFile, keyFile }`: PEM files (paths as written, relative to the
/// service's working folder) of a private CA the targets' certificates are checked against
/// (beside the public roots), and of the client certificate and key to present.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// The same as PEM held by secrets (`ca: "${STATE_CA_PEM}"`), instead of files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `circuitBreaker: { failures, coolDownMs }` (see `delivery::breaker`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerSpec {
    pub failures: u32,
    pub cool_down_ms: u64,
}

/// A request body's encoding (`encoding:` of a request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `application/json`: the body shape as JSON.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`: the body shape's fields, nested the Stripe way
    /// (`metadata[key]=value`, `items[0][price]=…`).
    Form,
    /// `application/xml`: the body is one template, the document; values are escaped.
    Xml,
    /// `text/plain`: the body is one template, sent as it renders.
    Text,
}

impl Encoding {
    pub const NAMES: [&'static str; 4] = ["json", "form", "xml", "text"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(Self::Json),
            "form" => Some(Self::Form),
            "xml" => Some(Self::Xml),
            "text" => Some(Self::Text),
            _ => None,
        }
    }

    pub fn is_json(&self) -> bool {
        *self == Self::Json
    }

    /// The `Content-Type` the body goes with.
    pub fn content_type(&self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Form => "application/x-www-form-urlencoded",
            Self::Xml => "application/xml; charset=utf-8",
            Self::Text => "text/plain; charset=utf-8",
        }
    }
}

/// `map:` — how an event becomes a request, and how an inbound record is applied to HMS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapSpec {
    /// The schema the event is in (the seed's `from: canonical`); informational.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The request to the external system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<RequestSpec>,
    /// The request that applies an inbound change to HMS (the seed's `applyHMS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hms: Option<RequestSpec>,
    /// Publish each inbound change (in HMS fields) on this HMS topic, so outbound
    /// connectors fan it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<String>,
    /// Creates the record in the external system when it has none (`map.to` then updates
    /// it); the id the system assigns is read from the answer (`idField`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create: Option<CreateSpec>,
    /// Deletes the record in the external system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete: Option<RequestSpec>,
    /// Creates the record in HMS.
    #[serde(skip_serializing_if = "Option::is_none", rename = "hmsCreate")]
    pub hms_create: Option<CreateSpec>,
    /// Deletes the record in HMS.
    #[serde(skip_serializing_if = "Option::is_none", rename = "hmsDelete")]
    pub hms_delete: Option<RequestSpec>,
}

/// A create request and where its answer holds the id the system assigned.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSpec {
    #[serde(flatten)]
    pub request: RequestSpec,
    /// Selector of the assigned id in the answer (`$.id`); none: the record key is the id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_field: Option<String>,
    /// `match`: looks the record up by a natural key before creating it, so a record that
    /// already exists there (or that a create before a crash made) is linked, not created
    /// again.
    #[serde(skip_serializing_if = "Option::is_none", rename = "match")]
    pub lookup: Option<LookupSpec>,
}

/// A lookup request and where its answer holds the records found (the first is taken).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LookupSpec {
    #[serde(flatten)]
    pub request: RequestSpec,
    pub records: String,
}

/// `source.pull:` — the ETL pull of an external change feed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullSpec {
    pub request: RequestSpec,
    /// Interval between pulls.
    #[serde(serialize_with = "duration_text")]
    pub every: Duration,
    /// JSONPath-style selector of the records in the answer (`$.changes`).
    pub records: String,
    /// Field of a record holding its external id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_field: Option<String>,
    /// Field of a record holding its version (the cursor advances to the greatest seen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor_field: Option<String>,
    /// Cursor before the first pull.
    pub initial_cursor: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<Pagination>,
    /// Re-read this margin below the cursor (a number for numeric cursors, seconds for
    /// RFC 3339 time cursors); re-read records are recognised and not applied twice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookback: Option<u64>,
}

/// `source:` — where inbound changes come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullSpec>,
    /// The external system pushes its changes here (seed 004's `/webhook/appointment`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,
}

/// `retry:` — the seed's `{ max, backoffMs }` plus an optional cap and the statuses retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetrySpec {
    pub max: u32,
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// `on: [408, 429, 5xx, 409]`: the HTTP statuses retried; any other non-2xx parks.
    /// `None`: the default (408, 429 and 5xx).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on: Option<StatusSet>,
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self { max: 5, backoff_ms: 1000, max_backoff_ms: 5 * 60 * 1000, on: None }
    }
}

/// A set of HTTP statuses (100–599), as a bit set so specs stay `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusSet([u64; 8]);

impl StatusSet {
    pub fn insert(&mut self, status: u16) {
        if (100..600).contains(&status) {
            let i = (status - 100) as usize;
            self.0[i / 64] |= 1 << (i % 64);
        }
    }

    pub fn contains(&self, status: u16) -> bool {
        (100..600).contains(&status) && {
            let i = (status - 100) as usize;
            self.0[i / 64] & (1 << (i % 64)) != 0
        }
    }

    /// Its members as written: a whole class as `5xx`, else each code.
    pub fn entries(&self) -> Vec<String> {
        let mut out = Vec::new();
        for class in 1..6u16 {
            let codes: Vec<u16> = (class * 100..class * 100 + 100).filter(|c| self.contains(*c)).collect();
            if codes.len() == 100 {
                out.push(format!("{class}xx"));
            } else {
                out.extend(codes.iter().map(u16::to_string));
            }
        }
        out
    }
}

impl Serialize for StatusSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.entries().serialize(s)
    }
}

/// `supervision:` — this connector's own restart intensity; unset keys take the global one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SupervisionSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_backoff_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immediate_first_restart: Option<bool>,
}

/// Default per-request timeout (issue: 15 s).
pub const DEFAULT_TIMEOUT_MS: u64 = 15_000;
/// Default number of record keys delivered in parallel.
pub const DEFAULT_CONCURRENCY: u32 = 16;

/// A validated connector.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorSpec {
    pub id: String,
    #[serde(rename = "type")]
    pub direction: Direction,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// Record-key template: jobs of one key are delivered in acceptance order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Mapping table, HMS field → external field, in file order (used both ways): the
    /// rows of `mappingFile`, then the inline `mapping` rows (which add to or override them).
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "pairs_as_map")]
    pub mapping: Vec<(String, String)>,
    /// `mappingFile`: the mapping table's own JSON file, relative to the connector file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping_file: Option<String>,
    /// `rateLimit`: the connector's request rate (see `delivery::rate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    /// `circuitBreaker`: stop trying a target that is down (see `delivery::breaker`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<BreakerSpec>,
    /// `auth`: how every request authenticates (see `delivery::auth`). Its values are shown
    /// as written (`${NAME}`), never resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<Box<AuthSpec>>,
    /// `tls`: a private CA and a client certificate (see `delivery::tls`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<TlsSpec>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map: Option<Box<MapSpec>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Box<SourceSpec>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolve: Option<Box<ResolveSpec>>,
    /// `deleted:` an expression over `object` (the change as its source sent it) and
    /// `topic` that is true when the change deletes the record (e.g. CouchDB's
    /// `object.deleted`, or `topic == "shift.deleted"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<String>,
    pub retry: RetrySpec,
    pub timeout_ms: u64,
    pub concurrency: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supervision: Option<SupervisionSpec>,
}

fn pairs_as_map<S: serde::Serializer>(pairs: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(pairs.len()))?;
    for (k, v) in pairs {
        m.serialize_entry(k, v)?;
    }
    m.end()
}

fn duration_text<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    let ms = d.as_millis();
    let text = if ms % 1000 == 0 { format!("{}s", ms / 1000) } else { format!("{ms}ms") };
    s.serialize_str(&text)
}

impl ConnectorSpec {
    pub fn direction_name(&self) -> &'static str {
        self.direction.as_str()
    }

    /// Topics this connector listens on (empty for a purely inbound connector).
    pub fn topics(&self) -> Vec<String> {
        self.trigger.as_ref().map(|t| t.topic.clone()).unwrap_or_default()
    }

    pub fn filter(&self) -> Option<&str> {
        self.trigger.as_ref().and_then(|t| t.filter.as_deref())
    }

    /// The request sent to the external system for an HMS event.
    pub fn outbound_request(&self) -> Option<&RequestSpec> {
        self.map.as_ref().and_then(|m| m.to.as_ref())
    }

    /// The request a write of `op` to side `to` uses (as [`crate::mapping::CompiledConnector::render_write`]
    /// picks it): create or delete when the connector has one, else the update.
    pub fn write_request(&self, to: Side, op: Write) -> Option<&RequestSpec> {
        let map = self.map.as_ref()?;
        let (create, delete, update) = match to {
            Side::Legacy => (map.create.as_ref(), map.delete.as_ref(), map.to.as_ref()),
            Side::Hms => (map.hms_create.as_ref(), map.hms_delete.as_ref(), map.hms.as_ref()),
        };
        match op {
            Write::Create => create.map(|c| &c.request).or(update),
            Write::Delete => delete,
            Write::Update => update,
        }
    }

    /// The create request for side `to` (`map.create` / `map.hmsCreate`), if any.
    pub fn create_request(&self, to: Side) -> Option<&CreateSpec> {
        let map = self.map.as_ref()?;
        match to {
            Side::Legacy => map.create.as_ref(),
            Side::Hms => map.hms_create.as_ref(),
        }
    }

    /// The delete request for side `to` (`map.delete` / `map.hmsDelete`), if any.
    pub fn delete_request(&self, to: Side) -> Option<&RequestSpec> {
        let map = self.map.as_ref()?;
        match to {
            Side::Legacy => map.delete.as_ref(),
            Side::Hms => map.hms_delete.as_ref(),
        }
    }

    /// Does side `to` assign its own ids to records we create (a create with `idField`)?
    pub fn assigns_ids(&self, to: Side) -> bool {
        let map = self.map.as_ref();
        let create = match to {
            Side::Legacy => map.and_then(|m| m.create.as_ref()),
            Side::Hms => map.and_then(|m| m.hms_create.as_ref()),
        };
        create.is_some_and(|c| c.id_field.is_some())
    }

    /// The request that applies an inbound record to HMS.
    pub fn hms_request(&self) -> Option<&RequestSpec> {
        self.map.as_ref().and_then(|m| m.hms.as_ref())
    }

    pub fn pull_view(&self) -> Option<&PullSpec> {
        self.source.as_ref().and_then(|s| s.pull.as_ref())
    }

    /// Does this connector deliver jobs (outbound requests or inbound applies)?
    pub fn pushes(&self) -> bool {
        self.outbound_request().is_some() || self.hms_request().is_some() || self.publish_topic().is_some()
    }

    /// Does it poll an external change feed?
    pub fn pulls(&self) -> bool {
        self.pull_view().is_some()
    }

    /// Webhook paths this connector serves.
    pub fn webhook_paths(&self) -> Vec<String> {
        self.webhooks().into_iter().map(|(_, w)| w.path.clone()).collect()
    }

    /// Its webhook endpoints: HMS's (on the trigger) and the external system's (source).
    pub fn webhooks(&self) -> Vec<(Side, &WebhookSpec)> {
        let hms = self.trigger.as_ref().and_then(|t| t.webhook.as_ref()).map(|w| (Side::Hms, w));
        let legacy = self.source.as_ref().and_then(|s| s.webhook.as_ref()).map(|w| (Side::Legacy, w));
        hms.into_iter().chain(legacy).collect()
    }

    /// Does this connector sync both ways (links, echo suppression, resolvers)?
    pub fn two_way(&self) -> bool {
        self.direction == Direction::TwoWay
    }

    /// The topic inbound changes are published on, if any.
    pub fn publish_topic(&self) -> Option<&str> {
        self.map.as_ref().and_then(|m| m.publish.as_deref())
    }

    pub fn mapping_pairs(&self) -> Vec<(String, String)> {
        self.mapping.clone()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn concurrency_limit(&self) -> usize {
        self.concurrency.max(1) as usize
    }

    /// This connector's restart intensity: its own keys over the global defaults.
    pub fn supervision_with(&self, global: SupervisionSettings) -> SupervisionSettings {
        let own = self.supervision.unwrap_or_default();
        SupervisionSettings {
            max_restarts: own.max_restarts.unwrap_or(global.max_restarts),
            within_secs: own.within_secs.unwrap_or(global.within_secs),
            backoff_ms: own.backoff_ms.unwrap_or(global.backoff_ms),
            max_backoff_ms: own.max_backoff_ms.unwrap_or(global.max_backoff_ms),
            immediate_first_restart: own.immediate_first_restart.unwrap_or(global.immediate_first_restart),
        }
    }

    /// Every `${NAME}` the connector's requests use, sorted and deduplicated. Resolved from
    /// the environment at send time only.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names = BTreeMap::new();
        let fetch = self.resolve.as_ref();
        let map = self.map.as_ref();
        let requests = [
            self.outbound_request(),
            self.hms_request(),
            map.and_then(|m| m.create.as_ref()).map(|c| &c.request),
            map.and_then(|m| m.create.as_ref()).and_then(|c| c.lookup.as_ref()).map(|l| &l.request),
            map.and_then(|m| m.hms_create.as_ref()).and_then(|c| c.lookup.as_ref()).map(|l| &l.request),
            map.and_then(|m| m.delete.as_ref()),
            map.and_then(|m| m.hms_create.as_ref()).map(|c| &c.request),
            map.and_then(|m| m.hms_delete.as_ref()),
            self.pull_view().map(|p| &p.request),
            fetch.and_then(|r| r.fetch_hms.as_ref()),
            fetch.and_then(|r| r.fetch_legacy.as_ref()),
        ];
        for req in requests.into_iter().flatten() {
            names.extend(req.secret_names().into_iter().map(|n| (n, ())));
        }
        if let Some(auth) = &self.auth {
            names.extend(auth.secret_names().into_iter().map(|n| (n, ())));
        }
        names.into_keys().collect()
    }

    /// The environment variables the connector's webhooks verify with (`verify.secret`).
    pub fn webhook_secret_names(&self) -> Vec<String> {
        self.webhooks().into_iter().filter_map(|(_, w)| w.verify.secret.clone()).collect()
    }

    /// The secrets one request needs (`None`: the connector has no such request). A job
    /// resolves only these, so a secret missing for another direction does not block it.
    pub fn secrets_of(req: Option<&RequestSpec>) -> Vec<String> {
        req.map(RequestSpec::secret_names).unwrap_or_default()
    }
}

impl RequestSpec {
    /// Every `${NAME}` in this request's URL, headers and body, sorted and deduplicated.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names = BTreeMap::new();
        let mut texts = vec![self.url.as_str()];
        texts.extend(self.headers.iter().map(|(_, v)| v.as_str()));
        for text in texts {
            for n in super::templates::secret_refs(text) {
                names.insert(n, ());
            }
        }
        if let Some(body) = &self.body {
            collect_body_secrets(body, &mut names);
        }
        names.into_keys().collect()
    }
}

fn collect_body_secrets(v: &Value, out: &mut BTreeMap<String, ()>) {
    match v {
        Value::String(s) => out.extend(super::templates::secret_refs(s).into_iter().map(|n| (n, ()))),
        Value::Array(items) => items.iter().for_each(|i| collect_body_secrets(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_body_secrets(i, out)),
        _ => {}
    }
}
