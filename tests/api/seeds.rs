//! The seeds' walkthroughs, step by step as written, through the built binaries on a fresh
//! folder: seed 002's `deploy` then `up`, `hms-bus publish`, its console line; seed 000's
//! mapping file. Outside URLs are redirected to a fake on 127.0.0.1
//! (`delivery.redirect_to`), so the real URL is still what the log line shows.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

/// The `hms-bus` binary built for these tests.
fn hms_bus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hms-bus"))
}

async fn run(cmd: Command) -> std::process::Output {
    actix_web::rt::task::spawn_blocking(move || run_bounded(cmd, None, Duration::from_secs(30))).await.unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Seed 002 §3.2–3.3: `hms-sync deploy connectors/gis-ddot.yaml`, `hms-sync up`,
/// `hms-bus publish permit.updated --data '{…}'`, and the console line.
#[actix_web::test]
async fn seed_002_deploy_up_publish_and_the_console_line() {
    let fake = FakeSystem::start().await;
    let dir = temp_dir("seed-002");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/connectors/gis-ddot.yaml"), dir.join("connectors/gis-ddot.yaml")).unwrap();
    let nobody = "http://127.0.0.1:9"; // discard: no service answers there

    // deploy, before anything runs: the file is in the folder `up` reads.
    let mut deploy = bin();
    deploy.args(["deploy", "connectors/gis-ddot.yaml"]).current_dir(&dir).env("HMS_SYNC_URL", nobody).env_remove("HMS_SYNC_CONFIG");
    let out = run(deploy).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ok: ddot.gis.outbound.v1 (connectors/gis-ddot.yaml) is in the connectors folder"), "{}", text(&out));
    assert!(!dir.join("data").exists(), "nothing stored: the file is what `up` loads");

    // up
    let log = dir.join("service.log");
    let env = [("ARC_TOKEN", "seed-002-token"), ("HMS_SYNC__DELIVERY__REDIRECT_TO", fake.base.as_str())];
    let service = Service::up_with(&dir, &[], &env, Stdio::from(std::fs::File::create(&log).unwrap())).await;

    // hms-bus publish, as the seed writes it
    let mut publish = hms_bus();
    publish
        .args(["publish", "permit.updated", "--data", r#"{"permitId":"RW-481","agency":"DDOT","startDate":"2024-05-10","status":"APPROVED"}"#])
        .env("HMS_SYNC_URL", &service.base);
    let out = run(publish).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ddot.gis.outbound.v1"), "stored for the connector: {}", text(&out));
    let got = fake.wait_for(1).await;
    assert_eq!((got[0].method.as_str(), got[0].path.as_str()), ("PATCH", "/item/roadwork/RW-481"), "{got:?}");

    // The console line, as the seed shows it (after the timestamp and level).
    let line = poll_until("the seed's console line", WAIT, || async {
        std::fs::read_to_string(&log).ok()?.lines().find(|l| l.contains("[ddot.gis.outbound.v1] PATCH")).map(str::to_string)
    })
    .await;
    assert!(line.ends_with("INFO [ddot.gis.outbound.v1] PATCH https://services.arcgis.com/item/roadwork/RW-481 200 OK"), "{line}");
    assert!(!line.contains("seed-002-token"), "secrets masked: {line}");

    // deploy again, with the service running: its own file, unchanged, then edited.
    let deploy = |dir: std::path::PathBuf, url: String| {
        let mut c = bin();
        c.args(["deploy", "connectors/gis-ddot.yaml"]).current_dir(dir).env("HMS_SYNC_URL", url);
        c
    };
    let out = run(deploy(dir.clone(), service.base.clone())).await;
    assert!(out.status.success() && text(&out).contains("ddot.gis.outbound.v1: unchanged"), "{}", text(&out));
    let edited = std::fs::read_to_string(dir.join("connectors/gis-ddot.yaml")).unwrap().replace("backoffMs: 3000", "backoffMs: 2000");
    std::fs::write(dir.join("connectors/gis-ddot.yaml"), edited).unwrap();
    let out = run(deploy(dir.clone(), service.base.clone())).await;
    assert!(out.status.success() && text(&out).contains("ddot.gis.outbound.v1: replaced"), "{}", text(&out));
    let (_, info) = service.call("GET", "/connectors/ddot.gis.outbound.v1", None).await;
    assert_eq!(info["config"]["retry"]["backoffMs"], 2000, "{info}");
}

/// Bad input on the way: an invalid file with no service (errors with file:line, nothing
/// stored); `hms-bus publish` with invalid JSON or no service (a clear message, exit 2).
#[actix_web::test]
async fn seed_002_bad_input_is_refused_clearly() {
    let dir = temp_dir("seed-002-bad");
    std::fs::write(dir.join("bad.yaml"), "id: b\ntype: outbound\ntrigger: { topic: t }\nmap: { to: { url: 'http://x/{{ a' } }\n").unwrap();
    let mut deploy = bin();
    deploy.args(["deploy", "bad.yaml"]).current_dir(&dir).env("HMS_SYNC_URL", "http://127.0.0.1:9");
    let out = run(deploy).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("bad.yaml:4:") && text(&out).contains("map.to.url"), "{}", text(&out));
    assert!(!dir.join("data").exists(), "nothing stored");

    let mut publish = hms_bus();
    publish.args(["publish", "permit.updated", "--data", "{not json"]).env("HMS_SYNC_URL", "http://127.0.0.1:9");
    let out = run(publish).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--data is not valid JSON"), "{}", text(&out));
    let mut publish = hms_bus();
    publish.args(["publish", "permit.updated", "--data", "{}"]).env("HMS_SYNC_URL", "http://127.0.0.1:9");
    let out = run(publish).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("cannot reach hms-sync at http://127.0.0.1:9"), "{}", text(&out));
}

/// Seed 000 §3.1: the mapping table in its own file, read with the connector, its errors
/// naming the mapping file; a connector deployed from elsewhere is stored with it inlined.
#[actix_web::test]
async fn seed_000_mapping_file() {
    let dir = temp_dir("seed-000-mapping");
    let connector = |table: &str| {
        format!(
            "id: shifts\ntype: outbound\ntrigger: {{ topic: shift.updated }}\nkey: \"{{{{ id }}}}\"\nmappingFile: {table}\nmapping: {{ updatedAt: LastModified }}\nmap:\n  to: {{ method: PUT, url: \"http://127.0.0.1:9/doc/{{{{ id }}}}\" }}\n"
        )
    };
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("mapping.json"), "{\n  \"id\":        \"ShiftID\",\n  \"startAt\":   \"BeginTime\"\n}\n").unwrap();
    std::fs::write(elsewhere.join("shifts.yaml"), connector("mapping.json")).unwrap();
    // Bad tables: missing, not an object, a value that is not a name.
    std::fs::write(elsewhere.join("list.json"), "[\"ShiftID\"]\n").unwrap();
    std::fs::write(elsewhere.join("number.json"), "{\n  \"id\": \"ShiftID\",\n  \"startAt\": 7\n}\n").unwrap();
    for (table, needle) in [
        ("missing.json", "mappingFile: cannot read the mapping file"),
        ("list.json", "list.json:1:1: (document): expected an object of HMS field → external field, found a list"),
        ("number.json", "number.json:3:14: startAt: expected the external field's name (a string), found"),
    ] {
        std::fs::write(elsewhere.join("bad.yaml"), connector(table)).unwrap();
        let out = run({
            let mut c = bin();
            c.args(["validate", elsewhere.join("bad.yaml").to_str().unwrap()]);
            c
        })
        .await;
        assert_eq!(out.status.code(), Some(1), "{table}: {}", text(&out));
        assert!(text(&out).contains(needle), "{table}: {}", text(&out));
    }
    // Deployed with no service, from outside the connectors folder: stored with the table
    // inlined, and `up` starts it with the file's rows and the inline one.
    let out = run({
        let mut c = bin();
        c.args(["deploy", "elsewhere/shifts.yaml"]).current_dir(&dir).env("HMS_SYNC_URL", "http://127.0.0.1:9").env("HMS_SYNC__DATA_DIR", dir.join("data"));
        c
    })
    .await;
    assert!(out.status.success() && text(&out).contains("shifts: created in the database"), "{}", text(&out));
    let service = Service::up(&dir, &[], Stdio::null()).await;
    let (code, info) = service.call("GET", "/connectors/shifts", None).await;
    assert_eq!(code, 200, "{info}");
    assert_eq!(info["config"]["mapping"], json!({"id": "ShiftID", "startAt": "BeginTime", "updatedAt": "LastModified"}), "{info}");
    // Deployed again, to the running service, with the table edited: the service cannot read
    // a file from elsewhere and refuses `mappingFile` (its details name the field), so the
    // client sends the document again with the table inlined.
    std::fs::write(elsewhere.join("mapping.json"), "{\n  \"id\":        \"ShiftID\",\n  \"startAt\":   \"StartTime\"\n}\n").unwrap();
    let out = run({
        let mut c = bin();
        c.args(["deploy", "elsewhere/shifts.yaml"]).current_dir(&dir).env("HMS_SYNC_URL", &service.base);
        c
    })
    .await;
    assert!(out.status.success() && text(&out).starts_with("shifts: "), "{}", text(&out));
    let (code, info) = service.call("GET", "/connectors/shifts", None).await;
    assert_eq!(code, 200, "{info}");
    assert_eq!(info["config"]["mapping"], json!({"id": "ShiftID", "startAt": "StartTime", "updatedAt": "LastModified"}), "{info}");
}

