//! Sends one rendered request with awc and turns the answer into an [`Outcome`].

use std::time::{Duration, Instant};

use crate::mapping::RenderedRequest;

use super::egress::{Egress, TARGET_HEADER};
use super::outcome::{parse_retry_after, Outcome};

/// One attempt's result with what the ticket and metrics need.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub outcome: Outcome,
    pub latency: Duration,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// The answer's body (up to 64 KiB), when an answer came: two-way sync reads the record
    /// as the target stored it from a write's answer.
    pub body: Option<actix_web::web::Bytes>,
    /// The answer said the API's request budget is spent for this long (rate-limit headers).
    pub pause: Option<Duration>,
}

/// The first 200 characters of an answer, for error messages: lossy UTF-8, control
/// characters (NUL above all, which PostgreSQL refuses in text) replaced.
fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).map(|c| if c.is_control() && c != '\n' { ' ' } else { c }).collect()
}

/// Builds the client a connector uses for its whole life (one per actor, per NOTES.md:
/// clones share the pool, a client per request would open a connection per request).
/// `connections` caps the pool: one per record key the connector sends in parallel, so a
/// busy connector neither queues behind awc's default limit nor opens more than it uses.
pub fn client(timeout: Duration, connections: usize, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> awc::Client {
    let mut connector = awc::Connector::new().limit(connections.max(1)).timeout(timeout);
    // A connector's own CA and client certificate (`tls`), else the public roots.
    if let Some(config) = tls {
        connector = connector.rustls_0_23(config);
    }
    awc::Client::builder().connector(connector).timeout(timeout).disable_redirects().finish()
}

/// Sends `request` with `req`'s body in its encoding, and the encoding's `Content-Type`
/// unless the connector's headers name one.
async fn send_with_body(request: awc::ClientRequest, req: &RenderedRequest) -> Result<awc::ClientResponse, awc::error::SendRequestError> {
    match req.wire_body() {
        Some((text, content_type)) => {
            let named = req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
            let request = if named { request } else { request.insert_header(("Content-Type", content_type)) };
            request.send_body(text).await
        }
        None => request.send().await,
    }
}

/// Sends `req` carrying `idempotency_key`, reads the whole body (so the connection goes
/// back to the pool) and classifies the answer.
pub async fn send(client: &awc::Client, req: &RenderedRequest, idempotency_key: &str, egress: &Egress) -> Attempt {
    let started = Instant::now();
    let mut status_seen = None;
    let mut body_seen = None;
    let mut pause = None;
    let outcome = match build(client, req, idempotency_key, egress) {
        Err(error) => Outcome::Permanent { error },
        Ok(request) => {
            let sent = send_with_body(request, req).await;
            match sent {
                Err(e) => Outcome::Retryable { error: format!("request failed: {e}"), retry_after: None },
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    status_seen = Some(status);
                    let headers = resp.headers();
                    pause = super::rate::pause_asked(|h| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_string), chrono::Utc::now().timestamp());
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
                    let body = resp.body().limit(64 * 1024).await.unwrap_or_default();
                    let excerpt = excerpt(&body);
                    let outcome = Outcome::from_status(status, retry_after, excerpt.trim());
                    body_seen = Some(body);
                    outcome
                }
            }
        }
    };
    Attempt { outcome, latency: started.elapsed(), status: status_seen, body: body_seen, pause }
}

fn build(client: &awc::Client, req: &RenderedRequest, key: &str, egress: &Egress) -> Result<awc::ClientRequest, String> {
    let method = awc::http::Method::from_bytes(req.method.as_bytes()).map_err(|e| format!("bad method {}: {e}", req.method))?;
    let (url, original) = egress.route(&req.url);
    // The URL itself is not quoted: it may carry a secret.
    let uri: awc::http::Uri = url.parse().map_err(|e| format!("the rendered URL is not valid: {e}"))?;
    let mut request = client.request(method, uri);
    if let Some(original) = original {
        request = request.insert_header((TARGET_HEADER, original));
    }
    if !key.is_empty() {
        request = request.insert_header(("Idempotency-Key", key));
    }
    // A header whose template rendered empty is left out: `If-Match: "{{ etag }}"` with no
    // record read yet (a create) must not send an empty precondition.
    for (name, value) in req.headers.iter().filter(|(_, v)| !v.is_empty()) {
        request = request.insert_header((name.as_str(), value.as_str()));
    }
    Ok(request)
}

/// A record read from a system, with its `ETag` (for a conditional write: `If-Match`).
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub record: serde_json::Value,
    pub etag: Option<String>,
}

/// Like [`fetch_json`], but a 404 (or 410) means "no such record": `Ok(None)` (the
/// resolver's read of a side's current record). Keeps the answer's `ETag`.
pub async fn fetch_optional_json(client: &awc::Client, req: &RenderedRequest, egress: &Egress) -> Result<Option<Fetched>, Outcome> {
    match fetch(client, req, egress).await {
        Ok(v) => Ok(Some(v)),
        Err(Unfetched { status: Some(404 | 410), .. }) => Ok(None),
        Err(e) => Err(e.outcome),
    }
}

/// GETs (or sends) `req` and parses the answer as JSON: used by the Puller.
pub async fn fetch_json(client: &awc::Client, req: &RenderedRequest, egress: &Egress) -> Result<serde_json::Value, Outcome> {
    fetch(client, req, egress).await.map(|f| f.record).map_err(|e| e.outcome)
}

/// A read that brought no record: the answer's status when there was one, and the outcome.
struct Unfetched {
    status: Option<u16>,
    outcome: Outcome,
}

async fn fetch(client: &awc::Client, req: &RenderedRequest, egress: &Egress) -> Result<Fetched, Unfetched> {
    let failed = |outcome| Unfetched { status: None, outcome };
    let request = build(client, req, "", egress).map_err(|error| failed(Outcome::Permanent { error }))?;
    let mut resp = send_with_body(request, req)
        .await
        .map_err(|e| failed(Outcome::Retryable { error: format!("request failed: {e}"), retry_after: None }))?;
    let status = resp.status().as_u16();
    let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = resp.body().limit(16 * 1024 * 1024).await.map_err(|e| failed(Outcome::Retryable { error: format!("reading the answer: {e}"), retry_after: None }))?;
    if !(200..300).contains(&status) {
        let excerpt = excerpt(&body);
        return Err(Unfetched { status: Some(status), outcome: Outcome::from_status(status, None, excerpt.trim()) });
    }
    let record = serde_json::from_slice(&body).map_err(|e| failed(Outcome::Permanent { error: format!("the answer is not JSON: {e}") }))?;
    Ok(Fetched { record, etag })
}
