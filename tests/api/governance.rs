//! The global toggle: pauses every connector, keeps accepting work, survives a restart.

use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn governance_pauses_everything_persists_and_resumes() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("gov");
    std::fs::write(dir.join("connectors/a.yaml"), outbound_yaml("a", "permit.updated", &fake, "")).unwrap();
    let app = TestApp::spawn(test_settings(&dir)).await;
    assert_eq!(app.call("GET", "/governance", None).await, (200, json!({"sync_enabled": true})));

    let (code, body) = app.call("PUT", "/governance", Some(r#"{"sync_enabled": false}"#)).await;
    assert_eq!((code, body), (200, json!({"sync_enabled": false})));
    let s = app.wait_state("a", "paused").await;
    assert_eq!(s["governance_paused"], true);
    app.publish("permit.updated", json!({"permitId": "P1", "status": "OK"})).await;
    poll_until("queued", WAIT, || async { (app.status("a").await["queue_depth"] == 1).then_some(()) }).await;
    assert!(fake.received().is_empty(), "nothing is sent while paused");

    let settings = app.stop().await;
    let app = TestApp::spawn(settings).await;
    assert_eq!(app.call("GET", "/governance", None).await.1, json!({"sync_enabled": false}), "the toggle survived the restart");
    assert_eq!(app.status("a").await["state"], "paused");

    app.call("PUT", "/governance", Some(r#"{"sync_enabled": true}"#)).await;
    let got = fake.wait_for(1).await;
    assert_eq!(got[0].body, json!({"status": "OK"}));
    app.wait_state("a", "running").await;
}

#[actix_web::test]
async fn governance_rejects_a_malformed_body() {
    let dir = temp_dir("gov-bad");
    let app = TestApp::spawn(test_settings(&dir)).await;
    let (code, body) = app.call("PUT", "/governance", Some(r#"{"enabled": false}"#)).await;
    assert_eq!(code, 400);
    assert!(body["message"].as_str().unwrap().contains("sync_enabled"), "{body}");
}
