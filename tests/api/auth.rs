//! Admin bearer token, open probes, and the refusal to expose an unauthenticated API.

use hms_sync::startup::{Application, StartupError};

use crate::helpers::*;

#[actix_web::test]
async fn admin_routes_need_the_token_when_one_is_set() {
    let dir = temp_dir("auth");
    let mut settings = test_settings(&dir);
    settings.server.admin_token = Some("s3cret-admin".into());
    let mut app = TestApp::spawn(settings).await;
    assert_eq!(app.call("GET", "/connectors", None).await.0, 200, "with the token");
    // The scheme is case-insensitive (issue 11, item 18).
    let (code, body) = app.call_with("GET", "/connectors", None, &[("Authorization", "bearer s3cret-admin")]).await;
    assert_eq!(code, 200, "{body}");
    app.token = Some("wrong".into());
    let (code, body) = app.call("GET", "/connectors", None).await;
    assert_eq!(code, 401);
    assert!(body["message"].as_str().unwrap().contains("bearer token"), "{body}");
    app.token = None;
    assert_eq!(app.call("PUT", "/governance", Some(r#"{"sync_enabled": false}"#)).await.0, 401);
    assert_eq!(app.call("GET", "/healthz", None).await.0, 200, "probes stay open");
    assert_eq!(app.call("GET", "/readyz", None).await.0, 200);
}

#[actix_web::test]
async fn no_token_means_loopback_only() {
    let dir = temp_dir("auth-open");
    let mut settings = test_settings(&dir);
    settings.server.host = "0.0.0.0".into();
    let err = Application::build(settings).await.err().expect("refuses to start");
    assert!(matches!(err, StartupError::OpenAdmin(_)), "{err}");
    assert!(err.to_string().contains("admin_token"));
}

#[actix_web::test]
async fn a_token_of_only_blanks_is_refused_at_start_up() {
    let dir = temp_dir("auth-blank");
    let mut settings = test_settings(&dir);
    settings.server.host = "0.0.0.0".into();
    settings.server.admin_token = Some("   ".into());
    let err = Application::build(settings).await.err().expect("refuses to start");
    assert!(err.to_string().contains("only blanks"), "{err}");
}
