//! Who is asking, and may they: bearer tokens (`server.admin_token`, named tokens of
//! `server.tokens` with a role) and console sessions (a cookie, with a CSRF token on every
//! state-changing request). Tokens are compared in constant time. Every admin route says
//! in the endpoint table which role it needs; the caller's name is what the audit log and
//! the tickets of replayed, discarded or resolved jobs record.

use std::future::{Ready, ready};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError, web};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
pub use crate::settings::Role;
use crate::settings::Settings;
use crate::storage;

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "hms_session";
/// The header a session's state-changing request carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The caller of a request: a token's name and its role. Without any token configured
/// (loopback only) everyone is `local`, an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

impl Principal {
    /// Everyone, when no token is configured (the service then listens on loopback only).
    pub fn local() -> Self {
        Self { name: "local".into(), role: Role::Admin }
    }
}

/// Set by [`require_token`] on every admin request; `local` where none is set.
impl FromRequest for Principal {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(req.extensions().get::<Principal>().cloned().unwrap_or_else(Principal::local)))
    }
}

/// Every token the service accepts: (name, role, secret).
#[derive(Clone, Default)]
pub struct Tokens(Vec<(String, Role, String)>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(name, role, _)| (name, role))).finish()
    }
}

impl Tokens {
    /// From the settings: `admin_token` as `admin`, then `server.tokens`, each `${NAME}`
    /// read from the environment. A name used twice, an unset or blank secret, or one secret
    /// given to two names is refused (which name would a request be?).
    pub fn from_settings(settings: &Settings, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut all = Vec::new();
        if let Some(t) = settings.server.admin_token.as_deref().filter(|t| !t.is_empty()) {
            all.push(("admin".to_string(), Role::Admin, t.to_string()));
        }
        for (name, named) in &settings.server.tokens {
            if all.iter().any(|(n, _, _)| n == name) {
                return Err(format!("server.tokens.{name}: the name `admin` is server.admin_token's; choose another"));
            }
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
                return Err(format!("server.tokens.{name}: a token's name is letters, digits, `-`, `_` or `.`"));
            }
            let secret = match named.token.trim().strip_prefix("${").and_then(|t| t.strip_suffix('}')) {
                Some(var) => env(var).ok_or_else(|| format!("server.tokens.{name}.token is ${{{var}}}, and the environment variable {var} is not set"))?,
                None => named.token.clone(),
            };
            if secret.trim().is_empty() {
                return Err(format!("server.tokens.{name}.token is empty or only blanks: set a real token"));
            }
            if let Some((other, _, _)) = all.iter().find(|(_, _, s)| *s == secret) {
                return Err(format!("server.tokens.{name}: its token is also {other}'s; each name needs its own token"));
            }
            all.push((name.clone(), named.role, secret));
        }
        Ok(Self(all))
    }

    /// No token at all: the service listens on loopback only and asks nobody.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The token `given` is, compared in constant time against every one.
    pub fn check(&self, given: &str) -> Option<Principal> {
        let mut found = None;
        for (name, role, secret) in &self.0 {
            if bool::from(given.as_bytes().ct_eq(secret.as_bytes())) {
                found = Some(Principal { name: name.clone(), role: *role });
            }
        }
        found
    }

    /// The principal of a session opened with token `name` (its role as configured now;
    /// `None` once the token is gone from the settings).
    pub fn by_name(&self, name: &str) -> Option<Principal> {
        self.0.iter().find(|(n, _, _)| n == name).map(|(n, r, _)| Principal { name: n.clone(), role: *r })
    }
}

/// Why a request was refused.
fn refuse(req: ServiceRequest, status: StatusCode, message: impl Into<String>) -> ServiceResponse<BoxBody> {
    req.into_response(ApiError::new(status, message).error_response())
}

/// A session's principal and CSRF token, from its cookie; `None` without a live session.
pub async fn session_of(state: &AppState, req: &HttpRequest) -> Result<Option<(Principal, storage::Session)>, ApiError> {
    let Some(cookie) = req.cookie(SESSION_COOKIE) else { return Ok(None) };
    let Some(session) = storage::find_session(&state.db, cookie.value()).await? else { return Ok(None) };
    Ok(state.tokens.by_name(&session.token_name).map(|p| (p, session)))
}

