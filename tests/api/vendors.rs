//! The seed's outside tools as shipped connectors (issue 15, item 6), each against a local
//! stand-in built from the vendor's documented requests and answers, reached through
//! `delivery.redirect_to` (the connector files keep their real URLs):
//! - Stripe API 2024-06-20, invoice items (https://docs.stripe.com/api/invoiceitems):
//!   `connectors/stripe-lane-fee.yaml`;
//! - ArcGIS REST API (Enterprise 11.3 / Online), Apply Edits
//!   (https://developers.arcgis.com/rest/services-reference/enterprise/apply-edits-feature-service-layer/):
//!   `connectors/arcgis-roadwork.yaml`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::helpers::*;

fn copy_connector(dir: &std::path::Path, file: &str) {
    std::fs::copy(format!("{}/connectors/{file}", env!("CARGO_MANIFEST_DIR")), dir.join("connectors").join(file)).unwrap();
}

fn form(body: &str) -> BTreeMap<String, String> {
    form_urlencoded::parse(body.as_bytes()).into_owned().collect()
}

// ----- Stripe -------------------------------------------------------------------------

#[derive(Default)]
struct Stripe {
    items: BTreeMap<String, Value>,
    /// (method, path, form body, Idempotency-Key) of every request.
    log: Vec<(String, String, String, Option<String>)>,
}

type StripeData = web::Data<Arc<Mutex<Stripe>>>;

fn stripe_auth(req: &HttpRequest) -> Option<HttpResponse> {
    let ok = req.headers().get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer sk_test_4eC39HqLyjWDarjtT1zdp7dc");
    (!ok).then(|| HttpResponse::Unauthorized().json(json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}})))
}

fn note(st: &StripeData, req: &HttpRequest, body: &str) {
    let key = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    st.lock().unwrap().log.push((req.method().to_string(), req.path().to_string(), body.to_string(), key));
}

/// `POST /v1/invoiceitems`: answers the invoice item object, `id` "ii_…".
async fn stripe_create(req: HttpRequest, body: String, st: StripeData) -> HttpResponse {
    if let Some(refused) = stripe_auth(&req) {
        return refused;
    }
    note(&st, &req, &body);
    let f = form(&body);
    let mut s = st.lock().unwrap();
    let id = format!("ii_1MtGUt{:04}", s.items.len() + 1);
    let item = json!({"id": id, "object": "invoiceitem", "amount": f["amount"].parse::<i64>().unwrap_or(0), "currency": f["currency"], "customer": f["customer"], "description": f["description"], "metadata": {"permitId": f["metadata[permitId]"], "agency": f["metadata[agency]"]}});
    s.items.insert(id, item.clone());
    HttpResponse::Ok().json(item)
}

async fn stripe_update(req: HttpRequest, id: web::Path<String>, body: String, st: StripeData) -> HttpResponse {
    if let Some(refused) = stripe_auth(&req) {
        return refused;
    }
    note(&st, &req, &body);
    let f = form(&body);
    let mut s = st.lock().unwrap();
    let Some(item) = s.items.get_mut(id.as_str()) else { return HttpResponse::NotFound().json(json!({"error": {"type": "invalid_request_error", "message": format!("No such invoiceitem: '{id}'")}})) };
    item["amount"] = json!(f["amount"].parse::<i64>().unwrap_or(0));
    item["metadata"]["status"] = json!(f["metadata[status]"]);
    HttpResponse::Ok().json(item.clone())
}

async fn stripe_delete(req: HttpRequest, id: web::Path<String>, st: StripeData) -> HttpResponse {
    if let Some(refused) = stripe_auth(&req) {
        return refused;
    }
    note(&st, &req, "");
    match st.lock().unwrap().items.remove(id.as_str()) {
        Some(_) => HttpResponse::Ok().json(json!({"id": *id, "object": "invoiceitem", "deleted": true})),
        None => HttpResponse::NotFound().json(json!({"error": {"type": "invalid_request_error"}})),
    }
}

