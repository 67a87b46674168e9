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

/// jemalloc's options, which it reads from this symbol when it starts (`MALLOC_CONF` in the
/// environment still overrides them). A thread's cache keeps at most 20 freed objects of
/// each small size instead of 200: the cache is trimmed only when its own thread allocates,
/// so a thread that was busy once and then idles (a SQLite connection's, an HTTP worker)
/// held its 200 until the process ended. Measured with `up` and 1,000 idle connectors: RSS
/// after a minute 41.7-41.8 to 38.4-38.6 MiB; `hms-sync bench` at saturation and paced at 2,000
/// events/s: throughput and CPU per event unchanged beyond noise (three alternating pairs
/// each, README, Performance). The cache itself stays: without it, 20% more CPU per event.
#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
#[unsafe(export_name = "malloc_conf")]
static MALLOC_CONF: &[u8; 27] = b"tcache_nslots_small_max:20\0";

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The options above reach jemalloc (a symbol of the wrong name or shape would be
    /// ignored without a word).
    #[test]
    fn jemalloc_reads_the_binarys_options() {
        if std::env::var_os("MALLOC_CONF").is_some() {
            return; // the environment overrides them on purpose
        }
        // SAFETY: `opt.tcache_nslots_small_max` is an `unsigned`, which is what is read.
        let slots: u32 = unsafe { tikv_jemalloc_ctl::raw::read(b"opt.tcache_nslots_small_max\0") }.unwrap();
        assert_eq!(slots, 20);
    }
}
