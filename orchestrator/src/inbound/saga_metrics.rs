//! The engine's counters, and the `activity.retry` spans, taken from what an activation
//! recorded: gathered inside the transaction (a result's activity is found by its step's
//! `ActivityScheduled` event) and recorded only once the transaction has committed, so a
//! counter counts committed facts and a retry span is emitted once, by the live activation
//! that decided the retry (never by a replay).

use chrono::{DateTime, Utc};
use metrics::{counter, histogram};
use sagaflow_contracts::{SagaEvent, SagaId, SagaStatus};
use sagaflow_engine::Effect;

use crate::store::{self, Tx};
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
    /// Gathers the counters of `events` and `effects`, committed at `now` (call it after the
    /// events were appended in `tx`).
    pub(crate) async fn gather(
        tx: &mut Tx,
        saga: SagaId,
        events: &[SagaEvent],
        effects: &[Effect],
        now: DateTime<Utc>,
    ) -> Result<Self, sqlx::Error> {
        let mut gathered = ActivationMetrics::default();
        for effect in effects {
            if let Effect::SendActivityCommand {
                activity, attempt, ..
            } = effect
            {
                gathered.attempts.push((activity.clone(), *attempt));
            }
        }
        let mut retries = Vec::new();
        let ended: Vec<(i64, Option<&str>, Option<&'static str>)> = events
            .iter()
            .filter_map(|event| match event {
                SagaEvent::ActivityAttemptFailed {
                    step,
                    error,
                    attempt,
                    retry_at,
                } => {
                    retries.push((*step, *attempt, error.kind.as_str(), *retry_at));
                    Some((i64::from(step.0), Some(error.kind.as_str()), None))
                }
                SagaEvent::ActivityFailed { step, error, .. } => {
                    Some((i64::from(step.0), Some(error.kind.as_str()), Some("failed")))
                }
                SagaEvent::ActivityCompleted { step, .. } => {
                    Some((i64::from(step.0), None, Some("completed")))
                }
                _ => None,
            })
            .collect();
        if ended.is_empty() {
            return Ok(gathered);
        }
        let steps: Vec<i64> = ended.iter().map(|(step, ..)| *step).collect();
        let scheduled = store::scheduled_steps(&mut **tx, saga, &steps).await?;
        for (step, attempt, kind, retry_at) in retries {
            let Some(scheduled) = scheduled.iter().find(|s| s.step == i64::from(step.0)) else {
                continue;
            };
            gathered.retries.push(RetryDecided {
                activity: scheduled.activity.clone(),
                step: step.0,
                attempt,
                kind: kind.to_owned(),
                backoff_ms: (retry_at - now).num_milliseconds().max(0),
                retry_at,
            });
        }
        for (step, kind, outcome) in ended {
            let Some(scheduled) = scheduled.iter().find(|s| s.step == step) else {
                continue;
            };
            if let Some(kind) = kind {
                gathered
                    .failed
                    .push((scheduled.activity.clone(), kind.to_owned()));
            }
            if let Some(outcome) = outcome {
                let seconds = (now - scheduled.scheduled_at)
                    .to_std()
                    .map_or(0.0, |d| d.as_secs_f64());
                gathered
                    .steps
                    .push((scheduled.activity.clone(), outcome, seconds));
            }
        }
        Ok(gathered)
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
