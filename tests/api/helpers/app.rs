//! The application under test in-process (`TestApp::spawn` on port 0, with its own data
//! and connector folder), plain HTTP calls to it, and the log capture.

use std::path::PathBuf;

use hms_sync::admin::AppState;
use hms_sync::settings::Settings;
use hms_sync::startup::Application;
use serde_json::Value;

use super::poll::{poll_until, WAIT};

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

pub(super) fn to_json(bytes: &[u8]) -> Value {
    if bytes.is_empty() { Value::Null } else { serde_json::from_slice(bytes).unwrap_or(Value::Null) }
}

/// A GET without the admin token: the status, the `Content-Type` and the body as text.
pub async fn get_open(base: &str, path: &str) -> (u16, String, String) {
    let client = awc::Client::default();
    let mut resp = client.get(format!("{base}{path}")).send().await.unwrap_or_else(|e| panic!("GET {path} reaches the app: {e}"));
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let bytes = resp.body().limit(16 << 20).await.unwrap();
    (resp.status().as_u16(), content_type, String::from_utf8_lossy(&bytes).into_owned())
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
        // awc's default is 5 s: on a loaded 2-core machine, with a browser and a thousand
        // connectors in other tests beside this one, an answer can take longer than that
        // without anything being wrong. The tests' own deadlines say what is too late.
        let client = awc::Client::builder().timeout(std::time::Duration::from_secs(30)).finish();
        TestApp { base: format!("http://127.0.0.1:{port}"), settings, client, token, state, handle, join: Some(join) }
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

    /// Waits until the connector has no pending job (its status's `queue_depth` is 0).
    pub async fn wait_queue_empty(&self, id: &str) {
        poll_until(&format!("the queue of {id} to drain"), WAIT, || async { (self.status(id).await["queue_depth"] == 0).then_some(()) }).await;
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
