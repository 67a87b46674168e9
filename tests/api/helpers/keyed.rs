//! A target that records, per record key, the order of the requests it accepted and
//! whether two of one key were ever in flight at once (the cluster tests' sink), and a
//! change feed that records how many readers it had at once.

use std::time::Duration;

/// What [`KeyedSink`] saw.
#[derive(Default)]
pub struct KeyedLog {
    pub requests: usize,
    in_flight: std::collections::HashMap<String, usize>,
    /// Keys that ever had two requests in flight at once.
    pub overlapped: Vec<String>,
    /// Per key, the `seq` of each request answered 2xx, in the order they came.
    pub delivered: std::collections::HashMap<String, Vec<u64>>,
    /// Per `seq`, the `Idempotency-Key` of each request for it.
    pub keys: std::collections::HashMap<u64, Vec<String>>,
    /// The change feed (`GET /feed…`): readers now, the most at once, reads in all.
    readers: usize,
    pub max_readers: usize,
    pub reads: usize,
}

/// A target that records, per record key (the last path segment), the order of the requests
/// it accepted and whether two requests of one key were ever in flight at once. Every tenth
/// request is answered 503; while `stall_ms` is set, requests hang that long first.
#[derive(Clone)]
pub struct KeyedSink {
    pub base: String,
    pub log: std::sync::Arc<std::sync::Mutex<KeyedLog>>,
    pub stall_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl KeyedSink {
    pub async fn start() -> KeyedSink {
        use actix_web::{web, App, HttpRequest, HttpResponse};
        let sink = KeyedSink { base: String::new(), log: Default::default(), stall_ms: Default::default() };
        let shared = sink.clone();
        let base = crate::serve_local!(move || {
            let sink = shared.clone();
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let sink = sink.clone();
                async move {
                    if req.path().starts_with("/feed") {
                        return sink.feed().await;
                    }
                    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let key = req.path().rsplit('/').next().unwrap_or("").to_string();
                    let seq: u64 = body["seq"].as_str().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
                    let idem = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    let n = {
                        let mut log = sink.log.lock().unwrap();
                        log.requests += 1;
                        log.keys.entry(seq).or_default().push(idem);
                        let busy = log.in_flight.entry(key.clone()).or_default();
                        *busy += 1;
                        if *busy > 1 {
                            log.overlapped.push(key.clone());
                        }
                        log.requests
                    };
                    let stall = sink.stall_ms.load(std::sync::atomic::Ordering::SeqCst);
                    if stall > 0 {
                        actix_web::rt::time::sleep(Duration::from_millis(stall)).await;
                    }
                    // A short wait, so requests of different instances overlap.
                    actix_web::rt::time::sleep(Duration::from_millis(3)).await;
                    let fail = n % 10 == 0;
                    let mut log = sink.log.lock().unwrap();
                    *log.in_flight.get_mut(&key).unwrap() -= 1;
                    if fail {
                        return HttpResponse::ServiceUnavailable().finish();
                    }
                    log.delivered.entry(key).or_default().push(seq);
                    HttpResponse::Ok().json(serde_json::json!({ "ok": true }))
                }
            }))
        });
        KeyedSink { base, ..sink }
    }

    /// An empty change feed that takes a moment to answer, counting its readers at once.
    async fn feed(&self) -> actix_web::HttpResponse {
        {
            let mut log = self.log.lock().unwrap();
            log.readers += 1;
            log.reads += 1;
            log.max_readers = log.max_readers.max(log.readers);
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        self.log.lock().unwrap().readers -= 1;
        actix_web::HttpResponse::Ok().json(serde_json::json!({ "changes": [] }))
    }

    pub fn delivered_count(&self) -> usize {
        self.log.lock().unwrap().delivered.values().map(Vec::len).sum()
    }
}

/// A connector POSTing `{seq}` to `{base}/k/{key}`, one record key per `key`.
pub fn keyed_connector(base: &str) -> String {
    format!(
        "id: shared\ntype: outbound\ntrigger: {{ topic: cluster.test }}\nkey: \"{{{{ key }}}}\"\nconcurrency: 4\nretry: {{ max: 20, backoffMs: 20 }}\nmap:\n  to:\n    url: \"{base}/k/{{key}}\"\n    method: POST\n    body: {{ seq: \"{{{{ seq }}}}\" }}\n"
    )
}

