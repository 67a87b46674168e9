//! Restart intensity, OTP-style: at most R restarts in P seconds, with doubling back-off.
//!
//! Pure (time is passed in) so the window is unit-tested without clocks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::settings::SupervisionSettings;

/// What the supervisor should do after a child died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Restart after this delay.
    Restart(Duration),
    /// Too many restarts in the window: give up until an operator restarts the connector.
    GiveUp,
}

/// Sliding window of recent restarts.
#[derive(Debug, Clone)]
pub struct RestartWindow {
    policy: SupervisionSettings,
    recent: VecDeque<Instant>,
}

impl RestartWindow {
    pub fn new(policy: SupervisionSettings) -> Self {
        Self { policy, recent: VecDeque::new() }
    }

    pub fn policy(&self) -> SupervisionSettings {
        self.policy
    }

    /// Records a crash at `now` and says whether to restart, and after how long.
    pub fn on_crash(&mut self, now: Instant) -> Verdict {
        let window = Duration::from_secs(self.policy.within_secs.max(1));
        while self.recent.front().is_some_and(|t| now.duration_since(*t) >= window) {
            self.recent.pop_front();
        }
        if self.recent.len() as u64 >= u64::from(self.policy.max_restarts) {
            return Verdict::GiveUp;
        }
        self.recent.push_back(now);
        // The n-th restart in the window waits backoff_ms × 2^(n-1); with OTP's timing the
        // first is immediate and the doubling starts at the second.
        let n = self.recent.len() as u32;
        if self.policy.immediate_first_restart && n == 1 {
            return Verdict::Restart(Duration::ZERO);
        }
        let doublings = n.saturating_sub(if self.policy.immediate_first_restart { 2 } else { 1 }).min(20);
        let delay = self.policy.backoff_ms.saturating_mul(1u64 << doublings).min(self.policy.max_backoff_ms);
        Verdict::Restart(Duration::from_millis(delay))
    }

    /// Forgets past crashes (an operator's explicit restart starts afresh).
    pub fn reset(&mut self) {
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: u32, within: u64) -> SupervisionSettings {
        SupervisionSettings { max_restarts: max, within_secs: within, backoff_ms: 100, max_backoff_ms: 350, immediate_first_restart: false }
    }

    /// Issue 12, item 3: OTP's timing, the first restart in a window at once.
    #[test]
    fn the_first_restart_is_immediate_then_the_back_off_doubles() {
        let mut w = RestartWindow::new(SupervisionSettings { immediate_first_restart: true, ..policy(4, 10) });
        let t = Instant::now();
        assert_eq!(w.on_crash(t), Verdict::Restart(Duration::ZERO));
        assert_eq!(w.on_crash(t), Verdict::Restart(Duration::from_millis(100)));
        assert_eq!(w.on_crash(t), Verdict::Restart(Duration::from_millis(200)));
        assert_eq!(w.on_crash(t), Verdict::Restart(Duration::from_millis(350)), "capped");
        assert_eq!(w.on_crash(t), Verdict::GiveUp);
        // A crash after the window has emptied is a first one again.
        let mut w = RestartWindow::new(SupervisionSettings { immediate_first_restart: true, ..policy(4, 10) });
        assert_eq!(w.on_crash(t), Verdict::Restart(Duration::ZERO));
        assert_eq!(w.on_crash(t + Duration::from_secs(11)), Verdict::Restart(Duration::ZERO));
    }

    #[test]
    fn restarts_up_to_the_limit_then_gives_up() {
        let mut w = RestartWindow::new(policy(3, 10));
        let t = Instant::now();
        assert_eq!(w.on_crash(t), Verdict::Restart(Duration::from_millis(100)));
        assert_eq!(w.on_crash(t), Verdict::Restart(Duration::from_millis(200)));
        assert_eq!(w.on_crash(t), Verdict::Restart(Duration::from_millis(350)), "capped");
        assert_eq!(w.on_crash(t), Verdict::GiveUp);
    }

    #[test]
    fn old_crashes_leave_the_window() {
        let mut w = RestartWindow::new(policy(2, 10));
        let t = Instant::now();
        assert!(matches!(w.on_crash(t), Verdict::Restart(_)));
        assert!(matches!(w.on_crash(t + Duration::from_secs(1)), Verdict::Restart(_)));
        assert_eq!(w.on_crash(t + Duration::from_secs(2)), Verdict::GiveUp);
        // 11 s later both earlier crashes are out of the window.
        assert_eq!(w.on_crash(t + Duration::from_secs(12)), Verdict::Restart(Duration::from_millis(100)));
    }

    #[test]
    fn zero_restarts_means_fail_at_once() {
        let mut w = RestartWindow::new(policy(0, 10));
        assert_eq!(w.on_crash(Instant::now()), Verdict::GiveUp);
    }

    #[test]
    fn reset_forgets() {
        let mut w = RestartWindow::new(policy(1, 10));
        let t = Instant::now();
        assert!(matches!(w.on_crash(t), Verdict::Restart(_)));
        assert_eq!(w.on_crash(t), Verdict::GiveUp);
        w.reset();
        assert!(matches!(w.on_crash(t), Verdict::Restart(_)));
    }
}
