//! The version of the wire contract, carried in each message's AMQP `content_type`.
//!
//! Within a major version the contract only grows: new optional fields, new message types on new
//! queues. Readers ignore fields they do not know (except in `StartSaga`, which refuses them so
//! that a client's typo is not silently dropped). A change an old reader could misread gets a new
//! major version, and a reader refuses a major version it does not know instead of guessing
//! (see docs/WIRE.md, "Versioning").

/// The `content_type` of every message Sagaflow publishes: JSON of wire contract version 1.
pub const CONTENT_TYPE: &str = "application/vnd.sagaflow.v1+json";

/// The major version of the wire contract this build speaks.
pub const WIRE_VERSION: u32 = 1;

/// A message of a major version of the wire contract this build does not speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedWireVersion {
    /// The message's `content_type`.
    pub content_type: String,
}

impl std::fmt::Display for UnsupportedWireVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "content type {:?} is a version of the Sagaflow wire contract this build does not speak \
             (it speaks {CONTENT_TYPE}); upgrade it",
            self.content_type
        )
    }
}

impl std::error::Error for UnsupportedWireVersion {}

/// Checks a received message's `content_type`: absent, `application/json` (producers written
/// before versions were marked) and [`CONTENT_TYPE`] are version 1; any other
/// `application/vnd.sagaflow.v<N>+json` is refused. Other content types are left to the JSON
/// parser.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), UnsupportedWireVersion> {
    let Some(content_type) = content_type else {
        return Ok(());
    };
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let Some(version) = essence
        .to_ascii_lowercase()
        .strip_prefix("application/vnd.sagaflow.v")
        .and_then(|rest| rest.strip_suffix("+json"))
        .map(str::to_owned)
    else {
        return Ok(());
    };
    if version == WIRE_VERSION.to_string() {
        Ok(())
    } else {
        Err(UnsupportedWireVersion {
            content_type: content_type.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_and_unmarked_json_are_accepted() {
        for ok in [
            None,
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some(CONTENT_TYPE),
            Some("application/vnd.sagaflow.v1+json; charset=utf-8"),
        ] {
            assert_eq!(check_content_type(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn a_newer_major_version_is_refused_with_what_to_do() {
        let error = check_content_type(Some("application/vnd.sagaflow.v2+json")).unwrap_err();
        assert!(error.to_string().contains("v2"), "{error}");
        assert!(error.to_string().contains("upgrade"), "{error}");
    }
}
