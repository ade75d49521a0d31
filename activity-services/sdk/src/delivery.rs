//! Deciding whether a delivery on an activity queue is a command this worker can run.

use sagaflow_contracts::decode::{self, DecodeError};
use sagaflow_contracts::{check_content_type, reason, ActivityCommand, UnsupportedWireVersion};

/// The longest activity name quoted in a [`Rejection::WrongActivity`] reason, in bytes.
const MAX_QUOTED_ACTIVITY_BYTES: usize = 128;

/// Why a delivery is dead-lettered instead of run. Its `Display` is the dead-letter reason, at
/// most a few hundred bytes whatever the message holds.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Rejection {
    /// Its properties cannot be accepted ([`sagaflow_amqp::check_properties`]).
    #[error("{0}")]
    Properties(String),
    #[error(
        "message of {size} bytes exceeds the limit of {max} bytes (SAGAFLOW_MAX_MESSAGE_BYTES)"
    )]
    TooLarge { size: usize, max: usize },
    #[error("message body is not JSON: {}", .0.detail)]
    NotJson(DecodeError),
    #[error("message body is not an ActivityCommand: {}", .0.detail)]
    NotACommand(DecodeError),
    /// `found` is cut to [`MAX_QUOTED_ACTIVITY_BYTES`].
    #[error("{0}")]
    UnsupportedWireVersion(UnsupportedWireVersion),
    #[error("command for activity {found:?} arrived on the queue of activity {expected:?}")]
    WrongActivity { expected: String, found: String },
}

impl Rejection {
    /// A small, stable label for metrics: why, in a word.
    pub(crate) fn class(&self) -> &'static str {
        match self {
            Rejection::Properties(_) => "bad_properties",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::NotJson(_) | Rejection::NotACommand(_) => "malformed",
            Rejection::UnsupportedWireVersion(_) => "unsupported_wire_version",
            Rejection::WrongActivity { .. } => "wrong_activity",
        }
    }
}

/// The command in a delivery with `properties` and `body`, taken from the queue of `activity`.
pub(crate) fn check_delivery(
    properties: &lapin::BasicProperties,
    body: &[u8],
    activity: &str,
    max_message_bytes: usize,
) -> Result<ActivityCommand, Rejection> {
    sagaflow_amqp::check_properties(properties).map_err(Rejection::Properties)?;
    let content_type = properties.content_type().as_ref().map(|t| t.as_str());
    parse_command(body, content_type, activity, max_message_bytes)
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
    let command = decode::activity_command(body).map_err(|e| match e.is_json {
        true => Rejection::NotACommand(e),
        false => Rejection::NotJson(e),
    })?;
    if command.activity != activity {
        return Err(Rejection::WrongActivity {
            expected: activity.to_owned(),
            found: reason::truncate(&command.activity, MAX_QUOTED_ACTIVITY_BYTES).into_owned(),
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
    fn a_huge_activity_name_is_quoted_cut_short() {
        let error =
            parse_command(&command(&"R".repeat(100_000)), None, "Charge", 1 << 20).unwrap_err();
        let reason = error.to_string();
        assert!(reason.len() < 250, "{}", reason.len());
        assert!(reason.contains(reason::TRUNCATED), "{reason}");
    }

    #[test]
    fn headers_nested_too_deeply_are_rejected_before_the_body_is_read() {
        use lapin::types::{AMQPValue, FieldArray, FieldTable};
        let mut value = AMQPValue::FieldArray(FieldArray::default());
        for _ in 0..40 {
            value = AMQPValue::FieldArray(vec![value].into());
        }
        let mut headers = FieldTable::default();
        headers.insert("deep".into(), value);
        let properties = lapin::BasicProperties::default().with_headers(headers);
        let error = check_delivery(&properties, &command("Charge"), "Charge", 10_000).unwrap_err();
        assert!(matches!(error, Rejection::Properties(_)), "{error}");
        assert!(
            error.to_string().contains("header nesting exceeds"),
            "{error}"
        );
    }

    #[test]
    fn a_command_for_another_activity_is_rejected() {
        let error = parse_command(&command("Refund"), None, "Charge", 10_000).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"command for activity "Refund" arrived on the queue of activity "Charge""#
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever arrives on an activity queue is a command or a rejection with a reason that
        /// is not empty and fits a dead letter.
        #[test]
        fn any_delivery_is_a_command_or_a_bounded_rejection(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            activity in "[A-Za-z]{0,3}|R{300,3000}",
            nesting in 0..40usize,
            max in 0..4096usize,
        ) {
            use lapin::types::{AMQPValue, FieldTable};
            let mut deep = AMQPValue::Void;
            for _ in 0..nesting {
                deep = AMQPValue::FieldArray(vec![deep].into());
            }
            let mut headers = FieldTable::default();
            headers.insert("deep".into(), deep);
            let properties = lapin::BasicProperties::default().with_headers(headers);
            // Random bytes, and a real command for a random activity.
            for body in [body, command(&activity)] {
                if let Err(rejection) = check_delivery(&properties, &body, "Charge", max) {
                    let reason = rejection.to_string();
                    proptest::prop_assert!(!reason.trim().is_empty());
                    proptest::prop_assert!(reason.len() <= reason::MAX_REASON_BYTES, "{}", reason.len());
                }
            }
        }
    }
}
