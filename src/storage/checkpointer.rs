//! SQLite's checkpointer: copies the write-ahead log into the database file on a thread of
//! its own, so that the Committer's commits (and every event waiting on them) do not wait
//! for the copy and its two syncs.
//!
//! The protocol, between the writer's connection and this thread's:
//! - after each commit the writer learns how many frames the WAL holds (SQLite's WAL hook);
//! - every [`NUDGE_PAGES`] frames, it nudges this thread, which runs a passive checkpoint
//!   (one that never blocks the writer, nor waits for it) and tells how far it copied;
//! - from [`WRITER_PAGES`] on, the writer checkpoints itself once what is left to copy is at
//!   most [`WRITER_TAIL`] frames, or whatever is left past [`HARD_PAGES`].
//!
//! The writer's own checkpoint is what keeps the WAL bounded. SQLite starts the log over
//! only when a write transaction begins with every frame copied. Under a steady load the
//! writer appends while a passive checkpoint runs, so this thread alone rarely gets there
//! (an earlier checkpointer that ran every 100 ms, with no backstop nearer than 16 MiB, let
//! the WAL grow to it). The writer's own checkpoint runs with no writer beside it and copies
//! what is left; the next commit starts the log over. Every event waiting on that commit
//! waits for it, ten times a second at 3,500 events/s: those batches were the slowest 3%.
//! Its cost is mostly its two syncs, which wait for the disk (2.5–4 ms each under that load
//! on the machine of 2026-12-02, whatever they flush), not the copy. So the writer waits for
//! the pass nudged at [`WRITER_PAGES`], after which the log often starts over with no writer
//! checkpoint at all (a fifth fewer of them), and the thread syncs the database file after
//! each pass that left part of the log (one that copied it all has synced it already), so
//! that the writer's sync has less left to flush (README, Performance: "The writer's share
//! of the checkpoints").

use std::cell::Cell;
use std::os::raw::c_int;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
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

/// WAL frames (4 MB) from which the writer checkpoints itself, once the thread has left it
/// at most [`WRITER_TAIL`] frames: it waits for the pass nudged here.
pub(super) const WRITER_PAGES: u32 = 1_000;

/// The most frames the writer copies itself before [`HARD_PAGES`]: a few commits' worth at a
/// moderate load.
pub(super) const WRITER_TAIL: u32 = 64;

/// WAL frames (5 MB) from which the writer checkpoints itself whatever is left: the backstop,
/// for a thread that cannot keep up (at saturation it copies the frames of the last nudge
/// gap, as it did at [`WRITER_PAGES`] before). It is also the pool's connections'
/// autocheckpoint, so a pooled write (a webhook, a pull, an operator's replay) is not the
/// one that copies. (Nudging the thread after every commit from [`WRITER_PAGES`] on, so that
/// it chased the log's end, the thread ran back to back at saturation and copied the hot
/// pages more often: 8.5 KiB written per event against 7.8, 5% more CPU per event and 3%
/// fewer events per second, `benches/wrk/run.sh`, 4 rounds.)
pub(super) const HARD_PAGES: u32 = WRITER_PAGES + NUDGE_PAGES;

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
    /// The WAL's frames after the previous commit: fewer now means the log started over.
    last_frames: u32,
    /// The WAL's frames at the last nudge: the next comes [`NUDGE_PAGES`] later, so that
    /// the thread copies about as often as the writer's own checkpoint did (nudged after
    /// every commit instead, it ran back to back under a steady load and copied the hot
    /// pages more often: a fifth more bytes written per event, a tenth more CPU).
    nudged_at: u32,
    counts: Arc<Counts>,
}

/// Checkpoints run, by whom, and how far the thread copied.
#[derive(Debug, Default)]
pub struct Counts {
    /// Passive checkpoints this thread ran.
    pub background: AtomicU64,
    /// Checkpoints the writer ran itself, past [`WRITER_PAGES`].
    pub writer: AtomicU64,
    /// The log's generation: the writer counts each start over it sees.
    generation: AtomicU32,
    /// What the thread's last checkpoint copied: `generation << 32 | frames`, the generation
    /// read before it started. One that straddled a start over names the old generation,
    /// and the writer ignores it.
    copied: AtomicU64,
}

