//! Stores as they really are, each reached with a connector file alone: a REST API that
//! assigns its own ids (create, then update and delete by the id it gave), and a
//! CouchDB-style store (revisions checked on every write, a `_changes` feed, deletions as
//! tombstones) synced both ways with HMS.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::helpers::twoway_sim::*;
use crate::helpers::*;

// ----- A REST store that assigns ids (a payment or GIS API) -----------------------------

#[derive(Default)]
struct ItemsState {
    items: BTreeMap<String, Value>,
    next: u64,
    /// (method, path, Idempotency-Key) of every write.
    writes: Vec<(String, String, Option<String>)>,
    /// Lookups by reference answered.
    lookups: u64,
}

type Items = web::Data<Arc<Mutex<ItemsState>>>;

fn key_of(req: &HttpRequest) -> Option<String> {
    req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string)
}

async fn items_create(req: HttpRequest, body: web::Json<Value>, st: Items) -> HttpResponse {
    let mut s = st.lock().unwrap();
    s.next += 1;
    let id = format!("it_{}", s.next);
    let mut item = body.into_inner();
    item["id"] = json!(id);
    s.items.insert(id.clone(), item.clone());
    s.writes.push(("POST".into(), "/v1/items".into(), key_of(&req)));
    HttpResponse::Created().json(item)
}

/// `GET /v1/items?reference=R`: `{ "data": [items with that reference] }`.
async fn items_find(req: HttpRequest, st: Items) -> HttpResponse {
    let reference = req.query_string().split('&').find_map(|kv| kv.strip_prefix("reference=")).unwrap_or_default().to_string();
    let mut s = st.lock().unwrap();
    s.lookups += 1;
    let data: Vec<Value> = s.items.values().filter(|i| i["reference"] == reference.as_str()).cloned().collect();
    HttpResponse::Ok().json(json!({ "data": data }))
}

async fn items_update(req: HttpRequest, id: web::Path<String>, body: web::Json<Value>, st: Items) -> HttpResponse {
    let mut s = st.lock().unwrap();
    s.writes.push(("PATCH".into(), format!("/v1/items/{id}"), key_of(&req)));
    let Some(item) = s.items.get_mut(id.as_str()) else { return HttpResponse::NotFound().json(json!({"error": "no such item"})) };
    merge(item, &body);
    HttpResponse::Ok().json(item.clone())
}

async fn items_delete(req: HttpRequest, id: web::Path<String>, st: Items) -> HttpResponse {
    let mut s = st.lock().unwrap();
    s.writes.push(("DELETE".into(), format!("/v1/items/{id}"), key_of(&req)));
    match s.items.remove(id.as_str()) {
        Some(_) => HttpResponse::Ok().json(json!({"id": *id, "deleted": true})),
        None => HttpResponse::NotFound().json(json!({"error": "no such item"})),
    }
}

