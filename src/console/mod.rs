//! The web console under `/ui`, served by the binary itself: server-rendered HTML from
//! templates compiled into the binary (minijinja, HTML auto-escaping), one small script
//! and one stylesheet embedded too (no CDN, nothing fetched at run time). Pages read the
//! database and the actors directly; every change a page makes goes through the admin API
//! (with the session's cookie and CSRF token), so the console, the CLI and a script are
//! checked, refused and recorded the same way.

mod chart;
mod pages;
mod rollup;
mod session;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError, web};

pub use session::User;

/// The compiled templates.
#[derive(Clone)]
pub struct Console {
    env: Arc<minijinja::Environment<'static>>,
    /// The counts of the last hour, shared by every worker's pages.
    rollup: Arc<rollup::Rollup>,
}

/// Every template, by name (`.html`: escaped on output unless marked safe).
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("rows.html", include_str!("templates/rows.html")),
    ("connector.html", include_str!("templates/connector.html")),
    ("panel.html", include_str!("templates/panel.html")),
    ("parked.html", include_str!("templates/parked.html")),
    ("job.html", include_str!("templates/job.html")),
    ("tickets.html", include_str!("templates/tickets.html")),
    ("ticket.html", include_str!("templates/ticket.html")),
    ("audit.html", include_str!("templates/audit.html")),
];

impl Console {
    pub fn new() -> Result<Self, minijinja::Error> {
        let mut env = minijinja::Environment::new();
        // The assets' URLs change with the version, so a browser never keeps an old script.
        env.add_global("version", env!("CARGO_PKG_VERSION"));
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(Self { env: Arc::new(env), rollup: Arc::default() })
    }

    /// Reads the last hour's tickets for the counts now, in the background, so that the
    /// first look at the console after a start costs what every later one does.
    pub fn warm(&self, db: crate::storage::Db) {
        let rollup = self.rollup.clone();
        actix_web::rt::spawn(async move {
            if let Err(e) = rollup.recent(&db, chrono::Utc::now(), 5).await {
                tracing::warn!(error = %e, "the console's counts could not be read yet; the first page will read them");
            }
        });
    }

    /// Template `name` rendered with `ctx`, as an HTML page.
    fn page(&self, name: &str, ctx: impl serde::Serialize) -> Result<HttpResponse, ConsoleError> {
        let html = self.env.get_template(name).and_then(|t| t.render(ctx)).map_err(|e| ConsoleError::internal(format!("template {name}: {e}")))?;
        Ok(HttpResponse::Ok().content_type("text/html; charset=utf-8").insert_header((header::CACHE_CONTROL, "no-store")).body(html))
    }
}

/// A page that could not be shown, as an HTML page (with the message escaped).
#[derive(Debug)]
pub struct ConsoleError {
    status: StatusCode,
    message: String,
}

impl ConsoleError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl std::fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        // An error has no handle on the console's templates: the error page has an
        // environment of its own, compiled once (not every template again per error).
        static ERROR_PAGE: std::sync::LazyLock<Option<minijinja::Environment<'static>>> = std::sync::LazyLock::new(|| {
            let mut env = minijinja::Environment::new();
            env.add_template("error.html", include_str!("templates/error.html")).ok().map(|()| env)
        });
        let ctx = serde_json::json!({ "status": self.status.as_u16(), "message": self.message });
        let body = ERROR_PAGE.as_ref().and_then(|env| env.get_template("error.html").and_then(|t| t.render(ctx)).ok()).unwrap_or_else(|| "error".into());
        HttpResponse::build(self.status).content_type("text/html; charset=utf-8").body(body)
    }
}

impl From<crate::storage::StorageError> for ConsoleError {
    fn from(e: crate::storage::StorageError) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, format!("the database cannot answer: {e}"))
    }
}

impl From<actix::MailboxError> for ConsoleError {
    fn from(e: actix::MailboxError) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, format!("the service is stopping: {e}"))
    }
}

impl From<crate::admin::error::ApiError> for ConsoleError {
    fn from(e: crate::admin::error::ApiError) -> Self {
        Self::new(e.status, e.message)
    }
}

/// The page headers: a Content-Security-Policy allowing only this origin's script and
/// stylesheet (no inline script, no inline style), no framing, no sniffing, no referrer to other sites.
async fn security_headers(req: ServiceRequest, next: Next<impl MessageBody + 'static>) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let h = res.headers_mut();
    let set = |h: &mut header::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(header::HeaderName::from_static(name), HeaderValue::from_static(value));
    };
    set(h, "content-security-policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    // Same-origin: with no-referrer a browser sends `Origin: null` on a form's POST, and the
    // sign-in's origin check could not tell the console's own page from a sandboxed frame.
    set(h, "referrer-policy", "same-origin");
    Ok(res)
}

/// The script and the stylesheet, embedded.
async fn asset(name: web::Path<String>) -> HttpResponse {
    let (body, kind): (&'static str, &'static str) = match name.as_str() {
        "console.js" => (include_str!("assets/console.js"), "text/javascript; charset=utf-8"),
        "console.css" => (include_str!("assets/console.css"), "text/css; charset=utf-8"),
        _ => return ConsoleError::not_found(format!("no asset {name}")).error_response(),
    };
    HttpResponse::Ok().content_type(kind).insert_header((header::CACHE_CONTROL, "public, max-age=3600")).body(body)
}

/// `/` → `/ui`, and the console's routes.
pub fn routes(cfg: &mut web::ServiceConfig, console: Console) {
    cfg.route("/", web::get().to(|| async { HttpResponse::Found().insert_header((header::LOCATION, "/ui")).finish() }));
    cfg.service(
        web::scope("/ui")
            .app_data(web::Data::new(console))
            .wrap(actix_web::middleware::from_fn(security_headers))
            .route("", web::get().to(pages::overview))
            .route("/", web::get().to(pages::overview))
            .route("/rows", web::get().to(pages::rows))
            .route("/login", web::get().to(session::login_form))
            .route("/login", web::post().to(session::login))
            .route("/logout", web::post().to(session::logout))
            .route("/assets/{name}", web::get().to(asset))
            .route("/connectors/{id}", web::get().to(pages::connector))
            .route("/connectors/{id}/panel", web::get().to(pages::panel))
            .route("/parked", web::get().to(pages::parked))
            .route("/parked/{id}", web::get().to(pages::job))
            .route("/tickets", web::get().to(pages::tickets))
            .route("/tickets.csv", web::get().to(pages::tickets_csv))
            .route("/tickets/{id}", web::get().to(pages::ticket))
            .route("/audit", web::get().to(pages::audit))
            .default_service(web::to(|| async { ConsoleError::not_found("no such page in the console").error_response() })),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_page_is_html_with_its_message_escaped() {
        let resp = ConsoleError::not_found("no job <b>7</b>").error_response();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let body = actix_web::rt::System::new().block_on(actix_web::body::to_bytes(resp.into_body())).unwrap();
        let html = String::from_utf8_lossy(&body);
        assert!(html.contains("<h1>404</h1>") && html.contains("no job &lt;b&gt;7&lt;") && !html.contains("<b>"), "{html}");
    }
}
