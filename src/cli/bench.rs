//! `hms-sync bench`: the outbound benchmark. Starts a local sink (the external system) and
//! the real service on loopback with a fresh database, publishes N events over HTTP from C
//! concurrent publishers (optionally paced to a rate), waits until every event is delivered
//! AND ticketed, and reports throughput, publish→delivered latency and peak RSS.
//! `--idle-connectors N` instead reports the resident memory of an idle service with N
//! connectors. Everything stays on 127.0.0.1.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use clap::Args;
use serde_json::json;

use crate::settings::Settings;
use crate::startup::Application;
use crate::storage;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Events to publish.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Concurrent HTTP publishers. Each waits for its 202, which comes once its job is
    /// committed, so fewer publishers than this measure the publishers' round trip rather
    /// than what the service can take.
    #[arg(long, default_value_t = 64)]
    pub publishers: usize,
    /// Pace publishing to this many events per second in total (default: as fast as the
    /// service accepts them).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Record keys delivered in parallel by the connector.
    #[arg(long, default_value_t = 64)]
    pub concurrency: u32,
    /// Database URL (default: a SQLite file in a fresh temporary folder).
    #[arg(long)]
    pub database: Option<String>,
    /// Measure idle memory with this many connectors instead of throughput.
    #[arg(long, value_name = "N")]
    pub idle_connectors: Option<usize>,
    /// With --idle-connectors: the RSS is shown 3 s after the start and again after this
    /// many seconds, once the allocator has returned what start-up left (10 s after it is
    /// freed; a thread's cache is trimmed only as that thread allocates).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub idle_secs: u64,
    /// Time the web console's pages instead: this many connectors, `--tickets` stored
    /// tickets (half of them one connector's), each page asked 20 times.
    #[arg(long, value_name = "N")]
    pub console: Option<usize>,
    /// Tickets stored for --console.
    #[arg(long, default_value_t = 100_000)]
    pub tickets: usize,
    /// The sink refuses each event's first attempt with 503 and `Retry-After: 1`, and the
    /// report adds how late the retries came (arrival after the refusal, minus 1 s).
    #[arg(long)]
    pub fail_first: bool,
    /// Give the connector `rateLimit: { perSecond: N }`: the delivered rate shows whether
    /// the limit holds under a backlog.
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<f64>,
    /// The sink is down (503) for the first SECS seconds; the connector has a circuit
    /// breaker (5 failures, 5 s cool-down) and 3 attempts per job. The report adds the jobs
    /// parked, the requests made while it was down, and how long the queue took to drain
    /// after it came back.
    #[arg(long, value_name = "SECS")]
    pub outage_secs: Option<u64>,
    /// Fuzz connector documents instead: N seeded mutants of the shipped connectors, each
    /// parsed, validated, compiled and (if accepted) rendered; reports panics, the slowest
    /// case and peak memory.
    #[arg(long, value_name = "N")]
    pub fuzz: Option<u64>,
    /// The first seed of --fuzz (a case is reproduced by its seed).
    #[arg(long, default_value_t = 1)]
    pub fuzz_seed: u64,
    /// Run this many instances of the service on the one database (a cluster: needs
    /// `--database postgres://…`); the publishers spread over them.
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    /// Measure the NATS JetStream intake instead (needs `--database postgres://…` or a SQLite
    /// URL): `--events` messages are put on a stream of their own first, then one instance
    /// with its connectors paused takes them; reports the messages stored (and acked, after
    /// their commit) per second.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// The Committer's commit gap for this run (`tickets.flush_ms`; default: the setting's
    /// default): compare CPU per event and latency with another gap.
    #[arg(long, value_name = "MS")]
    pub flush_ms: Option<u64>,
}

/// Arrival time of each event at the sink, by event number.
struct SinkState {
    arrived: Mutex<Vec<Option<Instant>>>,
    count: AtomicUsize,
    /// With `--fail-first`: when each event's first attempt was refused.
    refused: Option<Mutex<Vec<Option<Instant>>>>,
    /// With `--outage-secs`: the sink answers 503 until then; requests refused meanwhile.
    down_until: Option<Instant>,
    refused_while_down: AtomicUsize,
}

