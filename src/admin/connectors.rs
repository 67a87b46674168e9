//! `/connectors`: list, register, replace, delete, status, pause, resume, restart
//! (shaped like Kafka Connect's REST API).

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Principal, audit};
use super::error::ApiError;
use super::AppState;
use crate::actors::messages::{ChildKind, Fault};
use crate::actors::registry::{AllStatus, FaultConnector, GetShared, List, Lookup, PauseConnector, Register, Remove};
use crate::actors::supervisor::{ConnectorSupervisor, GetStatus, Restart};
use crate::spec::{self, LoadedSpec};
use crate::storage;


/// `?expand=status,info`, or repeated (`?expand=status&expand=info`), as in Kafka Connect.
pub async fn list(state: web::Data<AppState>, req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string()).map_err(|e| ApiError::bad_request(format!("bad query: {e}")))?.into_inner();
    let mut parts: Vec<String> = Vec::new();
    for (key, value) in pairs {
        if key != "expand" {
            return Err(ApiError::bad_request(format!("unknown query parameter `{key}`: expected expand")));
        }
        for part in value.split(',').filter(|_| !value.is_empty()) {
            if !matches!(part, "status" | "info") {
                return Err(ApiError::bad_request(format!("unknown `expand` value `{part}`: expected status, info or both (status,info)")));
            }
            parts.push(part.to_string());
        }
    }
    let (want_status, want_info) = (parts.iter().any(|p| p == "status"), parts.iter().any(|p| p == "info"));
    let infos = state.registry.send(List).await?;
    if !want_status && !want_info {
        return Ok(HttpResponse::Ok().json(infos.iter().map(|i| &i.id).collect::<Vec<_>>()));
    }
    let statuses = if want_status { state.registry.send(AllStatus).await? } else { Vec::new() };
    let mut out = BTreeMap::new();
    for info in infos {
        let mut entry = serde_json::Map::new();
        if want_info {
            entry.insert("info".into(), serde_json::to_value(&info).unwrap_or_default());
        }
        if let Some(s) = statuses.iter().find(|s| s.id == info.id) {
            entry.insert("status".into(), serde_json::to_value(s).unwrap_or_default());
        }
        out.insert(info.id, entry);
    }
    Ok(HttpResponse::Ok().json(out))
}

pub async fn get(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let infos = state.registry.send(List).await?;
    let info = infos.into_iter().find(|i| i.id == *id).ok_or_else(|| not_found(&id))?;
    Ok(HttpResponse::Ok().json(info))
}

/// Parses a YAML or JSON connector document sent in a request body.
fn parse_body(body: &[u8]) -> Result<LoadedSpec, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the connector document is not UTF-8"))?;
    let spec = spec::parse("<request>", text)?;
    Ok(LoadedSpec { spec, source: text.to_string(), origin: "<api>".to_string() })
}

pub async fn create(state: web::Data<AppState>, who: Principal, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let loaded = parse_body(&body)?;
    let id = loaded.spec.id.clone();
    let config = serde_json::to_value(&loaded.spec).unwrap_or_default();
    state.registry.send(Register { loaded, replace: false }).await??;
    audit(&state, &who, "connector.create", &id, None).await;
    Ok(HttpResponse::Created().insert_header(("Location", format!("/connectors/{id}"))).json(json!({ "id": id, "config": config })))
}

pub async fn replace(state: web::Data<AppState>, who: Principal, id: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    // A file connector sent as its file now holds it (`hms-sync deploy` of the service's own
    // file, seed 002): that file is applied as a reload does. Any other body for it is
    // refused: the file owns the id.
    if let Some(path) = state.registry.send(crate::actors::registry::FileOf(id.to_string())).await? {
        let answer = deploy_own_file(&state, &id, &path, &body).await?;
        audit(&state, &who, "connector.deploy_file", &id, Some(json!({ "file": path }))).await;
        return Ok(answer);
    }
    let loaded = parse_body(&body)?;
    if loaded.spec.id != *id {
        return Err(ApiError::bad_request(format!("the document's id `{}` differs from the URL's `{id}`", loaded.spec.id)));
    }
    let config = serde_json::to_value(&loaded.spec).unwrap_or_default();
    let created = state.registry.send(Register { loaded, replace: true }).await??;
    let (status, result) = if created { (StatusCode::CREATED, "created") } else { (StatusCode::OK, "replaced") };
    audit(&state, &who, if created { "connector.create" } else { "connector.replace" }, &id, None).await;
    Ok(HttpResponse::build(status).json(json!({ "id": *id, "result": result, "config": config })))
}

