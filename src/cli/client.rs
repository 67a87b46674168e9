//! Thin clients of the admin API: status, pause/resume, restart, deploy, publish.

use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use super::ClientArgs;

/// Sends one request to the service and returns the status and JSON answer.
fn call(args: &ClientArgs, method: &str, path: &str, body: Option<(String, &str)>, headers: &[(&str, String)]) -> Result<(u16, Value), String> {
    let url = format!("{}{}", args.url.trim_end_matches('/'), path);
    let method = awc::http::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let token = args.token.clone();
    let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let body = body.map(|(b, ct)| (b, ct.to_string()));
    actix_web::rt::System::new().block_on(async move {
        let client = awc::Client::builder().timeout(std::time::Duration::from_secs(30)).finish();
        let mut req = client.request(method, &url);
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        for (k, v) in headers {
            req = req.insert_header((k, v));
        }
        let sent = match body {
            Some((b, ct)) => req.insert_header(("Content-Type", ct)).send_body(b).await,
            None => req.send().await,
        };
        let mut resp = sent.map_err(|e| format!("cannot reach hms-sync at {url}: {e}"))?;
        let bytes = resp.body().limit(16 * 1024 * 1024).await.map_err(|e| e.to_string())?;
        let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into())) };
        Ok((resp.status().as_u16(), json))
    })
}

