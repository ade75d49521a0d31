//! The messages a worker sends about one attempt: its result and its heartbeats.

use sagaflow_amqp::OutgoingMessage;
use sagaflow_contracts::{headers, ActivityCommand, ActivityHeartbeat, ActivityOutcome, Topology};
use serde_json::Value;

/// The headers of every message about `command`'s attempt: saga id, step and attempt, plus the
/// trace headers of the command (`trace`), so results and heartbeats belong to its trace.
pub(crate) fn attempt_headers(
    command: &ActivityCommand,
    trace: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    let mut attempt_headers = vec![
        (headers::SAGA_ID.to_owned(), command.saga_id.to_string()),
        (headers::STEP.to_owned(), command.step.to_string()),
        (headers::ATTEMPT.to_owned(), command.attempt.to_string()),
    ];
    attempt_headers.extend(trace);
    attempt_headers
}

/// The [`sagaflow_contracts::ActivityResult`] of `command` with `outcome`, for the results queue.
pub(crate) fn result_message(
    topology: &Topology,
    command: &ActivityCommand,
    outcome: ActivityOutcome,
    attempt_headers: Vec<(String, String)>,
) -> OutgoingMessage {
    let result = command.reply(outcome);
    OutgoingMessage {
        exchange: String::new(),
        routing_key: topology.results_queue(),
        message_id: uuid::Uuid::new_v4().to_string(),
        message_type: headers::message_type::ACTIVITY_RESULT.to_owned(),
        headers: attempt_headers,
        // Ids, strings, numbers and JSON values: nothing in a result can fail to serialize.
        body: serde_json::to_vec(&result).expect("an ActivityResult serializes to JSON"),
        ..Default::default()
    }
}

/// `heartbeat` (whose details are replaced by `details`) for the heartbeats queue.
pub(crate) fn heartbeat_message(
    topology: &Topology,
    heartbeat: &ActivityHeartbeat,
    details: Option<Value>,
    attempt_headers: Vec<(String, String)>,
) -> OutgoingMessage {
    let heartbeat = ActivityHeartbeat {
        details,
        ..heartbeat.clone()
    };
    OutgoingMessage {
        exchange: String::new(),
        routing_key: topology.heartbeats_queue(),
        message_id: uuid::Uuid::new_v4().to_string(),
        message_type: headers::message_type::ACTIVITY_HEARTBEAT.to_owned(),
        headers: attempt_headers,
        // Ids, strings, numbers and JSON values: nothing in a heartbeat can fail to serialize.
        body: serde_json::to_vec(&heartbeat).expect("an ActivityHeartbeat serializes to JSON"),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use sagaflow_contracts::{
        ActivityError, ActivityResult, IdempotencyKey, SagaId, StepSeq, Topology,
    };
    use serde_json::json;

    use super::*;
    use crate::handler::erase;
    use crate::ActivityContext;

    fn command() -> ActivityCommand {
        let saga_id = SagaId::new_random();
        ActivityCommand {
            saga_id,
            step: StepSeq(3),
            activity: "Charge".to_owned(),
            attempt: 2,
            idempotency_key: IdempotencyKey::for_step(saga_id, StepSeq(3)),
            input: json!({}),
            heartbeat_timeout_ms: None,
            heartbeat_details: None,
        }
    }

    fn trace() -> Vec<(String, String)> {
        vec![(headers::TRACEPARENT.to_owned(), "00-abc-def-01".to_owned())]
    }

    async fn busy(_ctx: ActivityContext, _input: Value) -> Result<(), ActivityError> {
        Err(ActivityError::transient("Busy", "the bank is busy"))
    }

    #[tokio::test]
    async fn a_transient_failure_is_published_as_a_retryable_result() {
        let topology = Topology::new("shop").unwrap();
        let command = command();
        let outcome = erase(busy)(ActivityContext::from_command(&command), json!({})).await;
        let message = result_message(
            &topology,
            &command,
            outcome,
            attempt_headers(&command, trace()),
        );
        assert_eq!(message.routing_key, "shop.results");
        assert_eq!(message.message_type, "sagaflow.ActivityResult");
        let result: ActivityResult = serde_json::from_slice(&message.body).unwrap();
        assert_eq!(result.attempt, 2);
        assert_eq!(
            result.outcome,
            ActivityOutcome::Failed {
                error: ActivityError::transient("Busy", "the bank is busy")
            }
        );
        let body: Value = serde_json::from_slice(&message.body).unwrap();
        assert_eq!(body["outcome"]["error"]["retryable"], json!(true));
    }

    #[test]
    fn a_heartbeat_names_its_attempt_and_trace() {
        let topology = Topology::new("shop").unwrap();
        let command = command();
        let message = heartbeat_message(
            &topology,
            &command.heartbeat(None),
            Some(json!({"rows": 10})),
            attempt_headers(&command, trace()),
        );
        assert_eq!(message.exchange, "");
        assert_eq!(message.routing_key, "shop.heartbeats");
        assert_eq!(message.message_type, "sagaflow.ActivityHeartbeat");
        let header = |name: &str| {
            message
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            header(headers::SAGA_ID),
            Some(command.saga_id.to_string().as_str())
        );
        assert_eq!(header(headers::STEP), Some("3"));
        assert_eq!(header(headers::ATTEMPT), Some("2"));
        assert_eq!(header(headers::TRACEPARENT), Some("00-abc-def-01"));
        let heartbeat: ActivityHeartbeat = serde_json::from_slice(&message.body).unwrap();
        assert_eq!(heartbeat, command.heartbeat(Some(json!({"rows": 10}))));
    }
}
