//! The console's counts: delivered, failed and parked per connector and minute over the
//! last hour, for the overview's "last 5 minutes" and the connector page's chart. Read from
//! the database (so they cover every instance and survive restarts), but incrementally:
//! the first look reads the last hour's tickets once, every later look only the tickets
//! appended since (by id, the primary key), so a page costs what happened since the last
//! one, not what the table holds. Failed attempts are counted from their partial index.
//! Nothing of this runs on the delivery path.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, NaiveDateTime, Utc};

use crate::storage::{self, Counts, Db, StorageError};

/// Minutes kept.
const HOUR: i64 = 60;
/// Tickets read per query, and queries per look at most (a backlog of more is read over
/// the next looks).
const BATCH: u64 = 20_000;
const BATCHES: usize = 25;
/// Failed attempts are counted again at most this often.
const FAILURES_EVERY: StdDuration = StdDuration::from_secs(2);

#[derive(Default)]
pub struct Rollup {
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The id of the next ticket to read (`None`: not read yet).
    next: Option<i64>,
    /// Unix minute → connector → tickets counted.
    tickets: BTreeMap<i64, HashMap<String, Counts>>,
    /// (connector, unix minute) → failed attempts, and when they were counted.
    failures: HashMap<(String, i64), i64>,
    failures_at: Option<Instant>,
}

fn minute(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(60)
}

/// `YYYY-MM-DD HH:MM` (UTC) of a unix minute.
pub fn minute_key(m: i64) -> String {
    DateTime::from_timestamp(m * 60, 0).map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()
}

impl Rollup {
    /// Reads what was appended since the last look.
    async fn refresh<'a>(&'a self, db: &Db, now: DateTime<Utc>) -> Result<tokio::sync::MutexGuard<'a, State>, StorageError> {
        let mut st = self.state.lock().await;
        let oldest = minute(now) - HOUR + 1;
        let mut next = match st.next {
            Some(n) => n,
            None => storage::ticket_cursor_since(db, now - Duration::minutes(HOUR)).await?,
        };
        for _ in 0..BATCHES {
            let batch = storage::tickets_from(db, next, BATCH).await?;
            for t in &batch {
                let m = minute(t.created_at);
                if m < oldest {
                    continue;
                }
                let c = st.tickets.entry(m).or_default().entry(t.connector_id.clone()).or_default();
                match t.status.as_str() {
                    "completed" => c.delivered += 1,
                    "parked" | "conflict" => c.parked += 1,
                    _ => {}
                }
            }
            if let Some(last) = batch.last() {
                next = last.id + 1;
            }
            if (batch.len() as u64) < BATCH {
                break;
            }
        }
        st.next = Some(next);
        st.tickets.retain(|m, _| *m >= oldest);
        if st.failures_at.is_none_or(|at| at.elapsed() >= FAILURES_EVERY) {
            let rows = storage::failures_per_minute(db, now - Duration::minutes(HOUR)).await?;
            st.failures = rows
                .into_iter()
                .filter_map(|(c, key, n)| NaiveDateTime::parse_from_str(&key, "%Y-%m-%d %H:%M").ok().map(|t| ((c, minute(t.and_utc())), n)))
                .collect();
            st.failures_at = Some(Instant::now());
        }
        Ok(st)
    }

    /// Per connector: the counts of the last `minutes` minutes (the current one included).
    pub async fn recent(&self, db: &Db, now: DateTime<Utc>, minutes: i64) -> Result<HashMap<String, Counts>, StorageError> {
        let st = self.refresh(db, now).await?;
        let from = minute(now) - minutes + 1;
        let mut out: HashMap<String, Counts> = HashMap::new();
        for (_, per) in st.tickets.range(from..) {
            for (c, n) in per {
                let e = out.entry(c.clone()).or_default();
                e.delivered += n.delivered;
                e.parked += n.parked;
            }
        }
        for ((c, m), n) in &st.failures {
            if *m >= from {
                out.entry(c.clone()).or_default().failed += n;
            }
        }
        Ok(out)
    }

    /// Connector `id`'s counts per minute over the last hour, keyed `YYYY-MM-DD HH:MM`.
    pub async fn per_minute(&self, db: &Db, now: DateTime<Utc>, id: &str) -> Result<HashMap<String, Counts>, StorageError> {
        let st = self.refresh(db, now).await?;
        let mut out: HashMap<String, Counts> = HashMap::new();
        for (m, per) in &st.tickets {
            if let Some(n) = per.get(id) {
                let e = out.entry(minute_key(*m)).or_default();
                e.delivered += n.delivered;
                e.parked += n.parked;
            }
        }
        for ((c, m), n) in &st.failures {
            if c == id {
                out.entry(minute_key(*m)).or_default().failed += n;
            }
        }
        Ok(out)
    }
}