#[actix_web::test]
async fn stripe_lane_fee_creates_updates_and_deletes_an_invoice_item() {
    unsafe { std::env::set_var("STRIPE_SECRET_KEY", "sk_test_4eC39HqLyjWDarjtT1zdp7dc") };
    let state: Arc<Mutex<Stripe>> = Arc::default();
    let data = state.clone();
    let base = crate::serve_local!(move || {
        App::new()
            .app_data(web::Data::new(data.clone()))
            .route("/v1/invoiceitems", web::post().to(stripe_create))
            .route("/v1/invoiceitems/{id}", web::post().to(stripe_update))
            .route("/v1/invoiceitems/{id}", web::delete().to(stripe_delete))
    });
    let dir = temp_dir("vendor-stripe");
    copy_connector(&dir, "stripe-lane-fee.yaml");
    let mut settings = test_settings(&dir);
    settings.delivery.redirect_to = Some(base.clone());
    let app = TestApp::spawn(settings).await;
    let id = "stripe.lane-fee.v1";
    app.wait_state(id, "running").await;
    let fee = |cents: i64, status: &str| json!({"permitId": "RW-481", "agency": "DDOT", "status": status, "feeCents": cents, "stripeCustomer": "cus_9s6XKzkNRiz8i3"});
    app.publish("permit.fee.updated", fee(2500, "APPROVED")).await;
    app.wait_tickets(&format!("connector={id}&status=completed"), 1).await;
    app.publish("permit.fee.updated", fee(3000, "EXTENDED")).await;
    app.wait_tickets(&format!("connector={id}&status=completed"), 2).await;
    app.publish("permit.fee.cancelled", fee(3000, "CANCELLED")).await;
    app.wait_tickets(&format!("connector={id}&status=completed"), 3).await;

    let s = state.lock().unwrap();
    let (m, p, b, k) = &s.log[0];
    assert_eq!((m.as_str(), p.as_str()), ("POST", "/v1/invoiceitems"));
    assert_eq!(b, "amount=2500&currency=usd&customer=cus_9s6XKzkNRiz8i3&description=Lane+closure+fee%2C+permit+RW-481&metadata%5Bagency%5D=DDOT&metadata%5BpermitId%5D=RW-481", "byte for byte");
    assert!(k.as_deref().is_some_and(|k| k.starts_with("stripe.lane-fee.v1:")), "{k:?}");
    let (m, p, b, _) = &s.log[1];
    assert_eq!((m.as_str(), p.as_str()), ("POST", "/v1/invoiceitems/ii_1MtGUt0001"), "updated by the id Stripe gave");
    assert_eq!(b, "amount=3000&description=Lane+closure+fee%2C+permit+RW-481&metadata%5BpermitId%5D=RW-481&metadata%5Bstatus%5D=EXTENDED");
    assert_eq!((s.log[2].0.as_str(), s.log[2].1.as_str()), ("DELETE", "/v1/invoiceitems/ii_1MtGUt0001"));
    assert!(s.items.is_empty(), "deleted");
}

// ----- ArcGIS --------------------------------------------------------------------------

#[derive(Default)]
struct Arcgis {
    features: BTreeMap<i64, Value>,
    next: i64,
    /// (query string, form body) of every applyEdits.
    log: Vec<(String, String)>,
}

type ArcgisData = web::Data<Arc<Mutex<Arcgis>>>;

/// `POST …/FeatureServer/0/applyEdits`: `adds`, `updates` (JSON text) or `deletes` (ids);
/// the answer lists the results (always 200, as ArcGIS does).
async fn apply_edits(req: HttpRequest, body: String, st: ArcgisData) -> HttpResponse {
    if !req.query_string().contains("token=arcgis-test-token") {
        return HttpResponse::Ok().json(json!({"error": {"code": 498, "message": "Invalid token."}}));
    }
    let f = form(&body);
    let mut s = st.lock().unwrap();
    s.log.push((req.query_string().to_string(), body.clone()));
    let mut answer = json!({"addResults": [], "updateResults": [], "deleteResults": []});
    if let Some(adds) = f.get("adds") {
        for feature in serde_json::from_str::<Vec<Value>>(adds).unwrap_or_default() {
            s.next += 1;
            let oid = 100 + s.next;
            s.features.insert(oid, feature["attributes"].clone());
            answer["addResults"].as_array_mut().unwrap().push(json!({"objectId": oid, "globalId": null, "success": true}));
        }
    }
    if let Some(updates) = f.get("updates") {
        for feature in serde_json::from_str::<Vec<Value>>(updates).unwrap_or_default() {
            let oid = feature["attributes"]["OBJECTID"].as_i64().unwrap_or(-1);
            let ok = s.features.contains_key(&oid);
            if ok {
                s.features.insert(oid, feature["attributes"].clone());
            }
            answer["updateResults"].as_array_mut().unwrap().push(json!({"objectId": oid, "success": ok}));
        }
    }
    if let Some(deletes) = f.get("deletes") {
        for oid in deletes.split(',').filter_map(|d| d.trim().parse::<i64>().ok()) {
            let ok = s.features.remove(&oid).is_some();
            answer["deleteResults"].as_array_mut().unwrap().push(json!({"objectId": oid, "success": ok}));
        }
    }
    HttpResponse::Ok().json(answer)
}

