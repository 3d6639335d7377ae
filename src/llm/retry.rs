//! Retry policy for LLM calls: exponential backoff with full jitter, honouring the
//! gateway's `Retry-After`. Configurable per agent (`llm_config.retry`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest wait a `Retry-After` may impose (a bogus header must not park an
/// execution for hours).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// Backoff base: attempt n waits up to `base · 2^(n-1)`.
    #[serde(default = "defaults::base_delay_ms")]
    pub base_delay_ms: u64,
    /// Backoff cap.
    #[serde(default = "defaults::max_delay_ms")]
    pub max_delay_ms: u64,
}

mod defaults {
    pub fn max_attempts() -> u32 {
        5
    }
    pub fn base_delay_ms() -> u64 {
        1_000
    }
    pub fn max_delay_ms() -> u64 {
        60_000
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: defaults::max_attempts(),
            base_delay_ms: defaults::base_delay_ms(),
            max_delay_ms: defaults::max_delay_ms(),
        }
    }
}

impl RetryPolicy {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=20).contains(&self.max_attempts) {
            return Err("llm_config.retry.max_attempts must be between 1 and 20".into());
        }
        if self.base_delay_ms > self.max_delay_ms || self.max_delay_ms > 3_600_000 {
            return Err("llm_config.retry needs base_delay_ms <= max_delay_ms <= 3600000".into());
        }
        Ok(())
    }

    /// Whether a failed `attempt` (1-based) may be followed by another.
    pub fn allows_another(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// How long to wait after failed `attempt` (1-based): a uniformly random delay in
    /// `[0, min(cap, base · 2^(attempt-1))]` (full jitter spreads retries of many
    /// executions), but never less than the gateway's `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_delay_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(32))
            .min(self.max_delay_ms);
        let jittered = Duration::from_millis(fastrand::u64(0..=exp));
        match retry_after {
            Some(after) => jittered.max(after.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_the_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay_ms: 100,
            max_delay_ms: 1_000,
        };
        for _ in 0..200 {
            assert!(p.delay(1, None) <= Duration::from_millis(100));
            assert!(p.delay(3, None) <= Duration::from_millis(400));
            assert!(p.delay(9, None) <= Duration::from_millis(1_000));
        }
        // Full jitter: not always the maximum.
        assert!((0..200).any(|_| p.delay(3, None) < Duration::from_millis(400)));
    }

    #[test]
    fn retry_after_is_a_floor_but_bounded() {
        let p = RetryPolicy {
            max_attempts: 3,
            base_delay_ms: 1,
            max_delay_ms: 2,
        };
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(86_400))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn attempts_and_bounds_are_validated() {
        assert!(RetryPolicy::default().validate().is_ok());
        assert!(
            RetryPolicy {
                max_attempts: 0,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            RetryPolicy {
                base_delay_ms: 10,
                max_delay_ms: 5,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        let p = RetryPolicy {
            max_attempts: 3,
            ..Default::default()
        };
        assert!(p.allows_another(2) && !p.allows_another(3));
    }
}
