//! Bearer-token check for admin routes, compared in constant time.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The configured admin token; `None` means the service only listens on loopback.
pub struct AdminToken(pub Option<String>);

pub async fn require_token(req: ServiceRequest, next: Next<impl MessageBody + 'static>) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let expected = req.app_data::<web::Data<AdminToken>>().and_then(|t| t.0.clone());
    // A request no admin route takes goes on to the 404 or 405 it gets anyway (the routes
    // are public in the OpenAPI document); only a real admin request needs the token.
    let routed = super::endpoints::routed().iter().any(|(method, path)| method == req.method() && super::error::path_matches(path, req.path()));
    if let Some(expected) = expected.filter(|_| routed) {
        let given = req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(crate::webhook::verify::bearer).unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            let err = ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer …)");
            return Ok(req.into_response(err.error_response()));
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}
