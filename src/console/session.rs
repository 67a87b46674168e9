//! Signing in and out of the console, and who the person on a page is. A session is opened
//! with a token (its name and role are the session's), kept in an HttpOnly, SameSite=Strict
//! cookie (Secure over TLS) and stored in the database; the token itself never reaches a URL
//! or the browser's storage. Without tokens (loopback only) nobody signs in: everyone is
//! `local`, an admin.

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::dev::Payload;
use actix_web::error::InternalError;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use futures_util::future::LocalBoxFuture;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{Console, ConsoleError};
use crate::admin::AppState;
use crate::admin::auth::{self, CSRF_HEADER, Role, SESSION_COOKIE};
use crate::storage;

/// The person on a page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// What the page's script sends as `X-CSRF-Token` (empty without tokens).
    pub csrf: String,
    /// Tokens are configured (a session is needed, sign-out is offered).
    pub secured: bool,
    pub can_operate: bool,
    pub can_admin: bool,
}

impl User {
    fn new(name: String, role: Role, csrf: String, secured: bool) -> Self {
        Self { name, role, csrf, secured, can_operate: role >= Role::Operator, can_admin: role >= Role::Admin }
    }
}

/// The signed-in person, or a redirect to the sign-in page (401 for the page's own
/// fragment requests, whose script then goes there).
impl FromRequest for User {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req.app_data::<web::Data<AppState>>().cloned().ok_or_else(|| ConsoleError::internal("the service's state is missing"))?;
            if state.tokens.is_empty() {
                let local = auth::Principal::local();
                return Ok(User::new(local.name, local.role, String::new(), false));
            }
            match auth::session_of(&state, &req).await.map_err(ConsoleError::from)? {
                Some((p, session)) => Ok(User::new(p.name, p.role, session.csrf, true)),
                None if req.headers().contains_key("x-console-fragment") => {
                    Err(InternalError::from_response("sign in", HttpResponse::Unauthorized().body("sign in again")).into())
                }
                None => Err(InternalError::from_response("sign in", HttpResponse::SeeOther().insert_header((header::LOCATION, "/ui/login")).finish()).into()),
            }
        })
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

pub async fn login_form(console: web::Data<Console>, state: web::Data<AppState>) -> Result<HttpResponse, ConsoleError> {
    if state.tokens.is_empty() {
        return Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, "/ui")).finish());
    }
    console.page("login.html", serde_json::json!({ "error": null }))
}

/// A cross-site form posting here is refused: a browser says where a request comes from
/// (`Sec-Fetch-Site`, `Origin`), and a sign-in must come from this origin.
fn same_origin(req: &HttpRequest) -> bool {
    let site = req.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site.is_some_and(|s| s != "same-origin" && s != "none") {
        return false;
    }
    match req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        // An opaque origin (a sandboxed frame, or a page without referrers) counts only
        // when the browser vouches for the site.
        Some("null") => site == Some("same-origin"),
        Some(origin) => {
            let info = req.connection_info();
            origin == format!("{}://{}", info.scheme(), info.host())
        }
        None => true,
    }
}

pub async fn login(console: web::Data<Console>, state: web::Data<AppState>, req: HttpRequest, form: Result<web::Form<LoginForm>, actix_web::Error>) -> Result<HttpResponse, ConsoleError> {
    if !same_origin(&req) {
        return Err(ConsoleError::new(StatusCode::FORBIDDEN, "a sign-in must come from the console's own page"));
    }
    let token = form.map(|f| f.into_inner().token).unwrap_or_default();
    let Some(principal) = state.tokens.check(token.trim()) else {
        tracing::warn!(peer = ?req.peer_addr(), "console sign-in refused: wrong token");
        let mut page = console.page("login.html", serde_json::json!({ "error": "That token is not one of this service's tokens." }))?;
        *page.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(page);
    };
    // Ended sessions go now and then; a sign-in is a fine moment.
    let _ = storage::prune_sessions(&state.db).await;
    let (value, _) = storage::open_session(&state.db, &principal.name).await?;
    tracing::info!(actor = %principal.name, role = principal.role.as_str(), "console sign-in");
    let cookie = Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(req.connection_info().scheme() == "https")
        .max_age(CookieDuration::seconds(storage::SESSION_MAX_AGE.num_seconds()))
        .finish();
    Ok(HttpResponse::SeeOther().cookie(cookie).insert_header((header::LOCATION, "/ui")).finish())
}

/// Ends the session (its CSRF token is needed: a link on another site cannot sign anyone out).
pub async fn logout(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ConsoleError> {
    if let Some(cookie) = req.cookie(SESSION_COOKIE)
        && let Some(session) = storage::find_session(&state.db, cookie.value()).await?
    {
        let given = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(session.csrf.as_bytes())) {
            return Err(ConsoleError::new(StatusCode::FORBIDDEN, "missing or wrong CSRF token"));
        }
        storage::close_session(&state.db, cookie.value()).await?;
        tracing::info!(actor = %session.token_name, "console sign-out");
    }
    let mut gone = Cookie::build(SESSION_COOKIE, "").path("/").http_only(true).same_site(SameSite::Strict).finish();
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

