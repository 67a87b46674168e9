//! A scriptable fake external system (`FakeSystem`: records every request, answers as
//! scripted with `Reply`), `serve_local!` for in-process fakes on port 0, and the YAML of
//! connectors aimed at a fake.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse};
use serde_json::Value;

use super::poll::{poll_until, WAIT};

/// Starts an in-process HTTP server (the fake external systems) on 127.0.0.1, port 0,
/// one worker, and gives its base URL. `$factory` is what `HttpServer::new` takes.
#[macro_export]
macro_rules! serve_local {
    ($factory:expr) => {{
        let server = actix_web::HttpServer::new($factory)
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .bind(("127.0.0.1", 0))
            .expect("a free port on 127.0.0.1");
        let port = server.addrs()[0].port();
        actix_web::rt::spawn(server.run());
        format!("http://127.0.0.1:{port}")
    }};
}

/// A request the fake external system received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
    /// The status the fake answered (for a stall: the 200 sent after it).
    pub status: u16,
}

impl Received {
    /// A header's value; the name is matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One scripted answer of the fake system.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reply {
    /// This status, JSON body `{"ok": …}`.
    Status(u16),
    /// This status with `Retry-After: secs`.
    RetryAfter(u16, u64),
    /// 429, saying the API's rate-limit budget is spent for `secs`
    /// (`X-RateLimit-Remaining: 0`, `X-RateLimit-Reset: secs`).
    BudgetSpent(u64),
    /// Sleeps this long (longer than the connector's timeout), then answers 200.
    Stall(Duration),
    /// This status with the request's path and query as the (text) body, the way some
    /// servers quote the request in their error pages.
    EchoUrl(u16),
    /// This status with this text as the body (an error page that quotes markup, say).
    Text(u16, &'static str),
}

impl From<u16> for Reply {
    fn from(s: u16) -> Self {
        Reply::Status(s)
    }
}

#[derive(Default)]
struct FakeState {
    received: Vec<Received>,
    /// Answers, in order; when empty: 200.
    script: VecDeque<Reply>,
    /// Answers for requests whose path starts with a prefix, before the general script.
    by_path: Vec<(String, VecDeque<Reply>)>,
    /// When set, every request gets this answer (scripts untouched) until cleared.
    always: Option<Reply>,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: usize,
    max_in_flight: usize,
}

/// The external system: records every request, answers as scripted.
#[derive(Clone)]
pub struct FakeSystem {
    pub base: String,
    state: Arc<Mutex<FakeState>>,
}

impl FakeSystem {
    pub async fn start() -> FakeSystem {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let shared = state.clone();
        let base = crate::serve_local!(move || {
            let st = shared.clone();
            App::new().app_data(web::Data::new(st)).default_service(web::to(record))
        });
        FakeSystem { base, state }
    }

    /// Answers the next requests with these statuses, in order (then 200).
    pub fn fail_next(&self, statuses: &[u16]) {
        self.state.lock().unwrap().script.extend(statuses.iter().map(|s| Reply::Status(*s)));
    }

    /// Appends answers to the script.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// Answers for requests whose path starts with `prefix`, in order (then the general
    /// script, then 200).
    pub fn script_path(&self, prefix: &str, replies: impl IntoIterator<Item = Reply>) {
        let mut st = self.state.lock().unwrap();
        let replies: VecDeque<Reply> = replies.into_iter().collect();
        match st.by_path.iter_mut().find(|(p, _)| p == prefix) {
            Some((_, q)) => q.extend(replies),
            None => st.by_path.push((prefix.to_string(), replies)),
        }
    }

    /// Every request gets `reply` until [`answer_normally`](Self::answer_normally).
    pub fn answer_always(&self, reply: Reply) {
        self.state.lock().unwrap().always = Some(reply);
    }

    pub fn answer_normally(&self) {
        self.state.lock().unwrap().always = None;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// The most requests the fake was answering at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        poll_until(&format!("{n} request(s) at the fake system"), WAIT, || async {
            let r = self.received();
            (r.len() >= n).then_some(r)
        })
        .await
    }

    /// Waits until some received request satisfies `pred`; returns everything received.
    pub async fn wait_until(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        poll_until(what, WAIT, || {
            let r = self.received();
            let ok = pred(&r);
            async move { ok.then_some(r) }
        })
        .await
    }
}