#[actix_web::test]
async fn a_store_that_assigns_ids_is_created_in_then_updated_and_deleted_by_its_id() {
    let state: Arc<Mutex<ItemsState>> = Arc::default();
    let data = state.clone();
    let base = crate::serve_local!(move || {
        App::new()
            .app_data(web::Data::new(data.clone()))
            .route("/v1/items", web::post().to(items_create))
            .route("/v1/items", web::get().to(items_find))
            .route("/v1/items/{id}", web::patch().to(items_update))
            .route("/v1/items/{id}", web::delete().to(items_delete))
    });
    let yaml = format!(
        r#"id: invoices
type: outbound
trigger: {{ topic: [invoice.updated, invoice.deleted] }}
key: "{{{{ invoiceId }}}}"
deleted: topic == "invoice.deleted"
map:
  create:
    method: POST
    url: "{base}/v1/items"
    idField: id
    body: {{ reference: "{{{{ invoiceId }}}}", amount: "{{{{ amount }}}}" }}
    match: {{ url: "{base}/v1/items?reference={{{{ invoiceId }}}}", records: "$.data" }}
  to:
    method: PATCH
    url: "{base}/v1/items/{{{{ link.externalId }}}}"
    body: {{ amount: "{{{{ amount }}}}" }}
  delete:
    method: DELETE
    url: "{base}/v1/items/{{{{ link.externalId }}}}"
retry: {{ max: 3, backoffMs: 10 }}
"#
    );
    let dir = temp_dir("stores-ids");
    std::fs::write(dir.join("connectors").join("invoices.yaml"), yaml).unwrap();
    let app = TestApp::spawn(test_settings(&dir)).await;
    app.wait_state("invoices", "running").await;

    app.publish("invoice.updated", json!({"invoiceId": "INV-1", "amount": 120})).await;
    app.publish("invoice.updated", json!({"invoiceId": "INV-2", "amount": 7})).await;
    app.wait_tickets("connector=invoices&status=completed", 2).await;
    app.publish("invoice.updated", json!({"invoiceId": "INV-1", "amount": 150})).await;
    app.wait_tickets("connector=invoices&status=completed", 3).await;
    app.publish("invoice.deleted", json!({"invoiceId": "INV-2"})).await;
    app.wait_tickets("connector=invoices&status=completed", 4).await;

    // An invoice the store already has (made by hand, say) is found by its reference and
    // linked: updated, not created again.
    state.lock().unwrap().items.insert("it_pre".into(), json!({"id": "it_pre", "reference": "INV-9", "amount": 1}));
    app.publish("invoice.updated", json!({"invoiceId": "INV-9", "amount": 9})).await;
    app.wait_tickets("connector=invoices&status=completed", 5).await;

    // A create that landed while its outcome could not be stored (as after a crash) is
    // found by the retry's lookup: linked, one item.
    use sea_orm::ConnectionTrait;
    let db = &app.state().db;
    db.execute_unprepared("CREATE TRIGGER refuse_tickets BEFORE INSERT ON sync_tickets BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END").await.unwrap();
    app.publish("invoice.updated", json!({"invoiceId": "INV-3", "amount": 30})).await;
    poll_until("INV-3 created", WAIT, || async { state.lock().unwrap().items.values().any(|i| i["reference"] == "INV-3").then_some(()) }).await;
    let lookups = state.lock().unwrap().lookups;
    poll_until("the retry's lookup", WAIT, || async { (state.lock().unwrap().lookups > lookups).then_some(()) }).await;
    db.execute_unprepared("DROP TRIGGER refuse_tickets").await.unwrap();
    app.wait_tickets("connector=invoices&status=completed", 6).await;

    let s = state.lock().unwrap();
    assert_eq!(s.items.values().filter(|i| i["reference"] == "INV-3").count(), 1, "created once: {:?}", s.items);
    assert_eq!(s.items["it_pre"]["amount"], 9, "the existing item was updated: {:?}", s.items);
    let paths: Vec<(String, String)> = s.writes.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    let ids: BTreeMap<String, String> = s.items.values().map(|i| (i["reference"].as_str().unwrap().to_string(), i["id"].as_str().unwrap().to_string())).collect();
    let it1 = ids.get("INV-1").cloned().expect("INV-1 created");
    assert!(paths.contains(&("PATCH".into(), format!("/v1/items/{it1}"))), "the update used the id the store gave: {paths:?}");
    assert_eq!(paths.iter().filter(|(m, _)| m == "POST").count(), 3, "INV-1, INV-2, INV-3 created once each, INV-9 never: {paths:?}");
    assert!(paths.contains(&("PATCH".into(), "/v1/items/it_pre".into())), "{paths:?}");
    assert!(paths.iter().any(|(m, p)| m == "DELETE" && p.starts_with("/v1/items/it_")), "{paths:?}");
    assert!(!ids.contains_key("INV-2"), "INV-2 deleted by its id: {:?}", s.items);
    assert_eq!(s.items[&it1]["amount"], 150);
    assert!(s.writes.iter().all(|(_, _, k)| k.as_deref().is_some_and(|k| k.starts_with("invoices:"))), "every write carries a stable Idempotency-Key (a create retried after a crash is not made twice): {:?}", s.writes);
}

// ----- A CouchDB-style store ------------------------------------------------------------

#[derive(Default)]
struct CouchState {
    docs: BTreeMap<String, Value>,
    revs: BTreeMap<String, u64>,
    /// Shared with HMS, so versions on both sides compare.
    clock: LogicalClock,
    writes: u64,
    conflicts: u64,
    /// A ranger's edit that lands right after the next read of that document.
    after_read: Option<(String, Value)>,
}

