//! Decoding the JSON bodies of inbound messages, with rejections whose reasons are bounded.
//!
//! serde errors quote the input they reject (`unknown variant "…"`, `invalid type: string "…"`),
//! so their text is cut to [`MAX_DETAIL_BYTES`]: a reason never grows with the message.

use serde::de::DeserializeOwned;

use crate::reason::truncate;
use crate::{
    ActivityCommand, ActivityHeartbeat, ActivityResult, SagaControl, SignalSaga, StartSaga,
};

/// The longest part of a serde error quoted in a [`DecodeError`], in bytes.
pub const MAX_DETAIL_BYTES: usize = 300;

/// Why a message body is not the message its queue carries. Its `Display` is the dead-letter
/// reason (at most [`MAX_DETAIL_BYTES`] plus a short sentence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The message type the body should have been (`StartSaga`).
    pub expected: &'static str,
    /// Whether the body is JSON at all (if not, `detail` says where it stops being JSON).
    pub is_json: bool,
    /// serde's error, cut to [`MAX_DETAIL_BYTES`].
    pub detail: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let article = match self.expected.starts_with(['A', 'E', 'I', 'O', 'U']) {
            true => "an",
            false => "a",
        };
        match self.is_json {
            true => write!(
                f,
                "not {article} {} message: {}",
                self.expected, self.detail
            ),
            false => write!(
                f,
                "not {article} {} message: the body is not JSON: {}",
                self.expected, self.detail
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The [`StartSaga`] in `body`.
pub fn start_saga(body: &[u8]) -> Result<StartSaga, DecodeError> {
    decode(body, "StartSaga")
}

/// The [`ActivityResult`] in `body`.
pub fn activity_result(body: &[u8]) -> Result<ActivityResult, DecodeError> {
    decode(body, "ActivityResult")
}

/// The [`ActivityCommand`] in `body`.
pub fn activity_command(body: &[u8]) -> Result<ActivityCommand, DecodeError> {
    decode(body, "ActivityCommand")
}

/// The [`ActivityHeartbeat`] in `body`.
pub fn activity_heartbeat(body: &[u8]) -> Result<ActivityHeartbeat, DecodeError> {
    decode(body, "ActivityHeartbeat")
}

/// The [`SignalSaga`] in `body`.
pub fn signal_saga(body: &[u8]) -> Result<SignalSaga, DecodeError> {
    decode(body, "SignalSaga")
}

/// The [`SagaControl`] in `body`.
pub fn saga_control(body: &[u8]) -> Result<SagaControl, DecodeError> {
    decode(body, "SagaControl")
}

fn decode<T: DeserializeOwned>(body: &[u8], expected: &'static str) -> Result<T, DecodeError> {
    // serde_json stops at 128 levels of nesting, so deep JSON is an error here, not a crash.
    serde_json::from_slice(body).map_err(|e| DecodeError {
        expected,
        is_json: e.is_data(),
        detail: truncate(&e.to_string(), MAX_DETAIL_BYTES).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serde_error_quoting_a_huge_string_is_cut() {
        let body = format!(
            r#"{{"saga_type": "P", "input": {{}}, "{}": 1}}"#,
            "k".repeat(100_000)
        );
        let error = start_saga(body.as_bytes()).unwrap_err();
        assert!(error.is_json);
        let reason = error.to_string();
        assert!(
            reason.starts_with("not a StartSaga message: unknown field"),
            "{reason}"
        );
        assert!(reason.len() <= MAX_DETAIL_BYTES + 50, "{}", reason.len());
        assert!(reason.ends_with(crate::reason::TRUNCATED));
    }

    #[test]
    fn bytes_that_are_not_json_say_so() {
        let error = activity_result(b"\xff\xfe").unwrap_err();
        assert!(!error.is_json);
        assert!(error.to_string().contains("not JSON"), "{error}");
    }

    #[test]
    fn json_nested_too_deeply_is_an_error() {
        let body = format!(
            r#"{{"input": {}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let error = activity_command(body.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("recursion limit"), "{error}");
    }
}