/// The external system. It reads the request body, as a real one does: actix-web closes a
/// connection whose request body was left unread, which would cost a TCP connect per delivery.
async fn sink(state: web::Data<SinkState>, n: web::Path<usize>, _body: web::Bytes) -> HttpResponse {
    let now = Instant::now();
    if state.down_until.is_some_and(|until| now < until) {
        state.refused_while_down.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::ServiceUnavailable().json(json!({ "ok": false }));
    }
    if let Some(refused) = &state.refused
        && let Ok(mut refused) = refused.lock()
        && let Some(slot) = refused.get_mut(*n)
        && slot.is_none()
    {
        *slot = Some(now);
        return HttpResponse::ServiceUnavailable().insert_header(("Retry-After", "1")).json(json!({ "ok": false }));
    }
    if let Ok(mut arrived) = state.arrived.lock()
        && let Some(slot) = arrived.get_mut(*n)
        && slot.is_none()
    {
        *slot = Some(now);
        state.count.fetch_add(1, Ordering::Relaxed);
    }
    HttpResponse::Ok().json(json!({ "ok": true }))
}

fn connector_yaml(id: &str, topic: &str, sink: &str, concurrency: u32, rate_limit: Option<f64>, outage: bool) -> String {
    let limit = rate_limit.map(|r| format!("rateLimit: {{ perSecond: {r} }}\n")).unwrap_or_default();
    let (breaker, retry) = if outage { ("circuitBreaker: { failures: 5, coolDownMs: 5000 }\n", "retry: { max: 3, backoffMs: 200 }") } else { ("", "retry: { max: 5, backoffMs: 50 }") };
    format!(
        "id: {id}\ntype: outbound\ntrigger: {{ topic: {topic} }}\nkey: \"{{{{ n }}}}\"\nconcurrency: {concurrency}\n{limit}{breaker}map:\n  to:\n    url: \"{sink}/events/{{{{ n }}}}\"\n    method: POST\n{retry}\n"
    )
}

/// CPU time this process has used (user and system, every thread), in seconds, from
/// /proc/self/stat (in ticks of 1/100 s, Linux's USER_HZ); 0 where it cannot be read.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (tick(11) + tick(12)) / 100.0
}

/// Resident memory now and at its peak, in KiB, from /proc/self/status.
fn rss_kib() -> (u64, u64) {
    let status = Status::read();
    (status.field("VmRSS:"), status.field("VmHWM:"))
}

/// This process's `/proc/self/status`.
struct Status(String);

impl Status {
    fn read() -> Self {
        Self(std::fs::read_to_string("/proc/self/status").unwrap_or_default())
    }