/// Prints the answer; non-2xx becomes a non-zero exit with the server's message.
fn finish(result: Result<(u16, Value), String>, print: impl FnOnce(&Value)) -> ExitCode {
    match result {
        Ok((status, body)) if (200..300).contains(&status) => {
            print(&body);
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            let msg = body.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| body.to_string());
            eprintln!("error: HTTP {status}: {msg}");
            if let Some(details) = body.get("details").and_then(Value::as_array) {
                for d in details {
                    eprintln!("  {}", d.get("display").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format_detail(d)));
                }
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn format_detail(d: &Value) -> String {
    let g = |k: &str| d.get(k).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default();
    format!("{}:{}:{}: {}: {}", g("file"), g("line"), g("column"), g("path"), g("message"))
}

fn pretty(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub fn status(args: &ClientArgs, id: Option<&str>) -> ExitCode {
    match id {
        Some(id) => finish(call(args, "GET", &format!("/connectors/{id}/status"), None, &[]), pretty),
        None => {
            let gov = call(args, "GET", "/governance", None, &[]);
            if let Ok((200, g)) = &gov {
                let on = g.get("sync_enabled").and_then(Value::as_bool).unwrap_or(true);
                println!("sync: {}", if on { "enabled" } else { "PAUSED (governance)" });
            }
            finish(call(args, "GET", "/connectors?expand=status", None, &[]), print_table)
        }
    }
}

/// `hms-sync cluster`: one line per instance (`*` marks the one that answered).
pub fn cluster(args: &ClientArgs, json: bool) -> ExitCode {
    if json {
        return finish(call(args, "GET", "/cluster", None, &[]), pretty);
    }
    finish(call(args, "GET", "/cluster", None, &[]), |v| {
        let me = v["self"].as_str().unwrap_or_default();
        println!("  {:<36} {:<22} {:<9} {:<20} {:<20} {:<5} {:>10}  PULLS", "INSTANCE", "ADDRESS", "VERSION", "STARTED", "LAST BEAT", "ALIVE", "CONNECTORS");
        let time = |t: &Value| t.as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default();
        for i in v["instances"].as_array().into_iter().flatten() {
            let id = i["id"].as_str().unwrap_or_default();
            let pulls: Vec<&str> = i["holds"]["pullers"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            println!(
                "{} {:<36} {:<22} {:<9} {:<20} {:<20} {:<5} {:>10}  {}",
                if id == me { "*" } else { " " },
                id,
                i["address"].as_str().unwrap_or_default(),
                i["version"].as_str().unwrap_or_default(),
                time(&i["started_at"]),
                time(&i["last_beat"]),
                if i["alive"].as_bool() == Some(true) { "yes" } else { "NO" },
                i["holds"]["connectors"].as_u64().unwrap_or(0),
                pulls.join(", ")
            );
        }
    })
}

/// One line per connector: state, restarts, queue, ok/fail counts and its latest error (a
/// failed delivery or a crash, with its time); the other of the two, and secrets that are
/// not set, on indented lines below it.
fn print_table(all: &Value) {
    let Some(map) = all.as_object() else { return };
    let width = map.keys().map(|k| k.chars().count()).max().unwrap_or(0).max("CONNECTOR".len());
    println!("{:<width$} {:<10} {:<10} {:>8} {:>6} {:>8} {:>6}  LAST ERROR", "CONNECTOR", "TYPE", "STATE", "RESTARTS", "QUEUE", "OK", "FAIL");
    for (id, entry) in map {
        let s = &entry["status"];
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        let error = |kind: &str, e: &Value| {
            let at = e["at"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string()).unwrap_or_default();
            e["message"].as_str().map(|m| (at.clone(), format!("{kind} {at}: {}", one_line(m))))
        };
        let mut errors: Vec<(String, String)> = [error("delivery", &s["last_delivery_error"]), error("crash", &s["last_error"])].into_iter().flatten().collect();
        errors.sort_by(|a, b| b.0.cmp(&a.0));
        let mut lines = errors.into_iter().map(|(_, text)| text);
        println!(
            "{:<width$} {:<10} {:<10} {:>8} {:>6} {:>8} {:>6}  {}",
            id,
            s["type"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?"),
            n(&s["restarts"]),
            n(&s["queue_depth"]),
            n(&s["counters"]["delivered"]),
            n(&s["counters"]["failed_attempts"]),
            lines.next().unwrap_or_else(|| "-".into())
        );
        for older in lines {
            println!("{:width$}   {older}", "");
        }
        let missing: Vec<&str> = s["missing_secrets"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        if !missing.is_empty() {
            println!("{:width$}   not set: {}", "", missing.iter().map(|m| format!("${{{m}}}")).collect::<Vec<_>>().join(", "));
        }
    }
}

/// A message on one line (an error may hold newlines).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn set_paused(args: &ClientArgs, id: Option<&str>, paused: bool) -> ExitCode {
    let verb = if paused { "pause" } else { "resume" };
    match id {
        Some(id) => finish(call(args, "PUT", &format!("/connectors/{id}/{verb}"), None, &[]), |_| println!("{id}: {verb}d")),
        None => {
            let body = serde_json::json!({ "sync_enabled": !paused }).to_string();
            finish(call(args, "PUT", "/governance", Some((body, "application/json")), &[]), |_| {
                println!("sync {}", if paused { "paused for every connector" } else { "resumed" })
            })
        }
    }
}

pub fn restart(args: &ClientArgs, id: &str) -> ExitCode {
    finish(call(args, "POST", &format!("/connectors/{id}/restart"), None, &[]), |_| println!("{id}: restarting"))
}

/// `deploy FILE`, as seed 002 uses it. With a service answering: `PUT /connectors/{id}`
/// (for the service's own file, applied as a reload). With none: the file is validated, and
/// then either it is in the connectors folder `up` reads (nothing to do), or it is
/// registered in the database `up` will use; the answer says which.
///
/// (A refusal is told by its details' field paths, `[{"path": "mappingFile", …}]`, not by
/// its text.)
pub fn deploy(args: &ClientArgs, file: &Path, config: Option<&Path>) -> ExitCode {
    let loaded = match crate::spec::load_file(file) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let id = loaded.spec.id.clone();
    let mut sent = call(args, "PUT", &format!("/connectors/{id}"), Some((loaded.source.clone(), "application/yaml")), &[]);
    // Not the service's own file, and it names a mapping file the service cannot read (the
    // refusal's details name the field): sent again with the table inlined.
    if loaded.spec.mapping_file.is_some() && matches!(&sent, Ok((400, body)) if refuses_field(body, "mappingFile")) {
        let inline = crate::spec::mapping_file::inlined(&loaded.source, &loaded.spec.mapping);
        sent = call(args, "PUT", &format!("/connectors/{id}"), Some((inline, "application/json")), &[]);
    }
    match sent {
        Ok((status, body)) if (200..300).contains(&status) => {
            let result = body.get("result").and_then(Value::as_str).unwrap_or("deployed");
            println!("{id}: {result}{}", if result == "replaced" { " (queued work kept)" } else { "" });
            ExitCode::SUCCESS
        }
        Ok(answer) => finish(Ok(answer), |_| {}),
        Err(unreachable) => deploy_offline(args, file, &loaded, config, &unreachable),
    }
}

/// `deploy` with no service answering (see [`deploy`]).
fn deploy_offline(args: &ClientArgs, file: &Path, loaded: &crate::spec::LoadedSpec, config: Option<&Path>, why: &str) -> ExitCode {
    let id = &loaded.spec.id;
    let settings = match crate::settings::Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: settings: {e}");
            return ExitCode::from(2);
        }
    };
    let dir = settings.connectors.dir.clone();
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    let folder = file.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p }).and_then(canonical);
    println!("no service answers at {} ({}); deploying for the next `hms-sync up`", args.url, why.rsplit(": ").next().unwrap_or(why));
    if folder.is_some() && folder == canonical(&dir) {
        println!("ok: {id} ({}) is in the connectors folder {}: `hms-sync up` will load it", file.display(), dir.display());
        return ExitCode::SUCCESS;
    }
    // A file of the folder owns its id: registering the same id would stop `up`.
    if let Ok((files, _)) = crate::spec::load_each(&dir)
        && let Some(owner) = files.iter().find(|f| f.spec.id == *id)
    {
        eprintln!("error: the connectors folder {} defines `{id}` in {}: change that file instead", dir.display(), owner.origin);
        return ExitCode::from(1);
    }
    let url = settings.database_url();
    // Stored as `up` will read it back: with a mapping file's rows inlined.
    let source = crate::spec::mapping_file::inlined(&loaded.source, &loaded.spec.mapping);
    let id_owned = id.clone();
    let stored = actix_web::rt::System::new().block_on(async move {
        let db = crate::storage::connect(&url).await.map_err(|e| e.to_string())?;
        let before = crate::storage::list_connectors(&db).await.map_err(|e| e.to_string())?.into_iter().find(|c| c.id == id_owned).map(|c| c.source);
        let result = match before {
            Some(old) if old == source => "unchanged",
            Some(_) => "replaced",
            None => "created",
        };
        if result != "unchanged" {
            crate::storage::save_connector(&db, &id_owned, &source).await.map_err(|e| e.to_string())?;
        }
        db.close().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(result)
    });
    match stored {
        Ok(result) => {
            println!("{id}: {result} in the database {}: `hms-sync up` will start it", crate::storage::redact_url(&settings.database_url()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot register {id} in the database: {e}");
            ExitCode::from(2)
        }
    }
}

/// `--data` text: JSON, or `@FILE` to read it from a file; checked to be JSON.
fn read_data(data: &str) -> Result<String, String> {
    let text = match data.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?,
        None => data.to_string(),
    };
    serde_json::from_str::<Value>(&text).map_err(|e| format!("--data is not valid JSON: {e}"))?;
    Ok(text)
}

pub fn publish(args: &ClientArgs, topic: &str, data: &str, id: Option<&str>) -> ExitCode {
    let text = match read_data(data) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let headers: Vec<(&str, String)> = id.map(|i| ("Idempotency-Key", i.to_string())).into_iter().collect();
    // Encoded, so a topic the service refuses gets the service's own answer.
    finish(call(args, "POST", &format!("/events/{}", encode(topic)), Some((text, "application/json")), &headers), |answer| {
        pretty(answer);
        warn_unrouted(topic, answer);
    })
}

/// `publish --nats`: the event to NATS JetStream; prints the stream's sequence. The body is
/// checked as the service checks it, so a bad event is refused here, not terminated there.
pub fn publish_nats(args: &super::PublishArgs) -> ExitCode {
    let body = match read_data(&args.data).and_then(|t| crate::actors::bus::parse_event(t.as_bytes()).map(|_| t)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let published = runtime.block_on(crate::actors::nats::publish(&args.nats_url, &args.nats_prefix, &args.topic, body.into_bytes(), args.id.as_deref()));
    match published {
        Ok(sequence) => {
            println!("{}", serde_json::json!({ "subject": format!("{}{}", args.nats_prefix, args.topic), "sequence": sequence, "id": args.id }));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An event no connector subscribes to is accepted (202) and stored nowhere: said on
/// stderr, with the subscribed topic it was likely meant for.
fn warn_unrouted(topic: &str, answer: &Value) {
    let none = |k: &str| answer.get(k).and_then(Value::as_array).is_some_and(Vec::is_empty);
    if none("connectors") && none("filtered") {
        let hint = answer.get("did_you_mean").and_then(Value::as_str).map(|t| format!(" (did you mean {t}?)")).unwrap_or_default();
        eprintln!("warning: no connector subscribes to `{topic}`: the event was not stored{hint}");
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn query_string(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v)))).collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

pub fn tickets(args: &ClientArgs, query: &[(&str, Option<String>)], json: bool) -> ExitCode {
    let result = call(args, "GET", &format!("/tickets{}", query_string(query)), None, &[]);
    finish(result, |page| {
        if json {
            return pretty(page);
        }
        let rows: Vec<Vec<String>> = page["tickets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let s = |k: &str| t[k].as_str().unwrap_or("-").to_string();
                vec![s("ticketId"), s("connectorId"), s("direction"), s("status"), s("hmsId"), s("externalId"), t["attempts"].as_i64().unwrap_or(0).to_string(), s("lastError")]
            })
            .collect();
        print_rows(&["TICKET", "CONNECTOR", "DIRECTION", "STATUS", "HMS ID", "EXTERNAL ID", "TRY", "ERROR"], &rows);
        if let Some(next) = page["next"].as_str() {
            println!("(more: --cursor {next})");
        }
    })
}

pub fn parked(args: &ClientArgs, connector: Option<&str>) -> ExitCode {
    let query = query_string(&[("connector", connector.map(str::to_string))]);
    finish(call(args, "GET", &format!("/parked{query}"), None, &[]), |page| {
        let rows: Vec<Vec<String>> = page["parked"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|j| {
                let s = |k: &str| j[k].as_str().unwrap_or("-").to_string();
                vec![j["id"].as_i64().unwrap_or(0).to_string(), s("connectorId"), s("recordKey"), j["attempts"].as_i64().unwrap_or(0).to_string(), s("lastError")]
            })
            .collect();
        print_rows(&["JOB", "CONNECTOR", "RECORD KEY", "TRY", "LAST ERROR"], &rows);
    })
}

/// A table whose columns are as wide as their longest cell (long ids and URLs keep the
/// columns aligned); the last column is free text. Cells are put on one line.
fn print_rows(header: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| one_line(c)).collect()).collect();
    let last = header.len() - 1;
    let widths: Vec<usize> = (0..last).map(|i| rows.iter().map(|r| r[i].chars().count()).chain([header[i].len()]).max().unwrap_or(0)).collect();
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i < last {
                out += &format!("{cell:<w$}  ", w = widths[i]);
            } else {
                out += cell;
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}

pub fn replay(args: &ClientArgs, id: i64, data: Option<&str>, force: bool) -> ExitCode {
    let payload = match data.map(read_data).transpose() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let body = match (payload, force) {
        (Some(text), force) => format!("{{\"payload\": {text}, \"force\": {force}}}"),
        (None, true) => "{\"force\": true}".to_string(),
        (None, false) => String::new(),
    };
    finish(call(args, "POST", &format!("/parked/{id}/replay"), Some((body, "application/json")), &[]), |_| println!("job {id}: replayed"))
}

/// `hms-sync replay --connector ID --since 1h`: every parked job of the span, sent again;
/// lists the jobs left parked and why (exit code 1 when any was).
pub fn replay_many(args: &ClientArgs, filter: &Value) -> ExitCode {
    let mut body = filter.clone();
    if let Some(o) = body.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    match call(args, "POST", "/parked/replay", Some((body.to_string(), "application/json")), &[]) {
        Ok((200, answer)) => {
            let replayed = answer["replayed"].as_array().map_or(0, Vec::len);
            println!("{replayed} job(s) replayed");
            let refused = answer["refused"].as_array().cloned().unwrap_or_default();
            for r in &refused {
                println!("job {}: left parked: {}", r["id"], r["reason"].as_str().unwrap_or("?"));
            }
            if refused.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        other => finish(other, |_| {}),
    }
}

pub fn discard(args: &ClientArgs, id: i64) -> ExitCode {
    finish(call(args, "DELETE", &format!("/parked/{id}"), None, &[]), |_| println!("job {id}: discarded"))
}

pub fn audit_verify(args: &ClientArgs) -> ExitCode {
    match call(args, "GET", "/tickets/verify", None, &[]) {
        Ok((200, report)) if report["ok"] == Value::Bool(true) => {
            println!("ok: {} ticket(s) verified, chain anchored at {}", report["checked"], report["anchor"].as_str().unwrap_or("?"));
            ExitCode::SUCCESS
        }
        Ok((200, report)) => {
            let b = &report["firstBroken"];
            println!("BROKEN at {} (after {} ticket(s) checked): {}", b["ticketId"].as_str().unwrap_or("?"), report["checked"], b["reason"].as_str().unwrap_or("?"));
            ExitCode::from(1)
        }
        other => finish(other, pretty),
    }
}

pub fn sync(args: &ClientArgs, id: &str) -> ExitCode {
    finish(call(args, "POST", &format!("/connectors/{id}/sync"), None, &[]), |r| {
        let p = &r["pull"];
        println!("{id}: {} record(s) in {} page(s), {} new, cursor {}", p["records"], p["pages"], p["stored"], p["cursor"]);
    })
}

pub fn resolve(args: &ClientArgs, id: i64, side: Option<&str>, data: Option<&str>) -> ExitCode {
    let body = match (side, data.map(read_data).transpose()) {
        (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        (Some(side), Ok(None)) => serde_json::json!({ "side": side }).to_string(),
        (None, Ok(Some(record))) => format!("{{\"record\": {record}}}"),
        _ => {
            eprintln!("error: give --side hms|legacy or --data RECORD");
            return ExitCode::from(2);
        }
    };
    finish(call(args, "POST", &format!("/parked/{id}/resolve"), Some((body, "application/json")), &[]), |r| {
        println!("job {id}: {}", r["resolution"].as_str().unwrap_or("resolved"))
    })
}

/// Whether a `400`'s body refuses the connector document for its field `path` (the spec
/// errors in its `details`).
fn refuses_field(body: &Value, path: &str) -> bool {
    body.get("details").and_then(Value::as_array).is_some_and(|errors| errors.iter().any(|e| e.get("path").and_then(Value::as_str) == Some(path)))
}
