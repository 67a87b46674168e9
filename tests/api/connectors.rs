//! `/connectors`: register at run time (YAML and JSON), validation errors with positions,
//! conflicts, hot replace, delete, persistence across restarts, start-up refusal.

use hms_sync::startup::{Application, StartupError};
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn register_list_replace_delete_and_survive_a_restart() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("crud");
    let app = TestApp::spawn(test_settings(&dir)).await;
    assert_eq!(app.call("GET", "/connectors", None).await, (200, json!([])));

    let yaml = outbound_yaml("ddot.gis.outbound.v1", "permit.updated", &fake, "");
    let (code, body) = app.call("POST", "/connectors", Some(&yaml)).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["config"]["retry"]["backoffMs"], 20, "camelCase keys come back as written");
    assert_eq!(app.call("POST", "/connectors", Some(&yaml)).await.0, 409, "the id exists");
    assert_eq!(app.call("GET", "/connectors", None).await.1, json!(["ddot.gis.outbound.v1"]));
    let (code, info) = app.call("GET", "/connectors/ddot.gis.outbound.v1", None).await;
    assert_eq!(code, 200);
    assert_eq!(info["origin"], "api");
    let listed = app.call("GET", "/connectors?expand=status", None).await.1;
    assert_eq!(listed["ddot.gis.outbound.v1"]["status"]["state"], "running", "{listed}");

    // JSON is accepted too; PUT replaces (hot reload) and keeps the id.
    let json_doc = json!({
        "id": "ddot.gis.outbound.v1", "type": "outbound",
        "trigger": {"topic": "permit.created"},
        "map": {"to": {"url": format!("{}/v2/{{{{ permitId }}}}", fake.base), "method": "PUT"}}
    });
    let (code, body) = app.call("PUT", "/connectors/ddot.gis.outbound.v1", Some(&json_doc.to_string())).await;
    assert_eq!(code, 200, "{body}");
    app.publish("permit.created", json!({"permitId": "RW-9"})).await;
    let got = fake.wait_for(1).await;
    assert_eq!((got[0].method.as_str(), got[0].path.as_str()), ("PUT", "/v2/RW-9"));

    // Registered at run time → still there after a restart of the service.
    let settings = app.stop().await;
    let app = TestApp::spawn(settings).await;
    assert_eq!(app.call("GET", "/connectors", None).await.1, json!(["ddot.gis.outbound.v1"]));
    assert_eq!(app.call("DELETE", "/connectors/ddot.gis.outbound.v1", None).await.0, 204);
    assert_eq!(app.call("GET", "/connectors/ddot.gis.outbound.v1", None).await.0, 404);
    assert_eq!(app.call("DELETE", "/connectors/ddot.gis.outbound.v1", None).await.0, 404);
    let settings = app.stop().await;
    let app = TestApp::spawn(settings).await;
    assert_eq!(app.call("GET", "/connectors", None).await.1, json!([]), "deletion persisted");
}

#[actix_web::test]
async fn an_invalid_document_gets_400_with_every_error() {
    let dir = temp_dir("invalid");
    let app = TestApp::spawn(test_settings(&dir)).await;
    let bad = "id: x\ntype: outbound\ntrigger: { topic: t }\nmap:\n  to:\n    url: http://127.0.0.1:1/a\nretry: { max: many, backof: 3 }\n";
    let (code, body) = app.call("POST", "/connectors", Some(bad)).await;
    assert_eq!(code, 400, "{body}");
    let details = body["details"].as_array().expect("details list");
    assert_eq!(details.len(), 2, "both errors at once: {body}");
    let max = details.iter().find(|d| d["path"] == "retry.max").expect("retry.max error");
    assert_eq!((max["line"].as_u64(), max["column"].as_u64()), (Some(7), Some(15)));
    assert!(details.iter().any(|d| d["path"] == "retry.backof" && d["message"].as_str().unwrap().contains("backoffMs")), "{body}");
    assert_eq!(app.call("GET", "/connectors", None).await.1, json!([]), "nothing registered");
}

