//! The web console (issue 14), over HTTP: sessions (cookie, CSRF, expiry), roles per token,
//! who did what (tickets and the audit log), bulk replay, escaping, paging; and in a real
//! browser (headless Chromium through chromedriver): the whole walk an operator makes.

use serde_json::{Value, json};

use crate::helpers::browser::Browser;
use crate::helpers::*;

const ADMIN: &str = "root-token-0f9e";
const OLGA: &str = "olga-token-7c21";
const VIC: &str = "vic-token-3b88";

/// The shipped outbound connectors (sending only on their own topics, which no test here
/// publishes: no request leaves 127.0.0.1) and `flaky`, aimed at a fake target.
async fn rig(tag: &str) -> (TestApp, FakeSystem) {
    let dir = temp_dir(tag);
    for f in ["gis-ddot.yaml", "arcgis-roadwork.yaml", "stripe-lane-fee.yaml", "crew-calendar.yaml"] {
        std::fs::copy(format!("{}/connectors/{f}", env!("CARGO_MANIFEST_DIR")), dir.join("connectors").join(f)).unwrap();
    }
    let fake = FakeSystem::start().await;
    std::fs::write(dir.join("connectors/flaky.yaml"), outbound_yaml("flaky", "permit.flaky", &fake, "")).unwrap();
    let mut settings = test_settings(&dir);
    settings.server.admin_token = Some(ADMIN.into());
    for (name, role, token) in [("olga", hms_sync::settings::Role::Operator, OLGA), ("vic", hms_sync::settings::Role::Viewer, VIC)] {
        settings.server.tokens.insert(name.into(), hms_sync::settings::NamedToken { role, token: token.into() });
    }
    let app = TestApp::spawn(settings).await;
    app.wait_state("flaky", "running").await;
    (app, fake)
}

/// A client that does not follow redirects (the tests look at them).
fn plain() -> awc::Client {
    awc::Client::builder().disable_redirects().finish()
}

