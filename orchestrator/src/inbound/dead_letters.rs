use sagaflow_amqp::{header, Delivery};
use sagaflow_contracts::{error_kinds, headers, ActivityError, ActivityOutcome};
use sagaflow_engine::Fact;

use super::result::attempt_from_headers;
use super::{Disposition, ProcessError, Processor};

impl Processor {
    /// A copy of a dead-lettered message. An activity command the broker dead-lettered (a
    /// service rejected it, its delivery limit was reached) fails its attempt with kind
    /// `CommandDeadLettered`, so the saga does not wait for an answer that will never come.
    /// Everything else is ignored; the dead-letter queue keeps its own copy for people.
    pub(crate) async fn notice_dead_letter(
        &self,
        delivery: &Delivery,
    ) -> Result<Disposition, ProcessError> {
        let is_command = delivery.properties.kind().as_ref().map(|t| t.as_str())
            == Some(headers::message_type::ACTIVITY_COMMAND);
        let Some((saga_id, step, attempt)) = attempt_from_headers(delivery).filter(|_| is_command)
        else {
            return Ok(Disposition::Ack);
        };
        // The broker says why in x-first-death-reason; our own dead_letter says it in ours.
        let broker_reason = header(delivery, "x-first-death-reason");
        let reason = broker_reason
            .clone()
            .or_else(|| header(delivery, headers::DEAD_LETTER_REASON))
            .unwrap_or_else(|| "unknown".to_owned());
        let reason = sagaflow_contracts::reason::truncate(&reason, 300);
        // A command a service rejected will be rejected again; one that expired or was
        // delivered too often may succeed later.
        let retryable = broker_reason.is_some_and(|r| r != "rejected");
        let error = ActivityError {
            kind: error_kinds::COMMAND_DEAD_LETTERED.to_owned(),
            message: format!("the broker dead-lettered attempt {attempt}'s command: {reason}"),
            retryable,
        };
        tracing::warn!(%saga_id, %step, attempt, %reason, "an activity command was dead-lettered");
        let fact = Fact::ActivityResult {
            step,
            activity: None,
            attempt,
            outcome: ActivityOutcome::Failed { error },
        };
        self.advance(saga_id, fact, None).await
    }
}