/// `PUT` of a file connector with its file's own text: the folder is reloaded and the
/// answer says what became of that connector (`unchanged`, `replaced`).
async fn deploy_own_file(state: &AppState, id: &str, path: &str, body: &[u8]) -> Result<HttpResponse, ApiError> {
    let on_disk = std::fs::read(path).map_err(|e| ApiError::new(StatusCode::CONFLICT, format!("connector `{id}` comes from the file {path}, which cannot be read: {e}")))?;
    if on_disk != body {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("connector `{id}` comes from the file {path}, and this document differs from it; change the file instead (then reload: SIGHUP, `up --watch` or POST /reload)"),
        ));
    }
    let report = reload_folder(state).await?;
    if let Some(refused) = report.refused.iter().find(|r| r.file == path) {
        return Err(ApiError::bad_request(format!("{path} is not valid; the running version is kept: {}", refused.reason)));
    }
    let has = |list: &[String]| list.iter().any(|i| i == id);
    let result = if has(&report.replaced) { "replaced" } else if has(&report.added) { "created" } else { "unchanged" };
    let config = match state.registry.send(GetShared(id.to_string())).await? {
        Some(shared) => serde_json::to_value(&*shared.spec).unwrap_or_default(),
        None => serde_json::Value::Null,
    };
    Ok(HttpResponse::Ok().json(json!({ "id": id, "result": result, "config": config })))
}