/// Issue 11, item 1: documents that killed the service (stack overflow) or drove it past
/// 2 GiB (alias expansion, nested complex keys), each refused with 400 at its line.
#[actix_web::test]
async fn hostile_documents_get_400_at_their_line_and_the_service_stays_up() {
    let dir = temp_dir("hostile");
    let app = TestApp::spawn(test_settings(&dir)).await;
    let mut laughs = String::from("id: l\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        laughs += &format!("a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 10].join(", "));
    }
    // Accepted before, then every event for it aborted the process (a crash loop).
    let nested_body = format!("id: n\ntype: outbound\ntrigger: {{ topic: t }}\nmap:\n  to:\n    url: http://127.0.0.1:1/a\n    body:\n      {}1\n", "- ".repeat(2000));
    let cases = [
        ("- ".repeat(5000) + "x", 1, "nested more than 64 levels"),
        (nested_body, 8, "nested more than 64 levels"),
        (laughs, 6, "more than 20000 values"),
        (format!("id: k\na:\n  {}x\n", "? ".repeat(40)), 3, "mapping key must be a plain value"),
    ];
    for (doc, line, needle) in &cases {
        for (method, path) in [("POST", "/connectors"), ("PUT", "/connectors/x")] {
            let (code, body) = app.call(method, path, Some(doc)).await;
            assert_eq!(code, 400, "{method} {path}: {body}");
            let d = &body["details"][0];
            assert!(d["message"].as_str().is_some_and(|m| m.contains(needle)) && d["line"] == *line, "{method} {path}: {body}");
        }
    }
    assert_eq!(app.call("GET", "/healthz", None).await.0, 200, "still up");
    assert_eq!(app.call("GET", "/connectors", None).await.1, json!([]), "nothing registered");
}

/// Issue 11, item 2: status, restart and sync answered 500 ("runtime unavailable: Mailbox
/// has closed") while the connector was deleted and created again.
#[actix_web::test]
async fn a_connector_deleted_and_created_again_never_answers_500() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("churn");
    let app = TestApp::spawn(test_settings(&dir)).await;
    let yaml = outbound_yaml("churn", "t", &fake, "");
    let done = std::cell::Cell::new(false);
    let churn = async {
        for _ in 0..40 {
            assert_eq!(app.call("POST", "/connectors", Some(&yaml)).await.0, 201);
            assert_eq!(app.call("DELETE", "/connectors/churn", None).await.0, 204);
        }
        done.set(true);
    };
    let probe = |method: &'static str, path: &'static str| {
        let (app, done) = (&app, &done);
        async move {
            let mut codes = std::collections::BTreeMap::<u16, u32>::new();
            for _ in 0..5_000 {
                if done.get() {
                    break;
                }
                let (code, body) = app.call(method, path, None).await;
                assert!(code < 500, "{method} {path}: {code} {body}");
                *codes.entry(code).or_default() += 1;
            }
            codes
        }
    };
    let probes = futures_util::future::join3(probe("GET", "/connectors/churn/status"), probe("POST", "/connectors/churn/restart"), probe("POST", "/connectors/churn/sync"));
    let ((), (status, restart, sync)) = futures_util::future::join(churn, probes).await;
    // Both answers were seen, so the calls did meet the connector coming and going.
    assert!(status.contains_key(&200) && status.contains_key(&404), "{status:?}");
    assert!(restart.keys().all(|c| [202, 404].contains(c)), "{restart:?}");
    assert!(sync.keys().all(|c| [404, 409].contains(c)), "an outbound connector has nothing to pull: {sync:?}");
}

#[actix_web::test]
async fn file_connectors_are_owned_by_their_files() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("files");
    std::fs::write(dir.join("connectors/a.yaml"), outbound_yaml("a", "t", &fake, "")).unwrap();
    let app = TestApp::spawn(test_settings(&dir)).await;
    let (code, body) = app.call("DELETE", "/connectors/a", None).await;
    assert_eq!(code, 409);
    assert!(body["message"].as_str().unwrap().contains("a.yaml"), "{body}");
    let (code, _) = app.call("PUT", "/connectors/a", Some(&outbound_yaml("a", "t2", &fake, ""))).await;
    assert_eq!(code, 409);
}

#[actix_web::test]
async fn start_up_refuses_bad_files_and_lists_every_error() {
    let dir = temp_dir("refuse");
    std::fs::write(dir.join("connectors/one.yaml"), "id: one\ntype: sideways\n").unwrap();
    std::fs::write(dir.join("connectors/two.json"), "{\"id\": \"two\", \"type\": \"outbound\", \"colour\": 1}").unwrap();
    let err = Application::build(test_settings(&dir)).await.err().expect("refuses to start");
    let StartupError::Specs(errors) = &err else { panic!("unexpected error: {err}") };
    let text = err.to_string();
    assert!(errors.0.iter().any(|e| e.file.ends_with("one.yaml") && e.path == "type"), "{text}");
    assert!(errors.0.iter().any(|e| e.file.ends_with("two.json") && e.path == "colour"), "{text}");
}

#[actix_web::test]
async fn the_shipped_examples_start() {
    let dir = temp_dir("examples");
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/connectors");
    let mut settings = test_settings(&dir);
    settings.connectors.dir = examples.into();
    let app = TestApp::spawn(settings).await;
    let (_, ids) = app.call("GET", "/connectors", None).await;
    for id in ["ddot.gis.outbound.v1", "NotesCalendar", "appointment"] {
        assert!(ids.as_array().unwrap().iter().any(|i| i == id), "{id} missing from {ids}");
    }
    assert_eq!(app.call("GET", "/readyz", None).await.0, 200);
}