type Couch = web::Data<Arc<Mutex<CouchState>>>;

fn rev_text(n: u64) -> String {
    format!("{n}-{:08x}", n.wrapping_mul(0x9E37_79B9))
}

impl CouchState {
    /// Stores `doc` as the next revision of `id`, stamped with the store's own clock.
    fn put(&mut self, id: &str, mut doc: Value) -> Value {
        let t = self.clock.tick();
        let n = self.revs.get(id).copied().unwrap_or(0) + 1;
        self.revs.insert(id.to_string(), n);
        doc["_id"] = json!(id);
        doc["_rev"] = json!(rev_text(n));
        doc["modified"] = json!(t);
        self.docs.insert(id.to_string(), doc.clone());
        doc
    }

    fn live(&self, id: &str) -> Option<&Value> {
        self.docs.get(id).filter(|d| d.get("_deleted").is_none())
    }
}

async fn couch_get(id: web::Path<String>, st: Couch) -> HttpResponse {
    let mut s = st.lock().unwrap();
    let answer = match s.live(&id) {
        Some(d) => HttpResponse::Ok().json(d),
        None => HttpResponse::NotFound().json(json!({"error": "not_found", "reason": "deleted"})),
    };
    if s.after_read.as_ref().is_some_and(|(i, _)| *i == *id) {
        let (_, changes) = s.after_read.take().unwrap();
        let mut doc = s.live(&id).cloned().unwrap_or_default();
        merge(&mut doc, &changes);
        s.put(&id, doc);
    }
    answer
}

/// A write must name the current revision (none for a new document), else 409.
async fn couch_put(id: web::Path<String>, body: web::Json<Value>, st: Couch) -> HttpResponse {
    let mut s = st.lock().unwrap();
    let current = s.live(&id).and_then(|d| d["_rev"].as_str()).map(str::to_string);
    let given = body.get("_rev").and_then(Value::as_str).map(str::to_string);
    if current != given {
        s.conflicts += 1;
        return HttpResponse::Conflict().json(json!({"error": "conflict", "reason": "Document update conflict."}));
    }
    s.writes += 1;
    let doc = s.put(&id, body.into_inner());
    HttpResponse::Created().json(json!({"ok": true, "id": *id, "rev": doc["_rev"]}))
}

async fn couch_delete(req: HttpRequest, id: web::Path<String>, st: Couch) -> HttpResponse {
    let mut s = st.lock().unwrap();
    let rev = req.query_string().split('&').find_map(|kv| kv.strip_prefix("rev=")).map(str::to_string);
    let current = s.live(&id).and_then(|d| d["_rev"].as_str()).map(str::to_string);
    if current.is_none() {
        return HttpResponse::NotFound().json(json!({"error": "not_found"}));
    }
    if current != rev {
        s.conflicts += 1;
        return HttpResponse::Conflict().json(json!({"error": "conflict"}));
    }
    s.writes += 1;
    s.put(&id, json!({ "_deleted": true }));
    HttpResponse::Ok().json(json!({"ok": true}))
}

/// `_changes?since=N&include_docs=true`: every document (tombstones too) modified at or
/// after N, oldest first, each as `{ id, doc }`.
async fn couch_changes(req: HttpRequest, st: Couch) -> HttpResponse {
    let since = req.query_string().split('&').find_map(|kv| kv.strip_prefix("since=")).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let s = st.lock().unwrap();
    let mut docs: Vec<&Value> = s.docs.values().filter(|d| d["modified"].as_u64().unwrap_or(0) >= since).collect();
    docs.sort_by_key(|d| d["modified"].as_u64());
    let results: Vec<Value> = docs.iter().map(|d| json!({ "id": d["_id"], "doc": d })).collect();
    HttpResponse::Ok().json(json!({ "results": results, "last_seq": s.clock.now() }))
}

