//! Settle: what an attempt's classified answer means for its job: done, retried at a time,
//! held while the circuit is open, or parked. Pure (the clock, the jitter and the secret
//! scrubbing are passed in), so every branch is unit-tested without a server.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Decision, Outcome, RetryPolicy};

/// A job's fate after one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// Delivered.
    Done,
    /// Failed; try again at `at`.
    Retry { at: DateTime<Utc>, error: String },
    /// Failed while the target is down (the circuit is open after this failure): the job
    /// waits for the cool-down's end and the attempt is not counted against it, so a job
    /// never parks for an outage.
    Hold { at: DateTime<Utc>, error: String },
    /// Failed for good: kept for a person.
    Park { reason: String },
}

impl Settlement {
    /// The attempts the job has after this settlement, `attempts` counting this one.
    pub fn attempts(&self, attempts: i32) -> i32 {
        match self {
            Settlement::Hold { .. } => attempts - 1,
            _ => attempts,
        }
    }
}

/// Settles attempt number `attempts` (counting this one) whose answer was `outcome`.
/// `circuit_open_for`: the circuit breaker is open after this answer, for that long.
/// `scrub` takes every secret out of an error text before it is stored or shown.
pub fn settle(
    policy: &RetryPolicy,
    outcome: &Outcome,
    attempts: i32,
    jitter: f64,
    circuit_open_for: Option<Duration>,
    now: DateTime<Utc>,
    scrub: impl Fn(&str) -> String,
) -> Settlement {
    let later = |d: Duration| now + chrono::Duration::from_std(d).unwrap_or_default();
    // Only a retryable failure can be the outage's: a refusal parks as it would with the
    // circuit closed.
    if let (Outcome::Retryable { .. }, Some(wait)) = (outcome, circuit_open_for) {
        return Settlement::Hold { at: later(wait), error: format!("circuit open, waiting: {}", scrub(&outcome.error_text())) };
    }
    match policy.decide(outcome, attempts.max(0) as u32, jitter) {
        Decision::Done => Settlement::Done,
        Decision::RetryIn(delay) => Settlement::Retry { at: later(delay), error: scrub(&outcome.error_text()) },
        Decision::Park(reason) => Settlement::Park { reason: scrub(&reason) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn policy() -> RetryPolicy {
        RetryPolicy { max: 3, backoff_ms: 100, max_backoff_ms: 1_000, on: None }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn failed(error: &str) -> Outcome {
        Outcome::Retryable { error: error.into(), retry_after: None }
    }

    #[test]
    fn a_delivered_answer_is_done() {
        assert_eq!(settle(&policy(), &Outcome::Delivered { status: 200 }, 1, 0.5, None, t0(), str::to_string), Settlement::Done);
    }

    #[test]
    fn a_retryable_failure_is_retried_later_with_its_error_scrubbed() {
        let s = settle(&policy(), &failed("503 from https://x/?key=s3cret"), 1, 0.0, None, t0(), |e| e.replace("s3cret", "${KEY}"));
        let Settlement::Retry { at, error } = s else { panic!("{s:?}") };
        assert!(at > t0(), "later than now");
        assert!(error.contains("${KEY}") && !error.contains("s3cret"), "{error}");
    }

    #[test]
    fn the_last_attempt_parks() {
        let s = settle(&policy(), &failed("503"), 3, 0.5, None, t0(), str::to_string);
        assert!(matches!(s, Settlement::Park { .. }), "{s:?}");
        let refused = settle(&policy(), &Outcome::Permanent { error: "400 bad".into() }, 1, 0.5, None, t0(), str::to_string);
        assert!(matches!(refused, Settlement::Park { .. }), "a refusal parks at once: {refused:?}");
    }

    #[test]
    fn an_open_circuit_holds_a_retryable_failure_without_counting_it() {
        let s = settle(&policy(), &failed("503"), 3, 0.5, Some(Duration::from_secs(5)), t0(), str::to_string);
        assert_eq!(s, Settlement::Hold { at: t0() + chrono::Duration::seconds(5), error: "circuit open, waiting: 503".into() });
        assert_eq!(s.attempts(3), 2, "the attempt is not counted: the outage's, not the job's");
        let refused = settle(&policy(), &Outcome::Permanent { error: "400 bad".into() }, 1, 0.5, Some(Duration::from_secs(5)), t0(), str::to_string);
        assert!(matches!(refused, Settlement::Park { .. }), "a refusal is the job's own: {refused:?}");
    }
}