    /// A field's value in KiB (0 if absent).
    fn field(&self, name: &str) -> u64 {
        self.0.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

fn settings_in(dir: &Path, database: Option<String>) -> Settings {
    let mut s = Settings::default();
    s.server.port = 0;
    s.data_dir = dir.join("data");
    s.connectors.dir = dir.join("connectors");
    s.database.url = database;
    s.log.level = "warn".into();
    s
}

/// The settings of a measured run: [`settings_in`] with the run's `--flush-ms`.
fn run_settings(dir: &Path, args: &BenchArgs) -> Settings {
    let mut s = settings_in(dir, args.database.clone());
    if let Some(ms) = args.flush_ms {
        s.tickets.flush_ms = ms;
    }
    s
}

pub fn run(args: BenchArgs) -> ExitCode {
    // RUST_LOG overrides, e.g. hms_sync::actors::ticket_writer=debug shows every batch.
    crate::telemetry::init("text", "warn");
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; its figures are several times below a release build's (cargo run --release -- bench …)");
    }
    if let Some(n) = args.fuzz {
        return fuzz(args.fuzz_seed, n);
    }
    let dir = std::env::temp_dir().join(format!("hms-sync-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(dir.join("connectors")) {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    let result = actix_web::rt::System::new().block_on(async {
        if args.idle_connectors.is_none() && args.console.is_none()
            && let Some(url) = &args.database
        {
            fresh_database(url).await?;
        }
        match (args.idle_connectors, &args.nats) {
            _ if args.console.is_some() => console_pages(&dir, args.console.unwrap_or(1000), args.tickets, args.database.clone()).await,
            (Some(n), _) => idle(&dir, n, args.database.clone(), Duration::from_secs(args.idle_secs)).await,
            (None, Some(url)) => nats_intake(&dir, &args, url).await,
            (None, None) => throughput(&dir, &args).await,
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Refuses a `--database` that holds an earlier run's tickets or queued jobs (every job done
/// has its ticket). The runs' events are the same (`Idempotency-Key: bench-0`, `bench-1`, …,
/// connector `bench`), so on such a database they would be taken for the earlier run's and
/// not stored again: nothing would be delivered, the earlier tickets would be counted, and
/// the run would wait out its 300 s to report a timeout (seen on PostgreSQL, a second run on
/// one database).
async fn fresh_database(url: &str) -> Result<(), String> {
    let shown = storage::redact_url(url);
    let db = storage::connect(url).await.map_err(|e| e.to_string())?;
    let queued: i64 = storage::queue_stats(&db).await.map_err(|e| e.to_string())?.iter().map(|(_, _, n)| n).sum();
    let tickets = storage::ticket_count(&db).await.map_err(|e| e.to_string())?;
    let backend = storage::backend_name(&db);
    db.close().await.map_err(|e| e.to_string())?;
    if queued > 0 || tickets > 0 {
        let make = if backend == "postgres" { "create one (e.g. `createdb -h 127.0.0.1 -U postgres hms_bench_2`) and pass its URL" } else { "name a file that does not exist yet" };
        return Err(format!(
            "the database {shown} holds {tickets} tickets and {queued} queued jobs already; bench needs an empty one \
             (each run publishes the same events, bench-0, bench-1, …, which it would take for those already there): {make}"
        ));
    }
    Ok(())
}

/// `bench --fuzz N`: the cases run on a thread with an actix worker's stack size (2 MiB),
/// where a document once overflowed the stack.
fn fuzz(first: u64, n: u64) -> ExitCode {
    // Panics are counted and reported, not printed one by one.
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let report = match std::thread::Builder::new().stack_size(2 * 1024 * 1024).spawn(move || super::fuzz::run_cases(first, n)).map(|h| h.join()) {
        Ok(Ok(r)) => r,
        _ => {
            eprintln!("error: the fuzz thread died");
            return ExitCode::from(1);
        }
    };
    let (_, peak) = rss_kib();
    println!("hms-sync bench --fuzz: {} cases from seed {first} in {:.1} s", report.cases, started.elapsed().as_secs_f64());
    println!("  accepted {}  refused {}  compile errors {}  panics {}", report.accepted, report.refused, report.compile_errors, report.panics.len());
    println!("  slowest case             seed {}: {:.1} ms", report.slowest.0, report.slowest.1.as_secs_f64() * 1000.0);
    println!("  peak RSS                 {:.1} MiB", peak as f64 / 1024.0);
    for (seed, msg) in report.panics.iter().take(10) {
        println!("  panic: seed {seed}: {msg}");
    }
    if report.panics.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// `n` connector files `idle-0` … in the folder, each on a topic of its own that nothing
/// publishes on.
fn idle_connectors(dir: &Path, n: usize) -> Result<(), String> {
    for i in 0..n {
        let yaml = connector_yaml(&format!("idle-{i}"), &format!("idle.{i}"), "http://127.0.0.1:9", 1, None, false);
        std::fs::write(dir.join(format!("connectors/idle-{i}.yaml")), yaml).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `bench --idle-connectors N`: the RSS of an idle service with `n` connectors, 3 s after
/// its start and again after `settle` (the figure to compare: start-up's garbage returned).
async fn idle(dir: &Path, n: usize, database: Option<String>, settle: Duration) -> Result<(), String> {
    idle_connectors(dir, n)?;
    let (before, _) = rss_kib();
    let started = Instant::now();
    let app = Application::build(settings_in(dir, database)).await.map_err(|e| e.to_string())?;
    let ready_in = started.elapsed();
    let handle = app.server_handle();
    let running = actix_web::rt::spawn(app.run_until_stopped());
    let threads = || std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0);
    let first = Duration::from_secs(3).min(settle);
    actix_web::rt::time::sleep(first).await;
    let (idle_rss, _) = rss_kib();
    println!("idle with {n} connector(s): RSS {:.1} MiB after {} s ({:.1} MiB before start), {} threads, ready in {:.2} s", idle_rss as f64 / 1024.0, first.as_secs(), before as f64 / 1024.0, threads(), ready_in.as_secs_f64());
    if settle > first {
        actix_web::rt::time::sleep(settle - first).await;
        // The resident memory and its two parts: anonymous (the heap, the stacks) and mapped
        // from files (the binary's code above all, shared with every process that runs it and
        // taken back by the kernel at need; see `build.rs`).
        let status = Status::read();
        let (idle_rss, anon, file) = (status.field("VmRSS:"), status.field("RssAnon:"), status.field("RssFile:"));
        println!("idle with {n} connector(s): RSS {:.1} MiB after {} s (anonymous {:.1}, files {:.1}: the code above all), {} threads", idle_rss as f64 / 1024.0, settle.as_secs(), anon as f64 / 1024.0, file as f64 / 1024.0, threads());
    }
    handle.stop(true).await;
    let _ = running.await;
    Ok(())
}

/// `bench --console N`: the console's pages timed with N connectors and `tickets` stored
/// tickets (as many completed as parked; half of them connector `idle-0`'s, all of them in
/// the last hour, so the charts and the 5-minute counts read every one). The time is the
/// client's on loopback: the server's plus a fraction of a millisecond.
async fn console_pages(dir: &Path, n: usize, tickets: usize, database: Option<String>) -> Result<(), String> {
    use crate::storage::{Direction, NewTicket, TicketStatus};
    idle_connectors(dir, n)?;
    let app = Application::build(settings_in(dir, database)).await.map_err(|e| e.to_string())?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let db = app.state().db.clone();
    let handle = app.server_handle();
    let running = actix_web::rt::spawn(app.run_until_stopped());
    let started = Instant::now();
    for chunk in (0..tickets).collect::<Vec<_>>().chunks(2_000) {
        let batch: Vec<NewTicket> = chunk
            .iter()
            .map(|&k| NewTicket {
                connector_id: if k % 2 == 0 { "idle-0".to_string() } else { format!("idle-{}", k % n.max(1)) },
                event_id: Some(format!("bench-{k}")),
                delivery_id: None,
                hms_id: Some(format!("R-{k}")),
                external_id: Some(format!("https://example.invalid/records/{k}")),
                direction: Direction::Outbound,
                status: if k % 3 == 0 { TicketStatus::Parked } else { TicketStatus::Completed },
                reason: None,
                attempts: 1,
                last_error: (k % 3 == 0).then(|| "HTTP 422: refused".to_string()),
                detail: Some(json!({ "method": "POST", "status": 200, "latency_ms": 3 })),
            })
            .collect();
        storage::append_tickets(&db, &batch).await.map_err(|e| e.to_string())?;
    }
    println!("hms-sync bench --console: {n} connectors, {tickets} tickets stored in {:.1} s ({})", started.elapsed().as_secs_f64(), storage::backend_name(&db));
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let pages = ["/ui", "/ui/rows", "/ui/rows?q=idle-99", "/ui/connectors/idle-0", "/ui/connectors/idle-1", "/ui/parked", "/ui/tickets", "/ui/tickets?connector=idle-0&status=parked", "/ui/tickets?record=R-777", "/ui/tickets/SYNC-5000", "/ui/audit"];
    // The tickets came after the start's warm-up read: the first look reads them (the
    // console's counts); every later one only what came since.
    let t = Instant::now();
    let mut first = client.get(format!("{base}/ui")).send().await.map_err(|e| format!("/ui: {e}"))?;
    first.body().limit(64 << 20).await.map_err(|e| format!("/ui: {e}"))?;
    println!("  first look at /ui (reads the {tickets} new tickets once): {:.1} ms", t.elapsed().as_secs_f64() * 1000.0);
    println!("  {:<44} {:>9} {:>9} {:>9}", "page", "median ms", "p95 ms", "max ms");
    for page in pages {
        let mut times = Vec::with_capacity(20);
        for _ in 0..20 {
            let t = Instant::now();
            let mut resp = client.get(format!("{base}{page}")).send().await.map_err(|e| format!("{page}: {e}"))?;
            let body = resp.body().limit(64 << 20).await.map_err(|e| format!("{page}: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("{page}: HTTP {}: {}", resp.status(), String::from_utf8_lossy(&body)));
            }
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!("  {page:<44} {:>9.1} {:>9.1} {:>9.1}", times[times.len() / 2], times[times.len() * 95 / 100], times[times.len() - 1]);
    }
    handle.stop(true).await;
    let _ = running.await;
    Ok(())
}

/// On a terminal, a progress line on stderr (published, delivered, rate so far) redrawn
/// four times a second until the run is done; nothing when stderr is a file or a pipe.
fn show_progress(published: Arc<AtomicUsize>, sink: web::Data<SinkState>, n: usize) -> Option<actix_web::rt::task::JoinHandle<()>> {
    use std::io::{IsTerminal, Write};
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let t0 = Instant::now();
    Some(actix_web::rt::spawn(async move {
        loop {
            let (p, d) = (published.load(Ordering::Relaxed).min(n), sink.count.load(Ordering::Relaxed));
            let bar = |k: usize| "#".repeat(k * 30 / n.max(1)) + &".".repeat(30 - k * 30 / n.max(1));
            eprint!("\r\x1b[2K  published [{}] {p}/{n}  delivered [{}] {d}/{n}  {:.0} events/s", bar(p), bar(d.min(n)), d as f64 / t0.elapsed().as_secs_f64().max(0.001));
            let _ = std::io::stderr().flush();
            actix_web::rt::time::sleep(Duration::from_millis(250)).await;
        }
    }))
}

/// One publisher: takes the next event number until all are taken, optionally paced.
async fn publish_loop(starts: Arc<Mutex<Vec<Option<Instant>>>>, next: Arc<AtomicUsize>, base: String, n: usize, rate: Option<u64>, t0: Instant) -> Result<(), String> {
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            return Ok(());
        }
        if let Some(rate) = rate {
            let due = t0 + Duration::from_secs_f64(i as f64 / rate as f64);
            actix_web::rt::time::sleep_until(due.into()).await;
        }
        let sent = Instant::now();
        if let Ok(mut s) = starts.lock() {
            s[i] = Some(sent);
        }
        let mut resp = client
            .post(format!("{base}/events/bench.event"))
            .insert_header(("Idempotency-Key", format!("bench-{i}")))
            .send_json(&json!({ "n": i }))
            .await
            .map_err(|e| format!("publish {i}: {e}"))?;
        let _ = resp.body().await;
        if resp.status().as_u16() != 202 {
            return Err(format!("publish {i}: HTTP {}", resp.status()));
        }
    }
}

async fn throughput(dir: &Path, args: &BenchArgs) -> Result<(), String> {
    let n = args.events;
    let down_until = args.outage_secs.map(|s| Instant::now() + Duration::from_secs(s));
    let state = web::Data::new(SinkState {
        arrived: Mutex::new(vec![None; n]),
        count: AtomicUsize::new(0),
        refused: args.fail_first.then(|| Mutex::new(vec![None; n])),
        down_until,
        refused_while_down: AtomicUsize::new(0),
    });
    let sink_state = state.clone();
    let sink_server = HttpServer::new(move || App::new().app_data(sink_state.clone()).route("/events/{n}", web::post().to(sink)))
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .map_err(|e| e.to_string())?;
    let sink_url = format!("http://127.0.0.1:{}", sink_server.addrs()[0].port());
    let sink_server = sink_server.run();
    let sink_handle = sink_server.handle();
    actix_web::rt::spawn(sink_server);

    std::fs::write(dir.join("connectors/bench.yaml"), connector_yaml("bench", "bench.event", &sink_url, args.concurrency, args.rate_limit, args.outage_secs.is_some())).map_err(|e| e.to_string())?;
    let instances = args.instances.max(1);
    if instances > 1 && !args.database.as_deref().is_some_and(|d| d.starts_with("postgres")) {
        return Err("--instances above 1 needs --database postgres://… (the instances share one PostgreSQL database)".into());
    }
    let (mut bases, mut handles, mut running) = (Vec::new(), Vec::new(), Vec::new());
    let mut db = None;
    for _ in 0..instances {
        let app = Application::build(run_settings(dir, args)).await.map_err(|e| e.to_string())?;
        bases.push(format!("http://127.0.0.1:{}", app.port()));
        db.get_or_insert_with(|| app.state().db.clone());
        handles.push(app.server_handle());
        running.push(actix_web::rt::spawn(app.run_until_stopped()));
    }
    let db = db.ok_or("no instance")?;
    let backend = storage::backend_name(&db);

    let starts: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; n]));
    let starts_w = starts.clone();
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let cpu0 = cpu_secs();
    let progress = show_progress(next.clone(), state.clone(), n);
    // The publishers run on a thread of their own, as an outside client would: on the
    // service's main arbiter they would compete with its actors for one thread.
    let publisher_thread = actix::Arbiter::new();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let (publishers, rate) = (args.publishers.max(1), args.rate);
    publisher_thread.spawn(async move {
        let mut tasks = Vec::new();
        for k in 0..publishers {
            let (starts, next, base) = (starts_w.clone(), next.clone(), bases[k % bases.len()].clone());
            tasks.push(actix_web::rt::spawn(publish_loop(starts, next, base, n, rate, t0)));
        }
        let mut result = Ok(());
        for t in tasks {
            if let Err(e) = t.await.map_err(|e| e.to_string()).and_then(|r| r) {
                result = Err(e);
            }
        }
        let _ = done_tx.send(result);
    });
    done_rx.await.map_err(|_| "the publisher thread stopped".to_string())??;
    publisher_thread.stop();
    let accepted_in = t0.elapsed();
    // Wait (bounded) until every event is delivered and ticketed.
    // Bounded: 300 s, plus the outage asked for.
    let deadline = Instant::now() + Duration::from_secs(300 + args.outage_secs.unwrap_or(0));
    loop {
        let delivered = state.count.load(Ordering::Relaxed);
        let tickets = storage::ticket_count(&db).await.map_err(|e| e.to_string())? as usize;
        if delivered >= n && tickets >= n {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("timed out: {delivered} of {n} delivered, {tickets} ticketed"));
        }
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
    let done_in = t0.elapsed();
    let cpu = cpu_secs() - cpu0;
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[2K");
    }
    let (_, peak) = rss_kib();
    let mut latencies: Vec<Duration> = {
        let starts = starts.lock().map_err(|_| "lock poisoned")?;
        let arrived = state.arrived.lock().map_err(|_| "lock poisoned")?;
        starts.iter().zip(arrived.iter()).filter_map(|(s, a)| Some(a.as_ref()?.saturating_duration_since(*s.as_ref()?))).collect()
    };
    latencies.sort();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or_default();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "hms-sync bench: {n} events, {} publishers, rate {}, connector concurrency {}, {backend}, {instances} instance(s)",
        args.publishers,
        args.rate.map_or("max".to_string(), |r| format!("{r}/s")),
        args.concurrency
    );
    println!("  accepted (202, durable)  {:>8.0} events/s  ({:.2} s)", n as f64 / accepted_in.as_secs_f64(), accepted_in.as_secs_f64());
    println!("  delivered and ticketed   {:>8.0} events/s  ({:.2} s)", n as f64 / done_in.as_secs_f64(), done_in.as_secs_f64());
    println!("  publish -> delivered     p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms", ms(pct(0.50)), ms(pct(0.99)), ms(pct(1.0)));
    println!("  CPU, whole process       {:.3} ms per event, {:.0}% of a core  (the service, the sink and the publishers together)", cpu * 1000.0 / n as f64, cpu * 100.0 / done_in.as_secs_f64());
    if let Some(refused) = &state.refused {
        let refused = refused.lock().map_err(|_| "lock poisoned")?;
        let arrived = state.arrived.lock().map_err(|_| "lock poisoned")?;
        let mut late: Vec<Duration> = refused
            .iter()
            .zip(arrived.iter())
            .filter_map(|(r, a)| Some(a.as_ref()?.saturating_duration_since(*r.as_ref()?).saturating_sub(Duration::from_secs(1))))
            .collect();
        late.sort();
        let at = |p: f64| late.get(((late.len() as f64 * p) as usize).min(late.len().saturating_sub(1))).copied().unwrap_or_default();
        println!("  retry lateness           p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (after Retry-After: 1)", ms(at(0.50)), ms(at(0.99)), ms(at(1.0)));
    }
    if let Some(until) = state.down_until {
        let parked = storage::list_parked(&db, &storage::ParkedFilter { connector_id: Some("bench".into()), limit: 500, ..Default::default() }).await.map_err(|e| e.to_string())?.len();
        let drained = t0.elapsed().saturating_sub(until.saturating_duration_since(t0));
        println!(
            "  outage of {} s             {} requests refused while down, {parked} jobs parked, queue drained {:.1} s after the target came back",
            args.outage_secs.unwrap_or(0),
            state.refused_while_down.load(Ordering::Relaxed),
            drained.as_secs_f64().min(done_in.as_secs_f64())
        );
    }
    println!("  peak RSS                 {:.1} MiB", peak as f64 / 1024.0);
    for handle in handles {
        handle.stop(true).await;
    }
    sink_handle.stop(true).await;
    for r in running {
        let _ = r.await;
    }
    Ok(())
}

/// `bench --nats URL`: the NATS JetStream intake alone. `--events` messages are put on a
/// stream of their own first (their publishing is not measured), then one instance, its
/// connectors paused by governance, takes them from the stream; the time until every message
/// is stored (its job committed, then the message acked) gives the intake's rate.
async fn nats_intake(dir: &Path, args: &BenchArgs, url: &str) -> Result<(), String> {
    let n = args.events;
    let tag = format!("BENCH_{}", std::process::id());
    let mut settings = run_settings(dir, args);
    settings.bus.nats.url = Some(url.to_string());
    settings.bus.nats.stream = tag.clone();
    settings.bus.nats.subjects = format!("{}.>", tag.to_lowercase());
    settings.bus.nats.prefix = format!("{}.", tag.to_lowercase());
    std::fs::write(dir.join("connectors/bench.yaml"), connector_yaml("bench", "bench.event", "http://127.0.0.1:9", args.concurrency, None, false)).map_err(|e| e.to_string())?;
    // Intake only: governance off before the service starts.
    let db = storage::connect(&settings.database_url()).await.map_err(|e| e.to_string())?;
    storage::put_setting(&db, "sync.enabled", &json!(false)).await.map_err(|e| e.to_string())?;
    let client = async_nats::connect(url).await.map_err(|e| format!("cannot connect to NATS at {url}: {e}"))?;
    let js = async_nats::jetstream::new(client);
    let stream_config = async_nats::jetstream::stream::Config { name: tag.clone(), subjects: vec![settings.bus.nats.subjects.clone()], ..Default::default() };
    js.get_or_create_stream(stream_config).await.map_err(|e| e.to_string())?;
    let subject = format!("{}bench.event", settings.bus.nats.prefix);
    let mut acks = Vec::with_capacity(1000);
    for i in 0..n {
        let body = json!({ "n": i }).to_string();
        acks.push(js.publish(subject.clone(), body.into()).await.map_err(|e| e.to_string())?);
        if acks.len() == 1000 || i + 1 == n {
            for ack in acks.drain(..) {
                ack.await.map_err(|e| e.to_string())?;
            }
        }
    }
    let t0 = Instant::now();
    let cpu0 = cpu_secs();
    let app = Application::build(settings).await.map_err(|e| e.to_string())?;
    let handle = app.server_handle();
    let running = actix_web::rt::spawn(app.run_until_stopped());
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let stored = storage::queue_stats(&db).await.map_err(|e| e.to_string())?.iter().filter(|(c, _, _)| c == "bench").map(|(_, _, k)| *k).sum::<i64>();
        if stored as usize >= n {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("timed out: {stored} of {n} stored"));
        }
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
    let took = t0.elapsed();
    let cpu = cpu_secs() - cpu0;
    println!("hms-sync bench --nats: {n} messages from JetStream, {}, connectors paused (intake only)", storage::backend_name(&db));
    println!("  stored and acked         {:>8.0} events/s  ({:.2} s, from the service's start)", n as f64 / took.as_secs_f64(), took.as_secs_f64());
    println!("  CPU, whole process       {:.3} ms per event", cpu * 1000.0 / n as f64);
    handle.stop(true).await;
    let _ = running.await;
    let _ = js.delete_stream(&tag).await;
    Ok(())
}
