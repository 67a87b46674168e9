//! HMS events from NATS JetStream (issue "hms-sync as a cluster", item 6), against the real
//! nats-server on 127.0.0.1:4222: each test uses a stream, subjects and consumer of its own.

use std::time::Duration;

use hms_sync::actors::nats;
use hms_sync::settings::Settings;

use crate::helpers::*;

/// The NATS server's URL, `None` (the test skips) when it is unreachable outside CI; under
/// `CI` that fails the test instead.
pub fn nats_url() -> Option<String> {
    let url = std::env::var("HMS_SYNC_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let addr = url.trim_start_matches("nats://");
    if std::net::TcpStream::connect_timeout(&addr.parse().expect("host:port"), Duration::from_secs(2)).is_ok() {
        return Some(url);
    }
    assert!(std::env::var_os("CI").is_none(), "NATS is unreachable at {url}");
    eprintln!("skipped: NATS is unreachable at {url}");
    None
}

/// Settings whose NATS stream, subjects and consumer are this test's own.
pub fn with_nats(mut s: Settings, url: &str, tag: &str) -> Settings {
    let unique = format!("{}_{tag}_{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    s.bus.nats.url = Some(url.to_string());
    s.bus.nats.stream = format!("T_{unique}");
    s.bus.nats.subjects = format!("t{unique}.>");
    s.bus.nats.prefix = format!("t{unique}.");
    s.bus.nats.ack_wait_secs = 2;
    s
}

/// A connector PATCHing `{base}/roadwork/{permitId}` with `{status}` on `permit.updated`.
fn permits(dir: &std::path::Path, fake: &FakeSystem) {
    std::fs::write(dir.join("connectors/gis.yaml"), outbound_yaml("gis", "permit.updated", fake, "")).unwrap();
}

/// Deletes a test's stream (and its consumer) from the server.
pub async fn drop_stream(s: &Settings) {
    let client = async_nats::connect(s.bus.nats.url.as_deref().unwrap()).await.unwrap();
    let _ = async_nats::jetstream::new(client).delete_stream(&s.bus.nats.stream).await;
}

async fn publish(s: &Settings, topic: &str, body: serde_json::Value, id: Option<&str>) -> u64 {
    let n = &s.bus.nats;
    nats::publish(n.url.as_deref().unwrap(), &n.prefix, topic, body.to_string().into_bytes(), id).await.unwrap()
}

/// Events published to the stream are delivered once each, in stream order per key; the
/// event id is `Nats-Msg-Id` or `STREAM:SEQUENCE`, so an event already stored under that id
/// (a redelivery) makes no second job; a message that is not an event is refused (and
/// counted) while the others go on.
#[actix_web::test]
async fn events_from_jetstream_are_delivered_once_in_stream_order() {
    let Some(url) = nats_url() else { return };
    let fake = FakeSystem::start().await;
    let dir = temp_dir("nats-order");
    permits(&dir, &fake);
    let s = with_nats(test_settings(&dir), &url, "order");
    let app = TestApp::spawn(s.clone()).await;
    poll_until("the intake to take", WAIT, || async { (app.call("GET", "/cluster", None).await.1["nats"]["taking"] == true).then_some(()) }).await;
    // Event 3 is already stored under the id its message will get (as if a message taken
    // before was delivered again).
    let stream = s.bus.nats.stream.clone();
    let (code, _) = app.call_with("POST", "/events/permit.updated", Some(r#"{"permitId": "P1", "status": "early"}"#), &[("Idempotency-Key", &format!("{stream}:3"))]).await;
    assert_eq!(code, 202);
    fake.wait_for(1).await;
    for i in 1..=6u64 {
        publish(&s, "permit.updated", serde_json::json!({ "permitId": format!("P{}", i % 2), "status": format!("s{i}") }), None).await;
    }
    let seq = publish(&s, "permit.updated", serde_json::json!({ "permitId": "P9", "status": "named" }), Some("evt-named")).await;
    assert_eq!(seq, 7);
    // Not an event: refused, the next goes on.
    nats::publish(&url, &s.bus.nats.prefix, "permit.updated", b"not json".to_vec(), None).await.unwrap();
    publish(&s, "permit.updated", serde_json::json!({ "permitId": "P9", "status": "after" }), None).await;
    let got = fake.wait_for(1 + 5 + 1 + 1).await;
    let bodies: Vec<(String, String)> = got.iter().skip(1).map(|r| (r.path.clone(), r.body["status"].as_str().unwrap().to_string())).collect();
    let of = |p: &str| bodies.iter().filter(|(path, _)| path.ends_with(p)).map(|(_, s)| s.clone()).collect::<Vec<_>>();
    assert_eq!(of("/P1"), ["s1", "s5"], "P1 in stream order; s3 was stored already under STREAM:3");
    assert_eq!(of("/P0"), ["s2", "s4", "s6"], "P0 in stream order");
    assert_eq!(of("/P9"), ["named", "after"]);
    // The target logs a request before it answers, and the ticket is committed after the
    // answer: s5, the last of its key, may still be on its way.
    let fifth = format!("{stream}:5");
    poll_until("the tickets of evt-named and of the stream's 5th message", WAIT, || async {
        let events = app.call("GET", "/tickets?connector=gis&limit=50", None).await.1;
        let ids: Vec<String> = events["tickets"].as_array().unwrap().iter().filter_map(|t| t["eventId"].as_str().map(str::to_string)).collect();
        (ids.iter().any(|i| i == "evt-named") && ids.contains(&fifth)).then_some(())
    })
    .await;
    let (_, view) = app.call("GET", "/cluster", None).await;
    assert_eq!((view["nats"]["stored"].as_u64(), view["nats"]["refused"].as_u64()), (Some(8), Some(1)), "{view}");
    app.stop().await;
    drop_stream(&s).await;
}

/// `hms-sync publish --nats` puts an event on the stream, as the `nats` CLI would.
#[actix_web::test]
async fn the_cli_publishes_to_jetstream() {
    let Some(url) = nats_url() else { return };
    let fake = FakeSystem::start().await;
    let dir = temp_dir("nats-cli");
    permits(&dir, &fake);
    let s = with_nats(test_settings(&dir), &url, "cli");
    let app = TestApp::spawn(s.clone()).await;
    poll_until("the intake to take", WAIT, || async { (app.call("GET", "/cluster", None).await.1["nats"]["taking"] == true).then_some(()) }).await;
    let out = run_client(&app.base, &["publish", "--nats", "--nats-url", &url, "--nats-prefix", &s.bus.nats.prefix, "permit.updated", "--data", r#"{"permitId": "C1", "status": "via-cli"}"#, "--id", "cli-1"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["sequence"], 1, "{printed}");
    let got = fake.wait_for(1).await;
    assert_eq!(got[0].body["status"], "via-cli");
    assert_eq!(got[0].header("Idempotency-Key"), Some("gis:cli-1"));
    let bad = run_client(&app.base, &["publish", "--nats", "--nats-url", &url, "permit.updated", "--data", "[1]"]).await;
    assert_eq!(bad.status.code(), Some(2), "a bad event is refused before it is sent");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("must be a JSON object"));
    app.stop().await;
    drop_stream(&s).await;
}

/// NATS unreachable: the HTTP intake goes on, `/readyz` (still 200) and `GET /cluster` say
/// NATS is down and why.
#[actix_web::test]
async fn a_nats_outage_leaves_http_intake_working() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("nats-down");
    permits(&dir, &fake);
    let s = with_nats(test_settings(&dir), "nats://127.0.0.1:9", "down");
    let app = TestApp::spawn(s).await;
    let (code, ready) = poll_until("readyz to say NATS is down", WAIT, || async {
        let (code, ready) = app.call("GET", "/readyz", None).await;
        ready["nats"]["error"].is_string().then_some((code, ready))
    })
    .await;
    assert_eq!((code, &ready["nats"]["status"]), (200, &serde_json::json!("down")), "{ready}");
    assert!(ready["nats"]["error"].as_str().unwrap().contains("127.0.0.1:9"), "{ready}");
    assert_eq!(app.call("POST", "/events/permit.updated", Some(r#"{"permitId": "H1", "status": "http"}"#)).await.0, 202);
    assert_eq!(fake.wait_for(1).await[0].body["status"], "http");
    app.stop().await;
}

/// A NATS server of the test's own, on a free port, with JetStream storing under `dir`.
struct PrivateNats {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl PrivateNats {
    fn start(port: u16, dir: &std::path::Path) -> PrivateNats {
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server starts (.ci/run installs Debian's nats-server)");
        poll_until_sync("the private nats-server to listen", Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
        PrivateNats { child, port, dir: dir.to_path_buf() }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// NATS goes down and comes back (item 6): meanwhile HTTP intake goes on and `/readyz` says
/// NATS is down; the intake reconnects by itself and takes what is published after, and
/// nothing is delivered twice.
#[actix_web::test]
async fn the_intake_reconnects_when_nats_comes_back() {
    if nats_url().is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let store = temp_dir("nats-store");
    let mut server = PrivateNats::start(port, &store);
    let fake = FakeSystem::start().await;
    let dir = temp_dir("nats-reconnect");
    permits(&dir, &fake);
    let s = with_nats(test_settings(&dir), &server.url(), "reconnect");
    let app = TestApp::spawn(s.clone()).await;
    let taking = || async { (app.call("GET", "/cluster", None).await.1["nats"]["taking"] == true).then_some(()) };
    poll_until("the intake to take", WAIT, taking).await;
    publish(&s, "permit.updated", serde_json::json!({ "permitId": "N1", "status": "before" }), None).await;
    fake.wait_for(1).await;
    server.kill();
    poll_until("readyz to say NATS is down", WAIT, || async { (app.call("GET", "/readyz", None).await.1["nats"]["status"] == "down").then_some(()) }).await;
    assert_eq!(app.call("POST", "/events/permit.updated", Some(r#"{"permitId": "H1", "status": "http"}"#)).await.0, 202);
    fake.wait_for(2).await;
    let server = PrivateNats::start(port, &server.dir.clone());
    poll_until("the intake to take again", Duration::from_secs(30), taking).await;
    publish(&s, "permit.updated", serde_json::json!({ "permitId": "N2", "status": "after" }), None).await;
    let got = fake.wait_for(3).await;
    let statuses: Vec<&str> = got.iter().filter_map(|r| r.body["status"].as_str()).collect();
    assert_eq!(statuses, ["before", "http", "after"], "each once, in order");
    assert_eq!(app.call("GET", "/readyz", None).await.1["nats"]["status"], "up");
    app.stop().await;
    drop(server);
}
