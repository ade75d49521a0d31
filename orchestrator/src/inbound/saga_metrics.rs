//! The engine's counters, taken from what an activation recorded: gathered inside the
//! transaction (a result's activity is found by its step's `ActivityScheduled` event) and
//! recorded only once the transaction has committed, so a counter counts committed facts.

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
        let ended: Vec<(i64, Option<&str>, Option<&'static str>)> = events
            .iter()
            .filter_map(|event| match event {
                SagaEvent::ActivityAttemptFailed { step, error, .. } => {
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

    /// Records the gathered counters (after the commit).
    pub(crate) fn record(self) {
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
