//! Issue 12's memory goal, counted where it is decided: the heap an idle connector holds.
//! A counting allocator (this test binary's own) measures the live bytes of a service with
//! 1 connector and with 501, once every connector's children run: each additional idle
//! connector must hold at most 20 KiB. (The RSS, which adds the allocator's slack, is the
//! benchmark's: `hms-sync bench --idle-connectors N`.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

#[path = "common/poll.rs"]
mod poll;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The live heap of a running service with `n` idle connectors, minus the heap before it.
async fn live_with(n: usize) -> isize {
    let dir = std::env::temp_dir().join(format!("hms-sync-idle-memory-{n}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("connectors")).unwrap();
    for i in 0..n {
        let yaml = format!("id: idle-{i}\ntype: outbound\ntrigger: {{ topic: idle.{i} }}\nkey: \"{{{{ n }}}}\"\nmap:\n  to:\n    url: \"http://127.0.0.1:9/events/{{{{ n }}}}\"\n    method: POST\nretry: {{ max: 5, backoffMs: 50 }}\n");
        std::fs::write(dir.join(format!("connectors/idle-{i}.yaml")), yaml).unwrap();
    }
    let mut settings = hms_sync::settings::Settings::default();
    settings.server.port = 0;
    settings.server.workers = 1;
    settings.data_dir = dir.join("data");
    settings.connectors.dir = dir.join("connectors");
    let before = LIVE.load(Ordering::Relaxed);
    let app = hms_sync::startup::Application::build(settings).await.unwrap();
    let registry = app.state().registry.clone();
    let handle = app.server_handle();
    let run = actix_web::rt::spawn(app.run_until_stopped());
    // Every connector's children running: the service is idle now.
    let running = || async {
        let all = registry.send(hms_sync::actors::registry::AllSummaries).await.unwrap();
        let running = all.iter().filter(|s| s.children.iter().all(|c| c.state == hms_sync::actors::status::ChildState::Running)).count();
        if all.len() == n && running == n { Ok(()) } else { Err(running) }
    };
    if let Err(running) = poll::try_poll_until(Duration::from_secs(30), Duration::from_millis(50), running).await {
        panic!("{running} of {n} connectors running after 30 s");
    }
    // Idle means settled: the least live heap over the next second. Read once, the count
    // could catch start-up work still in flight (seen once in CI under load: 18 MB for 501
    // connectors where every other run reads 6.8 MB); what an idle connector holds stays.
    let mut live = LIVE.load(Ordering::Relaxed) - before;
    for _ in 0..20 {
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        live = live.min(LIVE.load(Ordering::Relaxed) - before);
    }
    handle.stop(true).await;
    let _ = run.await;
    let _ = std::fs::remove_dir_all(&dir);
    live
}

#[actix_web::test]
async fn an_idle_connector_holds_at_most_20_kib_of_heap() {
    let one = live_with(1).await;
    let many = live_with(501).await;
    let per = (many - one) / 500;
    eprintln!("live heap: 1 connector {} KiB, 501 connectors {} KiB: {per} B per additional connector", one / 1024, many / 1024);
    assert!(per <= 20 * 1024, "an idle connector holds {per} B of heap (goal: 20 KiB)");
}
