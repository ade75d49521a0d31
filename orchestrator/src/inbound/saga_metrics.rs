//! The engine's counters, and the `activity.retry` spans, taken from what an activation
//! recorded (a result's activity and scheduling time come from the live run) and recorded only
//! once the transaction has committed, so a counter counts committed facts and a retry span is
//! emitted once, by the live activation that decided the retry (never by a replay).

use chrono::{DateTime, Utc};
use metrics::{counter, histogram};
use sagaflow_contracts::{SagaEvent, SagaId, SagaStatus};
use sagaflow_engine::{Effect, SagaRun};

use crate::telemetry;

/// What one activation adds to the counters.
#[derive(Default)]
pub(crate) struct ActivationMetrics {
    /// Attempts sent: activity and attempt number.
    attempts: Vec<(String, u32)>,
    /// Failed attempts: activity and error kind.
    failed: Vec<(String, String)>,
    /// Steps that ended: activity, outcome, seconds since scheduled.
    steps: Vec<(String, &'static str, f64)>,
    /// Retries decided: an attempt failed and the next one waits for its retry timer.
    retries: Vec<RetryDecided>,
}

/// One `ActivityAttemptFailed`: the failed attempt and when the next one is sent.
struct RetryDecided {
    activity: String,
    step: u32,
    attempt: u32,
    kind: String,
    backoff_ms: i64,
    retry_at: DateTime<Utc>,
}

impl ActivationMetrics {
    /// Gathers the counters of `events` and `effects`, committed at `now`; `run` knows each
    /// step's activity and when it was scheduled (no run: no step durations).
    pub(crate) fn gather(
        run: Option<&SagaRun>,
        events: &[SagaEvent],
        effects: &[Effect],
        now: DateTime<Utc>,
    ) -> Self {
        let mut gathered = ActivationMetrics::default();
        for effect in effects {
            if let Effect::SendActivityCommand {
                activity, attempt, ..
            } = effect
            {
                gathered.attempts.push((activity.clone(), *attempt));
            }
        }
        let Some(run) = run else {
            return gathered;
        };
        for event in events {
            let (step, kind, outcome) = match event {
                SagaEvent::ActivityAttemptFailed {
                    step,
                    error,
                    attempt,
                    retry_at,
                } => {
                    if let Some((activity, _)) = run.scheduled(*step) {
                        gathered.retries.push(RetryDecided {
                            activity,
                            step: step.0,
                            attempt: *attempt,
                            kind: error.kind.as_str().to_owned(),
                            backoff_ms: (*retry_at - now).num_milliseconds().max(0),
                            retry_at: *retry_at,
                        });
                    }
                    (*step, Some(error.kind.as_str()), None)
                }
                SagaEvent::ActivityFailed { step, error, .. } => {
                    (*step, Some(error.kind.as_str()), Some("failed"))
                }
                SagaEvent::ActivityCompleted { step, .. } => (*step, None, Some("completed")),
                _ => continue,
            };
            let Some((activity, scheduled_at)) = run.scheduled(step) else {
                continue;
            };
            if let Some(kind) = kind {
                gathered.failed.push((activity.clone(), kind.to_owned()));
            }
            if let Some(outcome) = outcome {
                let seconds = (now - scheduled_at)
                    .to_std()
                    .map_or(0.0, |d| d.as_secs_f64());
                gathered.steps.push((activity, outcome, seconds));
            }
        }
        gathered
    }

    /// Records the gathered counters and emits a retry's span, a child of the current
    /// (activation's) span (after the commit).
    pub(crate) fn record(self, saga: SagaId) {
        for retry in self.retries {
            let _span = tracing::info_span!(
                "activity.retry",
                saga_id = %saga,
                activity = retry.activity,
                step = retry.step,
                attempt = retry.attempt,
                next_attempt = retry.attempt + 1,
                error.kind = retry.kind,
                backoff_ms = retry.backoff_ms,
                retry_at = %retry.retry_at.to_rfc3339(),
            );
        }
        for (activity, attempt) in self.attempts {
            counter!(telemetry::ATTEMPTS, "activity" => activity.clone()).increment(1);
            if attempt > 1 {
                counter!(telemetry::RETRIES, "activity" => activity).increment(1);
            }
        }
        for (activity, kind) in self.failed {
            counter!(telemetry::ATTEMPTS_FAILED, "activity" => activity, "kind" => kind)
                .increment(1);
        }
        for (activity, outcome, seconds) in self.steps {
            histogram!(telemetry::STEP_SECONDS, "activity" => activity, "outcome" => outcome)
                .record(seconds);
        }
    }
}

/// Counts a saga that ended, or stopped where an operator must act (`compensation_failed`,
/// `stuck`).
pub(crate) fn record_saga_status(saga_type: &str, status: SagaStatus) {
    if status.is_final() || matches!(status, SagaStatus::CompensationFailed | SagaStatus::Stuck) {
        counter!(
            telemetry::SAGAS_ENDED,
            "saga_type" => saga_type.to_owned(),
            "status" => status.as_str()
        )
        .increment(1);
    }
}

/// Counts a saga that started.
pub(crate) fn record_saga_started(saga_type: &str) {
    counter!(telemetry::SAGAS_STARTED, "saga_type" => saga_type.to_owned()).increment(1);
}