async fn record(req: HttpRequest, body: web::Bytes, state: web::Data<Arc<Mutex<FakeState>>>) -> HttpResponse {
    let path = req.uri().to_string();
    let reply = {
        let mut st = state.lock().unwrap();
        let reply = if let Some(r) = st.always {
            r
        } else if let Some(r) = st.by_path.iter_mut().find(|(p, q)| path.starts_with(p.as_str()) && !q.is_empty()).and_then(|(_, q)| q.pop_front()) {
            r
        } else {
            st.script.pop_front().unwrap_or(Reply::Status(200))
        };
        let status = match reply {
            Reply::Status(s) | Reply::RetryAfter(s, _) | Reply::EchoUrl(s) | Reply::Text(s, _) => s,
            Reply::Stall(_) => 200,
            Reply::BudgetSpent(_) => 429,
        };
        st.in_flight += 1;
        st.max_in_flight = st.max_in_flight.max(st.in_flight);
        st.received.push(Received {
            method: req.method().to_string(),
            path: path.clone(),
            headers: req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect(),
            // JSON as JSON; any other body (a form, XML, text) as its text.
            body: serde_json::from_slice(&body).unwrap_or_else(|_| if body.is_empty() { Value::Null } else { Value::String(String::from_utf8_lossy(&body).into_owned()) }),
            at: Instant::now(),
            status,
        });
        reply
    };
    let code = |s: u16| actix_web::http::StatusCode::from_u16(s).unwrap();
    let response = match reply {
        Reply::Status(s) => HttpResponse::build(code(s)).json(serde_json::json!({"ok": s < 300})),
        Reply::RetryAfter(s, secs) => {
            HttpResponse::build(code(s)).insert_header(("Retry-After", secs.to_string())).json(serde_json::json!({"ok": false}))
        }
        Reply::BudgetSpent(secs) => HttpResponse::TooManyRequests()
            .insert_header(("X-RateLimit-Remaining", "0"))
            .insert_header(("X-RateLimit-Reset", secs.to_string()))
            .json(serde_json::json!({"ok": false})),
        Reply::Stall(d) => {
            actix_web::rt::time::sleep(d).await;
            HttpResponse::Ok().json(serde_json::json!({"ok": true}))
        }
        Reply::EchoUrl(s) => HttpResponse::build(code(s)).content_type("text/plain").body(format!("cannot handle {path}")),
        Reply::Text(s, text) => HttpResponse::build(code(s)).content_type("text/html").body(text),
    };
    state.lock().unwrap().in_flight -= 1;
    response
}

/// An outbound connector POSTing `{ n }` to `{base}/{id}/{n}`, one record key per `n`.
pub fn numbered_connector(id: &str, topic: &str, base: &str, retry: &str) -> String {
    r#"id: @ID@
type: outbound
trigger: { topic: @TOPIC@ }
key: "{{ n }}"
map:
  to:
    url: "@BASE@/@ID@/{n}"
    method: POST
    body: { n: "{{ n }}" }
retry: @RETRY@
"#
    .replace("@ID@", id)
    .replace("@TOPIC@", topic)
    .replace("@BASE@", base)
    .replace("@RETRY@", retry)
}

/// An outbound connector aimed at the fake system.
pub fn outbound_yaml(id: &str, topic: &str, fake: &FakeSystem, extra: &str) -> String {
    permit_connector(id, topic, &fake.base, &format!("retry: {{ max: 3, backoffMs: 20 }}\n{extra}"))
}

/// A connector PATCHing `{base}/roadwork/{permitId}` with `{status}`, one key per permit;
/// `extra` adds top-level keys (retry, timeoutMs, …).
pub fn permit_connector(id: &str, topic: &str, base: &str, extra: &str) -> String {
    r#"id: @ID@
type: outbound
trigger: { topic: @TOPIC@ }
key: "{{ permitId }}"
map:
  to:
    url: "@BASE@/roadwork/{permitId}"
    method: PATCH
    body: { status: "{{ status }}" }
"#
    .replace("@ID@", id)
    .replace("@TOPIC@", topic)
    .replace("@BASE@", base)
        + extra
}