#[actix_web::test]
async fn every_error_is_json_even_actix_webs_own() {
    let dir = temp_dir("json-errors");
    let mut settings = test_settings(&dir);
    settings.server.max_body_bytes = 1024;
    let app = TestApp::spawn(settings).await;
    let (code, body) = app.call("GET", "/no/such/route", None).await;
    assert_eq!(code, 404);
    assert_eq!(body["error_code"], 404);
    assert!(body["message"].as_str().unwrap().contains("/no/such/route"), "{body}");
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(4096));
    let (code, body) = app.call("POST", "/events/permit.updated", Some(&big)).await;
    assert_eq!(code, 413, "{body}");
    assert_eq!(body["error_code"], 413, "{body}");
    // It names the limit and the setting (issue 11, item 18).
    assert!(body["message"].as_str().unwrap().contains("1024 bytes (setting server.max_body_bytes"), "{body}");
    let (code, body) = app.call("POST", "/events/permit.updated", Some("{not json")).await;
    assert_eq!(code, 400);
    assert!(body["message"].as_str().unwrap().contains("not valid JSON"), "{body}");
    // An event is an object (issue 11, item 18: `--data '[1,2]'` was accepted).
    let (code, body) = app.call("POST", "/events/permit.updated", Some("[1,2]")).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("must be a JSON object"), "{body}");
}

/// The OpenAPI document describes exactly what the server routes: every documented
/// operation reaches a handler (never the "no route" answer), the routes the issues name
/// are all there with their auth, and an undocumented method is not routed.
#[actix_web::test]
async fn the_openapi_document_matches_the_routes() {
    let dir = temp_dir("openapi");
    let mut settings = test_settings(&dir);
    settings.server.admin_token = Some("tok".into());
    let app = TestApp::spawn(settings).await;
    let (code, doc) = app.call("GET", "/openapi.json", None).await;
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = Vec::new();
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path} has a summary");
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} has responses");
            for (status, resp) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(resp["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error", "{method} {path} {status}");
                }
            }
            let public = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/webhooks/{name}", "/webhook/{name}"].contains(&path.as_str());
            let security = if public { json!([]) } else { json!([{"bearer": []}]) };
            assert_eq!(op["security"], security, "{method} {path} auth");
            // Reaches a handler: whatever it answers, it is not the router's "no route".
            let concrete = path.replace("{id}", "nope").replace("{topic}", "t").replace("{name}", "x");
            let (_, body) = app.call(&method.to_uppercase(), &concrete, Some("{}")).await;
            let msg = body["message"].as_str().unwrap_or("");
            assert!(!msg.starts_with("no route for"), "{method} {path} is documented but not routed: {body}");
        }
    }
    for required in [
        "GET /connectors", "POST /connectors", "GET /connectors/{id}", "PUT /connectors/{id}", "DELETE /connectors/{id}",
        "GET /connectors/{id}/status", "PUT /connectors/{id}/pause", "PUT /connectors/{id}/resume", "POST /connectors/{id}/restart",
        "POST /connectors/{id}/test", "GET /governance", "PUT /governance", "GET /tickets", "GET /tickets/{id}", "GET /tickets/verify",
        "GET /parked", "POST /parked/{id}/replay", "DELETE /parked/{id}", "POST /events/{topic}", "GET /metrics", "GET /healthz", "GET /readyz",
    ] {
        assert!(documented.iter().any(|d| d == required), "{required} is not documented: {documented:?}");
    }
    let (code, body) = app.call("GET", "/no/such/route", None).await;
    assert_eq!(code, 404);
    assert!(body["message"].as_str().unwrap().starts_with("no route for"), "{body}");
    // A route with another method: 405 and the methods it takes (issue 11, item 6).
    let (code, _, allow) = app.call_raw("PATCH", "/connectors").await;
    assert_eq!((code, allow.as_deref()), (405, Some("GET, POST")));
    let (code, _, allow) = app.call_raw("GET", "/reload").await;
    assert_eq!((code, allow.as_deref()), (405, Some("POST")));
    // The webhook routes sit in scopes of their literal prefixes: the same answers there.
    let (code, _, allow) = app.call_raw("GET", "/webhooks/x").await;
    assert_eq!((code, allow.as_deref()), (405, Some("POST")));
    for path in ["/webhooks/a/b", "/webhook", "/webhooksx/a"] {
        let (code, body) = app.call("POST", path, Some("{}")).await;
        assert_eq!(code, 404, "{path}: {body}");
        assert!(body["message"].as_str().unwrap().starts_with("no route for"), "{path}: {body}");
    }
    // So does the events route, a scope of `/events` that reads its topic itself.
    let (code, _, allow) = app.call_raw("GET", "/events/permit.updated").await;
    assert_eq!((code, allow.as_deref()), (405, Some("POST")));
    for path in ["/events/a/b", "/events", "/events/", "/eventsx/a"] {
        let (code, body) = app.call("POST", path, Some("{}")).await;
        assert_eq!(code, 404, "{path}: {body}");
        assert!(body["message"].as_str().unwrap().starts_with("no route for"), "{path}: {body}");
    }
    // A topic's characters may come percent-encoded, as the router decoded them for `{topic}`.
    let (code, body) = app.call("POST", "/events/no%2Esuch%2Dtopic", Some("{}")).await;
    assert_eq!((code, body["topic"].as_str()), (202, Some("no.such-topic")), "{body}");
    let (code, body) = app.call("POST", "/events/a%2Fb", Some("{}")).await;
    assert_eq!(code, 400, "{body}");
}

