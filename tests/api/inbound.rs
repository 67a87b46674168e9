//! Inbound: verified webhooks from the external system (Standard Webhooks, GitHub, token)
//! applied to a fake HMS or published for outbound connectors, HMS's own webhook, and the
//! ETL pull (pagination, the cursor boundary, lookback, a crash before the cursor save,
//! failing feeds and back-off).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse};
use hms_sync::settings::Settings;
use hms_sync::webhook::verify::{sign_github, sign_standard};
use serde_json::{json, Value};

use crate::helpers::*;

// ---------------------------------------------------------------------------------------
// Shared pieces

/// Sets a secret for this test only (every test uses its own variable names).
fn set_secret(name: &str, value: &str) {
    // SAFETY: each test uses variable names no other test reads or writes.
    unsafe { std::env::set_var(name, value) }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The app with these connector files, each connector running.
async fn start(tag: &str, files: &[(&str, String)], tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = temp_dir(tag);
    for (id, yaml) in files {
        std::fs::write(dir.join("connectors").join(format!("{id}.yaml")), yaml).unwrap();
    }
    let mut settings = test_settings(&dir);
    tweak(&mut settings);
    let app = TestApp::spawn(settings).await;
    for (id, _) in files {
        app.wait_state(id, "running").await;
    }
    app
}

/// A POST to a webhook path, without the admin token: the status and the JSON answer.
async fn post_hook(app: &TestApp, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let (code, bytes) = http(&app.client, &app.base, None, "POST", path, Some(body), headers).await;
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A Standard Webhooks POST signed with `secret` (`webhook-id` `id`, timestamp `ts`).
async fn post_standard(app: &TestApp, path: &str, secret: &str, id: &str, ts: i64, body: &str) -> (u16, Value) {
    let sig = sign_standard(secret, id, ts, body.as_bytes()).expect("a whsec_ secret");
    let ts = ts.to_string();
    post_hook(app, path, body, &[("webhook-id", id), ("webhook-timestamp", &ts), ("webhook-signature", &sig)]).await
}

/// An inbound connector taking Standard Webhooks at `path`, applying each appointment to
/// `{fake}/appointments/{id}` with PATCH (the seed's transformIn as the mapping table).
fn appointment_inbound(id: &str, path: &str, env: &str, fake: &FakeSystem, verify_extra: &str) -> String {
    r#"id: @ID@
type: inbound
mapping:
  id: apptId
  newDate: scheduledDate
map:
  hms:
    method: PATCH
    url: "@FAKE@/appointments/{id}"
source:
  webhook:
    path: @PATH@
    verify: { scheme: standard-webhooks, secret: "${@ENV@}"@VEXTRA@ }
    idField: apptId
retry: { max: 3, backoffMs: 10 }
"#
    .replace("@ID@", id)
    .replace("@PATH@", path)
    .replace("@ENV@", env)
    .replace("@FAKE@", &fake.base)
    .replace("@VEXTRA@", verify_extra)
}

/// The requests at the fake with this method and path.
fn at<'a>(got: &'a [Received], method: &str, path: &str) -> Vec<&'a Received> {
    got.iter().filter(|r| r.method == method && r.path == path).collect()
}

/// The value of a metric sample whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| l.starts_with(&format!("{name}{{"))).find_map(|l| {
        let (head, value) = l.rsplit_once(' ')?;
        labels.iter().all(|(k, v)| head.contains(&format!("{k}=\"{v}\""))).then(|| value.parse().ok()).flatten()
    })
}

// ---------------------------------------------------------------------------------------
// 1 Standard Webhooks

#[actix_web::test]
async fn a_standard_webhook_is_verified_mapped_and_applied_to_hms() {
    let env = "HMS_SYNC_T_INBOUND_SW_1";
    let secret = "whsec_aW5ib3VuZC1zdGFuZGFyZC13ZWJob29rcy1rZXktMDE=";
    set_secret(env, secret);
    let hms = FakeSystem::start().await;
    let app = start("in-sw", &[("appt", appointment_inbound("appt", "/webhook/appointment", env, &hms, ", toleranceSecs: 300"))], |_| {}).await;

    let body = r#"{"apptId": "A-1", "scheduledDate": "2024-06-01"}"#;
    let (code, answer) = post_standard(&app, "/webhook/appointment", secret, "msg_in_sw_1", now(), body).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["duplicate"], false, "{answer}");
    assert_eq!(answer["stored"], 1, "{answer}");

    let got = hms.wait_until("PATCH /appointments/A-1", |r| r.iter().any(|x| x.path == "/appointments/A-1")).await;
    let patch = at(&got, "PATCH", "/appointments/A-1");
    assert_eq!(patch.len(), 1, "{got:#?}");
    assert_eq!(patch[0].body, json!({"id": "A-1", "newDate": "2024-06-01"}), "mapped external → HMS names");
    assert_eq!(patch[0].header("idempotency-key"), Some("appt:webhook:msg_in_sw_1"), "{:?}", patch[0]);

    let tickets = app.wait_tickets("connector=appt&status=completed&direction=inbound", 1).await;
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    assert_eq!(tickets[0]["direction"], "inbound", "{}", tickets[0]);
    assert_eq!(tickets[0]["status"], "completed", "{}", tickets[0]);
    assert_eq!(tickets[0]["externalId"], "A-1", "{}", tickets[0]);

    // Key rotation: several space-separated signatures, one of them valid.
    let body = r#"{"apptId": "A-2", "scheduledDate": "2024-06-02"}"#;
    let ts = now();
    let old_key = "whsec_aW5ib3VuZC1zdGFuZGFyZC13ZWJob29rcy1rZXktb3RoZXI=";
    let stale_sig = sign_standard(old_key, "msg_in_sw_2", ts, body.as_bytes()).unwrap();
    let good_sig = sign_standard(secret, "msg_in_sw_2", ts, body.as_bytes()).unwrap();
    let both = format!("{stale_sig} {good_sig}");
    let ts_text = ts.to_string();
    let (code, answer) =
        post_hook(&app, "/webhook/appointment", body, &[("webhook-id", "msg_in_sw_2"), ("webhook-timestamp", &ts_text), ("webhook-signature", &both)]).await;
    assert_eq!(code, 200, "one valid signature among several is enough: {answer}");
    assert_eq!(answer["stored"], 1, "{answer}");
    let got = hms.wait_until("PATCH /appointments/A-2", |r| r.iter().any(|x| x.path == "/appointments/A-2")).await;
    assert_eq!(at(&got, "PATCH", "/appointments/A-2")[0].body, json!({"id": "A-2", "newDate": "2024-06-02"}));
    app.wait_tickets("connector=appt&status=completed&direction=inbound", 2).await;
    app.wait_queue_empty("appt").await;
    assert_eq!(hms.received().len(), 2, "{:#?}", hms.received());
}

