//! One JSON error shape for every failure, and the one place that maps errors to statuses.

use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::actors::registry::RegistryError;
use crate::spec::SpecErrors;
use crate::storage::StorageError;

/// `{"error_code": 404, "message": "…", "details": […]}` (Kafka Connect's shape, plus details).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), details: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = json!({ "error_code": self.status.as_u16(), "message": self.message });
        if let Some(d) = &self.details {
            body["details"] = d.clone();
        }
        HttpResponse::build(self.status).json(body)
    }
}

impl From<SpecErrors> for ApiError {
    fn from(e: SpecErrors) -> Self {
        let n = e.0.len();
        Self {
            status: StatusCode::BAD_REQUEST,
            message: format!("connector is invalid ({n} error{})", if n == 1 { "" } else { "s" }),
            details: serde_json::to_value(&e).ok(),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let status = match &e {
            RegistryError::Exists(_) | RegistryError::PathTaken { .. } | RegistryError::FileOwned { .. } => StatusCode::CONFLICT,
            RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
            RegistryError::Compile { .. } => StatusCode::BAD_REQUEST,
            RegistryError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, e.to_string())
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        tracing::error!(error = %e, "storage error");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, format!("storage unavailable: {e}"))
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        Self::internal(format!("runtime unavailable: {e}"))
    }
}

/// The largest request body accepted (`server.max_body_bytes`), named in the 413 answer.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Gives every error response the one JSON shape, including those actix-web makes itself
/// (body over the limit → 413, unknown route, a malformed path), so clients never parse
/// plain text.
pub fn json_error_body<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    if res.status() == StatusCode::PAYLOAD_TOO_LARGE
        && let Some(limit) = res.request().app_data::<BodyLimit>().map(|l| l.0)
    {
        let message = format!("the body is over the limit of {limit} bytes (setting server.max_body_bytes, HMS_SYNC__SERVER__MAX_BODY_BYTES)");
        let (req, _) = res.into_parts();
        let resp = ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message).error_response();
        return Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, resp).map_into_right_body()));
    }
    // A body its handler chose: JSON, or a console page (HTML for people). actix-web's own
    // errors are plain text.
    let kept = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if kept {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let message = match res.response().error() {
        Some(e) => e.to_string(),
        None => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let (req, _) = res.into_parts();
    let resp = ApiError::new(status, message).error_response();
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, resp).map_into_right_body()))
}

/// The answer for a route that does not exist: 405 with `Allow` when the path exists with
/// other methods (RFC 9110), else 404.
pub async fn no_route(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    // The routes this path would take: the most literal patterns that match it (as the
    // router prefers `/reload` to `/connectors/{id}`).
    let matching: Vec<_> = super::endpoints::routed().iter().filter(|(_, path, _)| path_matches(path, req.path())).collect();
    let fewest = matching.iter().map(|(_, path, _)| path.matches('{').count()).min().unwrap_or(0);
    let allowed: Vec<String> = matching.iter().filter(|(_, path, _)| path.matches('{').count() == fewest).map(|(m, _, _)| m.as_str().to_string()).collect();
    if allowed.is_empty() {
        return Err(ApiError::not_found(format!("no route for {} {}", req.method(), req.path())));
    }
    let allow = allowed.join(", ");
    let err = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{} is not allowed on {}: use {allow}", req.method(), req.path()));
    let mut resp = actix_web::ResponseError::error_response(&err);
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allow) {
        resp.headers_mut().insert(actix_web::http::header::ALLOW, value);
    }
    Ok(resp)
}

/// Does request path `path` match route `pattern` (`{param}` segments match any one)?
pub(super) fn path_matches(pattern: &str, path: &str) -> bool {
    let (p, r): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == r.len() && p.iter().zip(&r).all(|(a, b)| (a.starts_with('{') && a.ends_with('}') && !b.is_empty()) || a == b)
}