impl Counts {
    /// The frames of the log's current generation the thread has copied.
    fn copied(&self) -> u32 {
        let generation = self.generation.load(Ordering::Acquire);
        let copied = self.copied.load(Ordering::Acquire);
        if (copied >> 32) as u32 == generation { copied as u32 } else { 0 }
    }

    /// The thread copied `frames` of the log of `generation` (read before its pass began).
    fn note_copied(&self, generation: u32, frames: u32) {
        self.copied.store(u64::from(generation) << 32 | u64::from(frames), Ordering::Release);
    }
}

impl Checkpointer {
    /// Starts the thread, with a connection of its own to the database file at `path`.
    pub fn start(path: &str) -> std::io::Result<Self> {
        let conn = Connection::open(path).map_err(std::io::Error::other)?;
        conn.busy_timeout(super::SQLITE_BUSY_TIMEOUT).map_err(std::io::Error::other)?;
        let file = std::fs::File::open(path)?;
        let counts = Arc::new(Counts::default());
        let (nudge, nudged) = sync_channel(1);
        let seen = counts.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .stack_size(STACK)
            .spawn(move || run(&conn, &file, &nudged, &seen))?;
        Ok(Self { nudge, last_frames: 0, nudged_at: 0, counts })
    }

    /// After a commit on `conn` (the writer's): nudges the thread each [`NUDGE_PAGES`]
    /// frames; from [`WRITER_PAGES`] on, checkpoints here once the thread has left at most
    /// [`WRITER_TAIL`] frames (or past [`HARD_PAGES`]). A checkpoint that finds the thread's
    /// still running is refused at once (`SQLITE_BUSY`) and tried again after the next commit.
    pub(super) fn after_commit(&mut self, conn: &Connection) {
        let frames = WAL_FRAMES.with(|f| f.replace(0));
        if frames == 0 {
            // No commit (a failed write): nothing new in the log.
            return;
        }
        if frames < self.last_frames {
            // The log started over.
            self.nudged_at = 0;
            self.counts.generation.fetch_add(1, Ordering::AcqRel);
        }
        self.last_frames = frames;
        if frames >= WRITER_PAGES {
            let left = frames.saturating_sub(self.counts.copied());
            if left <= WRITER_TAIL || frames >= HARD_PAGES {
                match checkpoint(conn) {
                    Ok(None) => {}
                    Ok(Some(_)) => {
                        let n = self.counts.writer.fetch_add(1, Ordering::Relaxed) + 1;
                        tracing::debug!(frames, left, times = n, "the writer checkpointed the rest of the WAL itself");
                    }
                    Err(e) => tracing::warn!(error = %e, frames, "the writer's WAL checkpoint failed"),
                }
                return;
            }
        }
        if frames >= self.nudged_at + NUDGE_PAGES {
            self.nudged_at = frames;
            self.nudge();
        }
    }

    fn nudge(&self) {
        // Full: a nudge is waiting already. Disconnected: the thread is gone, and the
        // backstop above still bounds the WAL.
        match self.nudge.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }

    /// The checkpoints run so far (read by the tests; the log shows them at `debug` and
    /// `trace`).
    #[cfg(test)]
    pub fn counts(&self) -> &Counts {
        &self.counts
    }
}

/// The thread: a passive checkpoint per nudge, until the writer is dropped, each that copied
/// part of the log followed by a sync of the database file (a pass syncs it itself only when
/// it copied the whole log, which under a steady load it rarely does: what it copied was
/// left for the writer's own checkpoint to sync). What each one copied is told to the
/// writer, with the log's generation read before it started.
fn run(conn: &Connection, file: &std::fs::File, nudged: &Receiver<()>, counts: &Counts) {
    while nudged.recv().is_ok() {
        let started = Instant::now();
        let generation = counts.generation.load(Ordering::Acquire);
        match checkpoint(conn) {
            Ok(pass) => {
                counts.background.fetch_add(1, Ordering::Relaxed);
                if let Some(Pass { log, copied }) = pass {
                    if copied < log
                        && let Err(e) = file.sync_data()
                    {
                        tracing::warn!(error = %e, "cannot sync the database file after a WAL checkpoint");
                    }
                    counts.note_copied(generation, copied);
                }
                tracing::trace!(busy = pass.is_none(), ms = started.elapsed().as_secs_f64() * 1000.0, "WAL checkpoint");
            }
            Err(e) => tracing::warn!(error = %e, "background WAL checkpoint failed"),
        }
    }
}

