//! The `hms-sync` binary: parse the command line and run the command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    #[cfg(not(target_env = "msvc"))]
    let _ = hms_sync::actors::supervisor::CONNECTOR_THREAD_STARTED.set(no_thread_cache);
    hms_sync::cli::run(hms_sync::cli::Cli::parse())
}

/// Turns jemalloc's per-thread cache off on the calling thread. Run on connector threads:
/// one per connector, most of them idle, each cache holding ~150 KiB of freed memory. The
/// busy threads (HTTP workers, the writer, SQLite's) keep theirs.
#[cfg(not(target_env = "msvc"))]
fn no_thread_cache() {
    // SAFETY: `thread.tcache.enabled` is a bool, which is what is written.
    if let Err(e) = unsafe { tikv_jemalloc_ctl::raw::write(b"thread.tcache.enabled\0", false) } {
        tracing::debug!(error = %e, "cannot turn the allocator's thread cache off");
    }
}

/// jemalloc instead of glibc's malloc: the hot path hands buffers from thread to thread
/// (HTTP workers, the writer, SQLite's worker threads, connector threads), which glibc pays
/// for in arena locks and `malloc_consolidate`. Measured with `hms-sync bench`: about a
/// quarter less CPU per event. Its per-thread caches would cost ~150 KiB per connector
/// thread, so connector threads run without one ([`no_thread_cache`]): 1,000 idle
/// connectors take 147 MiB instead of 302, at the same throughput (README, Performance).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
