//! How a step is retried and timed out. Fixed when the step is scheduled and recorded in its
//! `ActivityScheduled` event, so a change of configuration never changes a running step.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// When a failed attempt is tried again. Attempt `n + 1` waits
/// `min(initial_interval * backoff_coefficient^(n-1), maximum_interval)` after attempt `n`
/// failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RetryPolicy {
    /// Wait before the second attempt, in milliseconds.
    pub initial_interval_ms: u64,
    /// Each further wait is this many times the previous one (at least 1).
    pub backoff_coefficient: f64,
    /// No wait is longer than this, in milliseconds.
    pub maximum_interval_ms: u64,
    /// Attempts in all, the first included; 0 means no limit.
    pub maximum_attempts: u32,
    /// Error kinds that are never retried, even when the service says `retryable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_retryable_kinds: Vec<String>,
}

impl Default for RetryPolicy {
    /// 1 s, doubling, at most 60 s apart, 5 attempts.
    fn default() -> Self {
        RetryPolicy {
            initial_interval_ms: 1_000,
            backoff_coefficient: 2.0,
            maximum_interval_ms: 60_000,
            maximum_attempts: 5,
            non_retryable_kinds: Vec::new(),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn no_retries() -> Self {
        RetryPolicy {
            maximum_attempts: 1,
            ..Self::default()
        }
    }

    /// Exponential backoff from `initial`, doubling, at most `maximum_attempts` attempts.
    pub fn exponential(initial: Duration, maximum_attempts: u32) -> Self {
        RetryPolicy {
            initial_interval_ms: millis(initial),
            maximum_attempts,
            ..Self::default()
        }
    }

    /// The wait after attempt `failed_attempt` failed, or `None` when no attempt is left or
    /// errors of `kind` are never retried.
    pub fn retry_delay(&self, failed_attempt: u32, kind: &str) -> Option<Duration> {
        if self.maximum_attempts != 0 && failed_attempt >= self.maximum_attempts {
            return None;
        }
        if self.non_retryable_kinds.iter().any(|k| k == kind) {
            return None;
        }
        let exponent = failed_attempt.saturating_sub(1).min(1_000) as i32;
        let factor = self.backoff_coefficient.max(1.0).powi(exponent);
        let wait = (self.initial_interval_ms as f64 * factor).min(self.maximum_interval_ms as f64);
        Some(Duration::from_millis(if wait.is_finite() {
            wait as u64
        } else {
            self.maximum_interval_ms
        }))
    }
}

/// Retries and timeouts of one step.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ActivityOptions {
    pub retry: RetryPolicy,
    /// Longest time one attempt may take, from when its command is sent until its result is
    /// recorded (time in the queue included: there is no "started" message). The attempt then
    /// fails with kind `TimedOut` and is retried by the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_to_close_timeout_ms: Option<u64>,
    /// Longest time the whole step may take, all attempts and waits included. The step then
    /// fails with kind `TimedOut`, without another attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_to_close_timeout_ms: Option<u64>,
    /// Longest silence between two heartbeats of an attempt (the first counted from when the
    /// command is sent). The attempt then fails with kind `TimedOut` and is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout_ms: Option<u64>,
}

/// Milliseconds of `d`, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_maximum_and_stops_at_the_attempt_limit() {
        let policy = RetryPolicy {
            initial_interval_ms: 100,
            backoff_coefficient: 3.0,
            maximum_interval_ms: 1_000,
            maximum_attempts: 5,
            non_retryable_kinds: vec!["CardDeclined".into()],
        };
        let waits: Vec<_> = (1..=5)
            .map(|n| policy.retry_delay(n, "Busy").map(|d| d.as_millis()))
            .collect();
        assert_eq!(waits, [Some(100), Some(300), Some(900), Some(1_000), None]);
        assert_eq!(policy.retry_delay(1, "CardDeclined"), None);
        let unlimited = RetryPolicy {
            maximum_attempts: 0,
            ..policy
        };
        assert_eq!(
            unlimited.retry_delay(u32::MAX, "Busy"),
            Some(Duration::from_secs(1))
        );
    }
}