#[actix_web::test]
async fn arcgis_roadwork_adds_updates_and_deletes_a_feature_by_its_objectid() {
    unsafe { std::env::set_var("ARCGIS_TOKEN", "arcgis-test-token") };
    let state: Arc<Mutex<Arcgis>> = Arc::default();
    let data = state.clone();
    let base = crate::serve_local!(move || {
        App::new().app_data(web::Data::new(data.clone())).route("/ddot/arcgis/rest/services/Roadwork/FeatureServer/0/applyEdits", web::post().to(apply_edits))
    });
    let dir = temp_dir("vendor-arcgis");
    copy_connector(&dir, "arcgis-roadwork.yaml");
    let mut settings = test_settings(&dir);
    settings.delivery.redirect_to = Some(base.clone());
    let app = TestApp::spawn(settings).await;
    let id = "arcgis.roadwork.v1";
    app.wait_state(id, "running").await;
    app.publish("roadwork.updated", json!({"permitId": "RW-481", "agency": "DDOT", "status": "APPROVED", "startDate": "2024-05-10"})).await;
    app.wait_tickets(&format!("connector={id}&status=completed"), 1).await;
    app.publish("roadwork.updated", json!({"permitId": "RW-481", "agency": "DDOT", "status": "ACTIVE"})).await;
    app.wait_tickets(&format!("connector={id}&status=completed"), 2).await;
    {
        let s = state.lock().unwrap();
        assert_eq!(s.features.get(&101), Some(&json!({"OBJECTID": 101, "status": "ACTIVE", "start_date": null})), "updated by its OBJECTID: {:?}", s.features);
        assert_eq!(s.log[0].1, "adds=%5B%7B%22attributes%22%3A%7B%22permit_id%22%3A%22RW-481%22%2C%22start_date%22%3A%222024-05-10%22%2C%22status%22%3A%22APPROVED%22%7D%7D%5D&f=json", "byte for byte");
        assert_eq!(s.log[0].0, "token=arcgis-test-token", "the token as a query parameter");
    }
    app.publish("roadwork.closed", json!({"permitId": "RW-481", "agency": "DDOT", "status": "CLOSED"})).await;
    app.wait_tickets(&format!("connector={id}&status=completed"), 3).await;
    let s = state.lock().unwrap();
    assert_eq!(s.log[2].1, "deletes=101&f=json");
    assert!(s.features.is_empty(), "deleted");
}

// ----- Google Calendar, with a service account ------------------------------------------

#[derive(Default)]
struct Google {
    /// The public key (PKCS#1 DER) the token endpoint checks assertions with.
    public_key: Vec<u8>,
    /// Claims of the assertions it accepted.
    assertions: Vec<Value>,
    events: BTreeMap<String, Value>,
    /// (method, path, body) of the calendar requests.
    log: Vec<(String, String, Value)>,
}

type GoogleData = web::Data<Arc<Mutex<Google>>>;

/// `POST /token` (grant_type jwt-bearer): checks the RS256 signature and the claims, as
/// https://developers.google.com/identity/protocols/oauth2/service-account#httprest says.
async fn google_token(body: String, st: GoogleData) -> HttpResponse {
    use base64::Engine;
    let f = form(&body);
    if f.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return HttpResponse::BadRequest().json(json!({"error": "unsupported_grant_type"}));
    }
    let jwt = f.get("assertion").cloned().unwrap_or_default();
    let parts: Vec<&str> = jwt.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut s = st.lock().unwrap();
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, s.public_key.clone());
    let signed = parts.len() == 3 && b64.decode(parts[2]).is_ok_and(|sig| key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig).is_ok());
    if !signed {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}));
    }
    let claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    s.assertions.push(claims);
    HttpResponse::Ok().json(json!({"access_token": "ya29.c.test-token", "expires_in": 3599, "token_type": "Bearer"}))
}

fn google_authorized(req: &HttpRequest) -> bool {
    req.headers().get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer ya29.c.test-token")
}

async fn calendar_insert(req: HttpRequest, body: web::Json<Value>, st: GoogleData) -> HttpResponse {
    if !google_authorized(&req) {
        return HttpResponse::Unauthorized().json(json!({"error": {"code": 401, "status": "UNAUTHENTICATED"}}));
    }
    let mut s = st.lock().unwrap();
    let id = format!("evt{}", s.events.len() + 1);
    let mut event = body.into_inner();
    s.log.push(("POST".into(), req.path().to_string(), event.clone()));
    event["id"] = json!(id);
    event["kind"] = json!("calendar#event");
    s.events.insert(id, event.clone());
    HttpResponse::Ok().json(event)
}