fn couch_connector(couch: &str, hms: &str, token_var: &str) -> String {
    format!(
        r#"id: couch-shifts
type: two-way
trigger:
  topic: shift.changed
  webhook: {{ path: /webhook/hms-couch, verify: {{ scheme: token, secret: "${{{token_var}}}" }} }}
key: "{{{{ id }}}}"
deleted: object.deleted == true or object._deleted == true
mapping: {{ id: _id, startAt: start, assignee: ranger, updatedAt: modified }}
map:
  to:
    method: PUT
    url: "{couch}/shifts/{{{{ id }}}}"
    body: {{ _rev: "{{{{ current._rev }}}}", start: "{{{{ startAt }}}}", ranger: "{{{{ assignee }}}}" }}
  delete: {{ method: DELETE, url: "{couch}/shifts/{{{{ id }}}}?rev={{{{ current._rev }}}}" }}
  hms: {{ method: PATCH, url: "{hms}/api/shifts/{{{{ id }}}}" }}
  hmsDelete: {{ method: DELETE, url: "{hms}/api/shifts/{{{{ id }}}}" }}
source:
  pull:
    url: "{couch}/shifts/_changes?since={{{{ cursor }}}}&include_docs=true"
    every: 1h
    records: "$.results[*].doc"
    idField: _id
    cursorField: modified
    initialCursor: 0
resolve:
  policy: last-writer-wins
  fetch:
    legacy: {{ url: "{couch}/shifts/{{{{ id }}}}" }}
    hms: {{ url: "{hms}/api/shifts/{{{{ id }}}}" }}
retry: {{ max: 4, backoffMs: 10, on: [408, 429, 5xx] }}
"#
    )
}

