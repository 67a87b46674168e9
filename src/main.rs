//! The `hms-sync` binary: parse the command line and run the command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    hms_sync::cli::run(hms_sync::cli::Cli::parse())
}

/// jemalloc instead of glibc's malloc: the hot path hands buffers from thread to thread
/// (HTTP workers, the writer, SQLite's worker threads, connector threads), which glibc pays
/// for in arena locks and `malloc_consolidate`. Measured with `hms-sync bench`: about a
/// quarter less CPU per event. Its per-thread caches cost ~150 KiB per connector thread;
/// `MALLOC_CONF=tcache:false` trades that back for CPU (README, Performance).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
