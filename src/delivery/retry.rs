//! The retry policy, pure: exponential back-off with jitter, `Retry-After`, park after max.

use std::time::Duration;

use super::Outcome;

/// A connector's `retry` block, in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included: after `max` failed attempts the job is parked
    /// (the seed: "after `max` attempts it parks the job"). At least 1.
    pub max: u32,
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// The statuses retried (`retry.on`); `None`: 408, 429 and 5xx.
    pub on: Option<crate::spec::model::StatusSet>,
}

/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// What to do with a job after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Done,
    RetryIn(Duration),
    Park(String),
}

impl RetryPolicy {
    /// The policy of a connector's `retry:` block.
    pub fn of(spec: &crate::spec::ConnectorSpec) -> Self {
        let r = &spec.retry;
        Self { max: r.max, backoff_ms: r.backoff_ms, max_backoff_ms: r.max_backoff_ms, on: r.on }
    }

    /// An answer's outcome under this policy: with `retry.on`, a non-2xx status is retried
    /// when listed and parks when not; transport errors stay retryable.
    pub fn classify(&self, outcome: Outcome, status: Option<u16>) -> Outcome {
        match (self.on, status, outcome) {
            (Some(on), Some(code), Outcome::Permanent { error }) if on.contains(code) => Outcome::Retryable { error, retry_after: None },
            (Some(on), Some(code), Outcome::Retryable { error, .. }) if !on.contains(code) => Outcome::Permanent { error },
            (_, _, outcome) => outcome,
        }
    }

    /// `attempts` counts the attempt just made (1 for the first). `jitter` is in [0, 1):
    /// the delay is drawn from the upper half of the exponential step ("equal jitter"),
    /// which spreads a crowd of retries without ever retrying sooner than half the step.
    pub fn decide(&self, outcome: &Outcome, attempts: u32, jitter: f64) -> Decision {
        match outcome {
            Outcome::Delivered { .. } => Decision::Done,
            Outcome::Permanent { error } => Decision::Park(error.clone()),
            Outcome::Retryable { error, .. } if attempts >= self.max.max(1) => {
                Decision::Park(format!("gave up after {attempts} attempts: {error}"))
            }
            Outcome::Retryable { retry_after, .. } => {
                let step = self.step(attempts);
                let jittered = step / 2 + step.mul_f64(jitter.clamp(0.0, 1.0) / 2.0);
                // A server's Retry-After is honoured up to a day: a larger one (or a garbage
                // one) must not block the record key for years or overflow the clock.
                let honoured = retry_after.map(|ra| ra.min(MAX_RETRY_AFTER));
                Decision::RetryIn(honoured.map_or(jittered, |ra| ra.max(jittered)))
            }
        }
    }

    fn step(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        Duration::from_millis(self.backoff_ms.saturating_mul(1u64 << doublings).min(self.max_backoff_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RetryPolicy = RetryPolicy { max: 4, backoff_ms: 1000, max_backoff_ms: 3000, on: None };

    fn retryable(ra: Option<u64>) -> Outcome {
        Outcome::Retryable { error: "HTTP 503".into(), retry_after: ra.map(Duration::from_secs) }
    }

    #[test]
    fn backs_off_exponentially_with_bounded_jitter_and_cap() {
        assert_eq!(P.decide(&retryable(None), 1, 0.0), Decision::RetryIn(Duration::from_millis(500)));
        assert_eq!(P.decide(&retryable(None), 1, 0.999_999), Decision::RetryIn(Duration::from_nanos(999_999_500)));
        assert_eq!(P.decide(&retryable(None), 2, 0.0), Decision::RetryIn(Duration::from_millis(1000)));
        assert_eq!(P.decide(&retryable(None), 3, 0.0), Decision::RetryIn(Duration::from_millis(1500)), "capped at 3 s");
    }

    #[test]
    fn retry_on_lists_the_statuses_retried() {
        let mut on = crate::spec::model::StatusSet::default();
        on.insert(409);
        on.insert(503);
        let p = RetryPolicy { on: Some(on), ..P };
        let perm = |e: &str| Outcome::Permanent { error: e.into() };
        assert!(matches!(p.classify(perm("HTTP 409"), Some(409)), Outcome::Retryable { .. }));
        assert!(matches!(p.classify(retryable(None), Some(500)), Outcome::Permanent { .. }), "500 is not listed");
        assert!(matches!(p.classify(retryable(None), None), Outcome::Retryable { .. }), "a transport error stays retryable");
        assert!(matches!(P.classify(perm("HTTP 409"), Some(409)), Outcome::Permanent { .. }), "default: 409 parks");
    }

    #[test]
    fn parks_after_max_attempts() {
        assert!(matches!(P.decide(&retryable(None), 3, 0.5), Decision::RetryIn(_)), "attempt 3 of 4 is retried");
        assert!(matches!(P.decide(&retryable(None), 4, 0.5), Decision::Park(e) if e.contains("4 attempts")));
        let once = RetryPolicy { max: 1, ..P };
        assert!(matches!(once.decide(&retryable(None), 1, 0.5), Decision::Park(_)), "max 1: no retry");
    }

    #[test]
    fn retry_after_wins_when_longer() {
        assert_eq!(P.decide(&retryable(Some(7)), 1, 0.0), Decision::RetryIn(Duration::from_secs(7)));
        assert_eq!(P.decide(&retryable(Some(0)), 2, 0.0), Decision::RetryIn(Duration::from_millis(1000)));
    }

    #[test]
    fn retry_after_is_capped_at_a_day() {
        let huge = Outcome::Retryable { error: "HTTP 503".into(), retry_after: Some(Duration::from_secs(9_000_000_000_000)) };
        assert_eq!(P.decide(&huge, 1, 0.0), Decision::RetryIn(MAX_RETRY_AFTER));
    }

    #[test]
    fn permanent_parks_at_once_and_success_is_done() {
        assert_eq!(P.decide(&Outcome::Permanent { error: "HTTP 400".into() }, 1, 0.0), Decision::Park("HTTP 400".into()));
        assert_eq!(P.decide(&Outcome::Delivered { status: 200 }, 1, 0.0), Decision::Done);
    }
}
