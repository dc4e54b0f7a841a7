//! Per-key rate limits: requests per minute and tokens per minute, as token
//! buckets that refill continuously (a full minute's allowance may burst).
//!
//! Tokens are reserved at admission from an estimate (prompt bytes / 4 plus
//! `max_tokens`) and settled from the receipt afterwards, so a key cannot
//! start many long generations at once and then be charged only the small
//! actual counts against its limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, capacity: f64, now: Instant) {
        let per_sec = capacity / 60.0;
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level = (self.level + elapsed * per_sec).min(capacity);
        self.updated = now;
    }

    fn wait_for(&self, need: f64, capacity: f64) -> u64 {
        let per_sec = capacity / 60.0;
        let missing = (need.min(capacity) - self.level).max(0.0);
        // At most 60 s (a full bucket refills in a minute): no truncation.
        #[allow(clippy::cast_possible_truncation)]
        let secs = (missing / per_sec).ceil().clamp(1.0, 60.0) as u64;
        secs
    }
}

/// Which limit refused a request, and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// "requests per minute" or "tokens per minute".
    pub limit: &'static str,
    /// Seconds until a retry can succeed.
    pub retry_after_secs: u64,
}

/// The limiter.
#[derive(Debug)]
pub struct RateLimiter {
    requests_per_minute: f64,
    tokens_per_minute: f64,
    keys: Mutex<HashMap<String, (Bucket, Bucket)>>,
}

impl RateLimiter {
    /// Limits per key.
    pub fn new(requests_per_minute: u32, tokens_per_minute: u64) -> Self {
        Self {
            requests_per_minute: f64::from(requests_per_minute.max(1)),
            tokens_per_minute: (tokens_per_minute.max(1)) as f64,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one request reserving `tokens`, or says which limit refused.
    pub fn admit(&self, key: &str, tokens: u64, now: Instant) -> Result<(), Limited> {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if keys.len() > 100_000 {
            // Idle keys are full buckets; dropping them changes nothing.
            let (rpm, tpm) = (self.requests_per_minute, self.tokens_per_minute);
            keys.retain(|_, (r, t)| {
                r.refill(rpm, now);
                t.refill(tpm, now);
                r.level < rpm || t.level < tpm
            });
        }
        let full = |capacity| Bucket {
            level: capacity,
            updated: now,
        };
        let (requests, budget) = keys
            .entry(key.to_owned())
            .or_insert_with(|| (full(self.requests_per_minute), full(self.tokens_per_minute)));
        requests.refill(self.requests_per_minute, now);
        budget.refill(self.tokens_per_minute, now);
        if requests.level < 1.0 {
            return Err(Limited {
                limit: "requests per minute",
                retry_after_secs: requests.wait_for(1.0, self.requests_per_minute),
            });
        }
        // A single request larger than the whole minute's allowance may
        // still run once the bucket is full.
        let need = (tokens as f64).min(self.tokens_per_minute);
        if budget.level < need {
            return Err(Limited {
                limit: "tokens per minute",
                retry_after_secs: budget.wait_for(need, self.tokens_per_minute),
            });
        }
        requests.level -= 1.0;
        budget.level -= need;
        Ok(())
    }

    /// Settles a reservation: `reserved` estimated, `used` from the receipt
    /// (0 when the request failed and nothing was charged).
    pub fn settle(&self, key: &str, reserved: u64, used: u64) {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, budget)) = keys.get_mut(key) {
            let reserved = (reserved as f64).min(self.tokens_per_minute);
            budget.level = (budget.level + reserved - used as f64).min(self.tokens_per_minute);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn requests_per_minute() {
        let limiter = RateLimiter::new(2, 1_000_000);
        let t0 = Instant::now();
        assert!(limiter.admit("k", 1, t0).is_ok());
        assert!(limiter.admit("k", 1, t0).is_ok());
        let refused = limiter.admit("k", 1, t0).unwrap_err();
        assert_eq!(refused.limit, "requests per minute");
        assert_eq!(refused.retry_after_secs, 30);
        assert!(limiter.admit("other", 1, t0).is_ok(), "limits are per key");
        assert!(limiter.admit("k", 1, t0 + Duration::from_secs(30)).is_ok());
    }

    #[test]
    fn tokens_are_reserved_then_settled() {
        let limiter = RateLimiter::new(100, 1000);
        let t0 = Instant::now();
        assert!(limiter.admit("k", 800, t0).is_ok());
        let refused = limiter.admit("k", 800, t0).unwrap_err();
        assert_eq!(refused.limit, "tokens per minute");
        limiter.settle("k", 800, 100);
        assert!(
            limiter.admit("k", 800, t0).is_ok(),
            "unused reservation returned"
        );
    }
}
