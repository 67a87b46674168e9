//! A connector's circuit breaker (`circuitBreaker: { failures, coolDownMs }`): after
//! `failures` deliveries in a row failed in a way that says the target is down (no answer,
//! a timeout, 5xx, 429; not other 4xx), the connector stops trying for `coolDownMs`; then
//! one probe decides: a success closes the circuit, a failure opens it again. While it is
//! open (and while the probe is out) jobs wait: no attempt is counted, nothing parks.
//! Pure but for the lock: the clock is passed in.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Outcome;
use crate::spec::model::BreakerSpec;

/// The circuit as status and metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Circuit {
    Closed,
    Open,
    /// The cool-down is over and one probe is out.
    HalfOpen,
}

#[derive(Debug)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
    probe_out: bool,
}

/// What to do with a job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Send it (`probe`: it is the one request that decides after a cool-down).
    Send { probe: bool },
    /// Hold it back this long (not an attempt).
    Wait(Duration),
}

/// What an outcome did to the circuit (for logs, metrics and the alert).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    Opened,
    Closed,
}

#[derive(Debug)]
pub struct Breaker {
    spec: Option<BreakerSpec>,
    state: Mutex<State>,
}

/// Does `outcome` say the target is down (rather than refusing this one request)?
fn down(outcome: &Outcome, status: Option<u16>) -> bool {
    match outcome {
        Outcome::Retryable { .. } => status.is_none_or(|s| s == 429 || s >= 500 || s == 408),
        _ => false,
    }
}

impl Breaker {
    pub fn new(spec: Option<BreakerSpec>) -> Self {
        Self { spec, state: Mutex::new(State { failures: 0, open_until: None, probe_out: false }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// May a job be sent at `now`?
    pub fn gate(&self, now: Instant) -> Gate {
        let Some(spec) = self.spec else { return Gate::Send { probe: false } };
        let mut s = self.lock();
        match s.open_until {
            None => Gate::Send { probe: false },
            Some(until) if now < until => Gate::Wait(until - now),
            // Cool-down over: one probe; the others wait a little while it decides.
            Some(_) if s.probe_out => Gate::Wait(Duration::from_millis(spec.cool_down_ms.clamp(50, 1_000))),
            Some(_) => {
                s.probe_out = true;
                Gate::Send { probe: true }
            }
        }
    }

    /// Counts a delivery's outcome (`status`: the HTTP status, if an answer came).
    pub fn observe(&self, outcome: &Outcome, status: Option<u16>, probe: bool, now: Instant) -> Change {
        let Some(spec) = self.spec else { return Change::None };
        let mut s = self.lock();
        if probe {
            s.probe_out = false;
        }
        if down(outcome, status) {
            s.failures = s.failures.saturating_add(1);
            let reopen = probe && s.open_until.is_some();
            if reopen || (s.open_until.is_none() && s.failures >= spec.failures) {
                let was_closed = s.open_until.is_none();
                s.open_until = Some(now + Duration::from_millis(spec.cool_down_ms));
                return if was_closed { Change::Opened } else { Change::None };
            }
            Change::None
        } else {
            s.failures = 0;
            if s.open_until.take().is_some() {
                s.probe_out = false;
                return Change::Closed;
            }
            Change::None
        }
    }

    /// A probe was granted but no job was there to send: the next look may probe again.
    pub fn release_probe(&self) {
        self.lock().probe_out = false;
    }

    /// How long the circuit stays open from `now` (zero when it is not open).
    pub fn open_for(&self, now: Instant) -> Duration {
        self.lock().open_until.map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
    }

    /// The circuit now.
    pub fn circuit(&self, now: Instant) -> Circuit {
        let s = self.lock();
        match s.open_until {
            None => Circuit::Closed,
            Some(until) if now < until => Circuit::Open,
            Some(_) => Circuit::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down503() -> Outcome {
        Outcome::Retryable { error: "HTTP 503".into(), retry_after: None }
    }

    #[test]
    fn opens_after_consecutive_down_failures_then_one_probe_decides() {
        let b = Breaker::new(Some(BreakerSpec { failures: 3, cool_down_ms: 1_000 }));
        let t = Instant::now();
        for _ in 0..2 {
            assert_eq!(b.observe(&down503(), Some(503), false, t), Change::None);
        }
        // A refusal of one request (a 400) says the target is up: the count starts again.
        assert_eq!(b.observe(&Outcome::Permanent { error: "HTTP 400".into() }, Some(400), false, t), Change::None);
        assert_eq!(b.gate(t), Gate::Send { probe: false });
        for _ in 0..2 {
            assert_eq!(b.observe(&down503(), Some(503), false, t), Change::None);
        }
        assert_eq!(b.observe(&down503(), Some(503), false, t), Change::Opened);
        assert_eq!(b.circuit(t), Circuit::Open);
        assert_eq!(b.gate(t + Duration::from_millis(400)), Gate::Wait(Duration::from_millis(600)));
        // Cool-down over: exactly one probe goes; the others wait for its answer.
        let later = t + Duration::from_millis(1_000);
        assert_eq!(b.gate(later), Gate::Send { probe: true });
        assert!(matches!(b.gate(later), Gate::Wait(_)));
        // The probe fails (no answer at all): open again, no second "opened".
        let no_answer = Outcome::Retryable { error: "request failed: connection refused".into(), retry_after: None };
        assert_eq!(b.observe(&no_answer, None, true, later), Change::None);
        assert_eq!(b.circuit(later), Circuit::Open);
        let again = later + Duration::from_millis(1_000);
        assert_eq!(b.gate(again), Gate::Send { probe: true });
        assert_eq!(b.observe(&Outcome::Delivered { status: 200 }, Some(200), true, again), Change::Closed);
        assert_eq!((b.circuit(again), b.gate(again)), (Circuit::Closed, Gate::Send { probe: false }));
    }

    #[test]
    fn without_a_breaker_nothing_is_held() {
        let b = Breaker::new(None);
        for _ in 0..100 {
            b.observe(&down503(), Some(503), false, Instant::now());
        }
        assert_eq!(b.gate(Instant::now()), Gate::Send { probe: false });
        assert_eq!(b.circuit(Instant::now()), Circuit::Closed);
    }
}