// ---------------------------------------------------------------------------------------
// 2 Refusals

#[actix_web::test]
async fn forged_stale_unsigned_malformed_and_oversized_webhooks_are_refused_and_nothing_is_stored() {
    let env = "HMS_SYNC_T_INBOUND_SW_2";
    let secret = "whsec_aW5ib3VuZC1zdGFuZGFyZC13ZWJob29rcy1rZXktMDI=";
    let other = "whsec_aW5ib3VuZC1zdGFuZGFyZC13ZWJob29rcy1rZXktb3RoZXI=";
    set_secret(env, secret);
    let hms = FakeSystem::start().await;
    let app = start(
        "in-refuse",
        &[
            ("refuse", appointment_inbound("refuse", "/webhook/appointment", env, &hms, "")),
            ("tight", appointment_inbound("tight", "/webhooks/tight", env, &hms, ", toleranceSecs: 30")),
        ],
        |s| s.server.max_body_bytes = 4096,
    )
    .await;
    let path = "/webhook/appointment";
    let body = r#"{"apptId": "R-1", "scheduledDate": "2024-06-01"}"#;

    // Signed with another key.
    let (code, answer) = post_standard(&app, path, other, "msg_r_forged", now(), body).await;
    assert_eq!(code, 401, "{answer}");
    assert_eq!(answer["error_code"], 401, "{answer}");
    let message = answer["message"].as_str().unwrap_or_else(|| panic!("a JSON message: {answer}"));
    assert!(message.contains("signature"), "{message}");
    // The right key over another body.
    let ts = now();
    let sig = sign_standard(secret, "msg_r_forged2", ts, br#"{"apptId": "R-1", "scheduledDate": "1999-01-01"}"#).unwrap();
    let ts_text = ts.to_string();
    let (code, answer) = post_hook(&app, path, body, &[("webhook-id", "msg_r_forged2"), ("webhook-timestamp", &ts_text), ("webhook-signature", &sig)]).await;
    assert_eq!(code, 401, "a signature over another body: {answer}");

    // Six minutes off, either way (default tolerance: 5 minutes), correctly signed.
    for (id, ts) in [("msg_r_past", now() - 360), ("msg_r_future", now() + 360)] {
        let (code, answer) = post_standard(&app, path, secret, id, ts, body).await;
        assert_eq!(code, 401, "{id}: {answer}");
        assert!(answer["message"].as_str().unwrap_or_default().contains("timestamp"), "{answer}");
    }
    // toleranceSecs: 30 — a minute old is refused there.
    let (code, answer) = post_standard(&app, "/webhooks/tight", secret, "msg_r_tight", now() - 60, body).await;
    assert_eq!(code, 401, "{answer}");

    // Missing headers: none at all, no signature, no timestamp.
    let (code, answer) = post_hook(&app, path, body, &[]).await;
    assert_eq!(code, 401, "{answer}");
    assert!(answer["message"].as_str().unwrap_or_default().contains("missing"), "{answer}");
    let ts_text = now().to_string();
    let (code, answer) = post_hook(&app, path, body, &[("webhook-id", "msg_r_nosig"), ("webhook-timestamp", &ts_text)]).await;
    assert_eq!(code, 401, "{answer}");
    let sig = sign_standard(secret, "msg_r_nots", now(), body.as_bytes()).unwrap();
    let (code, answer) = post_hook(&app, path, body, &[("webhook-id", "msg_r_nots"), ("webhook-signature", &sig)]).await;
    assert_eq!(code, 401, "{answer}");

    // Correctly signed, but not JSON.
    let (code, answer) = post_standard(&app, path, secret, "msg_r_json", now(), "{not json").await;
    assert_eq!(code, 400, "{answer}");
    assert_eq!(answer["error_code"], 400, "{answer}");
    // Correctly signed, over server.max_body_bytes.
    let big = format!(r#"{{"apptId": "R-big", "scheduledDate": "2024-06-01", "pad": "{}"}}"#, "x".repeat(8192));
    let (code, answer) = post_standard(&app, path, secret, "msg_r_big", now(), &big).await;
    assert_eq!(code, 413, "{answer}");

    let (code, _, text) = get_open(&app.base, "/metrics").await;
    assert_eq!(code, 200);
    let forged = metric(&text, "sync_webhook_rejections_total", &[("connector", "refuse"), ("reason", "forged")]);
    assert_eq!(forged, Some(2.0), "two forged webhooks counted:\n{text}");
    let stale = metric(&text, "sync_webhook_rejections_total", &[("connector", "refuse"), ("reason", "stale")]);
    assert_eq!(stale, Some(2.0), "two stale webhooks counted:\n{text}");
    let missing = metric(&text, "sync_webhook_rejections_total", &[("connector", "refuse"), ("reason", "missing")]);
    assert_eq!(missing, Some(3.0), "three webhooks without a header counted:\n{text}");
    assert_eq!(metric(&text, "sync_webhook_rejections_total", &[("connector", "tight"), ("reason", "stale")]), Some(1.0), "{text}");

    // Nothing of it was stored: no job, no ticket, nothing parked.
    for id in ["refuse", "tight"] {
        assert_eq!(app.status(id).await["queue_depth"], 0);
        assert!(app.parked(id).await.is_empty());
        assert!(app.tickets(&format!("connector={id}")).await.is_empty());
    }
    // Then a good one goes through — and is the only request HMS ever sees.
    let (code, answer) = post_standard(&app, path, secret, "msg_r_ok", now(), body).await;
    assert_eq!(code, 200, "{answer}");
    let tickets = app.wait_tickets("connector=refuse", 1).await;
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    app.wait_queue_empty("refuse").await;
    let got = hms.received();
    assert_eq!(got.len(), 1, "only the genuine webhook reached HMS: {got:#?}");
    assert_eq!((got[0].method.as_str(), got[0].path.as_str()), ("PATCH", "/appointments/R-1"));
    assert!(app.tickets("connector=tight").await.is_empty());
}

// ---------------------------------------------------------------------------------------
// 3 Replay

#[actix_web::test]
async fn a_replayed_webhook_id_is_applied_once() {
    let env = "HMS_SYNC_T_INBOUND_SW_3";
    let secret = "whsec_aW5ib3VuZC1zdGFuZGFyZC13ZWJob29rcy1rZXktMDM=";
    set_secret(env, secret);
    let hms = FakeSystem::start().await;
    let app = start("in-replay", &[("replay", appointment_inbound("replay", "/webhook/appointment", env, &hms, ""))], |_| {}).await;
    let path = "/webhook/appointment";
    let body = r#"{"apptId": "D-1", "scheduledDate": "2024-06-01"}"#;

    let (code, first) = post_standard(&app, path, secret, "msg_dup_1", now(), body).await;
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["duplicate"], false, "{first}");
    assert_eq!(first["stored"], 1, "{first}");
    // The same delivery again (a sender retrying), signed afresh.
    let (code, again) = post_standard(&app, path, secret, "msg_dup_1", now(), body).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["stored"], 0, "{again}");
    // Same id once more, after the first was applied.
    hms.wait_until("the first PATCH", |r| r.iter().any(|x| x.path == "/appointments/D-1")).await;
    app.wait_tickets("connector=replay&status=completed", 1).await;
    let (code, third) = post_standard(&app, path, secret, "msg_dup_1", now(), body).await;
    assert_eq!(code, 200, "{third}");
    assert_eq!(third["duplicate"], true, "{third}");

    // A distinct webhook for the same appointment, as a marker: it is applied after
    // anything the replays could have queued for D-1.
    let marker = r#"{"apptId": "D-1", "scheduledDate": "2099-12-31"}"#;
    let (code, m) = post_standard(&app, path, secret, "msg_dup_marker", now(), marker).await;
    assert_eq!(code, 200, "{m}");
    assert_eq!(m["duplicate"], false, "{m}");
    let got = hms.wait_until("the marker", |r| r.iter().any(|x| x.body["newDate"] == "2099-12-31")).await;
    app.wait_queue_empty("replay").await;
    let patches = at(&got, "PATCH", "/appointments/D-1");
    assert_eq!(patches.len(), 2, "the change once, then the marker: {got:#?}");
    assert_eq!(patches[0].body, json!({"id": "D-1", "newDate": "2024-06-01"}));
    assert_eq!(patches[1].body, json!({"id": "D-1", "newDate": "2099-12-31"}));
    assert_eq!(app.tickets("connector=replay").await.len(), 2);
}