/// One request with a cookie (and a CSRF token): status, headers, body.
async fn with_cookie(app: &TestApp, method: &str, path: &str, cookie: &str, csrf: Option<&str>, body: Option<&str>) -> (u16, awc::http::header::HeaderMap, String) {
    let mut req = plain().request(awc::http::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", app.base)).insert_header(("Cookie", cookie.to_string()));
    if let Some(c) = csrf {
        req = req.insert_header(("X-CSRF-Token", c.to_string()));
    }
    let mut resp = match body {
        Some(b) => req.insert_header(("Content-Type", "application/json")).send_body(b.to_string()).await,
        None => req.send().await,
    }
    .unwrap();
    let bytes = resp.body().limit(16 << 20).await.unwrap();
    (resp.status().as_u16(), resp.headers().clone(), String::from_utf8_lossy(&bytes).into_owned())
}

/// Signs in with `token`: the `Set-Cookie` header, the cookie to send, and the session's
/// CSRF token (read off the page, as the page's script does).
async fn login(app: &TestApp, token: &str) -> (String, String, String) {
    let mut resp = plain()
        .post(format!("{}/ui/login", app.base))
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .send_body(format!("token={token}"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303, "{:?}", resp.body().await);
    assert_eq!(resp.headers().get("location").unwrap(), "/ui");
    let set = resp.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let (code, _, page) = with_cookie(app, "GET", "/ui", &cookie, None, None).await;
    assert_eq!(code, 200, "{page}");
    let csrf = page.split("name=\"csrf-token\" content=\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_string();
    assert!(csrf.len() >= 32, "a real CSRF token: {csrf:?}");
    (set, cookie, csrf)
}

#[actix_web::test]
async fn a_session_is_a_strict_httponly_cookie_and_its_changes_need_the_csrf_token() {
    let (app, _fake) = rig("console-session").await;
    // Without a session: the sign-in page, which refuses to be framed.
    let (code, headers, _) = with_cookie(&app, "GET", "/ui", "x=y", None, None).await;
    assert_eq!((code, headers.get("location").map(|v| v.to_str().unwrap())), (303, Some("/ui/login")));
    let (code, headers, page) = with_cookie(&app, "GET", "/ui/login", "x=y", None, None).await;
    assert_eq!(code, 200);
    assert!(page.contains("<label for=\"token\">"), "{page}");
    let csp = headers.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers.get("x-frame-options").unwrap(), "DENY");
    let (code, headers, _) = with_cookie(&app, "GET", "/", "x=y", None, None).await;
    assert_eq!((code, headers.get("location").map(|v| v.to_str().unwrap())), (302, Some("/ui")), "`/` sends to the console");

    // A wrong token, a sign-in posted from another site: refused.
    let mut wrong = plain().post(format!("{}/ui/login", app.base)).insert_header(("Content-Type", "application/x-www-form-urlencoded")).send_body("token=nope").await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(String::from_utf8_lossy(&wrong.body().await.unwrap()).contains("not one of this service"));
    let cross = plain()
        .post(format!("{}/ui/login", app.base))
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .insert_header(("Origin", "https://evil.example"))
        .send_body(format!("token={OLGA}"))
        .await
        .unwrap();
    assert_eq!(cross.status().as_u16(), 403);

    let (set, cookie, csrf) = login(&app, OLGA).await;
    let attrs = set.to_lowercase();
    assert!(attrs.contains("httponly") && attrs.contains("samesite=strict") && attrs.contains("path=/"), "{set}");
    assert!(!attrs.contains("secure"), "plain HTTP here: no Secure flag ({set})");
    assert!(!set.contains(OLGA), "the token itself is not the cookie");
    let (_, _, page) = with_cookie(&app, "GET", "/ui", &cookie, None, None).await;
    assert!(page.contains("olga (operator)"), "{page}");
    assert!(!page.contains(OLGA), "the token is nowhere in the page");

    // The session reaches the API; a change needs the CSRF token.
    assert_eq!(with_cookie(&app, "GET", "/connectors", &cookie, None, None).await.0, 200);
    let (code, _, body) = with_cookie(&app, "PUT", "/connectors/flaky/pause", &cookie, None, None).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    assert_eq!(with_cookie(&app, "PUT", "/connectors/flaky/pause", &cookie, Some("forged"), None).await.0, 403);
    assert_eq!(with_cookie(&app, "PUT", "/connectors/flaky/pause", &cookie, Some(&csrf), None).await.0, 202);
    let (_, audit) = app.call("GET", "/audit?target=flaky", None).await;
    assert_eq!(audit["entries"][0]["actor"], "olga", "{audit}");
    assert_eq!(audit["entries"][0]["action"], "connector.pause", "{audit}");

    // Signing out needs the CSRF token too, and ends the session for good.
    assert_eq!(with_cookie(&app, "POST", "/ui/logout", &cookie, None, None).await.0, 403);
    assert_eq!(with_cookie(&app, "POST", "/ui/logout", &cookie, Some(&csrf), None).await.0, 204);
    assert_eq!(with_cookie(&app, "GET", "/ui", &cookie, None, None).await.0, 303);
    assert_eq!(with_cookie(&app, "GET", "/connectors", &cookie, None, None).await.0, 401);
}

#[actix_web::test]
async fn sessions_end_after_30_minutes_idle_and_after_12_hours_in_any_case() {
    use sea_orm::ConnectionTrait;
    let (app, _fake) = rig("console-expiry").await;
    let db = &app.state().db;
    let age = |col: &'static str, minutes: i64| async move {
        let t = chrono::Utc::now() - chrono::Duration::minutes(minutes);
        db.execute_raw(sea_orm::Statement::from_sql_and_values(db.get_database_backend(), format!("UPDATE sessions SET {col} = ?"), [t.into()])).await.unwrap();
    };
    let (_, cookie, _) = login(&app, VIC).await;
    age("last_seen", 29).await;
    assert_eq!(with_cookie(&app, "GET", "/ui", &cookie, None, None).await.0, 200, "29 minutes idle: still signed in");
    age("last_seen", 31).await;
    assert_eq!(with_cookie(&app, "GET", "/ui", &cookie, None, None).await.0, 303, "31 minutes idle: signed out");

    let (_, cookie, _) = login(&app, VIC).await;
    age("created_at", 11 * 60 + 59).await;
    assert_eq!(with_cookie(&app, "GET", "/ui", &cookie, None, None).await.0, 200);
    age("created_at", 12 * 60 + 1).await;
    assert_eq!(with_cookie(&app, "GET", "/ui", &cookie, None, None).await.0, 303, "12 hours after signing in, used or not: signed out");
}

/// A bearer request as `token`.
async fn as_token(app: &TestApp, token: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let (code, bytes) = http(&app.client, &app.base, Some(token), method, path, body, &[]).await;
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[actix_web::test]
async fn each_role_may_do_what_it_is_given_and_no_more() {
    let (app, _fake) = rig("console-roles").await;
    // A viewer reads, and runs the dry run (it changes nothing).
    assert_eq!(as_token(&app, VIC, "GET", "/connectors/flaky/status", None).await.0, 200);
    assert_eq!(as_token(&app, VIC, "POST", "/connectors/flaky/test", Some(r#"{"permitId":"P1","status":"ok"}"#)).await.0, 200);
    let (code, body) = as_token(&app, VIC, "PUT", "/connectors/flaky/pause", None).await;
    assert_eq!(code, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("`vic` is a viewer") && body["message"].as_str().unwrap().contains("operator"), "{body}");
    assert_eq!(as_token(&app, VIC, "POST", "/events/permit.flaky", Some("{}")).await.0, 403);
    // An operator runs the connectors, not their definitions or governance.
    assert_eq!(as_token(&app, OLGA, "PUT", "/connectors/flaky/pause", None).await.0, 202);
    assert_eq!(as_token(&app, OLGA, "PUT", "/connectors/flaky/resume", None).await.0, 202);
    assert_eq!(as_token(&app, OLGA, "POST", "/connectors/flaky/restart", None).await.0, 202);
    let (code, body) = as_token(&app, OLGA, "PUT", "/governance", Some(r#"{"sync_enabled": false}"#)).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(as_token(&app, OLGA, "DELETE", "/connectors/flaky", None).await.0, 403);
    assert_eq!(as_token(&app, OLGA, "POST", "/reload", None).await.0, 403);
    // An admin does everything; a wrong token is nobody.
    assert_eq!(as_token(&app, ADMIN, "PUT", "/governance", Some(r#"{"sync_enabled": false}"#)).await.0, 200);
    assert_eq!(as_token(&app, ADMIN, "PUT", "/governance", Some(r#"{"sync_enabled": true}"#)).await.0, 200);
    assert_eq!(as_token(&app, "not-a-token", "GET", "/connectors", None).await.0, 401);
    // Every change is in the audit log under its maker's name.
    let (_, audit) = app.call("GET", "/audit", None).await;
    let seen: Vec<(String, String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap().into(), e["action"].as_str().unwrap().into(), e["target"].as_str().unwrap().into()))
        .collect();
    let want = [("admin", "governance.set", "sync_enabled"), ("admin", "governance.set", "sync_enabled"), ("olga", "connector.restart", "flaky"), ("olga", "connector.resume", "flaky"), ("olga", "connector.pause", "flaky")];
    let want: Vec<(String, String, String)> = want.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
    assert_eq!(seen, want, "newest first, refused requests not recorded");
    // The document says which role each route needs.
    let (_, doc) = app.call("GET", "/openapi.json", None).await;
    assert_eq!(doc["paths"]["/connectors/{id}/pause"]["put"]["x-role"], "operator");
    assert_eq!(doc["paths"]["/governance"]["put"]["x-role"], "admin");
    assert_eq!(doc["paths"]["/tickets"]["get"]["x-role"], "viewer");
    assert!(doc["paths"]["/governance"]["put"]["responses"]["403"].is_object());
}

#[actix_web::test]
async fn who_replayed_or_discarded_a_job_is_in_its_ticket() {
    let (app, fake) = rig("console-who").await;
    fake.answer_always(Reply::Status(422));
    as_token(&app, ADMIN, "POST", "/events/permit.flaky", Some(r#"{"permitId":"W1","status":"a"}"#)).await;
    as_token(&app, ADMIN, "POST", "/events/permit.flaky", Some(r#"{"permitId":"W2","status":"b"}"#)).await;
    let parked = app.wait_parked("flaky", 2).await;
    fake.answer_normally();
    let (first, second) = (parked[0]["id"].as_i64().unwrap(), parked[1]["id"].as_i64().unwrap());
    let (code, body) = as_token(&app, OLGA, "POST", &format!("/parked/{first}/replay"), Some(r#"{"payload":{"permitId":"W1","status":"fixed"}}"#)).await;
    assert_eq!(code, 202, "{body}");
    let done = app.wait_tickets("connector=flaky&status=completed", 1).await;
    assert_eq!(done[0]["deliveryId"], first);
    assert_eq!(done[0]["detail"]["replayed_by"], "olga", "{}", done[0]);
    assert_eq!(as_token(&app, OLGA, "DELETE", &format!("/parked/{second}"), None).await.0, 204);
    let skipped = app.wait_tickets("connector=flaky&status=skipped", 1).await;
    assert_eq!(skipped[0]["reason"], "discarded by olga");
    assert_eq!(skipped[0]["detail"]["by"], "olga");
    let (_, chain) = app.call("GET", "/tickets/verify", None).await;
    assert_eq!(chain["ok"], true, "{chain}");
}

#[actix_web::test]
async fn bulk_replay_sends_a_span_of_parked_jobs_again_by_the_replay_rules() {
    let (app, fake) = rig("console-bulk").await;
    // B1's first change parks; its second is delivered: replaying the first would undo it.
    fake.answer_always(Reply::Status(422));
    for (id, key) in [("e1", "B1"), ("e2", "B2"), ("e3", "B3")] {
        app.publish_id("permit.flaky", json!({"permitId": key, "status": "first"}), id).await;
    }
    app.wait_parked("flaky", 3).await;
    fake.answer_normally();
    app.publish_id("permit.flaky", json!({"permitId": "B1", "status": "second"}), "e4").await;
    app.wait_tickets("connector=flaky&status=completed", 1).await;

    let (code, body) = as_token(&app, OLGA, "POST", "/parked/replay", Some(r#"{"connector":"flaky","since":"1h"}"#)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["replayed"].as_array().unwrap().len(), 2, "{body}");
    let refused = body["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{body}");
    assert!(refused[0]["reason"].as_str().unwrap().contains("older than job"), "{body}");
    app.wait_tickets("connector=flaky&status=completed", 3).await;
    assert_eq!(app.parked("flaky").await.len(), 1, "the older B1 change stays parked");

    // A span that holds nothing, an unknown connector, a bad time: said so.
    let (code, body) = as_token(&app, OLGA, "POST", "/parked/replay", Some(r#"{"connector":"flaky","since":"2020-01-01","until":"2020-01-02"}"#)).await;
    assert_eq!((code, body["replayed"].as_array().map(Vec::len)), (200, Some(0)), "{body}");
    assert_eq!(as_token(&app, OLGA, "POST", "/parked/replay", Some(r#"{"connector":"nope","since":"1h"}"#)).await.0, 404);
    let (code, body) = as_token(&app, OLGA, "POST", "/parked/replay", Some(r#"{"connector":"flaky","since":"yesterday"}"#)).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(as_token(&app, VIC, "POST", "/parked/replay", Some(r#"{"connector":"flaky","since":"1h"}"#)).await.0, 403);

    // The CLI, with force: the older change goes too.
    let base = app.base.clone();
    let out = actix_web::rt::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hms-sync")).args(["replay", "--connector", "flaky", "--since", "1h", "--force", "--url", &base, "--token", OLGA]).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 job(s) replayed"), "{stdout}");
    app.wait_tickets("connector=flaky&status=completed", 4).await;
    let (_, audit) = app.call("GET", "/audit?target=flaky", None).await;
    assert_eq!(audit["entries"][0]["action"], "parked.replay_bulk");
    assert_eq!(audit["entries"][0]["actor"], "olga");
}

const XSS_SCRIPT: &str = "<script>alert('x')</script>";
const XSS_IMG: &str = "\"><img src=x onerror=alert(1)>";

#[actix_web::test]
async fn values_from_events_targets_and_errors_are_shown_as_text() {
    let (app, fake) = rig("console-escape").await;
    fake.answer_always(Reply::Text(422, "refused: \"><img src=x onerror=alert(1)> <script>alert('x')</script>"));
    let event = json!({ "permitId": "X1", "status": format!("{XSS_SCRIPT} {XSS_IMG}"), "note": XSS_IMG });
    app.publish("permit.flaky", event).await;
    let parked = app.wait_parked("flaky", 1).await;
    let job = parked[0]["id"].as_i64().unwrap();
    assert!(parked[0]["lastError"].as_str().unwrap().contains("<img src=x"), "the error keeps the target's text: {}", parked[0]);
    let (_, cookie, _) = login(&app, OLGA).await;
    for page in ["/ui".to_string(), "/ui/parked".into(), format!("/ui/parked/{job}"), "/ui/tickets".into(), "/ui/connectors/flaky".into(), "/ui/tickets/SYNC-1".into(), "/ui/rows".into()] {
        let (code, _, html) = with_cookie(&app, "GET", &page, &cookie, None, None).await;
        assert_eq!(code, 200, "{page}: {html}");
        assert!(!html.contains("<script>alert") && !html.contains("<img src=x"), "{page} has markup from a payload or an error: {html}");
    }
    let (_, _, html) = with_cookie(&app, "GET", &format!("/ui/parked/{job}"), &cookie, None, None).await;
    assert!(html.contains("&lt;script&gt;alert(") && html.contains("&lt;img src=x onerror=alert(1)&gt;"), "shown as text: {html}");
    // The console's searches are checked as the API's are: a bad value is a 400 page.
    for page in ["/ui/tickets?record=a%00b", "/ui/tickets?status=lost", "/ui/tickets?since=yesterday", "/ui/parked?connector=%3Cscript%3E", "/ui/parked?reason=a%00b"] {
        let (code, _, html) = with_cookie(&app, "GET", page, &cookie, None, None).await;
        assert_eq!(code, 400, "{page}: {html}");
        assert!(!html.contains("<script>"), "{page}: {html}");
    }
    // A connector id cannot carry markup at all.
    let (code, body) = app.call("POST", "/connectors", Some(&format!("id: \"{XSS_SCRIPT}\"\ntype: outbound\ntrigger: {{ topic: t }}\nmap: {{ to: {{ url: \"{}/x\" }} }}\n", fake.base))).await;
    assert_eq!(code, 400, "{body}");
    // The CSV export too: a spreadsheet formula is defused.
    let (code, headers, csv) = with_cookie(&app, "GET", "/ui/tickets.csv?connector=flaky", &cookie, None, None).await;
    assert_eq!(code, 200);
    assert!(headers.get("content-type").unwrap().to_str().unwrap().starts_with("text/csv"));
    assert!(csv.starts_with("ticket_id,created_at,connector_id"), "{csv}");
    assert_eq!(csv.lines().count(), 2, "{csv}");
}

#[actix_web::test]
async fn the_overview_pages_and_filters_many_connectors() {
    let dir = temp_dir("console-many");
    for i in 0..120 {
        std::fs::write(dir.join("connectors").join(format!("c{i:03}.yaml")), numbered_connector(&format!("c{i:03}"), "t", "http://127.0.0.1:9", "{ max: 1 }")).unwrap();
    }
    let app = TestApp::spawn(test_settings(&dir)).await;
    let rows = |html: &str| html.matches("<tr data-id=").count();
    let (code, _, html) = get_open(&app.base, "/ui/rows").await;
    assert_eq!(code, 200);
    assert_eq!(rows(&html), 50, "a page of 50");
    assert!(html.contains("1–50 of 120"), "{html}");
    let (_, _, html) = get_open(&app.base, "/ui/rows?page=2").await;
    assert_eq!(rows(&html), 20);
    assert!(html.contains("101–120 of 120"));
    let (_, _, html) = get_open(&app.base, "/ui/rows?q=c11").await;
    assert_eq!(rows(&html), 10, "c110 … c119");
    assert!(html.contains("of 10 matching (120 in all)"), "{html}");
    let (_, _, html) = get_open(&app.base, "/ui/rows?q=paused").await;
    assert_eq!(rows(&html), 0);
    assert_eq!(app.call("PUT", "/connectors/c007/pause", None).await.0, 202);
    let (_, _, html) = get_open(&app.base, "/ui/rows?q=paused").await;
    assert_eq!(rows(&html), 1, "{html}");
    // A crash is in the connector's restart history, with its reason.
    app.fault("c001", "pusher", "panic").await;
    let status = poll_until("c001's restart", WAIT, || async {
        let s = app.status("c001").await;
        (s["restart_history"].as_array().is_some_and(|h| !h.is_empty()) && s["state"] == "running").then_some(s)
    })
    .await;
    assert!(status["restart_history"][0]["message"].as_str().unwrap().contains("pusher panicked"), "{status}");
    let (_, _, html) = get_open(&app.base, "/ui/connectors/c001").await;
    let history = html.split("id=\"restart-history\"").nth(1).unwrap_or_else(|| panic!("no restart history on the page: {html}"));
    assert!(history.contains("pusher panicked"), "{html}");
    // Without tokens (loopback only) nobody signs in: everyone is `local`, an admin.
    let (_, _, html) = get_open(&app.base, "/ui").await;
    assert!(html.contains("local (admin)") && html.contains("Disable sync"), "{html}");
    let (_, audit) = app.call("GET", "/audit", None).await;
    assert_eq!(audit["entries"][0]["actor"], "local");
}

/// The unlabeled form fields of the page, by id or name (should be none).
const UNLABELED: &str = "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')].filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')).map(e => e.id || e.name);";

async fn assert_labelled(b: &Browser, page: &str) {
    let missing = b.exec(UNLABELED).await;
    assert_eq!(missing, json!([]), "form fields without a label on {page}");
}

/// The walk of an operator, an admin and a viewer through the console, in headless Chromium.
#[actix_web::test]
async fn the_console_in_a_real_browser() {
    let Some(b) = Browser::start("console").await else { return };
    let (app, fake) = rig("console-browser").await;
    let base = app.base.clone();

    // Sign-in: a wrong token is refused, the operator's opens a session.
    b.goto(&format!("{base}/ui")).await;
    assert!(b.url().await.ends_with("/ui/login"), "{}", b.url().await);
    b.screenshot("login").await;
    assert_labelled(&b, "login").await;
    b.type_into("#token", "not-a-token").await;
    b.click("#sign-in").await;
    b.wait_text("#login-error", "not one of this service").await;
    b.type_into("#token", OLGA).await;
    b.click("#sign-in").await;
    b.wait_text("#who", "olga (operator)").await;
    assert_eq!(b.exec("return document.cookie").await, json!(""), "the session cookie is HttpOnly: no script reads it");
    assert_eq!(b.exec("return Object.keys(localStorage).length + Object.keys(sessionStorage).length").await, json!(0));

    // The shipped connectors, and the operator's buttons (no governance toggle: an admin's).
    b.wait_text("#connectors", "ddot.gis.outbound.v1").await;
    b.wait_text("#connectors", "stripe.lane-fee.v1").await;
    assert_eq!(b.count("#gov-toggle").await, 0);
    assert_labelled(&b, "overview").await;
    b.screenshot("overview").await;

    // Pause: the state changes in place, without reloading the page.
    b.exec("window.__kept = 42; return 1").await;
    b.click(r#"tr[data-id="flaky"] button[data-url$="/pause"]"#).await;
    b.wait_text(r#"tr[data-id="flaky"] [data-state]"#, "paused").await;
    assert_eq!(b.exec("return window.__kept").await, json!(42), "no full reload");
    assert_eq!(app.status("flaky").await["paused"], true);
    b.click(r#"tr[data-id="flaky"] button[data-url$="/resume"]"#).await;
    b.wait_text(r#"tr[data-id="flaky"] [data-state]"#, "running").await;
    // The filter narrows the table in place.
    b.type_into("#filter", "stripe").await;
    poll_until("the filter to leave one row", WAIT, || async { (b.count("#connectors tbody tr").await == 1).then_some(()) }).await;
    b.type_into("#filter", "").await;

    // A failing target parks a job whose payload and error carry markup: shown as text.
    fake.answer_always(Reply::Text(422, "refused: \"><img src=x onerror=alert(1)> <script>alert('x')</script>"));
    app.publish_id("permit.flaky", json!({ "permitId": "X1", "status": format!("{XSS_SCRIPT} {XSS_IMG}") }), "xss-1").await;
    let job = app.wait_parked("flaky", 1).await[0]["id"].as_i64().unwrap();
    b.goto(&format!("{base}/ui/parked")).await;
    b.wait_text("#parked-jobs", "X1").await;
    assert_labelled(&b, "parked jobs").await;
    b.screenshot("parked").await;
    b.click(&format!(r#"a[href="/ui/parked/{job}"]"#)).await;
    let reason = b.wait_text("#job-reason", "<img src=x onerror=alert(1)>").await;
    assert!(reason.contains("<script>alert('x')</script>"), "{reason}");
    assert_eq!(b.count("#job-reason img, #job-reason script").await, 0, "no element made from the error");
    assert!(!b.dialog_open().await, "no script from a payload or an error ran");
    assert_eq!(b.exec("return document.querySelectorAll('img').length").await, json!(0));
    assert_labelled(&b, "a parked job").await;
    b.screenshot("parked-job").await;

    // Replay with an edited payload: invalid JSON is caught before sending.
    fake.answer_normally();
    let before = fake.received().len();
    b.type_into("#payload", r#"{"permitId": "X1", "status": "#).await;
    b.wait_text(r#"[data-json-state-for="payload"]"#, "Not valid JSON").await;
    b.click("#replay").await;
    b.wait_text("#flash", "Fix the JSON first").await;
    assert_eq!(fake.received().len(), before, "nothing sent");
    b.type_into("#payload", r#"{"permitId": "X1", "status": "fixed by olga"}"#).await;
    b.wait_text(r#"[data-json-state-for="payload"]"#, "Valid JSON").await;
    b.click("#replay").await;
    b.wait_text("#replay-result", "pending").await;
    let done = app.wait_tickets("connector=flaky&status=completed", 1).await;
    assert_eq!((done[0]["deliveryId"].as_i64(), done[0]["detail"]["replayed_by"].as_str()), (Some(job), Some("olga")), "{}", done[0]);
    fake.wait_until("the edited payload", |r| r.iter().any(|q| q.body["status"] == "fixed by olga")).await;

    // Bulk replay of a connector's parked jobs.
    fake.answer_always(Reply::Status(422));
    for k in ["K1", "K2", "K3"] {
        app.publish_id("permit.flaky", json!({ "permitId": k, "status": "s" }), &format!("bulk-{k}")).await;
    }
    app.wait_parked("flaky", 3).await;
    fake.answer_normally();
    b.goto(&format!("{base}/ui/parked?connector=flaky")).await;
    b.type_into("#b-since", "1h").await;
    b.click("#bulk-replay").await;
    b.wait_text("#bulk-result", "\"replayed\"").await;
    app.wait_tickets("connector=flaky&status=completed", 4).await;
    poll_until("no parked job left", WAIT, || async { app.parked("flaky").await.is_empty().then_some(()) }).await;

    // The connector page: its chart, the dry run.
    b.goto(&format!("{base}/ui/connectors/flaky")).await;
    b.wait_text("#conn-state", "running").await;
    assert_eq!(b.count("svg.chart rect.delivered").await >= 1, true, "the chart shows the deliveries");
    b.type_into("#dry-event", r#"{"permitId": "D1", "status": "dry"}"#).await;
    b.click("#dry-run").await;
    b.wait_text("#dry-result", "/roadwork/D1").await;
    assert_labelled(&b, "a connector").await;
    b.screenshot("connector").await;

    // Tickets: search, a ticket, the chain verified.
    b.goto(&format!("{base}/ui/tickets?connector=flaky&status=completed")).await;
    b.wait_text("#tickets", "SYNC-").await;
    b.click("#verify").await;
    b.wait_text("#verify-result", "\"ok\": true").await;
    assert_labelled(&b, "tickets").await;
    b.screenshot("tickets").await;
    b.click("#tickets tbody tr a").await;
    let hash = b.text("#hash").await;
    assert_eq!(hash.len(), 64, "{hash}");
    b.screenshot("ticket").await;

    // An admin flips governance (asked to confirm) and registers connectors: an invalid
    // document is refused at its line, a connector id with markup as text.
    b.click("button[data-logout]").await;
    poll_until("the sign-in page", WAIT, || async { b.url().await.ends_with("/ui/login").then_some(()) }).await;
    b.type_into("#token", ADMIN).await;
    b.click("#sign-in").await;
    b.wait_text("#who", "admin (admin)").await;
    b.click("#gov-toggle").await;
    let asked = b.accept_dialog().await;
    assert!(asked.contains("Disable sync"), "{asked}");
    b.wait_text("#gov-state", "disabled").await;
    assert_eq!(app.call("GET", "/governance", None).await.1["sync_enabled"], false);
    b.click("#gov-toggle").await;
    b.accept_dialog().await;
    b.wait_text("#gov-state", "enabled").await;
    b.wait_text(r#"tr[data-id="flaky"]"#, "flaky").await;
    b.screenshot("overview-admin").await;
    b.click("details summary").await;
    b.type_into("#new-yaml", "id: fresh\ntype: outbound\ntrigger: { topic: t }\nmap:\n  to:\n    url: 12\n").await;
    b.click("form[data-api-form=register] button[type=submit]").await;
    b.wait_text("#new-result", "line ").await;
    b.type_into("#new-yaml", "id: \"<script>alert(1)</script>\"\ntype: outbound\n").await;
    b.click("form[data-api-form=register] button[type=submit]").await;
    b.wait_text("#new-result", "line 1, column 5 (id)").await;
    assert!(!b.dialog_open().await);
    b.goto(&format!("{base}/ui/audit")).await;
    b.wait_text("#audit", "governance.set").await;
    b.wait_text("#audit", "olga").await;
    b.screenshot("audit").await;

    // A viewer sees, and has no buttons that change anything.
    b.click("button[data-logout]").await;
    poll_until("the sign-in page", WAIT, || async { b.url().await.ends_with("/ui/login").then_some(()) }).await;
    // By keyboard: the token field has the focus; Enter signs in.
    assert_eq!(b.exec("return document.activeElement.id").await, json!("token"));
    b.type_into("#token", &format!("{VIC}\u{E007}")).await;
    b.wait_text("#who", "vic (viewer)").await;
    b.wait_text("#connectors", "flaky").await;
    assert_eq!(b.count("#connectors button").await, 0, "a viewer gets no action buttons");

    // Readable on a phone: nothing wider than the screen but the tables' own scroll.
    b.resize(390, 844).await;
    b.goto(&format!("{base}/ui")).await;
    b.wait_text("#connectors", "flaky").await;
    assert_eq!(b.exec("return document.documentElement.scrollWidth <= window.innerWidth + 1").await, json!(true), "the page fits 390 px");
    b.screenshot("overview-390").await;
    eprintln!("screenshots: {}", b.shots.display());
    b.quit().await;
}

/// The `<td>` texts of connector `id`'s row in the overview's table.
fn row_cells(html: &str, id: &str) -> Vec<String> {
    let row = html.split(&format!("<tr data-id=\"{id}\">")).nth(1).and_then(|r| r.split("</tr>").next()).unwrap_or_else(|| panic!("no row {id}: {html}"));
    row.split("<td").skip(1).map(|c| {
        let inner = c.split_once('>').map_or("", |(_, rest)| rest);
        let text: String = inner.split('<').map(|part| part.split_once('>').map_or(part, |(_, t)| t)).collect();
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }).collect()
}

/// On PostgreSQL with two instances: a session opened on one is served by the other, and
/// the counts each shows come from the shared tickets.
#[actix_web::test]
async fn on_a_cluster_any_instance_serves_a_session_and_counts_every_instances_tickets() {
    let Some((admin, url, name)) = crate::cluster::fresh_pg("console_cluster").await else { return };
    let fake = FakeSystem::start().await;
    let mut apps = Vec::new();
    for tag in ["console-pg-a", "console-pg-b"] {
        let dir = temp_dir(tag);
        std::fs::write(dir.join("connectors/flaky.yaml"), outbound_yaml("flaky", "permit.flaky", &fake, "")).unwrap();
        let mut settings = test_settings(&dir);
        settings.database.url = Some(url.clone());
        settings.server.admin_token = Some(ADMIN.into());
        settings.server.tokens.insert("olga".into(), hms_sync::settings::NamedToken { role: hms_sync::settings::Role::Operator, token: OLGA.into() });
        apps.push(TestApp::spawn(settings).await);
    }
    let (a, b) = (&apps[0], &apps[1]);
    let (_, cookie, csrf) = login(a, OLGA).await;
    let (code, _, page) = with_cookie(b, "GET", "/ui", &cookie, None, None).await;
    assert_eq!(code, 200, "the other instance serves the session: {page}");
    assert!(page.contains("olga (operator)"));
    assert_eq!(with_cookie(b, "PUT", "/connectors/flaky/pause", &cookie, Some(&csrf), None).await.0, 202);
    assert_eq!(with_cookie(b, "PUT", "/connectors/flaky/resume", &cookie, Some(&csrf), None).await.0, 202);
    let (_, audit) = a.call("GET", "/audit?target=flaky", None).await;
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(2), "{audit}");

    for k in 0..3 {
        a.publish_id("permit.flaky", json!({ "permitId": format!("P{k}"), "status": "ok" }), &format!("pg-{k}")).await;
    }
    a.wait_tickets("connector=flaky&status=completed", 3).await;
    let (_, _, rows) = with_cookie(b, "GET", "/ui/rows", &cookie, None, None).await;
    let cells = row_cells(&rows, "flaky");
    assert_eq!(cells[4], "3", "delivered in the last 5 minutes, on the other instance: {cells:?}");
    let (_, _, page) = with_cookie(b, "GET", "/ui/connectors/flaky", &cookie, None, None).await;
    assert!(page.contains("delivered 3"), "the chart's hour: {page}");
    for app in apps {
        app.stop().await;
    }
    crate::cluster::drop_pg(&admin, &name).await;
}