#[actix_web::test]
async fn a_couchdb_style_store_syncs_both_ways_with_revisions_and_deletes() {
    let token_var = "STORES_COUCH_HMS_TOKEN";
    let token = format!("token-for-{token_var}");
    unsafe { std::env::set_var(token_var, &token) };
    let couch_state: Arc<Mutex<CouchState>> = Arc::default();
    let data = couch_state.clone();
    let couch = crate::serve_local!(move || {
        App::new()
            .app_data(web::Data::new(data.clone()))
            .route("/shifts/_changes", web::get().to(couch_changes))
            .route("/shifts/{id}", web::get().to(couch_get))
            .route("/shifts/{id}", web::put().to(couch_put))
            .route("/shifts/{id}", web::delete().to(couch_delete))
    });
    let clock = couch_state.lock().unwrap().clock.clone();
    let hms = FakeHms::start(clock.clone()).await;
    hms.behave(Behaviour { restamp: true, precision: 1, revisions: false });
    for id in [1u64, 2] {
        hms.seed(json!({"id": id.to_string(), "startAt": "08:00", "assignee": "Ana", "updatedAt": 0}));
    }
    let dir = temp_dir("stores-couch");
    std::fs::write(dir.join("connectors").join("couch.yaml"), couch_connector(&couch, &hms.base, token_var)).unwrap();
    let app = TestApp::spawn(test_settings(&dir)).await;
    app.wait_state("couch-shifts", "running").await;
    hms.echo_to(&format!("{}/webhook/hms-couch", app.base), &token);
    let sync = || async {
        let (code, body) = app.call("POST", "/connectors/couch-shifts/sync", None).await;
        assert_eq!(code, 200, "{body}");
    };
    let couch_doc = |id: &str| couch_state.lock().unwrap().live(id).cloned();
    let ranger = |id: &str, who: &str| {
        let mut s = couch_state.lock().unwrap();
        let mut doc = s.live(id).cloned().expect("a live document");
        doc["ranger"] = json!(who);
        s.put(id, doc);
    };

    // HMS → Couch: both shifts are created there (no revision yet), then updated with it.
    for id in [1u64, 2] {
        let s = hms.edit(id, json!({"id": id.to_string(), "startAt": "07:00"}));
        assert_eq!(hms.push(&s).await, 200);
    }
    poll_until("both shifts in the Couch store", WAIT, || async { (couch_doc("1").is_some() && couch_doc("2").is_some()).then_some(()) }).await;
    let s = hms.edit(1, json!({"startAt": "06:00"}));
    assert_eq!(hms.push(&s).await, 200);
    let doc = poll_until("shift 1 updated with its revision", WAIT, || async { couch_doc("1").filter(|d| d["start"] == "06:00") }).await;
    assert!(doc["_rev"].as_str().unwrap().starts_with("2-"), "{doc}");

    // Couch → HMS: a ranger's edit comes through the _changes feed; HMS's echo is skipped.
    ranger("1", "Bo");
    sync().await;
    poll_until("the ranger's edit in HMS", WAIT, || async { hms.shift(1).filter(|s| s["assignee"] == "Bo") }).await;
    // The sync pulled shift 2 too (our own write, skipped as an echo after a read of it):
    // its job must be over before the ranger's next edit waits for "the next read" of it,
    // or that read is this job's and the edit lands with no stale write to refuse.
    app.wait_queue_empty("couch-shifts").await;

    // A ranger edits shift 2 between the service's read and its write: the store refuses
    // the stale revision (409), the service reads again and decides again. The ranger's
    // edit is the later one: it wins on both sides, nothing is overwritten.
    couch_state.lock().unwrap().after_read = Some(("2".into(), json!({"ranger": "Cy"})));
    let s = hms.edit(2, json!({"startAt": "05:00"}));
    assert_eq!(hms.push(&s).await, 200);
    poll_until("shift 2 settled on the ranger's edit", WAIT, || async {
        let d = couch_doc("2")?;
        let h = hms.shift(2)?;
        (d["ranger"] == "Cy" && h["assignee"] == "Cy" && d["start"] == h["startAt"]).then_some(())
    })
    .await;
    assert!(couch_state.lock().unwrap().conflicts >= 1, "the stale write was refused");

    // Deletes both ways: Couch deletes shift 1 (a tombstone in the feed) → HMS deletes it;
    // HMS deletes shift 2 → the store deletes it with its revision.
    {
        let mut s = couch_state.lock().unwrap();
        s.put("1", json!({ "_deleted": true }));
    }
    sync().await;
    poll_until("shift 1 deleted in HMS", WAIT, || async { hms.shift(1).is_none().then_some(()) }).await;
    let gone = hms.delete(2);
    assert_eq!(hms.push(&gone).await, 200);
    poll_until("shift 2 deleted in the store", WAIT, || async { couch_doc("2").is_none().then_some(()) }).await;
    sync().await;
    let tickets = app.wait_tickets("connector=couch-shifts&status=completed", 6).await;
    // Counted with every job settled, before and after one more sync: a count read while a
    // job is still pending could pass however many tickets came later.
    app.wait_queue_empty("couch-shifts").await;
    let quiet = app.tickets("connector=couch-shifts").await.len();
    sync().await;
    poll_until("no echo loop", WAIT, || async { (hms.echoes().0 == hms.echoes().1).then_some(()) }).await;
    app.wait_queue_empty("couch-shifts").await;
    assert!(app.tickets("connector=couch-shifts").await.len() <= quiet + 2, "only the feed's tombstone echoes may follow: {tickets:#?}");
    assert!(app.parked("couch-shifts").await.is_empty(), "nothing parked");
}

// ----- HMS numbering the records we create there ---------------------------------------