/// Seed 000 §3.1's promise: "no code changes if the Lotus admin renames a column — just
/// update this JSON". An edit of the mapping file alone is a change on reload.
#[actix_web::test]
async fn seed_000_an_edited_mapping_file_is_applied_on_reload() {
    let dir = temp_dir("seed-000-remap");
    std::fs::write(dir.join("connectors/shifts.mapping.json"), "{ \"id\": \"ShiftID\", \"startAt\": \"BeginTime\" }\n").unwrap();
    std::fs::write(
        dir.join("connectors/shifts.yaml"),
        "id: shifts\ntype: outbound\ntrigger: { topic: shift.updated }\nkey: \"{{ id }}\"\nmappingFile: shifts.mapping.json\nmap:\n  to: { method: PUT, url: \"http://127.0.0.1:9/doc/{{ id }}\" }\n",
    )
    .unwrap();
    let app = TestApp::spawn(test_settings(&dir)).await;
    let (_, info) = app.call("GET", "/connectors/shifts", None).await;
    assert_eq!(info["config"]["mapping"]["startAt"], "BeginTime", "{info}");
    // The Lotus admin renames the column.
    std::fs::write(dir.join("connectors/shifts.mapping.json"), "{ \"id\": \"ShiftID\", \"startAt\": \"StartTime\" }\n").unwrap();
    let (code, report) = app.call("POST", "/reload", None).await;
    assert_eq!((code, report["replaced"].clone()), (200, json!(["shifts"])), "{report}");
    assert!(report["refused"].as_array().unwrap().is_empty(), "the mapping file is not taken for a connector: {report}");
    let (_, info) = app.call("GET", "/connectors/shifts", None).await;
    assert_eq!(info["config"]["mapping"]["startAt"], "StartTime", "{info}");
}
