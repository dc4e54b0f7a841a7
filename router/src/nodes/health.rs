//! Per-node circuit breaker and health score.
//!
//! The breaker opens after `failures_to_open` consecutive request failures
//! and keeps the node out of routing for the cool-down; then one request at
//! a time may try it (half-open) until one succeeds. The health score, in
//! `0..=1`, weighs the node's attestation history, its recent error rate and
//! its latency; routing uses it after the number of outstanding requests.

use std::time::{Duration, Instant};

/// Breaker settings.
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failures_to_open: u32,
    /// How long it stays open.
    pub cooldown: Duration,
}

/// Breaker state, as shown on the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Traffic flows.
    Closed,
    /// No traffic until the cool-down ends.
    Open,
    /// Cool-down over: the next request is a trial.
    HalfOpen,
}

impl BreakerState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }
}

/// Counters and breaker of one node.
#[derive(Debug, Clone)]
pub struct Health {
    settings: BreakerSettings,
    consecutive_failures: u32,
    open_until: Option<Instant>,
    trial_in_flight: bool,
    /// Requests that ended well.
    pub successes: u64,
    /// Requests that failed on the node's side.
    pub failures: u64,
    /// Exponentially weighted error rate, `0..=1`.
    error_rate: f64,
    /// Exponentially weighted time to first byte, seconds.
    latency: f64,
    /// Attestations passed and failed.
    pub attest_passes: u64,
    /// Attestations failed (refused or unreachable).
    pub attest_failures: u64,
}

const WEIGHT: f64 = 0.2;

impl Health {
    /// A fresh record.
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            consecutive_failures: 0,
            open_until: None,
            trial_in_flight: false,
            successes: 0,
            failures: 0,
            error_rate: 0.0,
            latency: 0.0,
            attest_passes: 0,
            attest_failures: 0,
        }
    }

    /// The breaker's state at `now`.
    pub fn breaker(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether a request may go to the node now; a half-open breaker admits
    /// one trial at a time.
    pub fn try_admit(&mut self, now: Instant) -> bool {
        match self.breaker(now) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen if self.trial_in_flight => false,
            BreakerState::HalfOpen => {
                self.trial_in_flight = true;
                true
            }
        }
    }

    /// Whether the node could be admitted (without taking the trial).
    pub fn admissible(&self, now: Instant) -> bool {
        match self.breaker(now) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => !self.trial_in_flight,
        }
    }

    /// A request succeeded after `first_byte`.
    pub fn on_success(&mut self, first_byte: Duration) {
        self.successes += 1;
        self.consecutive_failures = 0;
        self.open_until = None;
        self.trial_in_flight = false;
        self.error_rate *= 1.0 - WEIGHT;
        self.latency = self.latency * (1.0 - WEIGHT) + first_byte.as_secs_f64() * WEIGHT;
    }

    /// A request failed on the node's side.
    pub fn on_failure(&mut self, now: Instant) {
        self.failures += 1;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.error_rate = self.error_rate * (1.0 - WEIGHT) + WEIGHT;
        let was_trial = std::mem::take(&mut self.trial_in_flight);
        if was_trial || self.consecutive_failures >= self.settings.failures_to_open {
            self.open_until = Some(now + self.settings.cooldown);
        }
    }

    /// A request ended without a verdict on the node (client went away).
    pub fn on_abandoned(&mut self) {
        self.trial_in_flight = false;
    }

    /// An attestation result.
    pub fn on_attestation(&mut self, passed: bool) {
        if passed {
            self.attest_passes += 1;
        } else {
            self.attest_failures += 1;
        }
    }

    /// `0..=1`: attestation pass ratio (with one pass assumed, so a single
    /// early failure does not zero it) × (1 − error rate) × a latency
    /// factor that halves at 2 s to first byte.
    pub fn score(&self) -> f64 {
        let attest = (self.attest_passes as f64 + 1.0)
            / (self.attest_passes as f64 + self.attest_failures as f64 + 1.0);
        let latency = 1.0 / (1.0 + self.latency / 2.0);
        (attest * (1.0 - self.error_rate) * latency).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failures_to_open: 3,
            cooldown: Duration::from_secs(30),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_half_opens_after_cooldown() {
        let mut h = Health::new(settings());
        let t0 = Instant::now();
        h.on_failure(t0);
        h.on_failure(t0);
        assert!(h.try_admit(t0));
        h.on_failure(t0);
        assert_eq!(h.breaker(t0), BreakerState::Open);
        assert!(!h.try_admit(t0 + Duration::from_secs(29)));
        let later = t0 + Duration::from_secs(31);
        assert!(h.try_admit(later), "one trial after the cool-down");
        assert!(!h.try_admit(later), "only one trial at a time");
        h.on_failure(later);
        assert_eq!(h.breaker(later), BreakerState::Open, "failed trial reopens");
        let much_later = later + Duration::from_secs(31);
        assert!(h.try_admit(much_later));
        h.on_success(Duration::from_millis(100));
        assert_eq!(h.breaker(much_later), BreakerState::Closed);
    }

    #[test]
    fn success_resets_the_failure_run() {
        let mut h = Health::new(settings());
        let t0 = Instant::now();
        h.on_failure(t0);
        h.on_failure(t0);
        h.on_success(Duration::from_millis(10));
        h.on_failure(t0);
        h.on_failure(t0);
        assert_eq!(h.breaker(t0), BreakerState::Closed);
    }

    #[test]
    fn score_falls_with_errors_latency_and_failed_attestations() {
        let mut good = Health::new(settings());
        good.on_success(Duration::from_millis(50));
        good.on_attestation(true);
        let mut slow = good.clone();
        slow.on_success(Duration::from_secs(10));
        let mut failing = good.clone();
        failing.on_failure(Instant::now());
        let mut refused = good.clone();
        refused.on_attestation(false);
        refused.on_attestation(false);
        assert!(good.score() > slow.score());
        assert!(good.score() > failing.score());
        assert!(good.score() > refused.score());
        assert!((0.0..=1.0).contains(&good.score()));
    }
}
