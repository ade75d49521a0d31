use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use sagaflow_amqp::{header, Delivery};
use sagaflow_contracts::{
    error_kinds, headers, ActivityError, ActivityOutcome, ActivityResult, SagaId, StepSeq,
};
use sagaflow_engine::Fact;
use tracing::Instrument;

use super::work::Work;
use super::{Disposition, ProcessError, Processor};

/// How much of a rejected result's reason is kept in the saga's history.
const MAX_REASON_BYTES: usize = 500;

impl Processor {
    /// An activity result: a fact for its saga. A result that cannot be read or recorded but
    /// whose headers name its attempt fails that attempt with kind `ResultRejected`, so the
    /// saga never waits for an answer that was dead-lettered.
    pub(crate) async fn record_result(
        &self,
        work: &mut Work<'_>,
        delivery: &Delivery,
    ) -> Result<Disposition, ProcessError> {
        let decoded = if delivery.data.len() > self.max_message_bytes {
            Err(format!(
                "the result of {} bytes exceeds the orchestrator's limit of {} bytes (SAGAFLOW_MAX_MESSAGE_BYTES)",
                delivery.data.len(),
                self.max_message_bytes
            ))
        } else if let Some(reason) = super::unsupported_wire_version(delivery) {
            Err(reason)
        } else {
            sagaflow_contracts::decode::activity_result(&delivery.data).map_err(|e| e.to_string())
        };
        let decoded = decoded.and_then(|result| self.decode_outcome(result));
        let result = match decoded {
            Ok(result) => result,
            Err(reason) => match attempt_from_headers(delivery) {
                Some((saga_id, step, attempt)) => ActivityResult {
                    saga_id,
                    step,
                    activity: String::new(),
                    attempt,
                    outcome: rejected(&reason),
                },
                None => return Ok(Disposition::DeadLetter(reason)),
            },
        };
        let span = tracing::info_span!(
            "record_result",
            saga_id = %result.saga_id,
            step = %result.step,
            attempt = result.attempt,
            otel.kind = "consumer",
            messaging.system = "rabbitmq",
            messaging.operation.type = "process",
        );
        // In the saga's trace, after the attempt that answered.
        sagaflow_process::set_remote_parent(&span, |name| sagaflow_amqp::header(delivery, name));
        self.advance_with_result(work, result)
            .instrument(span)
            .await
    }

    async fn advance_with_result(
        &self,
        work: &mut Work<'_>,
        result: ActivityResult,
    ) -> Result<Disposition, ProcessError> {
        let fact = |outcome| Fact::ActivityResult {
            step: result.step,
            activity: Some(result.activity.clone()).filter(|a| !a.is_empty()),
            attempt: result.attempt,
            outcome,
        };
        let first = AssertUnwindSafe(self.advance(
            work,
            result.saga_id,
            fact(result.outcome.clone()),
            None,
        ))
        .catch_unwind()
        .await;
        let reason = match first {
            Ok(Err(error)) => match error.permanent_reason() {
                Some(reason) => reason,
                None => return Err(error),
            },
            Ok(done) => return done,
            Err(panic) => format!(
                "the orchestrator panicked while recording it: {}",
                sagaflow_engine::panic_message(&*panic)
            ),
        };
        if matches!(&result.outcome, ActivityOutcome::Failed { error } if error.kind == error_kinds::RESULT_REJECTED)
        {
            return Ok(Disposition::DeadLetter(reason));
        }
        tracing::warn!(
            reason,
            "the result cannot be recorded; failing its attempt instead"
        );
        self.advance(work, result.saga_id, fact(rejected(&reason)), None)
            .await
    }
}

impl Processor {
    /// `result` with its output decoded by the payload codec (a service with the key encrypts
    /// sensitive fields of what it returns).
    fn decode_outcome(&self, mut result: ActivityResult) -> Result<ActivityResult, String> {
        if let ActivityOutcome::Completed { output } = &mut result.outcome {
            *output = self
                .codec
                .decode(std::mem::take(output))
                .map_err(|e| format!("the output: {e}"))?;
        }
        Ok(result)
    }
}

/// The attempt a message is about, from the headers the orchestrator and the SDK set.
pub(crate) fn attempt_from_headers(delivery: &Delivery) -> Option<(SagaId, StepSeq, u32)> {
    let saga_id = header(delivery, headers::SAGA_ID)?.parse().ok()?;
    let step = StepSeq(header(delivery, headers::STEP)?.parse().ok()?);
    let attempt = header(delivery, headers::ATTEMPT)?.parse().ok()?;
    Some((saga_id, step, attempt))
}

/// A failed outcome saying why a result could not be recorded.
fn rejected(reason: &str) -> ActivityOutcome {
    let reason = sagaflow_contracts::reason::truncate(reason, MAX_REASON_BYTES);
    ActivityOutcome::Failed {
        error: ActivityError::permanent(error_kinds::RESULT_REJECTED, reason),
    }
}
