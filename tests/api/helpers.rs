//! `spawn_app`, a scriptable fake external system, and bounded polling.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hms_sync::settings::Settings;
use hms_sync::startup::Application;
use serde_json::Value;

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

/// A running application and what a test needs to talk to it.
pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub settings: Settings,
    pub client: awc::Client,
    pub token: Option<String>,
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

impl TestApp {
    pub async fn spawn(settings: Settings) -> TestApp {
        hms_sync::telemetry::init("text", "warn");
        let app = Application::build(settings.clone()).await.expect("application builds");
        let port = app.port();
        let handle = app.server_handle();
        let join = actix_web::rt::spawn(app.run_until_stopped());
        let token = settings.server.admin_token.clone();
        TestApp { base: format!("http://127.0.0.1:{port}"), port, settings, client: awc::Client::default(), token, handle, join: Some(join) }
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
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        let mut resp = match body {
            Some(b) => req.send_body(b.to_string()).await,
            None => req.send().await,
        }
        .expect("request reaches the app");
        let bytes = resp.body().limit(16 << 20).await.unwrap();
        let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        (resp.status().as_u16(), json)
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
}

/// A request the fake external system received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

#[derive(Default)]
struct FakeState {
    received: Vec<Received>,
    /// Statuses to answer, in order; when empty: 200.
    script: Vec<u16>,
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
        let server = HttpServer::new(move || {
            let st = shared.clone();
            App::new().app_data(web::Data::new(st)).default_service(web::to(record))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
        let port = server.addrs()[0].port();
        actix_web::rt::spawn(server.run());
        FakeSystem { base: format!("http://127.0.0.1:{port}"), state }
    }

    pub fn fail_next(&self, statuses: &[u16]) {
        self.state.lock().unwrap().script.extend_from_slice(statuses);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        poll_until(&format!("{n} request(s) at the fake system"), WAIT, || async {
            let r = self.received();
            (r.len() >= n).then_some(r)
        })
        .await
    }
}

async fn record(req: HttpRequest, body: web::Bytes, state: web::Data<Arc<Mutex<FakeState>>>) -> HttpResponse {
    let mut st = state.lock().unwrap();
    st.received.push(Received {
        method: req.method().to_string(),
        path: req.uri().to_string(),
        headers: req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let status = if st.script.is_empty() { 200 } else { st.script.remove(0) };
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(serde_json::json!({"ok": status < 300}))
}

/// An outbound connector aimed at the fake system.
pub fn outbound_yaml(id: &str, topic: &str, fake: &FakeSystem, extra: &str) -> String {
    format!(
        r#"id: {id}
type: outbound
trigger: {{ topic: {topic} }}
key: "{{{{ permitId }}}}"
map:
  to:
    url: "{base}/roadwork/{{permitId}}"
    method: PATCH
    body: {{ status: "{{{{ status }}}}" }}
retry: {{ max: 3, backoffMs: 20 }}
{extra}"#,
        base = fake.base
    )
}