/// The same delivery sent several times at once (a sender retrying on a short timeout):
/// applied once, and the answers say so — one stored it, the others are duplicates.
#[actix_web::test]
async fn concurrent_replays_are_applied_once_and_answered_as_duplicates() {
    let env = "HMS_SYNC_T_INBOUND_SW_3C";
    let secret = "whsec_aW5ib3VuZC1zdGFuZGFyZC13ZWJob29rcy1rZXktMDM=";
    set_secret(env, secret);
    let hms = FakeSystem::start().await;
    let app = start("in-replay-conc", &[("conc", appointment_inbound("conc", "/webhook/appointment", env, &hms, ""))], |_| {}).await;
    let path = "/webhook/appointment";
    let body = r#"{"apptId": "D-2", "scheduledDate": "2024-08-08"}"#;
    let answers = futures_util::future::join_all((0..8).map(|_| post_standard(&app, path, secret, "msg_dup_concurrent", now(), body))).await;
    for (code, answer) in &answers {
        assert_eq!(*code, 200, "{answer}");
    }
    let marker = r#"{"apptId": "D-2", "scheduledDate": "2099-12-31"}"#;
    assert_eq!(post_standard(&app, path, secret, "msg_dup_marker_2", now(), marker).await.0, 200);
    let got = hms.wait_until("the marker", |r| r.iter().any(|x| x.path == "/appointments/D-2" && x.body["newDate"] == "2099-12-31")).await;
    app.wait_queue_empty("conc").await;
    let patches = at(&got, "PATCH", "/appointments/D-2");
    assert_eq!(patches.len(), 2, "the change once, then the marker: {got:#?}");
    assert_eq!(patches[0].body, json!({"id": "D-2", "newDate": "2024-08-08"}));
    assert_eq!(app.tickets("connector=conc").await.len(), 2);
    // What the sender was told: exactly one delivery was stored.
    let stored: Vec<&Value> = answers.iter().map(|(_, a)| a).filter(|a| a["stored"] == 1).collect();
    assert_eq!(
        stored.len(),
        1,
        "one job was stored, yet {} answers say `stored: 1, duplicate: false`: {answers:?}",
        stored.len()
    );
    assert_eq!(answers.iter().filter(|(_, a)| a["duplicate"] == true).count(), answers.len() - 1, "{answers:?}");
}

// ---------------------------------------------------------------------------------------
// 4 GitHub and token schemes

