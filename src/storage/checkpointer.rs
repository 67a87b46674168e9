//! SQLite's checkpointer: copies the write-ahead log into the database file on a thread of
//! its own, so that the Committer's commits (and every event waiting on them) do not wait
//! for the copy and its two syncs.
//!
//! The protocol, between the writer's connection and this thread's:
//! - after each commit the writer learns how many frames the WAL holds (SQLite's WAL hook);
//! - every [`NUDGE_PAGES`] frames, it nudges this thread, which runs a passive checkpoint
//!   (one that never blocks the writer, nor waits for it);
//! - from [`WRITER_PAGES`] on, the writer checkpoints itself, as SQLite's autocheckpoint did,
//!   instead of nudging.
//!
//! The writer's own checkpoint is what keeps the WAL bounded. SQLite starts the log over
//! only when a write transaction begins with every frame copied. Under a steady load the
//! writer appends while a passive checkpoint runs, so this thread alone never catches up
//! (an earlier checkpointer that ran every 100 ms, with no backstop nearer than 16 MiB, let
//! the WAL grow to it). The writer's own checkpoint runs with no writer beside it, copies
//! what is left, which is little once this thread has copied the rest, and the next commit
//! starts the log over. At a moderate load the writer idles between commits, this thread
//! catches up within a nudge or two, and the writer never checkpoints at all.

use std::cell::Cell;
use std::os::raw::c_int;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Instant;

use rusqlite::Connection;
use rusqlite::hooks::Wal;

/// WAL frames (4 KiB pages) from which the writer nudges the checkpointer: 1 MB, the
/// threshold the writer's own checkpoint had until the checkpointer came. Measured then:
/// smaller, more frequent checkpoints stall less each (at 2,000 events/s the
/// publish→delivered p99 fell from 20–21 ms to 10–12 ms against SQLite's default of 1,000,
/// at 500/s from 19 to 9; 100 pages: no better). They also sync more often, which shortens
/// what a power cut could take back (`synchronous = NORMAL` syncs at checkpoints only).
pub(super) const NUDGE_PAGES: u32 = 250;

/// WAL frames from which the writer checkpoints itself (4 MB): the backstop that starts the
/// log over under a steady load. It is also the pool's connections' autocheckpoint, so a
/// pooled write (a webhook, a pull, an operator's replay) is not the one that copies.
pub(super) const WRITER_PAGES: u32 = 1_000;

/// The thread's stack: SQLite's checkpoint needs a few KiB of it (the default is 2 MiB).
const STACK: usize = 256 * 1024;

thread_local! {
    /// The WAL's frames after this thread's last commit, set by [`wal_hook`] inside the
    /// commit and read by the same thread right after it.
    static WAL_FRAMES: Cell<u32> = const { Cell::new(0) };
}

/// SQLite's WAL hook on the writer's connection: notes the frame count. It replaces the
/// autocheckpoint (which is SQLite's own WAL hook), so the writer checkpoints only through
/// [`Checkpointer::after_commit`].
pub(super) fn wal_hook(_: &Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|f| f.set(u32::try_from(frames).unwrap_or(0)));
    Ok(())
}

/// The writer's side: the nudges, and the counts of both sides' checkpoints.
#[derive(Debug)]
pub struct Checkpointer {
    nudge: SyncSender<()>,
    /// The WAL's frames at the last nudge: the next comes [`NUDGE_PAGES`] later, so that
    /// the thread copies about as often as the writer's own checkpoint did (nudged after
    /// every commit instead, it ran back to back under a steady load and copied the hot
    /// pages more often: a fifth more bytes written per event, a tenth more CPU).
    nudged_at: u32,
    counts: Arc<Counts>,
}

/// Checkpoints run, by whom.
#[derive(Debug, Default)]
pub struct Counts {
    /// Passive checkpoints this thread ran.
    pub background: AtomicU64,
    /// Checkpoints the writer ran itself, past [`WRITER_PAGES`].
    pub writer: AtomicU64,
}

impl Checkpointer {
    /// Starts the thread, with a connection of its own to the database file at `path`.
    pub fn start(path: &str) -> std::io::Result<Self> {
        let conn = Connection::open(path).map_err(std::io::Error::other)?;
        conn.busy_timeout(super::SQLITE_BUSY_TIMEOUT).map_err(std::io::Error::other)?;
        let counts = Arc::new(Counts::default());
        let (nudge, nudged) = sync_channel(1);
        let seen = counts.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .stack_size(STACK)
            .spawn(move || run(&conn, &nudged, &seen))?;
        Ok(Self { nudge, nudged_at: 0, counts })
    }

