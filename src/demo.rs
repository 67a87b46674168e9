//! `hms-sync up --demo`: a sync on a fresh machine with no outside system. A built-in demo
//! target on loopback (`/demo/sink/…`) answers every request the connectors send (they are
//! redirected to it, see `delivery::Egress`), and the seed's permit event is published so
//! the first delivery and its ticket show up at once.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::{Value, json};

use crate::actors::bus::Bus;
use crate::delivery::egress::TARGET_HEADER;
use crate::storage::{self, Db, TicketFilter};

/// Where the demo target is mounted.
pub const SINK_PATH: &str = "/demo/sink";
/// Requests kept for `GET /demo/requests`.
const KEEP: usize = 200;

/// A request the demo target received. Header values are not kept: they may carry secrets.
#[derive(Debug, Clone, Serialize)]
pub struct SinkRequest {
    pub at: chrono::DateTime<chrono::Utc>,
    pub method: String,
    /// The URL the connector named (before the redirect).
    pub target: String,
    pub header_names: Vec<String>,
    pub body: Value,
}

/// The demo target's memory.
#[derive(Default)]
pub struct DemoSink {
    received: Mutex<VecDeque<SinkRequest>>,
}

impl DemoSink {
    fn record(&self, r: SinkRequest) {
        if let Ok(mut q) = self.received.lock() {
            if q.len() == KEEP {
                q.pop_front();
            }
            q.push_back(r);
        }
    }

    pub fn received(&self) -> Vec<SinkRequest> {
        self.received.lock().map(|q| q.iter().cloned().collect()).unwrap_or_default()
    }
}

/// Any request under `/demo/sink/`: recorded and answered 200 (a GET gets an empty change
/// feed, so pulls succeed with nothing new).
pub async fn sink(sink: web::Data<DemoSink>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let target = req.headers().get(TARGET_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string).unwrap_or_else(|| req.uri().to_string());
    sink.record(SinkRequest {
        at: chrono::Utc::now(),
        method: req.method().to_string(),
        target,
        header_names: req.headers().keys().map(|k| k.to_string()).collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    if req.method() == actix_web::http::Method::GET {
        HttpResponse::Ok().json(json!({ "changes": [] }))
    } else {
        HttpResponse::Ok().json(json!({ "ok": true }))
    }
}

/// `GET /demo/requests`: what the demo target received, oldest first.
pub async fn requests(sink: web::Data<DemoSink>) -> HttpResponse {
    HttpResponse::Ok().json(sink.received())
}

pub fn routes(cfg: &mut web::ServiceConfig, sink: web::Data<DemoSink>) {
    cfg.service(
        web::scope("/demo")
            .app_data(sink)
            .route("/requests", web::get().to(requests))
            .route("/sink/{tail:.*}", web::route().to(self::sink)),
    );
}

/// The seed's event (seed 002, "Simulate a Permit Update").
pub fn seed_event() -> Value {
    json!({"permitId": "RW-481", "agency": "DDOT", "startDate": "2024-05-10", "status": "APPROVED"})
}

/// Publishes the seed's permit event and prints what happened to it: which connectors took
/// it, and its ticket once delivered (waits at most 15 s).
pub async fn show_a_sync(bus: &Bus, db: &Db, base: &str) -> Result<(), String> {
    let event = seed_event();
    let published_at = chrono::Utc::now() - chrono::Duration::seconds(1);
    let accepted = bus.publish("permit.updated", event.clone(), None).await.map_err(|e| e.to_string())?;
    println!("demo: published permit.updated {event} as event {}", accepted.event_id);
    if accepted.connectors.is_empty() {
        println!("demo: no connector listens on permit.updated (is connectors/gis-ddot.yaml there?)");
        return Ok(());
    }
    println!("demo: stored for {} before the publisher got its 202", accepted.connectors.join(", "));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let filter = TicketFilter { since: Some(published_at), limit: 100, ..TicketFilter::default() };
        let tickets = storage::list_tickets(db, &filter).await.map_err(|e| e.to_string())?;
        if let Some(t) = tickets.iter().find(|t| t.event_id.as_deref() == Some(accepted.event_id.as_str())) {
            println!(
                "demo: ticket {} {}: {} {} -> {}",
                t.ticket_id,
                t.status,
                t.connector_id,
                t.hms_id.as_deref().unwrap_or("-"),
                t.external_id.as_deref().unwrap_or("-")
            );
            break;
        }
        if std::time::Instant::now() > deadline {
            println!("demo: no ticket yet after 15 s; see {base}/connectors?expand=status");
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    println!("demo: the console (connectors, tickets, parked jobs): {base}/ui");
    println!("demo: the request as the demo target got it: {base}/demo/requests");
    println!("demo: every ticket: {base}/tickets   publish more: hms-sync publish permit.updated --data '{{\"permitId\":\"RW-482\",\"agency\":\"DDOT\",\"status\":\"APPROVED\"}}'");
    Ok(())
}