#[actix_web::test]
async fn github_signatures_and_bearer_tokens_are_checked() {
    let (gh_env, tok_env) = ("HMS_SYNC_T_INBOUND_GH_4", "HMS_SYNC_T_INBOUND_TOK_4");
    let (gh_secret, token) = ("github-inbound-secret-4", "inbound-shared-token-4");
    set_secret(gh_env, gh_secret);
    set_secret(tok_env, token);
    let hms = FakeSystem::start().await;
    let with_scheme = |id: &str, path: &str, scheme: &str, env: &str| {
        r#"id: @ID@
type: inbound
map:
  hms:
    method: PUT
    url: "@FAKE@/@ID@/{number}"
source:
  webhook:
    path: @PATH@
    verify: { scheme: @SCHEME@, secret: "${@ENV@}" }
    idField: number
retry: { max: 3, backoffMs: 10 }
"#
        .replace("@ID@", id)
        .replace("@PATH@", path)
        .replace("@SCHEME@", scheme)
        .replace("@ENV@", env)
        .replace("@FAKE@", &hms.base)
    };
    let app = start(
        "in-schemes",
        &[("gh", with_scheme("gh", "/webhooks/github", "github", gh_env)), ("tok", with_scheme("tok", "/webhook/partner", "token", tok_env))],
        |_| {},
    )
    .await;

    // GitHub: X-Hub-Signature-256 over the raw body.
    let body = r#"{"number": 7, "action": "opened"}"#;
    let sig = sign_github(gh_secret, body.as_bytes());
    let (code, answer) = post_hook(&app, "/webhooks/github", body, &[("X-Hub-Signature-256", &sig), ("X-GitHub-Delivery", "gh-d-1")]).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["stored"], 1, "{answer}");
    let forged = sign_github("not-the-secret", body.as_bytes());
    let (code, answer) = post_hook(&app, "/webhooks/github", r#"{"number": 8}"#, &[("X-Hub-Signature-256", &forged), ("X-GitHub-Delivery", "gh-d-2")]).await;
    assert_eq!(code, 401, "{answer}");
    let (code, answer) = post_hook(&app, "/webhooks/github", r#"{"number": 8}"#, &[("X-Hub-Signature-256", &sig)]).await;
    assert_eq!(code, 401, "a signature of another body: {answer}");
    let (code, answer) = post_hook(&app, "/webhooks/github", r#"{"number": 8}"#, &[]).await;
    assert_eq!(code, 401, "unsigned: {answer}");

    // Token: Authorization: Bearer.
    let bearer = format!("Bearer {token}");
    let (code, answer) = post_hook(&app, "/webhook/partner", r#"{"number": 9}"#, &[("Authorization", &bearer)]).await;
    assert_eq!(code, 200, "{answer}");
    let (code, answer) = post_hook(&app, "/webhook/partner", r#"{"number": 10}"#, &[("Authorization", "Bearer wrong-token")]).await;
    assert_eq!(code, 401, "{answer}");
    let (code, answer) = post_hook(&app, "/webhook/partner", r#"{"number": 10}"#, &[]).await;
    assert_eq!(code, 401, "{answer}");
    // The GitHub signature is no credential at the token endpoint.
    let (code, answer) = post_hook(&app, "/webhook/partner", body, &[("X-Hub-Signature-256", &sig)]).await;
    assert_eq!(code, 401, "{answer}");

    app.wait_tickets("connector=gh&status=completed", 1).await;
    app.wait_tickets("connector=tok&status=completed", 1).await;
    app.wait_queue_empty("gh").await;
    app.wait_queue_empty("tok").await;
    let got = hms.received();
    let mut seen: Vec<(String, String)> = got.iter().map(|r| (r.method.clone(), r.path.clone())).collect();
    seen.sort();
    assert_eq!(seen, [("PUT".to_string(), "/gh/7".to_string()), ("PUT".to_string(), "/tok/9".to_string())], "only the verified ones: {got:#?}");
    assert_eq!(at(&got, "PUT", "/gh/7")[0].body, json!({"number": 7, "action": "opened"}), "no mapping table: the record as sent");
    let (_, _, text) = get_open(&app.base, "/metrics").await;
    assert_eq!(metric(&text, "sync_webhook_rejections_total", &[("connector", "gh"), ("reason", "forged")]), Some(2.0), "{text}");
    assert_eq!(metric(&text, "sync_webhook_rejections_total", &[("connector", "tok"), ("reason", "forged")]), Some(1.0), "{text}");
}

// ---------------------------------------------------------------------------------------
// 5 map.publish: fan-out

#[actix_web::test]
async fn an_inbound_change_with_map_publish_fans_out_to_outbound_connectors() {
    let env = "HMS_SYNC_T_INBOUND_SW_5";
    let secret = "whsec_aW5ib3VuZC1zdGFuZGFyZC13ZWJob29rcy1rZXktMDE=";
    set_secret(env, secret);
    let target = FakeSystem::start().await;
    let inbound = format!(
        r#"id: appt-in
type: inbound
mapping:
  id: apptId
  newDate: scheduledDate
map:
  publish: appt.changed
source:
  webhook:
    path: /webhook/appointment
    verify: {{ scheme: standard-webhooks, secret: "${{{env}}}" }}
    idField: apptId
retry: {{ max: 3, backoffMs: 10 }}
"#
    );
    let outbound = format!(
        r#"id: appt-out
type: outbound
trigger: {{ topic: appt.changed }}
key: "{{{{ id }}}}"
map:
  to:
    method: POST
    url: "{base}/state/appointments/{{id}}"
retry: {{ max: 3, backoffMs: 10 }}
"#,
        base = target.base
    );
    let app = start("in-publish", &[("appt-in", inbound), ("appt-out", outbound)], |_| {}).await;

    let body = r#"{"apptId": "A-5", "scheduledDate": "2024-07-01", "internal": "dropped by the mapping"}"#;
    let (code, answer) = post_standard(&app, "/webhook/appointment", secret, "msg_pub_5", now(), body).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["stored"], 1, "{answer}");

    // Bounded wait; on a timeout, the inbound connector's status says where the job stuck.
    let reached = try_poll_until(WAIT, Duration::from_millis(20), || {
        let there = target.received().iter().any(|x| x.path == "/state/appointments/A-5");
        async move { if there { Ok(()) } else { Err(()) } }
    });
    if reached.await.is_err() {
        let status = app.status("appt-in").await;
        panic!("the inbound change never reached the outbound target within {WAIT:?}; appt-in: {status}");
    }
    let got = target.received();
    let sent = at(&got, "POST", "/state/appointments/A-5");
    assert_eq!(sent.len(), 1, "{got:#?}");
    assert_eq!(sent[0].body, json!({"id": "A-5", "newDate": "2024-07-01"}), "the mapped record, in HMS names");
    let t = app.wait_tickets("connector=appt-in&status=completed&direction=inbound", 1).await;
    assert_eq!(t.len(), 1, "{t:?}");
    app.wait_tickets("connector=appt-out&status=completed&direction=outbound", 1).await;
    app.wait_queue_empty("appt-in").await;
    app.wait_queue_empty("appt-out").await;
}

// ---------------------------------------------------------------------------------------
// 6 HMS's own webhook (trigger.webhook)

#[actix_web::test]
async fn the_hms_webhook_publishes_on_the_trigger_topic() {
    let env = "HMS_SYNC_T_INBOUND_HMS_6";
    let token = "hms-webhook-token-6";
    set_secret(env, token);
    let target = FakeSystem::start().await;
    let yaml = format!(
        r#"id: shifts-out
type: outbound
trigger:
  topic: shift.updated
  webhook:
    path: /webhook/hms
    verify: {{ scheme: token, secret: "${{{env}}}" }}
key: "{{{{ id }}}}"
map:
  to:
    method: PUT
    url: "{base}/calendar/{{id}}"
    body: {{ ShiftID: "{{{{ id }}}}", RangerName: "{{{{ assignee }}}}" }}
retry: {{ max: 3, backoffMs: 10 }}
"#,
        base = target.base
    );
    let app = start("in-hmshook", &[("shifts-out", yaml)], |_| {}).await;

    let (code, answer) = post_hook(&app, "/webhook/hms", r#"{"id": 72, "assignee": "Eve"}"#, &[("Authorization", "Bearer not-it")]).await;
    assert_eq!(code, 401, "{answer}");
    let bearer = format!("Bearer {token}");
    let (code, answer) = post_hook(&app, "/webhook/hms", r#"{"id": 72, "assignee": "Ana"}"#, &[("Authorization", &bearer), ("Idempotency-Key", "hms-change-72")]).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["event_id"], "hms-change-72", "{answer}");
    assert_eq!(answer["connectors"], json!(["shifts-out"]), "{answer}");

    let got = target.wait_until("the PUT for shift 72", |r| r.iter().any(|x| x.path == "/calendar/72")).await;
    let put = at(&got, "PUT", "/calendar/72");
    assert_eq!(put.len(), 1, "{got:#?}");
    assert_eq!(put[0].body, json!({"ShiftID": 72, "RangerName": "Ana"}));
    assert_eq!(put[0].header("idempotency-key"), Some("shifts-out:hms-change-72"));
    let t = app.wait_tickets("connector=shifts-out&status=completed", 1).await;
    assert_eq!(t[0]["direction"], "outbound", "{}", t[0]);
    app.wait_queue_empty("shifts-out").await;
    assert_eq!(target.received().len(), 1, "the refused push published nothing: {:#?}", target.received());
}

// ---------------------------------------------------------------------------------------
// The change feed: a fake external system serving GET /changes?since=C (inclusive)

#[derive(Clone, Copy, PartialEq, Debug)]
enum Paging {
    /// `{"changes": […], "next": "/changes?since=C&page=N"}` (null on the last page).
    Link,
    /// `{"changes": […], "nextToken": "pN"}`, asked for with `&token=pN`.
    Token,
    /// `&page=N`, until a page is empty.
    Page,
}

struct FeedState {
    /// Each with `ShiftID`, `RangerName` and a numeric `LastModified`.
    records: Vec<Value>,
    page_size: usize,
    paging: Paging,
    /// Statuses answered first, one per request.
    fail: VecDeque<u16>,
    /// While set, a request (past the failures) waits before it is answered.
    hold: bool,
    /// Path and query of every request, with when it arrived.
    requests: Vec<(String, Instant)>,
}

#[derive(Clone)]
struct Feed {
    base: String,
    state: Arc<Mutex<FeedState>>,
}

impl Feed {
    async fn start(paging: Paging, page_size: usize) -> Feed {
        let state = Arc::new(Mutex::new(FeedState { records: Vec::new(), page_size, paging, fail: VecDeque::new(), hold: false, requests: Vec::new() }));
        let shared = state.clone();
        let base = crate::serve_local!(move || App::new().app_data(web::Data::new(shared.clone())).route("/changes", web::get().to(changes)));
        Feed { base, state }
    }

    fn add(&self, records: impl IntoIterator<Item = Value>) {
        self.state.lock().unwrap().records.extend(records);
    }

    /// Adds records, replacing any of the same `ShiftID` (a record's newer version).
    fn upsert(&self, records: impl IntoIterator<Item = Value>) {
        let mut st = self.state.lock().unwrap();
        for r in records {
            st.records.retain(|x| x["ShiftID"] != r["ShiftID"]);
            st.records.push(r);
        }
    }

    fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.iter().map(|(p, _)| p.clone()).collect()
    }

    fn request_times(&self) -> Vec<Instant> {
        self.state.lock().unwrap().requests.iter().map(|(_, t)| *t).collect()
    }

    async fn wait_requests(&self, n: usize) -> Vec<String> {
        poll_until(&format!("{n} request(s) at the feed"), WAIT, || {
            let r = self.requests();
            async move { (r.len() >= n).then_some(r) }
        })
        .await
    }
}

/// A record of the feed: `ShiftID` `id`, version `LastModified` `v`.
fn rec(id: &str, v: i64) -> Value {
    json!({"ShiftID": id, "RangerName": format!("{id}@{v}"), "LastModified": v})
}

async fn changes(req: HttpRequest, q: web::Query<HashMap<String, String>>, state: web::Data<Arc<Mutex<FeedState>>>) -> HttpResponse {
    let failure = {
        let mut st = state.lock().unwrap();
        st.requests.push((req.uri().to_string(), Instant::now()));
        st.fail.pop_front()
    };
    if let Some(code) = failure {
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap()).json(json!({"error": "feed unavailable"}));
    }
    // Held at most WAIT, then answered anyway.
    let _ = try_poll_until(WAIT, Duration::from_millis(10), || {
        let held = state.lock().unwrap().hold;
        async move { if held { Err(()) } else { Ok(()) } }
    })
    .await;
    let st = state.lock().unwrap();
    let since_text = q.get("since").cloned().unwrap_or_default();
    let since: Option<f64> = (!since_text.is_empty()).then(|| since_text.parse().unwrap_or_else(|_| panic!("a numeric since: {since_text}")));
    let version = |r: &Value| r["LastModified"].as_f64().unwrap();
    let mut matching: Vec<Value> = st.records.iter().filter(|r| since.is_none_or(|c| version(r) >= c)).cloned().collect();
    matching.sort_by(|a, b| version(a).total_cmp(&version(b)).then_with(|| a["ShiftID"].as_str().cmp(&b["ShiftID"].as_str())));
    let number = |s: Option<&String>| s.filter(|t| !t.is_empty()).map(|t| t.parse::<usize>().unwrap_or_else(|_| panic!("a page number: {t}")));
    let page = match st.paging {
        Paging::Link | Paging::Page => number(q.get("page")).unwrap_or(1),
        Paging::Token => number(q.get("token").map(|t| t.trim_start_matches('p').to_string()).as_ref()).unwrap_or(1),
    };
    let chunk: Vec<Value> = matching.iter().skip((page - 1) * st.page_size).take(st.page_size).cloned().collect();
    let more = matching.len() > page * st.page_size;
    let mut body = json!({ "changes": chunk });
    match st.paging {
        Paging::Link => body["next"] = if more { json!(format!("/changes?since={since_text}&page={}", page + 1)) } else { Value::Null },
        Paging::Token => body["nextToken"] = if more { json!(format!("p{}", page + 1)) } else { Value::Null },
        Paging::Page => {}
    }
    HttpResponse::Ok().json(body)
}

/// An inbound connector pulling `feed`, applying each record with
/// `PATCH {hms}/{id}/shifts/{ShiftID}`. `url_extra` is appended to the feed URL, `extra`
/// to the `pull` block (indented four spaces).
fn puller(id: &str, feed: &Feed, hms: &FakeSystem, url_extra: &str, every: &str, extra: &[&str]) -> String {
    let mut yaml = r#"id: @ID@
type: inbound
mapping:
  id: ShiftID
  assignee: RangerName
  updatedAt: LastModified
map:
  hms:
    method: PATCH
    url: "@HMS@/@ID@/shifts/{id}"
retry: { max: 3, backoffMs: 50 }
source:
  pull:
    method: GET
    url: "@FEED@/changes?since={{ cursor }}@EXTRA@"
    every: @EVERY@
    records: "$.changes"
    idField: ShiftID
    cursorField: LastModified
    initialCursor: 0
"#
    .replace("@ID@", id)
    .replace("@HMS@", &hms.base)
    .replace("@FEED@", &feed.base)
    .replace("@EXTRA@", url_extra)
    .replace("@EVERY@", every);
    for line in extra {
        yaml.push_str("    ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

/// POST /connectors/{id}/sync: the status and the answer.
async fn sync(app: &TestApp, id: &str) -> (u16, Value) {
    app.call("POST", &format!("/connectors/{id}/sync"), None).await
}

/// A sync that must succeed: its pull report.
async fn sync_ok(app: &TestApp, id: &str) -> Value {
    let (code, body) = sync(app, id).await;
    assert_eq!(code, 200, "sync {id}: {body}");
    assert_eq!(body["id"], id, "{body}");
    body["pull"].clone()
}

/// How many times each (ShiftID, version) was applied (answered 200) under `/{id}/shifts/`.
fn applied(got: &[Received], id: &str) -> BTreeMap<(String, i64), usize> {
    let prefix = format!("/{id}/shifts/");
    let mut out = BTreeMap::new();
    for r in got.iter().filter(|r| r.method == "PATCH" && r.status == 200 && r.path.starts_with(&prefix)) {
        let shift = r.path[prefix.len()..].to_string();
        assert_eq!(r.body["id"].as_str(), Some(shift.as_str()), "{r:?}");
        *out.entry((shift, r.body["updatedAt"].as_i64().unwrap_or(-1))).or_insert(0) += 1;
    }
    out
}

fn once_each(pairs: &[(&str, i64)]) -> BTreeMap<(String, i64), usize> {
    pairs.iter().map(|(s, v)| ((s.to_string(), *v), 1)).collect()
}

/// Waits until `n` inbound jobs of `id` completed and its queue is empty.
async fn wait_applied(app: &TestApp, id: &str, n: usize) {
    let t = app.wait_tickets(&format!("connector={id}&status=completed&direction=inbound&limit=500"), n).await;
    assert_eq!(t.len(), n, "exactly {n} inbound tickets: {t:#?}");
    app.wait_queue_empty(id).await;
}

/// The saved cursor, read from the database file.
async fn db_cursor(settings: &Settings, id: &str) -> Option<Value> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let db = sea_orm::Database::connect(settings.database_url()).await.expect("the app's SQLite file opens");
    let stmt = Statement::from_sql_and_values(DbBackend::Sqlite, "SELECT cursor FROM cursors WHERE connector_id = ?", [id.into()]);
    let row = db.query_one_raw(stmt).await.expect("cursors can be read");
    let text: Option<String> = row.map(|r| r.try_get("", "cursor").expect("a text cursor"));
    db.close().await.unwrap();
    text.map(|t| serde_json::from_str(&t).unwrap_or_else(|_| panic!("cursor is JSON: {t}")))
}

async fn wait_db_cursor(settings: &Settings, id: &str, want: Value) {
    poll_until(&format!("the saved cursor of {id} to be {want}"), WAIT, || async { (db_cursor(settings, id).await.as_ref() == Some(&want)).then_some(()) })
        .await;
}

// ---------------------------------------------------------------------------------------
// 7 Pagination

#[actix_web::test]
async fn a_paged_feed_is_read_to_its_end_and_the_inclusive_boundary_applies_nothing_twice() {
    let hms = FakeSystem::start().await;
    let feed = Feed::start(Paging::Link, 2).await;
    let app = start("in-pages", &[("etl", puller("etl", &feed, &hms, "", "60s", &["next: { link: $.next }"]))], |_| {}).await;
    // The start-up pull (or this one) finds an empty feed.
    let first = sync_ok(&app, "etl").await;
    assert_eq!(first["records"], 0, "{first}");
    let before = feed.requests().len();

    feed.add([rec("S1", 10), rec("S2", 20), rec("S3", 30), rec("S4", 40), rec("S5", 50)]);
    let report = sync_ok(&app, "etl").await;
    assert_eq!(report["records"], 5, "{report}");
    assert_eq!(report["pages"], 3, "{report}");
    assert_eq!(report["stored"], 5, "{report}");
    assert_eq!(report["cursor"], 50, "{report}");
    assert_eq!(feed.requests()[before..], ["/changes?since=0", "/changes?since=0&page=2", "/changes?since=0&page=3"], "the links were followed");
    wait_db_cursor(&app.settings, "etl", json!(50)).await;

    wait_applied(&app, "etl", 5).await;
    let got = hms.received();
    assert_eq!(applied(&got, "etl"), once_each(&[("S1", 10), ("S2", 20), ("S3", 30), ("S4", 40), ("S5", 50)]), "{got:#?}");
    let s1 = at(&got, "PATCH", "/etl/shifts/S1");
    assert_eq!(s1[0].body, json!({"id": "S1", "assignee": "S1@10", "updatedAt": 10}), "mapped to HMS names");

    // Again: the feed's `since` is inclusive, so S5 (at the cursor) comes back.
    let before = feed.requests().len();
    let again = sync_ok(&app, "etl").await;
    assert_eq!(feed.requests()[before..], ["/changes?since=50"], "from the saved cursor");
    assert_eq!(again["records"], 1, "{again}");
    assert_eq!(again["pages"], 1, "{again}");
    assert_eq!(again["stored"], 0, "S5 at version 50 is already stored: {again}");
    assert_eq!(again["cursor"], 50, "{again}");
    let status = app.status("etl").await;
    assert_eq!(status["queue_depth"], 0, "{status}");
    assert_eq!(app.tickets("connector=etl&limit=500").await.len(), 5);
    assert_eq!(applied(&hms.received(), "etl").values().sum::<usize>(), 5, "{:#?}", hms.received());
}

#[actix_web::test]
async fn token_and_page_number_pagination() {
    let hms = FakeSystem::start().await;
    let by_token = Feed::start(Paging::Token, 2).await;
    let by_page = Feed::start(Paging::Page, 2).await;
    let app = start(
        "in-pages2",
        &[
            ("tok", puller("tok", &by_token, &hms, "&token={{ page }}", "60s", &["next: { token: $.nextToken }"])),
            ("num", puller("num", &by_page, &hms, "&page={{ page }}", "60s", &["next: { page: 1 }"])),
        ],
        |_| {},
    )
    .await;
    assert_eq!(sync_ok(&app, "tok").await["records"], 0);
    assert_eq!(sync_ok(&app, "num").await["records"], 0);
    let (tok_before, num_before) = (by_token.requests().len(), by_page.requests().len());

    by_token.add([rec("T1", 1), rec("T2", 2), rec("T3", 3)]);
    by_page.add([rec("P1", 1), rec("P2", 2), rec("P3", 3)]);
    let t = sync_ok(&app, "tok").await;
    assert_eq!((t["records"].as_u64(), t["pages"].as_u64(), t["stored"].as_u64(), &t["cursor"]), (Some(3), Some(2), Some(3), &json!(3)), "{t}");
    assert_eq!(by_token.requests()[tok_before..], ["/changes?since=0&token=", "/changes?since=0&token=p2"]);
    let p = sync_ok(&app, "num").await;
    assert_eq!(
        (p["records"].as_u64(), p["pages"].as_u64(), p["stored"].as_u64(), &p["cursor"]),
        (Some(3), Some(3), Some(3), &json!(3)),
        "pages 1 and 2 have records, page 3 is empty: {p}"
    );
    assert_eq!(by_page.requests()[num_before..], ["/changes?since=0&page=1", "/changes?since=0&page=2", "/changes?since=0&page=3"]);

    wait_applied(&app, "tok", 3).await;
    wait_applied(&app, "num", 3).await;
    let got = hms.received();
    assert_eq!(applied(&got, "tok"), once_each(&[("T1", 1), ("T2", 2), ("T3", 3)]), "{got:#?}");
    assert_eq!(applied(&got, "num"), once_each(&[("P1", 1), ("P2", 2), ("P3", 3)]), "{got:#?}");
    assert_eq!(got.len(), 6, "{got:#?}");
}

// ---------------------------------------------------------------------------------------
// 8 The cursor boundary, and lookback

#[actix_web::test]
async fn records_at_the_cursor_and_late_records_within_lookback_are_applied_once_and_none_is_skipped() {
    let hms = FakeSystem::start().await;
    let edge_feed = Feed::start(Paging::Link, 100).await;
    let lb_feed = Feed::start(Paging::Link, 100).await;
    let app = start(
        "in-lookback",
        &[
            ("edge", puller("edge", &edge_feed, &hms, "", "60s", &["next: { link: $.next }"])),
            ("lb", puller("lb", &lb_feed, &hms, "", "60s", &["next: { link: $.next }", "lookback: 10"])),
        ],
        |_| {},
    )
    .await;
    assert_eq!(sync_ok(&app, "edge").await["records"], 0);
    assert_eq!(sync_ok(&app, "lb").await["records"], 0);

    // Pull 1: two records share the version the cursor stops at.
    for feed in [&edge_feed, &lb_feed] {
        feed.add([rec("A", 10), rec("B", 20), rec("C", 20)]);
    }
    for id in ["edge", "lb"] {
        let r = sync_ok(&app, id).await;
        assert_eq!((r["records"].as_u64(), r["stored"].as_u64(), &r["cursor"]), (Some(3), Some(3), &json!(20)), "{id}: {r}");
    }
    wait_applied(&app, "edge", 3).await;
    wait_applied(&app, "lb", 3).await;

    // Committed late: D with the cursor's own version; for `lb` also E, below the cursor
    // but within the lookback, and a new version of A.
    edge_feed.add([rec("D", 20)]);
    lb_feed.upsert([rec("D", 20), rec("E", 15), rec("A", 22)]);
    let before = edge_feed.requests().len();
    let r = sync_ok(&app, "edge").await;
    assert_eq!(edge_feed.requests()[before..], ["/changes?since=20"]);
    assert_eq!((r["records"].as_u64(), r["stored"].as_u64(), &r["cursor"]), (Some(3), Some(1), &json!(20)), "B, C again (known) and D (new): {r}");
    let before = lb_feed.requests().len();
    let r = sync_ok(&app, "lb").await;
    assert_eq!(lb_feed.requests()[before..], ["/changes?since=10"], "the cursor less the lookback of 10");
    assert_eq!(
        (r["records"].as_u64(), r["stored"].as_u64(), &r["cursor"]),
        (Some(5), Some(3), &json!(22)),
        "B, C known; E, D and A@22 new: {r}"
    );
    wait_db_cursor(&app.settings, "lb", json!(22)).await;

    // A third pull changes nothing.
    let r = sync_ok(&app, "edge").await;
    assert_eq!(r["stored"], 0, "{r}");
    let before = lb_feed.requests().len();
    let r = sync_ok(&app, "lb").await;
    assert_eq!(lb_feed.requests()[before..], ["/changes?since=12"]);
    assert_eq!((r["records"].as_u64(), r["stored"].as_u64()), (Some(5), Some(0)), "{r}");

    wait_applied(&app, "edge", 4).await;
    wait_applied(&app, "lb", 6).await;
    let got = hms.received();
    assert_eq!(applied(&got, "edge"), once_each(&[("A", 10), ("B", 20), ("C", 20), ("D", 20)]), "{got:#?}");
    assert_eq!(applied(&got, "lb"), once_each(&[("A", 10), ("B", 20), ("C", 20), ("D", 20), ("E", 15), ("A", 22)]), "{got:#?}");
    // Per record, versions arrive in order.
    let a: Vec<i64> = at(&got, "PATCH", "/lb/shifts/A").iter().map(|r| r.body["updatedAt"].as_i64().unwrap()).collect();
    assert_eq!(a, [10, 22]);
}

// ---------------------------------------------------------------------------------------
// 9 A crash between the store and the cursor save

#[actix_web::test]
async fn a_lost_cursor_rereads_the_feed_and_applies_nothing_twice() {
    use sea_orm::ConnectionTrait;

    let hms = FakeSystem::start().await;
    let feed = Feed::start(Paging::Link, 2).await;
    feed.add([rec("S1", 10), rec("S2", 20), rec("S3", 30)]);
    let app = start("in-crash", &[("crash", puller("crash", &feed, &hms, "", "60s", &["next: { link: $.next }"]))], |_| {}).await;
    let r = sync_ok(&app, "crash").await;
    assert_eq!(r["cursor"], 30, "{r}");
    wait_db_cursor(&app.settings, "crash", json!(30)).await;
    wait_applied(&app, "crash", 3).await;
    let settings = app.stop().await;

    // As if the process died after storing the batch and before saving the cursor.
    let db = sea_orm::Database::connect(settings.database_url()).await.expect("the SQLite file opens");
    let res = db.execute_unprepared("DELETE FROM cursors").await.unwrap();
    assert_eq!(res.rows_affected(), 1);
    db.close().await.unwrap();
    assert_eq!(db_cursor(&settings, "crash").await, None);
    feed.add([rec("S4", 40)]);
    let before = feed.requests().len();

    let app = TestApp::spawn(settings).await;
    app.wait_state("crash", "running").await;
    let r = sync_ok(&app, "crash").await;
    assert!(r["stored"].as_u64().is_some_and(|n| n <= 1), "at most S4 is new: {r}");
    let after = feed.requests()[before..].to_vec();
    assert!(after.first().is_some_and(|p| p == "/changes?since=0"), "read again from the initial cursor: {after:?}");
    wait_db_cursor(&app.settings, "crash", json!(40)).await;
    hms.wait_until("S4 to be applied", |r| r.iter().any(|x| x.path == "/crash/shifts/S4")).await;
    wait_applied(&app, "crash", 4).await;
    let got = hms.received();
    assert_eq!(applied(&got, "crash"), once_each(&[("S1", 10), ("S2", 20), ("S3", 30), ("S4", 40)]), "{got:#?}");
    assert_eq!(got.len(), 4, "{got:#?}");
}

// ---------------------------------------------------------------------------------------
// 10 A failing feed

#[actix_web::test]
async fn a_failing_pull_backs_off_and_keeps_the_cursor_until_it_succeeds() {
    let hms = FakeSystem::start().await;
    let feed = Feed::start(Paging::Link, 100).await;
    feed.add([rec("S1", 10), rec("S2", 20)]);
    // `every: 60s`: any pull after the first within this test comes from the back-off.
    let app = start("in-failing", &[("flaky", puller("flaky", &feed, &hms, "", "60s", &[]))], |_| {}).await;
    let r = sync_ok(&app, "flaky").await;
    assert_eq!(r["cursor"], 20, "{r}");
    wait_db_cursor(&app.settings, "flaky", json!(20)).await;
    wait_applied(&app, "flaky", 2).await;

    let before = feed.requests().len();
    {
        let mut st = feed.state.lock().unwrap();
        st.records.push(rec("S3", 30));
        st.fail.extend([503, 503]);
        st.hold = true;
    }
    let (code, body) = sync(&app, "flaky").await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error_code"], 409, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("503"), "the error is in the answer: {body}");

    // Retried on its own, with back-off: the second failure, then a third try (held).
    feed.wait_requests(before + 3).await;
    let requests = feed.requests()[before..].to_vec();
    assert_eq!(requests, ["/changes?since=20"; 3], "every retry from the saved cursor");
    let times = feed.request_times()[before..].to_vec();
    let (gap1, gap2) = (times[1] - times[0], times[2] - times[1]);
    assert!(gap1 >= Duration::from_millis(50), "backoffMs 50 before the first retry, waited {gap1:?}");
    assert!(gap2 >= Duration::from_millis(100), "doubled before the second, waited {gap2:?}");
    assert_eq!(db_cursor(&app.settings, "flaky").await, Some(json!(20)), "not advanced while failing");
    assert!(!hms.received().iter().any(|r| r.path.ends_with("/S3")), "nothing applied yet");
    let status = app.status("flaky").await;
    assert_eq!(status["counters"]["pull_failures"], 2, "{status}");

    feed.state.lock().unwrap().hold = false;
    wait_db_cursor(&app.settings, "flaky", json!(30)).await;
    wait_applied(&app, "flaky", 3).await;
    let got = hms.received();
    assert_eq!(applied(&got, "flaky"), once_each(&[("S1", 10), ("S2", 20), ("S3", 30)]), "{got:#?}");
    assert_eq!(feed.requests().len(), before + 3, "no further pull after the success: {:?}", feed.requests());
    let (code, body) = sync(&app, "flaky").await;
    assert_eq!(code, 200, "healthy again: {body}");
    assert_eq!(body["pull"]["stored"], 0, "{body}");
}