#[derive(Default)]
struct NumberingState {
    /// HMS permits by the id HMS gave them.
    permits: BTreeMap<String, Value>,
    next: u64,
    /// The crew calendar's events by their uid.
    events: BTreeMap<String, Value>,
    /// (system, method, path) of every write.
    writes: Vec<(&'static str, String, String)>,
    /// Lookups by `legacyRef` answered.
    lookups: u64,
}

type Numbering = web::Data<Arc<Mutex<NumberingState>>>;

async fn permit_create(body: web::Json<Value>, st: Numbering) -> HttpResponse {
    let mut s = st.lock().unwrap();
    s.next += 1;
    let id = format!("P-{}", s.next);
    let mut permit = body.into_inner();
    permit["id"] = json!(id);
    s.permits.insert(id.clone(), permit.clone());
    s.writes.push(("hms", "POST".into(), "/api/permits".into()));
    HttpResponse::Created().json(permit)
}

async fn permit_find(req: HttpRequest, st: Numbering) -> HttpResponse {
    let wanted = req.query_string().split('&').find_map(|kv| kv.strip_prefix("legacyRef=")).unwrap_or_default().to_string();
    let mut s = st.lock().unwrap();
    s.lookups += 1;
    let data: Vec<Value> = s.permits.values().filter(|p| p["legacyRef"] == wanted.as_str()).cloned().collect();
    HttpResponse::Ok().json(json!({ "data": data }))
}

async fn permit_get(id: web::Path<String>, st: Numbering) -> HttpResponse {
    match st.lock().unwrap().permits.get(id.as_str()) {
        Some(p) => HttpResponse::Ok().json(p),
        None => HttpResponse::NotFound().json(json!({"error": "no such permit"})),
    }
}

async fn permit_patch(id: web::Path<String>, body: web::Json<Value>, st: Numbering) -> HttpResponse {
    let mut s = st.lock().unwrap();
    s.writes.push(("hms", "PATCH".into(), format!("/api/permits/{id}")));
    let Some(p) = s.permits.get_mut(id.as_str()) else { return HttpResponse::NotFound().json(json!({"error": "no such permit"})) };
    merge(p, &body);
    HttpResponse::Ok().json(p.clone())
}

async fn event_get(uid: web::Path<String>, st: Numbering) -> HttpResponse {
    match st.lock().unwrap().events.get(uid.as_str()) {
        Some(e) => HttpResponse::Ok().json(e),
        None => HttpResponse::NotFound().json(json!({"error": "no such event"})),
    }
}

async fn event_put(uid: web::Path<String>, body: web::Json<Value>, st: Numbering) -> HttpResponse {
    let mut s = st.lock().unwrap();
    s.writes.push(("cal", "PUT".into(), format!("/cal/{uid}")));
    s.events.insert(uid.to_string(), body.into_inner());
    HttpResponse::Ok().json(json!({"ok": true}))
}

#[actix_web::test]
async fn hms_numbers_the_records_we_create_there_and_later_changes_use_its_number() {
    let state: Arc<Mutex<NumberingState>> = Arc::default();
    let data = state.clone();
    let base = crate::serve_local!(move || {
        App::new()
            .app_data(web::Data::new(data.clone()))
            .route("/api/permits", web::post().to(permit_create))
            .route("/api/permits", web::get().to(permit_find))
            .route("/api/permits/{id}", web::get().to(permit_get))
            .route("/api/permits/{id}", web::patch().to(permit_patch))
            .route("/cal/{uid}", web::get().to(event_get))
            .route("/cal/{uid}", web::put().to(event_put))
    });
    let yaml = format!(
        r#"id: crew-cal
type: two-way
trigger: {{ topic: permit.changed }}
key: "{{{{ id }}}}"
mapping: {{ legacyRef: uid, title: summary }}
map:
  to:
    method: PUT
    url: "{base}/cal/{{{{ link.externalId }}}}"
    body: {{ uid: "{{{{ link.externalId }}}}", summary: "{{{{ title }}}}" }}
  hms: {{ method: PATCH, url: "{base}/api/permits/{{{{ link.hmsId }}}}" }}
  hmsCreate:
    method: POST
    url: "{base}/api/permits"
    idField: id
    match: {{ url: "{base}/api/permits?legacyRef={{{{ legacyRef }}}}", records: "$.data" }}
source:
  webhook: {{ path: /webhook/crew-cal, verify: {{ scheme: none }}, idField: uid }}
resolve:
  policy: last-writer-wins
  fetch:
    hms: {{ url: "{base}/api/permits/{{{{ link.hmsId }}}}" }}
    legacy: {{ url: "{base}/cal/{{{{ link.externalId }}}}" }}
retry: {{ max: 4, backoffMs: 10 }}
"#
    );
    let dir = temp_dir("stores-hms-ids");
    std::fs::write(dir.join("connectors").join("crew-cal.yaml"), yaml).unwrap();
    let app = TestApp::spawn(test_settings(&dir)).await;
    app.wait_state("crew-cal", "running").await;
    let push = |event: Value| {
        let app = &app;
        let state = state.clone();
        async move {
            state.lock().unwrap().events.insert(event["uid"].as_str().unwrap().to_string(), event.clone());
            let (code, body) = app.call("POST", "/webhook/crew-cal", Some(&event.to_string())).await;
            assert_eq!(code, 200, "{body}");
        }
    };
    let permit_of = |uid: &str| state.lock().unwrap().permits.values().find(|p| p["legacyRef"] == uid).cloned();

    // A crew event new to HMS is created there; HMS gives it the number P-1.
    push(json!({"uid": "E1", "summary": "Dig at Elm"})).await;
    let p1 = poll_until("E1 created in HMS", WAIT, || async { permit_of("E1") }).await;
    assert_eq!(p1["id"], "P-1");
    app.wait_tickets("connector=crew-cal&status=completed", 1).await;

    // HMS announces the permit under its own number: known as ours, not written back.
    app.publish("permit.changed", json!({"id": "P-1", "legacyRef": "E1", "title": "Dig at Elm"})).await;
    app.wait_tickets("connector=crew-cal", 2).await;
    // An edit in HMS goes to the calendar event it is linked to.
    state.lock().unwrap().permits.get_mut("P-1").unwrap()["title"] = json!("Dig at Oak");
    app.publish("permit.changed", json!({"id": "P-1", "legacyRef": "E1", "title": "Dig at Oak"})).await;
    poll_until("the HMS edit in the calendar", WAIT, || async { state.lock().unwrap().events.get("E1").filter(|e| e["summary"] == "Dig at Oak").cloned() }).await;
    // A calendar edit goes to HMS by the number HMS gave (queued under it: one record, one key).
    push(json!({"uid": "E1", "summary": "Dig at Ash"})).await;
    poll_until("the calendar edit in HMS", WAIT, || async { permit_of("E1").filter(|p| p["title"] == "Dig at Ash") }).await;
    let tickets = app.wait_tickets("connector=crew-cal&status=completed", 3).await;
    assert!(tickets.iter().any(|t| t["hmsId"].as_str().is_some_and(|h| h.ends_with("/api/permits/P-1")) && t["externalId"] == "E1"), "the ticket names both ids: {tickets:#?}");

    // A create that HMS answered while its outcome could not be stored (as after a crash):
    // the retry finds P-2 by the calendar's uid and links it; HMS holds one permit for E2.
    use sea_orm::ConnectionTrait;
    let db = &app.state().db;
    db.execute_unprepared("CREATE TRIGGER refuse_tickets BEFORE INSERT ON sync_tickets BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END").await.unwrap();
    push(json!({"uid": "E2", "summary": "Fence at Birch"})).await;
    poll_until("E2 created in HMS", WAIT, || async { permit_of("E2") }).await;
    let lookups = state.lock().unwrap().lookups;
    poll_until("the retry's lookup", WAIT, || async { (state.lock().unwrap().lookups > lookups).then_some(()) }).await;
    db.execute_unprepared("DROP TRIGGER refuse_tickets").await.unwrap();
    let done = app.wait_tickets("connector=crew-cal&status=completed", 4).await;
    assert!(done.iter().any(|t| t["externalId"] == "E2" && t["reason"].as_str().is_some_and(|r| r.contains("already holds"))), "the retry completes the create that landed: {done:#?}");
    push(json!({"uid": "E2", "summary": "Fence at Pine"})).await;
    poll_until("the E2 edit in HMS", WAIT, || async { permit_of("E2").filter(|p| p["title"] == "Fence at Pine") }).await;
    app.wait_tickets("connector=crew-cal&status=completed", 5).await;

    let s = state.lock().unwrap();
    assert_eq!(s.permits.len(), 2, "one permit per calendar event: {:?}", s.permits);
    let writes: Vec<String> = s.writes.iter().map(|(sys, m, p)| format!("{sys} {m} {p}")).collect();
    assert_eq!(writes.iter().filter(|w| w.starts_with("hms POST")).count(), 2, "{writes:?}");
    assert!(writes.contains(&"hms PATCH /api/permits/P-1".to_string()) && writes.contains(&"hms PATCH /api/permits/P-2".to_string()), "{writes:?}");
    assert_eq!(writes.iter().filter(|w| w.starts_with("cal ")).count(), 1, "the calendar was written once (the HMS edit), never with an echo: {writes:?}");
    assert_eq!(s.events["E1"]["summary"], "Dig at Ash");
}