async fn calendar_patch(req: HttpRequest, path: web::Path<(String, String)>, body: web::Json<Value>, st: GoogleData) -> HttpResponse {
    if !google_authorized(&req) {
        return HttpResponse::Unauthorized().json(json!({"error": {"code": 401}}));
    }
    let mut s = st.lock().unwrap();
    s.log.push(("PATCH".into(), req.path().to_string(), body.clone()));
    let Some(event) = s.events.get_mut(&path.1) else { return HttpResponse::NotFound().json(json!({"error": {"code": 404}})) };
    for (k, v) in body.as_object().cloned().unwrap_or_default() {
        event[k] = v;
    }
    HttpResponse::Ok().json(event.clone())
}

async fn calendar_delete(req: HttpRequest, path: web::Path<(String, String)>, st: GoogleData) -> HttpResponse {
    if !google_authorized(&req) {
        return HttpResponse::Unauthorized().json(json!({"error": {"code": 401}}));
    }
    let mut s = st.lock().unwrap();
    s.log.push(("DELETE".into(), req.path().to_string(), Value::Null));
    match s.events.remove(&path.1) {
        Some(_) => HttpResponse::NoContent().finish(),
        None => HttpResponse::Gone().json(json!({"error": {"code": 410}})),
    }
}

#[actix_web::test]
async fn crew_calendar_patches_google_calendar_events_with_a_service_account() {
    let dir = temp_dir("vendor-google");
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for args in [
        &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.pem"][..],
        &["rsa", "-in", "sa.pem", "-RSAPublicKey_out", "-outform", "DER", "-out", "sa.pub.der"][..],
    ] {
        let out = std::process::Command::new("openssl").args(args).current_dir(&keys).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    unsafe {
        std::env::set_var("GOOGLE_SA_EMAIL", "hms-sync@ddot-crews.iam.gserviceaccount.com");
        std::env::set_var("GOOGLE_SA_PRIVATE_KEY", std::fs::read_to_string(keys.join("sa.pem")).unwrap());
        std::env::set_var("CREW_CALENDAR_ID", "crews@ddot.dc.gov");
    }
    let state: Arc<Mutex<Google>> = Arc::new(Mutex::new(Google { public_key: std::fs::read(keys.join("sa.pub.der")).unwrap(), ..Default::default() }));
    let data = state.clone();
    let base = crate::serve_local!(move || {
        App::new()
            .app_data(web::Data::new(data.clone()))
            .route("/token", web::post().to(google_token))
            .route("/calendar/v3/calendars/{cal}/events", web::post().to(calendar_insert))
            .route("/calendar/v3/calendars/{cal}/events/{id}", web::patch().to(calendar_patch))
            .route("/calendar/v3/calendars/{cal}/events/{id}", web::delete().to(calendar_delete))
    });
    copy_connector(&dir, "crew-calendar.yaml");
    let mut settings = test_settings(&dir);
    settings.delivery.redirect_to = Some(base.clone());
    let app = TestApp::spawn(settings).await;
    let id = "calendar.crew-shifts.v1";
    app.wait_state(id, "running").await;
    let shift = |start: &str| json!({"shiftId": "S-72", "crew": "Crew 4", "site": "RW-481 Elm St", "startAt": start, "endAt": "2024-05-10T16:00:00-04:00"});
    app.publish("crew.shift.updated", shift("2024-05-10T08:00:00-04:00")).await;
    app.wait_tickets(&format!("connector={id}&status=completed"), 1).await;
    app.publish("crew.shift.updated", shift("2024-05-10T09:00:00-04:00")).await;
    app.wait_tickets(&format!("connector={id}&status=completed"), 2).await;
    app.publish("crew.shift.cancelled", shift("2024-05-10T09:00:00-04:00")).await;
    app.wait_tickets(&format!("connector={id}&status=completed"), 3).await;

    let s = state.lock().unwrap();
    assert_eq!(s.assertions.len(), 1, "one token for the three requests: {:?}", s.assertions);
    let c = &s.assertions[0];
    assert_eq!((c["iss"].as_str(), c["scope"].as_str(), c["aud"].as_str()), (Some("hms-sync@ddot-crews.iam.gserviceaccount.com"), Some("https://www.googleapis.com/auth/calendar.events"), Some("https://oauth2.googleapis.com/token")), "{c}");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 3_600);
    let paths: Vec<String> = s.log.iter().map(|(m, p, _)| format!("{m} {p}")).collect();
    assert_eq!(paths, [
        "POST /calendar/v3/calendars/crews@ddot.dc.gov/events",
        "PATCH /calendar/v3/calendars/crews@ddot.dc.gov/events/evt1",
        "DELETE /calendar/v3/calendars/crews@ddot.dc.gov/events/evt1",
    ]);
    assert_eq!(s.log[0].2["extendedProperties"]["private"]["hmsShiftId"], "S-72");
    assert_eq!(s.log[1].2["start"], json!({"dateTime": "2024-05-10T09:00:00-04:00", "timeZone": "America/New_York"}));
    assert!(s.events.is_empty());
}
