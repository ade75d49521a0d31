//! Deciding whether a delivery on an activity queue is a command this worker can run.

use sagaflow_contracts::{check_content_type, ActivityCommand, UnsupportedWireVersion};

/// Why a delivery is dead-lettered instead of run. Its `Display` is the dead-letter reason.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Rejection {
    #[error(
        "message of {size} bytes exceeds the limit of {max} bytes (SAGAFLOW_MAX_MESSAGE_BYTES)"
    )]
    TooLarge { size: usize, max: usize },
    #[error("message body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("message body is not an ActivityCommand: {0}")]
    NotACommand(#[source] serde_json::Error),
    #[error("{0}")]
    UnsupportedWireVersion(UnsupportedWireVersion),
    #[error("command for activity {found:?} arrived on the queue of activity {expected:?}")]
    WrongActivity { expected: String, found: String },
}

/// The command in `body` (of AMQP `content_type`), taken from the queue of `activity`.
pub(crate) fn parse_command(
    body: &[u8],
    content_type: Option<&str>,
    activity: &str,
    max_message_bytes: usize,
) -> Result<ActivityCommand, Rejection> {
    // A command of a newer contract may mean something this build would misread: refuse it.
    check_content_type(content_type).map_err(Rejection::UnsupportedWireVersion)?;
    if body.len() > max_message_bytes {
        return Err(Rejection::TooLarge {
            size: body.len(),
            max: max_message_bytes,
        });
    }
    let command: ActivityCommand = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            Rejection::NotACommand(e)
        } else {
            Rejection::NotJson(e)
        }
    })?;
    if command.activity != activity {
        return Err(Rejection::WrongActivity {
            expected: activity.to_owned(),
            found: command.activity,
        });
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_command_of_a_newer_wire_version_is_refused() {
        let error = parse_command(
            &command("Charge"),
            Some("application/vnd.sagaflow.v2+json"),
            "Charge",
            10_000,
        )
        .unwrap_err();
        assert!(matches!(error, Rejection::UnsupportedWireVersion(_)));
        let current = Some(sagaflow_contracts::CONTENT_TYPE);
        assert!(parse_command(&command("Charge"), current, "Charge", 10_000).is_ok());
    }

    use sagaflow_contracts::{IdempotencyKey, SagaId, StepSeq};
    use serde_json::json;

    use super::*;

    fn command(activity: &str) -> Vec<u8> {
        let saga_id = SagaId::new_random();
        serde_json::to_vec(&ActivityCommand {
            saga_id,
            step: StepSeq(2),
            activity: activity.to_owned(),
            attempt: 1,
            idempotency_key: IdempotencyKey::for_step(saga_id, StepSeq(2)),
            input: json!({"order_id": "o-1"}),
            heartbeat_timeout_ms: None,
            heartbeat_details: None,
        })
        .unwrap()
    }

    #[test]
    fn a_command_for_the_queue_is_accepted() {
        let parsed = parse_command(&command("Charge"), None, "Charge", 10_000).unwrap();
        assert_eq!(parsed.step, StepSeq(2));
        assert_eq!(parsed.input, json!({"order_id": "o-1"}));
    }

    #[test]
    fn a_body_over_the_limit_is_rejected_unread() {
        let body = command("Charge");
        let error = parse_command(&body, None, "Charge", body.len() - 1).unwrap_err();
        assert!(matches!(error, Rejection::TooLarge { .. }), "{error}");
        assert!(parse_command(&body, None, "Charge", body.len()).is_ok());
    }

    #[test]
    fn bytes_that_are_not_json_are_rejected() {
        for body in [&b"not json"[..], b"{\"saga_id\":", b"", &[0xff, 0xfe]] {
            let error = parse_command(body, None, "Charge", 10_000).unwrap_err();
            assert!(matches!(error, Rejection::NotJson(_)), "{error}");
        }
    }

    #[test]
    fn json_that_is_not_a_command_is_rejected_with_the_field() {
        let error = parse_command(b"{}", None, "Charge", 10_000).unwrap_err();
        assert!(matches!(error, Rejection::NotACommand(_)), "{error}");
        assert!(error.to_string().contains("missing field"), "{error}");
        let error = parse_command(br#"{"saga_id": "x"}"#, None, "Charge", 10_000).unwrap_err();
        assert!(matches!(error, Rejection::NotACommand(_)), "{error}");
        let error = parse_command(b"[1, 2]", None, "Charge", 10_000).unwrap_err();
        assert!(matches!(error, Rejection::NotACommand(_)), "{error}");
    }

    #[test]
    fn a_command_for_another_activity_is_rejected() {
        let error = parse_command(&command("Refund"), None, "Charge", 10_000).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"command for activity "Refund" arrived on the queue of activity "Charge""#
        );
    }
}