pub async fn delete(state: web::Data<AppState>, who: Principal, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.registry.send(Remove(id.to_string())).await??;
    audit(&state, &who, "connector.delete", &id, None).await;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /reload`: the connectors folder applied again (see
/// [`reload`](crate::actors::registry::reload)).
pub async fn reload(state: web::Data<AppState>, who: Principal) -> Result<HttpResponse, ApiError> {
    let report = reload_folder(&state).await?;
    audit(&state, &who, "connectors.reload", "connectors", serde_json::to_value(&report).ok()).await;
    Ok(HttpResponse::Ok().json(report))
}

/// The connectors folder applied again; a failure to do so is the service's (503).
async fn reload_folder(state: &AppState) -> Result<crate::actors::registry::reload::ReloadReport, ApiError> {
    crate::actors::registry::reload::reload_files(&state.registry, &state.db, &state.connectors_dir)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("cannot reload the connectors folder: {e}")))
}

pub async fn status(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ask(&state, &id, || GetStatus).await?))
}

pub async fn pause(state: web::Data<AppState>, who: Principal, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    set_paused(state, who, id.into_inner(), true).await
}

pub async fn resume(state: web::Data<AppState>, who: Principal, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    set_paused(state, who, id.into_inner(), false).await
}

async fn set_paused(state: web::Data<AppState>, who: Principal, id: String, paused: bool) -> Result<HttpResponse, ApiError> {
    state.registry.send(PauseConnector { id: id.clone(), paused }).await??;
    audit(&state, &who, if paused { "connector.pause" } else { "connector.resume" }, &id, None).await;
    Ok(HttpResponse::Accepted().json(json!({ "id": id, "paused": paused })))
}

/// Restarts the connector here, and on every other instance of a cluster (told through
/// the database: `NOTIFY hms_sync, 'restart …'`).
pub async fn restart(state: web::Data<AppState>, who: Principal, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    ask(&state, &id, || Restart).await?;
    audit(&state, &who, "connector.restart", &id, None).await;
    storage::notify(&state.db, &crate::actors::cluster::Signal::Restart { from: state.cluster.instance_id.clone(), connector: id.to_string() }.to_string()).await?;
    Ok(HttpResponse::Accepted().json(json!({ "id": *id, "restarting": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultBody {
    pub child: ChildKind,
    pub fault: Fault,
}

/// Test hook (only routed with `server.fault_injection = true`).
pub async fn fault(state: web::Data<AppState>, id: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let body: FaultBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("expected {{\"child\": \"pusher|puller|retrier\", \"fault\": \"panic|stop|arbiter\"}}: {e}"))
    })?;
    state.registry.send(Lookup(id.clone())).await?.ok_or_else(|| not_found(&id))?;
    state
        .registry
        .send(FaultConnector { id: id.clone(), child: body.child, fault: body.fault })
        .await?
        .map_err(ApiError::bad_request)?;
    Ok(HttpResponse::Accepted().json(json!({ "id": *id, "injected": body.fault })))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("connector `{id}` does not exist"))
}

/// Asks connector `id`'s supervisor. A connector deleted between the lookup and its
/// answer (its supervisor stopped) is looked up once more: created again meanwhile, the
/// new one answers; else it does not exist for the caller: 404, never a server error.
async fn ask<M>(state: &AppState, id: &str, msg: impl Fn() -> M) -> Result<M::Result, ApiError>
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
    ConnectorSupervisor: actix::Handler<M>,
{
    for _ in 0..2 {
        let addr = state.registry.send(Lookup(id.to_string())).await?.ok_or_else(|| not_found(id))?;
        if let Ok(answer) = addr.send(msg()).await {
            return Ok(answer);
        }
    }
    Err(ApiError::not_found(format!("connector `{id}` does not exist (it was removed while the request waited)")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestQuery {
    /// The topic the event is published on; the connector's first topic by default.
    pub topic: Option<String>,
}

/// Dry run: the request this connector would send for the event in the body (secrets
/// masked), or why it would be filtered or parked. Sends nothing, stores nothing.
pub async fn test(state: web::Data<AppState>, id: web::Path<String>, q: web::Query<TestQuery>, req: actix_web::HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let event: serde_json::Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the event is not valid JSON: {e}")))?;
    let shared = state.registry.send(GetShared(id.clone())).await?.ok_or_else(|| not_found(&id))?;
    let event_id = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("<event-id>");
    let mut run = crate::mapping::dry_run::dry_run(&shared.spec, q.topic.as_deref(), &event, event_id);
    run.decision = crate::sync::explain::explain(&shared.spec, &event, None);
    Ok(HttpResponse::Ok().json(run))
}

/// Run one reconciliation now (the seed's `svc:syncNow`): pull the change feed from the
/// cursor and store what changed; answers with what the pull did.
///
/// On a cluster, when another instance holds the connector's pull lease, the request is
/// passed on to it (through the database: `NOTIFY hms_sync, 'sync …'`) and answered 202
/// with the instance that pulls.
pub async fn sync(state: web::Data<AppState>, who: Principal, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    use crate::actors::puller::NotPulled;
    match ask(&state, &id, || crate::actors::supervisor::SyncNow).await? {
        Ok(report) => {
            audit(&state, &who, "connector.sync_now", &id, None).await;
            Ok(HttpResponse::Ok().json(json!({ "id": *id, "pull": report })))
        }
        Err(NotPulled::Elsewhere(holder)) => {
            storage::notify(&state.db, &crate::actors::cluster::Signal::Sync { from: state.cluster.instance_id.clone(), connector: id.to_string() }.to_string()).await?;
            audit(&state, &who, "connector.sync_now", &id, Some(json!({ "forwarded_to": holder }))).await;
            Ok(HttpResponse::Accepted().json(json!({ "id": *id, "forwarded_to": holder })))
        }
        Err(e @ NotPulled::Failed(_)) => Err(ApiError::new(StatusCode::CONFLICT, format!("connector `{id}`: {e}"))),
    }
}
