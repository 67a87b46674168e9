//! Issue 15, item 1: a connector's requests authenticate with an OAuth2 access token from a
//! real authorization server on 127.0.0.1 that issues short-lived tokens and answers 401 to
//! expired or revoked ones.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse};
use serde_json::json;

use crate::helpers::*;

#[derive(Default)]
struct AuthState {
    /// Tokens issued, with when.
    issued: Vec<(String, Instant)>,
    /// Form bodies of the token requests.
    requests: Vec<String>,
    /// Tokens the target refuses from now on.
    revoked: Vec<String>,
    /// The token endpoint answers 500.
    down: bool,
    /// Writes the target accepted: (path, token).
    accepted: Vec<(String, String)>,
}

type Auth = web::Data<Arc<Mutex<AuthState>>>;

/// Lifetime of the tokens issued (`expires_in`).
const LIFETIME: u64 = 2;

async fn token(body: String, st: Auth) -> HttpResponse {
    let mut s = st.lock().unwrap();
    s.requests.push(body.clone());
    if s.down {
        return HttpResponse::InternalServerError().json(json!({"error": "temporarily_unavailable"}));
    }
    if !body.contains("grant_type=client_credentials") || !body.contains("client_secret=s3cret") {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_client"}));
    }
    let value = format!("tok-{}", s.issued.len() + 1);
    s.issued.push((value.clone(), Instant::now()));
    HttpResponse::Ok().json(json!({"access_token": value, "token_type": "Bearer", "expires_in": LIFETIME}))
}

async fn target(req: HttpRequest, _body: web::Bytes, st: Auth) -> HttpResponse {
    let mut s = st.lock().unwrap();
    let given = req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("").to_string();
    let valid = s.issued.iter().any(|(t, at)| *t == given && at.elapsed() < Duration::from_secs(LIFETIME)) && !s.revoked.contains(&given);
    if !valid {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_token"}));
    }
    s.accepted.push((req.path().to_string(), given));
    HttpResponse::Ok().json(json!({"ok": true}))
}

#[actix_web::test]
async fn oauth2_tokens_are_fetched_once_cached_refreshed_and_never_shown() {
    let secret_var = "OAUTH2_TEST_CLIENT_SECRET";
    unsafe { std::env::set_var(secret_var, "s3cret") };
    let state: Arc<Mutex<AuthState>> = Arc::default();
    let data = state.clone();
    let base = crate::serve_local!(move || {
        App::new()
            .app_data(web::Data::new(data.clone()))
            .route("/oauth2/token", web::post().to(token))
            .route("/roadwork/{id}", web::patch().to(target))
    });
    let dir = temp_dir("oauth2");
    let yaml = permit_connector("crm", "crm.t", &base, &format!(
        "auth: {{ type: oauth2, grant: client_credentials, tokenUrl: \"{base}/oauth2/token\", clientId: hms-sync, clientSecret: \"${{{secret_var}}}\", scope: permits.write }}\nconcurrency: 8\nretry: {{ max: 5, backoffMs: 20 }}\n"
    ));
    std::fs::write(dir.join("connectors/crm.yaml"), yaml).unwrap();
    let app = TestApp::spawn(test_settings(&dir)).await;
    app.wait_state("crm", "running").await;

    // Eight deliveries at once: one token request.
    for n in 0..8 {
        app.publish("crm.t", json!({"permitId": format!("P-{n}"), "status": "OK"})).await;
    }
    app.wait_tickets("connector=crm&status=completed", 8).await;
    {
        let s = state.lock().unwrap();
        assert_eq!(s.requests.len(), 1, "one token request for 8 concurrent deliveries: {:?}", s.requests);
        assert!(s.requests[0].contains("client_id=hms-sync") && s.requests[0].contains("scope=permits.write"), "{:?}", s.requests);
        assert!(s.accepted.iter().all(|(_, t)| t == "tok-1"), "{:?}", s.accepted);
    }

    // A token the target refuses (401): fetched anew once, the request sent again.
    state.lock().unwrap().revoked.push("tok-1".into());
    app.publish("crm.t", json!({"permitId": "R-1", "status": "OK"})).await;
    app.wait_tickets("connector=crm&status=completed", 9).await;
    assert_eq!(state.lock().unwrap().accepted.last().unwrap().1, "tok-2");
    assert_eq!(app.status("crm").await["counters"]["failed_attempts"], 0, "the refused token cost no attempt");

    // An expiring token is refreshed before it expires (a few seconds: bounded polling).
    let before = state.lock().unwrap().issued.len();
    let mut n = 0;
    poll_until("a refresh before expiry", WAIT, || {
        n += 1;
        let (app, state) = (&app, &state);
        async move {
            app.publish("crm.t", json!({"permitId": format!("E-{n}"), "status": "OK"})).await;
            (state.lock().unwrap().issued.len() > before).then_some(())
        }
    })
    .await;

    // The token endpoint down: a clear, retryable reason, no token shown anywhere.
    state.lock().unwrap().down = true;
    state.lock().unwrap().revoked.extend((1..=20).map(|i| format!("tok-{i}")));
    app.publish("crm.t", json!({"permitId": "D-1", "status": "OK"})).await;
    let err = poll_until("the token failure in status", WAIT, || async {
        app.status("crm").await["last_delivery_error"]["message"].as_str().filter(|m| m.contains("OAuth2")).map(str::to_string)
    })
    .await;
    assert!(err.contains("cannot get an OAuth2 access token from") && err.contains("HTTP 500 (temporarily_unavailable)"), "{err}");
    let tickets = app.tickets("connector=crm").await;
    let shown = serde_json::to_string(&tickets).unwrap() + &app.status("crm").await.to_string();
    assert!(!shown.contains("tok-") && !shown.contains("s3cret"), "tokens and secrets never shown");
    // Retried like any failed attempt, then parked with that reason.
    let job = poll_until("D-1 parked", WAIT, || async { app.parked("crm").await.into_iter().find(|j| j["recordKey"] == "D-1") }).await;
    assert!(job["lastError"].as_str().is_some_and(|e| e.contains("gave up after 5 attempts: cannot get an OAuth2 access token")), "{job}");
    assert!(!job.to_string().contains("tok-"), "{job}");
}
