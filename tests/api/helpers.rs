//! `spawn_app`, a scriptable fake external system, the real binary as a child process, and
//! bounded polling.

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse};
use hms_sync::admin::AppState;
use hms_sync::settings::Settings;
use hms_sync::startup::Application;
use serde_json::Value;

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

/// Waits until `check` gives `Some`, at most `timeout`; panics with `what` otherwise.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

pub const WAIT: Duration = Duration::from_secs(10);

/// One HTTP request to `base` + `path`; the status and the raw answer.
pub async fn http(
    client: &awc::Client,
    base: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Vec<u8>) {
    let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut resp = match body {
        Some(b) => req.send_body(b.to_string()).await,
        None => req.send().await,
    }
    .unwrap_or_else(|e| panic!("request {path} reaches the app: {e}"));
    let bytes = resp.body().limit(16 << 20).await.unwrap();
    (resp.status().as_u16(), bytes.to_vec())
}

fn to_json(bytes: &[u8]) -> Value {
    if bytes.is_empty() { Value::Null } else { serde_json::from_slice(bytes).unwrap_or(Value::Null) }
}

/// A running application and what a test needs to talk to it.
pub struct TestApp {
    pub base: String,
    pub settings: Settings,
    pub client: awc::Client,
    pub token: Option<String>,
    state: AppState,
    handle: actix_web::dev::ServerHandle,
    join: Option<actix_web::rt::task::JoinHandle<std::io::Result<()>>>,
}

/// A fresh folder for one test (data, connectors), removed at the end of the process.
pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("hms-sync-test-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(dir.join("connectors")).unwrap();
    dir
}

/// Settings for a test: port 0, its own SQLite file and connector folder, fast restarts,
/// fault injection on.
pub fn test_settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings::default();
    s.server.port = 0;
    s.server.workers = 2;
    s.server.fault_injection = true;
    s.data_dir = dir.join("data");
    s.connectors.dir = dir.join("connectors");
    s.supervision.backoff_ms = 20;
    s.supervision.max_backoff_ms = 200;
    s.tickets.flush_ms = 5;
    s
}

/// The service's logs (warnings and errors, or `RUST_LOG`) go through the test harness's
/// capture: shown for a test that fails, silent for one that passes. Threads the service
/// starts inherit the capture of the test that started them.
pub fn test_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(false).with_test_writer().try_init();
}

impl TestApp {
    pub async fn spawn(settings: Settings) -> TestApp {
        test_logs();
        let app = Application::build(settings.clone()).await.expect("application builds");
        let port = app.port();
        let handle = app.server_handle();
        let state = app.state().clone();
        let join = actix_web::rt::spawn(app.run_until_stopped());
        let token = settings.server.admin_token.clone();
        TestApp { base: format!("http://127.0.0.1:{port}"), settings, client: awc::Client::default(), token, state, handle, join: Some(join) }
    }

    /// The application's shared state: the in-process [`Bus`](hms_sync::bus::Bus), the database…
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops the service as SIGTERM would, and waits until it is down.
    pub async fn stop(mut self) -> Settings {
        self.handle.stop(true).await;
        if let Some(j) = self.join.take() {
            let _ = j.await;
        }
        self.settings.clone()
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.call_with(method, path, body, &[]).await
    }