/// Issue 11, item 16: connector files were read only at start. A reload applies the folder:
/// a changed file hot-replaces its connector (queued work kept), a new one starts, a
/// removed one stops, an invalid one keeps its old version running, and a file may not
/// take an id the API owns.
#[actix_web::test]
async fn a_reload_applies_the_connectors_folder_and_keeps_what_is_invalid() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("reload");
    let file = |id: &str, version: &str| outbound_yaml(id, &format!("{id}.t"), &fake, "").replace("/roadwork/", &format!("/{version}/roadwork/"));
    std::fs::write(dir.join("connectors/a.yaml"), file("a", "v1")).unwrap();
    let app = TestApp::spawn(test_settings(&dir)).await;
    assert_eq!(app.call("POST", "/connectors", Some(&outbound_yaml("owned", "owned.t", &fake, ""))).await.0, 201);
    // Queued while paused, so the reload meets waiting work.
    assert_eq!(app.call("PUT", "/connectors/a/pause", None).await.0, 202);
    app.wait_state("a", "paused").await;
    app.publish("a.t", json!({"permitId": "P-1", "status": "QUEUED"})).await;

    std::fs::write(dir.join("connectors/a.yaml"), file("a", "v2")).unwrap();
    std::fs::write(dir.join("connectors/b.yaml"), file("b", "v1")).unwrap();
    std::fs::write(dir.join("connectors/broken.yaml"), "id: broken\ntype: outbound\n").unwrap();
    std::fs::write(dir.join("connectors/owned.yaml"), file("owned", "v9")).unwrap();
    let (code, report) = app.call("POST", "/reload", None).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!((report["added"].clone(), report["replaced"].clone(), report["removed"].clone()), (json!(["b"]), json!(["a"]), json!([])), "{report}");
    let refused: Vec<String> = report["refused"].as_array().unwrap().iter().map(|r| format!("{} {}", r["file"], r["reason"])).collect();
    assert_eq!(refused.len(), 2, "{report}");
    assert!(refused.iter().any(|r| r.contains("broken.yaml") && r.contains("map")), "{refused:?}");
    assert!(refused.iter().any(|r| r.contains("owned.yaml") && r.contains("registered over the API")), "{refused:?}");
    // The queued job goes out with the new version.
    assert_eq!(app.call("PUT", "/connectors/a/resume", None).await.0, 202);
    fake.wait_until("the queued job, sent by the new version", |r| r.iter().any(|x| x.path == "/v2/roadwork/P-1")).await;
    // The file owns its id: the API may not replace it, and says how to change it.
    let (code, body) = app.call("PUT", "/connectors/a", Some(&file("a", "v3"))).await;
    assert_eq!(code, 409, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("POST /reload"), "{body}");

    // An invalid edit keeps the running version; a removed file removes its connector.
    std::fs::write(dir.join("connectors/a.yaml"), "id: a\ntype: outbound\ntrigger: { topic: a.t }\nmap: { to: { method: PATCH } }\n").unwrap();
    std::fs::remove_file(dir.join("connectors/b.yaml")).unwrap();
    let (_, report) = app.call("POST", "/reload", None).await;
    assert_eq!((report["removed"].clone(), report["replaced"].clone()), (json!(["b"]), json!([])), "{report}");
    assert!(report["refused"].as_array().unwrap().iter().any(|r| r["file"].as_str().unwrap_or_default().ends_with("a.yaml")), "{report}");
    app.publish("a.t", json!({"permitId": "P-2", "status": "STILL"})).await;
    fake.wait_until("a still runs its last valid version", |r| r.iter().any(|x| x.path == "/v2/roadwork/P-2")).await;
    let (_, ids) = app.call("GET", "/connectors", None).await;
    assert_eq!(ids, json!(["a", "owned"]), "b is gone, broken never came");
}