    /// After a commit on `conn` (the writer's): nudges the thread each [`NUDGE_PAGES`]
    /// frames, or past the backstop checkpoints here. A checkpoint that finds the thread's
    /// still running is refused at once (`SQLITE_BUSY`) and tried again after the next
    /// commit.
    pub(super) fn after_commit(&mut self, conn: &Connection) {
        let frames = WAL_FRAMES.with(|f| f.replace(0));
        if frames == 0 {
            // No commit (a failed write): nothing new in the log.
            return;
        }
        if frames < self.nudged_at {
            // The log started over.
            self.nudged_at = 0;
        }
        if frames >= WRITER_PAGES {
            match checkpoint(conn) {
                Ok(true) => {}
                Ok(false) => {
                    let n = self.counts.writer.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::debug!(frames, times = n, "the writer checkpointed the WAL itself (past the backstop)");
                }
                Err(e) => tracing::warn!(error = %e, frames, "the writer's WAL checkpoint failed"),
            }
        } else if frames >= self.nudged_at + NUDGE_PAGES {
            self.nudged_at = frames;
            // Full: a nudge is waiting already. Disconnected: the thread is gone, and the
            // backstop above still bounds the WAL.
            match self.nudge.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
            }
        }
    }

    /// The checkpoints run so far (read by the tests; the log shows them at `debug` and
    /// `trace`).
    #[cfg(test)]
    pub fn counts(&self) -> &Counts {
        &self.counts
    }
}

/// The thread: a passive checkpoint per nudge, until the writer is dropped.
fn run(conn: &Connection, nudged: &Receiver<()>, counts: &Counts) {
    while nudged.recv().is_ok() {
        let started = Instant::now();
        match checkpoint(conn) {
            Ok(busy) => {
                counts.background.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(busy, ms = started.elapsed().as_secs_f64() * 1000.0, "WAL checkpoint");
            }
            Err(e) => tracing::warn!(error = %e, "background WAL checkpoint failed"),
        }
    }
}

/// A passive checkpoint on `conn`: `Ok(true)` when another connection's checkpoint was
/// running (nothing done).
fn checkpoint(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(0)).map(|busy| busy != 0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A connection to a new WAL file with the writer's hook, and a table of pages.
    fn writer(dir: &tempfile::TempDir) -> (String, Connection) {
        let path = dir.path().join("w.db").display().to_string();
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        conn.execute("CREATE TABLE t (x BLOB NOT NULL)", []).unwrap();
        conn.wal_hook(Some(wal_hook));
        (path, conn)
    }

    /// One commit of a page's worth of row: the WAL's frames after it.
    fn commit(conn: &Connection) -> u32 {
        conn.execute("INSERT INTO t (x) VALUES (zeroblob(4000))", []).unwrap();
        WAL_FRAMES.with(Cell::get)
    }

    /// The backstop: with a checkpointer that never runs (nudged, never reading), the writer
    /// checkpoints itself past `WRITER_PAGES`, and the log starts over: the WAL file never
    /// holds much more than the backstop, however long the writes go on.
    #[test]
    fn the_writer_bounds_the_wal_when_the_checkpointer_lags() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = writer(&dir);
        let (nudge, _never_read) = sync_channel(1);
        let mut checkpointer = Checkpointer { nudge, nudged_at: 0, counts: Arc::default() };
        let mut most = 0;
        for _ in 0..3 * WRITER_PAGES {
            most = most.max(commit(&conn));
            checkpointer.after_commit(&conn);
        }
        assert!(checkpointer.counts().writer.load(Ordering::Relaxed) >= 2, "the writer checkpointed itself");
        // A commit adds a few frames at most; past the backstop the next one starts over.
        assert!(most < WRITER_PAGES + 10, "the WAL reached {most} frames");
        let wal = std::fs::metadata(format!("{path}-wal")).unwrap().len();
        assert!(wal < u64::from(WRITER_PAGES + 10) * (4096 + 24) + 32, "the WAL file is {wal} bytes");
    }

    /// Nudged past `NUDGE_PAGES`, the thread copies the log; the writer, idle meanwhile,
    /// never checkpointed, and its next commit starts the log over.
    #[test]
    fn the_thread_checkpoints_when_nudged_and_the_log_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = writer(&dir);
        let mut checkpointer = Checkpointer::start(&path).unwrap();
        let mut frames = 0;
        for _ in 0..2 * NUDGE_PAGES {
            frames = commit(&conn);
            checkpointer.after_commit(&conn);
            if frames >= NUDGE_PAGES {
                break;
            }
        }
        assert!(frames >= NUDGE_PAGES, "the WAL reached {frames} frames");
        let counts = checkpointer.counts();
        let deadline = Instant::now() + Duration::from_secs(10);
        while counts.background.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(counts.background.load(Ordering::Relaxed), 1, "the thread checkpointed once");
        assert_eq!(counts.writer.load(Ordering::Relaxed), 0, "the writer did not");
        let after = commit(&conn);
        assert!(after < 10, "the log started over: {after} frames after the next commit");
    }
}