    /// A request with the token and no body: the status, the body as JSON and the `Allow`
    /// header.
    pub async fn call_raw(&self, method: &str, path: &str) -> (u16, Value, Option<String>) {
        let mut req = self.client.request(awc::http::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        let mut resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let allow = resp.headers().get("allow").and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = resp.body().await.unwrap_or_default();
        (resp.status().as_u16(), to_json(&bytes), allow)
    }

    /// [`call`](Self::call) with extra request headers.
    pub async fn call_with(&self, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> (u16, Value) {
        let (code, bytes) = http(&self.client, &self.base, self.token.as_deref(), method, path, body, headers).await;
        (code, to_json(&bytes))
    }

    pub async fn status(&self, id: &str) -> Value {
        let (code, body) = self.call("GET", &format!("/connectors/{id}/status"), None).await;
        assert_eq!(code, 200, "status of {id}: {body}");
        body
    }

    pub async fn publish(&self, topic: &str, event: Value) -> Value {
        let (code, body) = self.call("POST", &format!("/events/{topic}"), Some(&event.to_string())).await;
        assert_eq!(code, 202, "publish: {body}");
        body
    }

    /// Publishes with an `Idempotency-Key` (the event id).
    pub async fn publish_id(&self, topic: &str, event: Value, id: &str) -> Value {
        let (code, body) = self.call_with("POST", &format!("/events/{topic}"), Some(&event.to_string()), &[("Idempotency-Key", id)]).await;
        assert_eq!(code, 202, "publish: {body}");
        body
    }

    pub async fn fault(&self, id: &str, child: &str, fault: &str) {
        let body = serde_json::json!({ "child": child, "fault": fault }).to_string();
        let (code, resp) = self.call("POST", &format!("/connectors/{id}/faults"), Some(&body)).await;
        assert_eq!(code, 202, "fault injection: {resp}");
    }

    /// Waits until the connector's state is `state`, returning the status.
    pub async fn wait_state(&self, id: &str, state: &str) -> Value {
        poll_until(&format!("{id} to be {state}"), WAIT, || async {
            let s = self.status(id).await;
            (s["state"] == state).then_some(s)
        })
        .await
    }

    /// The tickets matching `query` (e.g. `connector=a&status=completed`), first page.
    pub async fn tickets(&self, query: &str) -> Vec<Value> {
        let (code, body) = self.call("GET", &format!("/tickets?{query}"), None).await;
        assert_eq!(code, 200, "tickets: {body}");
        body["tickets"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `query` matches at least `n` tickets.
    pub async fn wait_tickets(&self, query: &str, n: usize) -> Vec<Value> {
        poll_until(&format!("{n} ticket(s) for {query}"), WAIT, || async {
            let t = self.tickets(query).await;
            (t.len() >= n).then_some(t)
        })
        .await
    }

    /// The parked jobs of a connector.
    pub async fn parked(&self, connector: &str) -> Vec<Value> {
        let (code, body) = self.call("GET", &format!("/parked?connector={connector}"), None).await;
        assert_eq!(code, 200, "parked: {body}");
        body["parked"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until a connector has at least `n` parked jobs.
    pub async fn wait_parked(&self, connector: &str, n: usize) -> Vec<Value> {
        poll_until(&format!("{n} parked job(s) of {connector}"), WAIT, || async {
            let p = self.parked(connector).await;
            (p.len() >= n).then_some(p)
        })
        .await
    }
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
            Reply::Status(s) | Reply::RetryAfter(s, _) | Reply::EchoUrl(s) => s,
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

/// The `hms-sync` binary built for these tests.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hms-sync"))
}

/// `hms-sync up` as a child process, on port 0, with its data and connectors under `dir`.
/// Killed (SIGKILL) when dropped if still running, so a failing test leaves nothing behind.
pub struct Service {
    pub child: Child,
    pub base: String,
    pub port: u16,
    pub client: awc::Client,
}

impl Service {
    /// Starts the binary with `env` on top of the test's settings; `stderr` is where its
    /// log goes. Waits (bounded) for its "up" line and returns once it listens.
    pub async fn up(dir: &Path, env: &[(&str, &str)], stderr: Stdio) -> Service {
        Self::up_with(dir, &[], env, stderr).await
    }

    /// [`up`](Self::up) with extra arguments to `up` (e.g. `--watch`).
    pub async fn up_with(dir: &Path, args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Service {
        use std::io::{BufRead, BufReader};
        let mut cmd = bin();
        cmd.arg("up")
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("HMS_SYNC_CONFIG")
            .env("HMS_SYNC__SERVER__PORT", "0")
            .env("HMS_SYNC__DATA_DIR", dir.join("data"))
            .env("HMS_SYNC__CONNECTORS__DIR", dir.join("connectors"))
            .env("HMS_SYNC__LOG__LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("hms-sync starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        // Reads the first line, then drains stdout until the process ends.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let mut service = Service { child, base: String::new(), port: 0, client: awc::Client::default() };
        let line = poll_until("hms-sync to print its `up` line", Duration::from_secs(30), || {
            let got = rx.try_recv().ok();
            let exited = if got.is_none() { service.child.try_wait().ok().flatten() } else { None };
            assert!(exited.is_none(), "hms-sync exited before it was up: {exited:?}");
            async move { got }
        })
        .await;
        let port: u16 = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        service.port = port;
        service.base = format!("http://127.0.0.1:{port}");
        service
    }

    pub async fn call_text(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let (code, bytes) = http(&self.client, &self.base, None, method, path, body, &[]).await;
        (code, String::from_utf8_lossy(&bytes).into_owned())
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (code, bytes) = http(&self.client, &self.base, None, method, path, body, &[]).await;
        (code, to_json(&bytes))
    }

    /// `kill -KILL`: no shutdown, no flush.
    pub fn kill9(&mut self) {
        let ok = Command::new("kill").args(["-KILL", &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success(), "kill -KILL");
        self.wait_exit(Duration::from_secs(10));
    }

    /// `kill -TERM` and waits (bounded) for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success(), "kill -TERM");
        self.wait_exit(Duration::from_secs(20))
    }

    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "hms-sync did not exit within {timeout:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to its end with `stdin` as its standard input, at most `timeout` (killed and
/// failed past it); stdout and stderr captured.
pub fn run_bounded(mut cmd: Command, stdin: Option<&str>, timeout: Duration) -> std::process::Output {
    use std::io::{Read, Write};
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the command starts");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
        // Dropped here: the command sees the end of its input.
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output { status, stdout: out_reader.join().unwrap(), stderr: err_reader.join().unwrap() }
}

/// A GET without the admin token: the status, the `Content-Type` and the body as text.
pub async fn get_open(base: &str, path: &str) -> (u16, String, String) {
    let client = awc::Client::default();
    let mut resp = client.get(format!("{base}{path}")).send().await.unwrap_or_else(|e| panic!("GET {path} reaches the app: {e}"));
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let bytes = resp.body().limit(16 << 20).await.unwrap();
    (resp.status().as_u16(), content_type, String::from_utf8_lossy(&bytes).into_owned())
}

/// `hms-sync ARGS` as a thin client of the service at `url` (HMS_SYNC_URL), bounded, off
/// the test's thread (the app's actors run on it and must keep answering).
pub async fn run_client(url: &str, args: &[&str]) -> std::process::Output {
    let url = url.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    actix_web::rt::task::spawn_blocking(move || {
        let mut cmd = bin();
        cmd.args(&args).env("HMS_SYNC_URL", url).env_remove("HMS_SYNC_TOKEN").env_remove("HMS_SYNC_CONFIG");
        run_bounded(cmd, None, Duration::from_secs(30))
    })
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// Two-way sync (tests/api/twoway.rs): a simulated Lotus Notes calendar and a simulated HMS,
// in-process actix-web servers on port 0 sharing one logical clock. Everything of this block
// lives in `twoway_sim`.
// ---------------------------------------------------------------------------------------
pub mod twoway_sim {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use actix_web::{web, App, HttpRequest, HttpResponse};
    use serde_json::{json, Value};

    /// The clock both systems stamp their modification times from: strictly increasing.
    #[derive(Clone, Default)]
    pub struct LogicalClock(Arc<AtomicU64>);

    impl LogicalClock {
        /// The next time.
        pub fn tick(&self) -> u64 {
            self.0.fetch_add(1, Ordering::SeqCst) + 1
        }
        pub fn now(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
        /// Moves the clock forward to at least `t` (for explicit times in a test).
        pub fn advance_to(&self, t: u64) {
            self.0.fetch_max(t, Ordering::SeqCst);
        }
    }

    /// A small deterministic PRNG (xorshift64*), seeded from a number.
    #[derive(Clone, Debug)]
    pub struct XorShift(u64);

    impl XorShift {
        pub fn new(seed: u64) -> Self {
            let s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
            XorShift(if s == 0 { 1 } else { s })
        }
        pub fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// 0..n
        pub fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n.max(1)
        }
        /// True with `pct` percent.
        pub fn chance(&mut self, pct: u64) -> bool {
            self.below(100) < pct
        }
        pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len() as u64) as usize]
        }
        pub fn shuffle<T>(&mut self, items: &mut [T]) {
            for i in (1..items.len()).rev() {
                let j = self.below(i as u64 + 1) as usize;
                items.swap(i, j);
            }
        }
    }

    /// `target` with every field of `changes` set (both objects).
    pub fn merge(target: &mut Value, changes: &Value) {
        if !target.is_object() {
            *target = json!({});
        }
        if let (Value::Object(t), Value::Object(c)) = (target, changes) {
            for (k, v) in c {
                t.insert(k.clone(), v.clone());
            }
        }
    }

    fn key_of(id: &Value) -> String {
        match id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    // ----- Lotus Notes ---------------------------------------------------------------

    #[derive(Default)]
    struct LotusState {
        docs: BTreeMap<String, Value>,
        /// Successful PUTs by the sync.
        writes: u64,
        log: Vec<(String, Value)>,
        /// The next writes answer 503 (and change nothing).
        fail_writes: u32,
        failed_writes: u64,
        /// The next feed answers list their records in a shuffled order.
        shuffle_feeds: u32,
        rng: Option<XorShift>,
        feeds: u64,
        /// How the store behaves (see [`Behaviour`]).
        behaviour: Behaviour,
        /// Each document's revision (its ETag), raised by every change.
        revs: BTreeMap<String, u64>,
        /// A ranger edit that lands right after the next read of that document (between
        /// the service's read and its write).
        edit_after_read: Option<(String, Value)>,
        /// Edits that landed that way: (changes, the document after them, the clock's tick).
        edited_after_read: Vec<(Value, Value, u64)>,
        /// Writes refused because their If-Match named an old revision.
        stale_refused: u64,
        /// Reads of single documents.
        reads: u64,
    }

    #[derive(Clone)]
    struct LotusShared {
        state: Arc<Mutex<LotusState>>,
        clock: LogicalClock,
    }

    /// How a simulated store treats writes, as real ones do.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Behaviour {
        /// Every write is stamped with the store's own clock (the version we send is
        /// ignored), as most systems do with `updatedAt`.
        pub restamp: bool,
        /// Stamps are rounded down to a multiple of this (1: every tick distinct, like
        /// milliseconds; more: several edits share a stamp, like seconds). 0 counts as 1.
        pub precision: u64,
        /// Writes carrying `If-Match` are refused with 412 unless it names the current
        /// revision (served as `ETag` on reads).
        pub revisions: bool,
    }

    impl Behaviour {
        fn stamp(&self, t: u64) -> u64 {
            let p = self.precision.max(1);
            t - t % p
        }
    }

    /// `"7"`: a revision as an ETag.
    fn etag(rev: u64) -> String {
        format!("\"{rev}\"")
    }

    /// The If-Match of a write, and whether it names an old revision.
    fn stale_precondition(req: &HttpRequest, behaviour: Behaviour, rev: u64) -> bool {
        behaviour.revisions && req.headers().get("if-match").and_then(|v| v.to_str().ok()).is_some_and(|m| m != "*" && m != etag(rev))
    }

    /// The Lotus Notes calendar: documents by ShiftID with BeginTime, FinishTime, RangerName
    /// and LastModified (a number of the shared clock).
    #[derive(Clone)]
    pub struct FakeLotus {
        pub base: String,
        shared: LotusShared,
    }

    fn number(v: Option<&Value>) -> f64 {
        v.and_then(Value::as_f64).unwrap_or(f64::MIN)
    }

    async fn lotus_changes(req: HttpRequest, st: web::Data<LotusShared>) -> HttpResponse {
        let since = req
            .query_string()
            .split('&')
            .find_map(|kv| kv.strip_prefix("since="))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        let mut s = st.state.lock().unwrap();
        s.feeds += 1;
        let mut docs: Vec<Value> = s.docs.values().filter(|d| number(d.get("LastModified")) >= since).cloned().collect();
        docs.sort_by(|a, b| number(a.get("LastModified")).total_cmp(&number(b.get("LastModified"))));
        if s.shuffle_feeds > 0 {
            s.shuffle_feeds -= 1;
            let mut rng = s.rng.take().unwrap_or_else(|| XorShift::new(7));
            rng.shuffle(&mut docs);
            s.rng = Some(rng);
        }
        HttpResponse::Ok().json(json!({ "changes": docs }))
    }

    fn shift_id(spec: &str) -> String {
        spec.strip_prefix("ShiftID=").or_else(|| spec.strip_prefix("ShiftID%3D")).unwrap_or(spec).to_string()
    }

    async fn lotus_put(req: HttpRequest, spec: web::Path<String>, body: web::Bytes, st: web::Data<LotusShared>) -> HttpResponse {
        let id = shift_id(&spec);
        let Ok(mut doc) = serde_json::from_slice::<Value>(&body) else {
            return HttpResponse::BadRequest().json(json!({"error": "not JSON"}));
        };
        let mut s = st.state.lock().unwrap();
        if s.fail_writes > 0 {
            s.fail_writes -= 1;
            s.failed_writes += 1;
            return HttpResponse::ServiceUnavailable().json(json!({"error": "Domino server busy"}));
        }
        let rev = s.revs.get(&id).copied().unwrap_or(0);
        if stale_precondition(&req, s.behaviour, rev) {
            s.stale_refused += 1;
            return HttpResponse::PreconditionFailed().json(json!({"error": "document changed", "rev": rev}));
        }
        if s.behaviour.restamp || doc.get("LastModified").is_none_or(Value::is_null) {
            let t = s.behaviour.stamp(st.clock.tick());
            merge(&mut doc, &json!({ "LastModified": t }));
        }
        s.writes += 1;
        s.log.push((id.clone(), doc.clone()));
        s.revs.insert(id.clone(), rev + 1);
        s.docs.insert(id, doc.clone());
        HttpResponse::Ok().insert_header(("ETag", etag(rev + 1))).json(doc)
    }

    async fn lotus_get(spec: web::Path<String>, st: web::Data<LotusShared>) -> HttpResponse {
        let id = shift_id(&spec);
        let mut s = st.state.lock().unwrap();
        s.reads += 1;
        let live = s.docs.get(&id).filter(|d| !is_tombstone(d)).cloned();
        let answer = match &live {
            Some(d) => HttpResponse::Ok().insert_header(("ETag", etag(s.revs.get(&id).copied().unwrap_or(0)))).json(d),
            None => HttpResponse::NotFound().json(json!({"error": "no such document"})),
        };
        if s.edit_after_read.as_ref().is_some_and(|(i, _)| *i == id) {
            let (_, changes) = s.edit_after_read.take().unwrap();
            // Meanwhile the document may hold these values already, or be gone: then
            // nobody edits.
            if live.is_some() && changes_anything(live.as_ref(), &changes) {
                let tick = st.clock.tick();
                let stamp = s.behaviour.stamp(tick);
                let doc = edit_doc(&mut s, &id, &changes, stamp);
                s.edited_after_read.push((changes, doc, tick));
            }
        }
        answer
    }

    /// A deleted document as the store keeps it (and lists it in its feed).
    fn tombstone(id: &str, t: u64) -> Value {
        json!({ "ShiftID": id.parse::<u64>().unwrap_or_default(), "Deleted": true, "LastModified": t })
    }

    fn is_tombstone(doc: &Value) -> bool {
        doc.get("Deleted") == Some(&json!(true))
    }

    /// The sync deletes a document: it becomes a tombstone (stamped, in the feed).
    async fn lotus_delete(req: HttpRequest, spec: web::Path<String>, st: web::Data<LotusShared>) -> HttpResponse {
        let id = shift_id(&spec);
        let mut s = st.state.lock().unwrap();
        if s.fail_writes > 0 {
            s.fail_writes -= 1;
            s.failed_writes += 1;
            return HttpResponse::ServiceUnavailable().json(json!({"error": "Domino server busy"}));
        }
        if s.docs.get(&id).is_none_or(is_tombstone) {
            return HttpResponse::NotFound().json(json!({"error": "no such document"}));
        }
        let rev = s.revs.get(&id).copied().unwrap_or(0);
        if stale_precondition(&req, s.behaviour, rev) {
            s.stale_refused += 1;
            return HttpResponse::PreconditionFailed().json(json!({"error": "document changed", "rev": rev}));
        }
        let t = s.behaviour.stamp(st.clock.tick());
        let tomb = tombstone(&id, t);
        s.writes += 1;
        s.log.push((id.clone(), tomb.clone()));
        s.revs.insert(id.clone(), rev + 1);
        s.docs.insert(id, tomb);
        HttpResponse::NoContent().finish()
    }

    /// Would `changes` change any field of `record`?
    fn changes_anything(record: Option<&Value>, changes: &Value) -> bool {
        changes.as_object().is_some_and(|c| c.iter().any(|(k, v)| record.and_then(|r| r.get(k)) != Some(v)))
    }

    /// A ranger's edit of document `id` stamped `t`, raising its revision.
    fn edit_doc(s: &mut LotusState, id: &str, changes: &Value, t: u64) -> Value {
        let key: u64 = id.parse().unwrap_or_default();
        let doc = s.docs.entry(id.to_string()).or_insert_with(|| json!({ "ShiftID": key }));
        merge(doc, changes);
        merge(doc, &json!({ "LastModified": t }));
        let doc = doc.clone();
        *s.revs.entry(id.to_string()).or_insert(0) += 1;
        doc
    }

    impl FakeLotus {
        pub async fn start(clock: LogicalClock) -> FakeLotus {
            let shared = LotusShared { state: Arc::new(Mutex::new(LotusState::default())), clock };
            let data = shared.clone();
            let base = crate::serve_local!(move || {
                App::new()
                    .app_data(web::Data::new(data.clone()))
                    .route("/calendar/changes", web::route().to(lotus_changes))
                    .route("/calendar/doc/{spec}", web::put().to(lotus_put))
                    .route("/calendar/doc/{spec}", web::get().to(lotus_get))
                    .route("/calendar/doc/{spec}", web::delete().to(lotus_delete))
            });
            FakeLotus { base, shared }
        }

        /// A document as it is now (a deleted one as its tombstone).
        pub fn doc(&self, id: u64) -> Option<Value> {
            self.shared.state.lock().unwrap().docs.get(&id.to_string()).cloned()
        }

        /// A document that is not deleted.
        pub fn live_doc(&self, id: u64) -> Option<Value> {
            self.doc(id).filter(|d| !is_tombstone(d))
        }

        /// A ranger deletes document `id`: a tombstone stamped by the clock (in the feed).
        pub fn ranger_delete(&self, id: u64) -> Value {
            let t = self.shared.clock.tick();
            let mut s = self.shared.state.lock().unwrap();
            let t = s.behaviour.stamp(t);
            let tomb = tombstone(&id.to_string(), t);
            *s.revs.entry(id.to_string()).or_insert(0) += 1;
            s.docs.insert(id.to_string(), tomb.clone());
            tomb
        }

        /// Puts a document in place (not a write by the sync).
        pub fn seed(&self, doc: Value) {
            let id = key_of(&doc["ShiftID"]);
            self.shared.state.lock().unwrap().docs.insert(id, doc);
        }

        /// A ranger edits a document in Lotus: the changes, LastModified from the clock.
        pub fn ranger_edit(&self, id: u64, changes: Value) -> Value {
            let t = self.shared.clock.tick();
            let t = self.shared.state.lock().unwrap().behaviour.stamp(t);
            self.ranger_edit_at(id, changes, t)
        }

        /// A ranger edit stamped `t`.
        pub fn ranger_edit_at(&self, id: u64, changes: Value, t: u64) -> Value {
            self.shared.clock.advance_to(t);
            edit_doc(&mut self.shared.state.lock().unwrap(), &id.to_string(), &changes, t)
        }

        /// How the store treats writes from now on.
        pub fn behave(&self, behaviour: Behaviour) {
            self.shared.state.lock().unwrap().behaviour = behaviour;
        }

        /// A ranger edit of document `id` that lands right after its next read (by the
        /// service deciding a change): between the service's read and its write.
        pub fn edit_after_next_read(&self, id: u64, changes: Value) {
            self.shared.state.lock().unwrap().edit_after_read = Some((id.to_string(), changes));
        }

        /// Is such an edit still waiting for its read? Its content (taken back when not).
        pub fn take_pending_edit(&self) -> Option<(String, Value)> {
            self.shared.state.lock().unwrap().edit_after_read.take()
        }

        /// Edits that landed right after a read since the last call: (changes, document,
        /// clock tick).
        pub fn take_edited_after_read(&self) -> Vec<(Value, Value, u64)> {
            std::mem::take(&mut self.shared.state.lock().unwrap().edited_after_read)
        }

        /// Writes refused with 412 (an old revision in If-Match).
        pub fn stale_refused(&self) -> u64 {
            self.shared.state.lock().unwrap().stale_refused
        }

        /// Reads of single documents so far.
        pub fn reads(&self) -> u64 {
            self.shared.state.lock().unwrap().reads
        }

        /// Successful writes (PUTs) by the sync.
        pub fn writes(&self) -> u64 {
            self.shared.state.lock().unwrap().writes
        }

        /// Every successful write: (ShiftID, stored document).
        pub fn write_log(&self) -> Vec<(String, Value)> {
            self.shared.state.lock().unwrap().log.clone()
        }

        /// The next write answers 503 once.
        pub fn fail_next_write(&self) {
            let mut s = self.shared.state.lock().unwrap();
            s.fail_writes = s.fail_writes.max(1);
        }

        pub fn failed_writes(&self) -> u64 {
            self.shared.state.lock().unwrap().failed_writes
        }

        /// The next feed answer lists its records shuffled (seeded).
        pub fn shuffle_next_feed(&self, seed: u64) {
            let mut s = self.shared.state.lock().unwrap();
            s.shuffle_feeds = s.shuffle_feeds.max(1);
            s.rng.get_or_insert_with(|| XorShift::new(seed));
        }

        /// Feed requests answered.
        pub fn feeds(&self) -> u64 {
            self.shared.state.lock().unwrap().feeds
        }
    }

    // ----- HMS -------------------------------------------------------------------------

    #[derive(Default)]
    struct HmsState {
        shifts: BTreeMap<String, Value>,
        /// Successful PATCHes by the sync.
        writes: u64,
        log: Vec<(String, Value)>,
        fail_writes: u32,
        failed_writes: u64,
        /// Where HMS pushes its changes (the service's /webhook/hms) and the token.
        hook: Option<(String, String)>,
        /// The next echoes are sent twice.
        dup_echoes: u32,
        echo_started: u64,
        echo_done: u64,
        echo_errors: Vec<String>,
        behaviour: Behaviour,
        revs: BTreeMap<String, u64>,
        /// A user's edit that lands right after the next read of that shift, and is then
        /// pushed like any other.
        edit_after_read: Option<(String, Value)>,
        /// Edits that landed that way, for the test to push (HMS's webhook of that edit):
        /// (changes, the shift after them, the clock's tick).
        edited_after_read: Vec<(Value, Value, u64)>,
        stale_refused: u64,
    }

    #[derive(Clone)]
    struct HmsShared {
        state: Arc<Mutex<HmsState>>,
        clock: LogicalClock,
    }

    /// HMS: shifts by id with startAt, endAt, assignee, updatedAt. After each PATCH by the
    /// sync it pushes the full shift to the service's webhook, as HMS does for every change.
    #[derive(Clone)]
    pub struct FakeHms {
        pub base: String,
        shared: HmsShared,
    }

    /// POSTs `shift` to `url` with the bearer token; the status, or why it failed.
    pub async fn post_hook(url: &str, token: &str, shift: &Value) -> Result<u16, String> {
        let client = awc::Client::builder().timeout(Duration::from_secs(5)).finish();
        let resp = client
            .post(url)
            .insert_header(("Authorization", format!("Bearer {token}")))
            .insert_header(("Content-Type", "application/json"))
            .send_body(shift.to_string())
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        Ok(resp.status().as_u16())
    }

    async fn hms_patch(req: HttpRequest, id: web::Path<String>, body: web::Bytes, st: web::Data<HmsShared>) -> HttpResponse {
        let Ok(mut changes) = serde_json::from_slice::<Value>(&body) else {
            return HttpResponse::BadRequest().json(json!({"error": "not JSON"}));
        };
        let (shift, echo, rev) = {
            let mut s = st.state.lock().unwrap();
            if s.fail_writes > 0 {
                s.fail_writes -= 1;
                s.failed_writes += 1;
                return HttpResponse::ServiceUnavailable().json(json!({"error": "HMS is deploying"}));
            }
            let rev = s.revs.get(id.as_str()).copied().unwrap_or(0);
            if stale_precondition(&req, s.behaviour, rev) {
                s.stale_refused += 1;
                return HttpResponse::PreconditionFailed().json(json!({"error": "shift changed", "rev": rev}));
            }
            if s.behaviour.restamp {
                let t = s.behaviour.stamp(st.clock.tick());
                merge(&mut changes, &json!({ "updatedAt": t }));
            }
            s.revs.insert(id.to_string(), rev + 1);
            let shift = s.shifts.entry(id.clone()).or_insert_with(|| json!({}));
            merge(shift, &changes);
            let shift = shift.clone();
            s.writes += 1;
            s.log.push((id.clone(), changes));
            let times = if s.dup_echoes > 0 {
                s.dup_echoes -= 1;
                2
            } else {
                1
            };
            let echo = s.hook.clone().map(|h| (h, times));
            if echo.is_some() {
                s.echo_started += 1;
            }
            (shift, echo, rev + 1)
        };
        if let Some(((url, token), times)) = echo {
            let state = st.state.clone();
            let snapshot = shift.clone();
            actix_web::rt::spawn(async move {
                for _ in 0..times {
                    match post_hook(&url, &token, &snapshot).await {
                        Ok(200) => {}
                        Ok(code) => state.lock().unwrap().echo_errors.push(format!("echo answered {code}")),
                        Err(e) => state.lock().unwrap().echo_errors.push(e),
                    }
                }
                state.lock().unwrap().echo_done += 1;
            });
        }
        HttpResponse::Ok().insert_header(("ETag", etag(rev))).json(shift)
    }

    async fn hms_get(id: web::Path<String>, st: web::Data<HmsShared>) -> HttpResponse {
        let mut s = st.state.lock().unwrap();
        let answer = match s.shifts.get(id.as_str()) {
            Some(shift) => HttpResponse::Ok().insert_header(("ETag", etag(s.revs.get(id.as_str()).copied().unwrap_or(0)))).json(shift),
            None => HttpResponse::NotFound().json(json!({"error": "no such shift"})),
        };
        if s.edit_after_read.as_ref().is_some_and(|(i, _)| *i == *id) {
            let (_, changes) = s.edit_after_read.take().unwrap();
            if s.shifts.contains_key(id.as_str()) && changes_anything(s.shifts.get(id.as_str()), &changes) {
                let tick = st.clock.tick();
                let stamp = s.behaviour.stamp(tick);
                let shift = edit_shift(&mut s, &id, &changes, stamp);
                s.edited_after_read.push((changes, shift, tick));
            }
        }
        answer
    }

    /// The sync deletes a shift; HMS pushes the deletion (`{"id": …, "deleted": true}`).
    async fn hms_delete(req: HttpRequest, id: web::Path<String>, st: web::Data<HmsShared>) -> HttpResponse {
        let hook = {
            let mut s = st.state.lock().unwrap();
            if !s.shifts.contains_key(id.as_str()) {
                return HttpResponse::NotFound().json(json!({"error": "no such shift"}));
            }
            let rev = s.revs.get(id.as_str()).copied().unwrap_or(0);
            if stale_precondition(&req, s.behaviour, rev) {
                s.stale_refused += 1;
                return HttpResponse::PreconditionFailed().json(json!({"error": "shift changed", "rev": rev}));
            }
            s.shifts.remove(id.as_str());
            s.writes += 1;
            s.log.push((id.to_string(), json!({"deleted": true})));
            s.revs.remove(id.as_str());
            let hook = s.hook.clone();
            if hook.is_some() {
                s.echo_started += 1;
            }
            hook
        };
        if let Some((url, token)) = hook {
            let state = st.state.clone();
            let gone = json!({ "id": id.parse::<u64>().unwrap_or_default(), "deleted": true });
            actix_web::rt::spawn(async move {
                if let Err(e) = post_hook(&url, &token, &gone).await {
                    state.lock().unwrap().echo_errors.push(e);
                }
                state.lock().unwrap().echo_done += 1;
            });
        }
        HttpResponse::NoContent().finish()
    }

    /// A user's edit of shift `id` stamped `t`, raising its revision.
    fn edit_shift(s: &mut HmsState, id: &str, changes: &Value, t: u64) -> Value {
        let key: u64 = id.parse().unwrap_or_default();
        let shift = s.shifts.entry(id.to_string()).or_insert_with(|| json!({ "id": key }));
        merge(shift, changes);
        merge(shift, &json!({ "updatedAt": t }));
        let shift = shift.clone();
        *s.revs.entry(id.to_string()).or_insert(0) += 1;
        shift
    }

    impl FakeHms {
        pub async fn start(clock: LogicalClock) -> FakeHms {
            let shared = HmsShared { state: Arc::new(Mutex::new(HmsState::default())), clock };
            let data = shared.clone();
            let base = crate::serve_local!(move || {
                App::new()
                    .app_data(web::Data::new(data.clone()))
                    .route("/api/shifts/{id}", web::patch().to(hms_patch))
                    .route("/api/shifts/{id}", web::get().to(hms_get))
                    .route("/api/shifts/{id}", web::delete().to(hms_delete))
            });
            FakeHms { base, shared }
        }

        /// From now on every PATCH is echoed to `url` (the service's HMS webhook).
        pub fn echo_to(&self, url: &str, token: &str) {
            self.shared.state.lock().unwrap().hook = Some((url.to_string(), token.to_string()));
        }

        pub fn shift(&self, id: u64) -> Option<Value> {
            self.shared.state.lock().unwrap().shifts.get(&id.to_string()).cloned()
        }

        /// Puts a shift in place (not a write by the sync, no push).
        pub fn seed(&self, shift: Value) {
            let id = key_of(&shift["id"]);
            self.shared.state.lock().unwrap().shifts.insert(id, shift);
        }

        /// A user edits a shift in HMS: the changes, updatedAt from the clock. Returns the
        /// full shift, which is what HMS pushes (see [`push`](Self::push)).
        pub fn edit(&self, id: u64, changes: Value) -> Value {
            let t = self.shared.clock.tick();
            let t = self.shared.state.lock().unwrap().behaviour.stamp(t);
            self.edit_at(id, changes, t)
        }

        pub fn edit_at(&self, id: u64, changes: Value, t: u64) -> Value {
            self.shared.clock.advance_to(t);
            edit_shift(&mut self.shared.state.lock().unwrap(), &id.to_string(), &changes, t)
        }

        /// A user deletes shift `id` in HMS; returns what HMS pushes for it.
        pub fn delete(&self, id: u64) -> Value {
            let mut s = self.shared.state.lock().unwrap();
            s.shifts.remove(&id.to_string());
            s.revs.remove(&id.to_string());
            json!({ "id": id, "deleted": true })
        }

        /// How HMS treats writes from now on.
        pub fn behave(&self, behaviour: Behaviour) {
            self.shared.state.lock().unwrap().behaviour = behaviour;
        }

        /// A user's edit of shift `id` that lands right after its next read.
        pub fn edit_after_next_read(&self, id: u64, changes: Value) {
            self.shared.state.lock().unwrap().edit_after_read = Some((id.to_string(), changes));
        }

        /// Is such an edit still waiting for its read? Taken back when so.
        pub fn take_pending_edit(&self) -> Option<(String, Value)> {
            self.shared.state.lock().unwrap().edit_after_read.take()
        }

        /// Edits that landed right after a read since the last call (to be pushed):
        /// (changes, shift, clock tick).
        pub fn take_edited_after_read(&self) -> Vec<(Value, Value, u64)> {
            std::mem::take(&mut self.shared.state.lock().unwrap().edited_after_read)
        }

        pub fn stale_refused(&self) -> u64 {
            self.shared.state.lock().unwrap().stale_refused
        }

        /// HMS pushes `shift` to the service's webhook (as it does after every change);
        /// the answer's status.
        pub async fn push(&self, shift: &Value) -> u16 {
            let (url, token) = self.shared.state.lock().unwrap().hook.clone().expect("echo_to names the service's webhook first");
            post_hook(&url, &token, shift).await.unwrap_or_else(|e| panic!("HMS push: {e}"))
        }

        pub fn writes(&self) -> u64 {
            self.shared.state.lock().unwrap().writes
        }

        /// Every successful PATCH: (id, body).
        pub fn write_log(&self) -> Vec<(String, Value)> {
            self.shared.state.lock().unwrap().log.clone()
        }

        pub fn fail_next_write(&self) {
            let mut s = self.shared.state.lock().unwrap();
            s.fail_writes = s.fail_writes.max(1);
        }

        pub fn failed_writes(&self) -> u64 {
            self.shared.state.lock().unwrap().failed_writes
        }

        /// The next echo is sent twice (a duplicate webhook).
        pub fn duplicate_next_echo(&self) {
            let mut s = self.shared.state.lock().unwrap();
            s.dup_echoes = s.dup_echoes.max(1);
        }

        /// Echoes (started, finished).
        pub fn echoes(&self) -> (u64, u64) {
            let s = self.shared.state.lock().unwrap();
            (s.echo_started, s.echo_done)
        }

        pub fn echo_errors(&self) -> Vec<String> {
            self.shared.state.lock().unwrap().echo_errors.clone()
        }
    }
}
