use sagaflow_amqp::{header, Delivery};
use sagaflow_contracts::{error_kinds, headers, ActivityError, ActivityOutcome};
use sagaflow_engine::Fact;

use super::result::attempt_from_headers;
use super::work::Work;
use super::{Disposition, ProcessError, Processor};
use crate::{store, telemetry};

impl Processor {
    /// A copy of a dead-lettered message. An activity command the broker dead-lettered (a
    /// service rejected it, its delivery limit was reached) fails its attempt with kind
    /// `CommandDeadLettered`, so the saga does not wait for an answer that will never come.
    /// Everything else is ignored; the dead-letter queue keeps its own copy for people.
    pub(crate) async fn notice_dead_letter(
        &self,
        work: &mut Work<'_>,
        delivery: &Delivery,
    ) -> Result<Disposition, ProcessError> {
        // Best effort: the record is for people and must never keep the attempt from failing.
        if let Err(error) = self.record_dead_letter(delivery).await {
            tracing::warn!(%error, "could not record a dead letter");
        }
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
        self.advance(work, saga_id, fact, None).await
    }
}

impl Processor {
    /// Keeps a record of the dead letter for people (`GET /api/dead-letters`) and counts it.
    /// A redelivery after a failed commit further on records it twice; that is rare and harmless.
    async fn record_dead_letter(&self, delivery: &Delivery) -> Result<(), sqlx::Error> {
        let broker_reason = header(delivery, "x-first-death-reason");
        let reason = header(delivery, headers::DEAD_LETTER_REASON)
            .or_else(|| broker_reason.clone())
            .unwrap_or_else(|| "unknown".to_owned());
        let source_queue = header(delivery, headers::DEAD_LETTER_QUEUE)
            .or_else(|| header(delivery, "x-first-death-queue"));
        let props = &delivery.properties;
        let all_headers: serde_json::Map<String, serde_json::Value> = props
            .headers()
            .as_ref()
            .map(|table| {
                table
                    .inner()
                    .keys()
                    .filter_map(|k| {
                        header(delivery, k.as_str()).map(|v| (k.as_str().to_owned(), v.into()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let message_id = props.message_id().as_ref().map(|id| id.to_string());
        let message_type = props.kind().as_ref().map(|t| t.to_string());
        store::record_dead_letter(
            &self.pool,
            store::NewDeadLetter {
                message_id: message_id.as_deref().unwrap_or_default(),
                message_type: message_type.as_deref().unwrap_or_default(),
                reason: &reason,
                source_queue: source_queue.as_deref(),
                headers: &serde_json::Value::Object(all_headers),
                body: &delivery.data,
            },
        )
        .await?;
        let class = telemetry::dead_letter_reason_class(broker_reason.as_deref(), &reason);
        metrics::counter!(telemetry::DEAD_LETTERS, "reason_class" => class).increment(1);
        Ok(())
    }
}