/// The admin routes' gate: who asks (a bearer token, or a console session whose
/// state-changing requests carry its CSRF token), and whether their role suffices for the
/// route (the endpoint table's `role`).
pub async fn require_token(req: ServiceRequest, next: Next<impl MessageBody + 'static>) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // A request no admin route takes goes on to the 404 or 405 it gets anyway (the routes
    // are public in the OpenAPI document); only a real admin request needs the token.
    let Some(needed) = super::endpoints::role_for(req.method(), req.path()) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(refuse(req, StatusCode::INTERNAL_SERVER_ERROR, "the service's state is missing"));
    };
    let tokens = &state.tokens;
    let principal = if tokens.is_empty() {
        Principal::local()
    } else if let Some(header) = req.headers().get("authorization") {
        let given = header.to_str().ok().and_then(crate::webhook::verify::bearer).unwrap_or("");
        match tokens.check(given) {
            Some(p) => p,
            None => return Ok(refuse(req, StatusCode::UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer …)")),
        }
    } else {
        match session_of(&state, req.request()).await {
            Ok(Some((p, session))) => {
                if !matches!(*req.method(), Method::GET | Method::HEAD) {
                    let given = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
                    if !bool::from(given.as_bytes().ct_eq(session.csrf.as_bytes())) {
                        return Ok(refuse(req, StatusCode::FORBIDDEN, "missing or wrong CSRF token (X-CSRF-Token) for this session: reload the page"));
                    }
                }
                p
            }
            Ok(None) => return Ok(refuse(req, StatusCode::UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer …), and no live console session")),
            Err(e) => return Ok(req.into_response(e.error_response())),
        }
    };
    if principal.role < needed {
        let msg = format!("`{}` is a {}; {} {} needs the {} role", principal.name, principal.role.as_str(), req.method(), req.path(), needed.as_str());
        return Ok(refuse(req, StatusCode::FORBIDDEN, msg));
    }
    req.extensions_mut().insert(principal);
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// Records a change in the audit log under `who`. The change is made already: a failure
/// to record it is logged, not answered.
pub async fn audit(state: &AppState, who: &Principal, action: &str, target: &str, detail: Option<serde_json::Value>) {
    tracing::info!(actor = %who.name, action, target, "change recorded");
    if let Err(e) = storage::record_audit(&state.db, &who.name, action, target, detail.as_ref()).await {
        tracing::error!(error = %e, actor = %who.name, action, target, "cannot record the change in the audit log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::NamedToken;

    fn settings(admin: Option<&str>, named: &[(&str, Role, &str)]) -> Settings {
        let mut s = Settings::default();
        s.server.admin_token = admin.map(str::to_string);
        for (name, role, token) in named {
            s.server.tokens.insert(name.to_string(), NamedToken { role: *role, token: token.to_string() });
        }
        s
    }

    #[test]
    fn tokens_resolve_their_secrets_from_the_environment() {
        let env = |v: &str| (v == "ALICE").then(|| "alice-secret".to_string());
        let t = Tokens::from_settings(&settings(Some("root"), &[("alice", Role::Operator, "${ALICE}"), ("bob", Role::Viewer, "literal")]), env).unwrap();
        assert_eq!(t.check("root"), Some(Principal { name: "admin".into(), role: Role::Admin }));
        assert_eq!(t.check("alice-secret"), Some(Principal { name: "alice".into(), role: Role::Operator }));
        assert_eq!(t.check("literal").map(|p| p.role), Some(Role::Viewer));
        assert_eq!(t.check("${ALICE}"), None);
        assert_eq!(t.check(""), None);
        assert_eq!(t.by_name("bob").map(|p| p.role), Some(Role::Viewer));
        assert!(format!("{t:?}").contains("alice") && !format!("{t:?}").contains("alice-secret"), "secrets stay out of Debug");
    }

    #[test]
    fn bad_tokens_are_refused_with_their_place() {
        let none = |_: &str| None;
        let e = Tokens::from_settings(&settings(None, &[("alice", Role::Operator, "${ALICE}")]), none).unwrap_err();
        assert!(e.contains("server.tokens.alice.token") && e.contains("ALICE is not set"), "{e}");
        let e = Tokens::from_settings(&settings(Some("x"), &[("admin", Role::Viewer, "y")]), none).unwrap_err();
        assert!(e.contains("admin_token"), "{e}");
        let e = Tokens::from_settings(&settings(None, &[("a", Role::Viewer, "same"), ("b", Role::Admin, "same")]), none).unwrap_err();
        assert!(e.contains("also a's"), "{e}");
        let e = Tokens::from_settings(&settings(None, &[("a", Role::Viewer, "  ")]), none).unwrap_err();
        assert!(e.contains("blanks"), "{e}");
        assert!(Tokens::from_settings(&settings(None, &[]), none).unwrap().is_empty());
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    }
}
