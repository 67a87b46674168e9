//! A connector's request rate: a token bucket (`rateLimit: { perSecond, burst }`) over all
//! its requests (deliveries, pulls, resolver reads, lookups), and a pause when an answer
//! says the API's own budget is spent (`RateLimit-Remaining: 0` / `X-RateLimit-Remaining:
//! 0` with a reset). A request that waits here is delayed, not failed: no attempt is
//! counted. Per instance (each process has its own bucket).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::spec::model::RateLimitSpec;

/// The bucket's state: tokens now, when they were counted, and a pause the API asked for.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: Instant,
    paused_until: Option<Instant>,
}

/// When a request may go (see [`RateLimiter::turn`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Turn {
    Now,
    /// Its slot is reserved: go after this wait.
    After(Duration),
    /// An answer paused the connector: ask again after this.
    Paused(Duration),
}

/// One connector's limiter. Without `rateLimit` it only honours the answers' pauses.
#[derive(Debug)]
pub struct RateLimiter {
    limit: Option<RateLimitSpec>,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    pub fn new(limit: Option<RateLimitSpec>) -> Self {
        let tokens = limit.map_or(0.0, |l| f64::from(l.burst));
        Self { limit, bucket: Mutex::new(Bucket { tokens, at: Instant::now(), paused_until: None }) }
    }

    /// A request's turn at `now`: at once, or after a wait with its token already
    /// reserved (the bucket may go below zero: each waiting request holds its own slot, so
    /// oversleeping a little never costs the rate), or paused by an answer (ask again
    /// then). Pure but for the lock (tests pass the clock).
    pub fn turn(&self, now: Instant) -> Turn {
        let mut b = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(until) = b.paused_until {
            if now < until {
                return Turn::Paused(until - now);
            }
            b.paused_until = None;
        }
        let Some(limit) = self.limit else { return Turn::Now };
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * limit.per_second).min(f64::from(limit.burst));
        b.at = now;
        b.tokens -= 1.0;
        if b.tokens >= 0.0 { Turn::Now } else { Turn::After(Duration::from_secs_f64(-b.tokens / limit.per_second)) }
    }

    /// Waits until a request may go (its slot reserved, or the answer's pause over).
    pub async fn acquire(&self) {
        // Bounded: a reserved turn ends the loop; only a pause (set by an answer, at most an
        // hour each) makes it ask again.
        loop {
            match self.turn(Instant::now()) {
                Turn::Now => return,
                Turn::After(wait) => {
                    actix_web::rt::time::sleep(wait).await;
                    // A pause an answer set meanwhile holds a reserved turn too.
                    while let Some(pause) = self.paused_for(Instant::now()) {
                        actix_web::rt::time::sleep(pause.max(Duration::from_millis(1))).await;
                    }
                    return;
                }
                Turn::Paused(wait) => actix_web::rt::time::sleep(wait.max(Duration::from_millis(1))).await,
            }
        }
    }

    /// How long an answer's pause still lasts at `now`, if one does.
    fn paused_for(&self, now: Instant) -> Option<Duration> {
        let b = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        b.paused_until.filter(|until| now < *until).map(|until| until - now)
    }

    /// The API said its budget is spent until `reset` from now: no request before then.
    pub fn pause_for(&self, reset: Duration) {
        let until = Instant::now() + reset.min(Duration::from_secs(3_600));
        let mut b = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if b.paused_until.is_none_or(|p| p < until) {
            b.paused_until = Some(until);
        }
    }
}

/// How long an answer asks to pause: `RateLimit-Remaining: 0` (IETF draft) or
/// `X-RateLimit-Remaining: 0` (GitHub, Stripe-like), with `…-Reset` in seconds from now,
/// or as a Unix time (a value over a day is read as one).
pub fn pause_asked(get: impl Fn(&str) -> Option<String>, now_unix: i64) -> Option<Duration> {
    let spent = ["ratelimit-remaining", "x-ratelimit-remaining"].iter().any(|h| get(h).is_some_and(|v| v.trim() == "0"));
    if !spent {
        return None;
    }
    let reset: i64 = ["ratelimit-reset", "x-ratelimit-reset"].iter().find_map(|h| get(h).and_then(|v| v.trim().parse().ok()))?;
    let secs = if reset > 86_400 { reset - now_unix } else { reset };
    Some(Duration::from_secs(secs.clamp(0, 3_600) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_lets_a_burst_through_then_one_request_per_period() {
        let l = RateLimiter::new(Some(RateLimitSpec { per_second: 10.0, burst: 2 }));
        let t = Instant::now();
        assert_eq!(l.turn(t), Turn::Now);
        assert_eq!(l.turn(t), Turn::Now);
        // The next ones reserve their slots: 0.1 s, 0.2 s, 0.3 s from now.
        for n in 1..=3 {
            let Turn::After(wait) = l.turn(t) else { panic!("a reserved turn") };
            assert!((wait.as_secs_f64() - 0.1 * f64::from(n)).abs() < 1e-6, "{n}: {wait:?}");
        }
        // Long after, never more than the burst at once.
        let later = t + Duration::from_secs(10);
        assert_eq!((l.turn(later), l.turn(later)), (Turn::Now, Turn::Now));
        assert!(matches!(l.turn(later), Turn::After(_)));
    }

    #[test]
    fn an_answer_pauses_every_request_until_its_reset() {
        let l = RateLimiter::new(None);
        assert_eq!(l.turn(Instant::now()), Turn::Now, "no limit: never waits");
        l.pause_for(Duration::from_secs(2));
        let Turn::Paused(wait) = l.turn(Instant::now()) else { panic!("paused") };
        assert!(wait > Duration::from_millis(1_900), "{wait:?}");
        let headers = |h: &str| match h {
            "x-ratelimit-remaining" => Some("0".to_string()),
            "x-ratelimit-reset" => Some("1700000030".to_string()),
            _ => None,
        };
        assert_eq!(pause_asked(headers, 1_700_000_000), Some(Duration::from_secs(30)), "a Unix reset time");
        assert_eq!(pause_asked(|h| (h == "ratelimit-remaining").then(|| "0".into()).or((h == "ratelimit-reset").then(|| "5".into())), 0), Some(Duration::from_secs(5)));
        assert_eq!(pause_asked(|h| (h == "ratelimit-remaining").then(|| "3".into()), 0), None, "budget left");
    }
}
