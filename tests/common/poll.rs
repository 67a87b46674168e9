//! Bounded waits: ask again until a condition holds, at most so long; never a bare sleep.
//! Async for tests on the actix (or tokio) runtime, `_sync` twins for tests driving child
//! processes. Shared by the test crates (`#[path]`); a crate uses what it needs of it.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a test waits for what the application does by itself, unless it says otherwise.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often [`poll_until`] and [`poll_until_sync`] ask.
const EVERY: Duration = Duration::from_millis(20);

/// Waits until `check` gives `Some`, at most `timeout`; panics with `what` otherwise.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let found = try_poll_until(timeout, EVERY, || {
        let asked = check();
        async move { asked.await.ok_or(()) }
    });
    found.await.unwrap_or_else(|()| panic!("timed out after {timeout:?} waiting for: {what}"))
}

/// Asks `check` every `every` (back to back when zero) until it gives `Ok`, at most
/// `timeout`; past it, the last `Err` (why it is not there yet), for the caller to report
/// with more detail or to clean up after.
pub async fn try_poll_until<T, E, F, Fut>(timeout: Duration, every: Duration, mut check: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let not_yet = match check().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(not_yet);
        }
        if !every.is_zero() {
            actix_web::rt::time::sleep(every).await;
        }
    }
}

/// [`poll_until`] for synchronous code (a child process, a channel): waits until `check`
/// gives `Some`, at most `timeout`; panics with `what` otherwise.
pub fn poll_until_sync<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    try_poll_until_sync(timeout, EVERY, || check().ok_or(())).unwrap_or_else(|()| panic!("timed out after {timeout:?} waiting for: {what}"))
}

/// [`try_poll_until`] for synchronous code: asks `check` every `every` until it gives `Ok`,
/// at most `timeout`; past it, the last `Err`.
pub fn try_poll_until_sync<T, E>(timeout: Duration, every: Duration, mut check: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = Instant::now() + timeout;
    loop {
        let not_yet = match check() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(not_yet);
        }
        std::thread::sleep(every);
    }
}