/// What a passive checkpoint found: the log's frames, and how many of them are copied.
#[derive(Clone, Copy)]
struct Pass {
    log: u32,
    copied: u32,
}

/// A passive checkpoint on `conn`, or `None` when another connection's checkpoint was
/// running (nothing done).
fn checkpoint(conn: &Connection) -> rusqlite::Result<Option<Pass>> {
    let frames = |n: i64| u32::try_from(n).unwrap_or(0);
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?)))
        .map(|(busy, log, copied)| (busy == 0).then(|| Pass { log: frames(log), copied: frames(copied) }))
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

    /// One commit, then the checkpointer's turn: the WAL's frames after it.
    fn commit_told(conn: &Connection, checkpointer: &mut Checkpointer) -> u32 {
        let frames = commit(conn);
        checkpointer.after_commit(conn);
        frames
    }

    /// A checkpointer whose thread never runs (nudged, never reading), and the channel's
    /// reading end, kept so that the nudges are not refused as disconnected.
    fn unread() -> (Checkpointer, Receiver<()>) {
        let (nudge, never_read) = sync_channel(1);
        (Checkpointer { nudge, last_frames: 0, nudged_at: 0, counts: Arc::default() }, never_read)
    }

    /// The backstop: with a checkpointer that never runs, the writer checkpoints itself past
    /// `HARD_PAGES`, and the log starts over: the WAL file never holds much more than the
    /// backstop, however long the writes go on.
    #[test]
    fn the_writer_bounds_the_wal_when_the_checkpointer_lags() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = writer(&dir);
        let (mut checkpointer, _never_read) = unread();
        let mut most = 0;
        for _ in 0..2 * HARD_PAGES + 10 {
            most = most.max(commit_told(&conn, &mut checkpointer));
        }
        assert!(checkpointer.counts().writer.load(Ordering::Relaxed) >= 2, "the writer checkpointed itself");
        // A commit adds a few frames at most; past the backstop the next one starts over.
        assert!(most < HARD_PAGES + 10, "the WAL reached {most} frames");
        let wal = std::fs::metadata(format!("{path}-wal")).unwrap().len();
        assert!(wal < u64::from(HARD_PAGES + 10) * (4096 + 24) + 32, "the WAL file is {wal} bytes");
    }

    /// Past `WRITER_PAGES` the writer leaves the copying to the thread until the thread has
    /// copied all but `WRITER_TAIL` frames of the log's current generation; then it copies
    /// the rest itself, and the next commit starts the log over. What the thread copied of
    /// an earlier generation does not count.
    #[test]
    fn the_writer_copies_only_the_tail_the_thread_left() {
        let dir = tempfile::tempdir().unwrap();
        let (_path, conn) = writer(&dir);
        let (mut checkpointer, _never_read) = unread();
        let mut frames = 0;
        while frames < WRITER_PAGES + 2 * WRITER_TAIL {
            frames = commit_told(&conn, &mut checkpointer);
        }
        let counts = checkpointer.counts.clone();
        assert_eq!(counts.writer.load(Ordering::Relaxed), 0, "nothing copied by the thread: the writer waits");
        let generation = counts.generation.load(Ordering::Relaxed);
        // Told of a copy of an older generation: still waits.
        counts.note_copied(generation.wrapping_sub(1), frames);
        frames = commit_told(&conn, &mut checkpointer);
        assert_eq!(counts.writer.load(Ordering::Relaxed), 0, "an older generation's copy does not count");
        // The thread copied all but the last commits of this generation.
        counts.note_copied(generation, frames - WRITER_TAIL / 2);
        frames = commit_told(&conn, &mut checkpointer);
        assert_eq!(counts.writer.load(Ordering::Relaxed), 1, "the writer copied the tail");
        let after = commit_told(&conn, &mut checkpointer);
        assert!(after < frames && after < 10, "the log started over: {after} frames after the next commit");
        assert_eq!(counts.generation.load(Ordering::Relaxed), generation + 1, "the writer saw the start over");
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
            frames = commit_told(&conn, &mut checkpointer);
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
