//! Payload codecs: what keeps sensitive values of saga payloads (inputs, outputs, signal
//! payloads, heartbeat details) from being stored in PostgreSQL and carried by RabbitMQ in
//! clear text.
//!
//! A [`PayloadCodec`] encodes a JSON value before it is written (a row, an event, a message
//! body) and decodes it where it is read back (replay, an activity service before its handler
//! runs). [`SensitiveFields`] encrypts the value of every object field whose name is listed, with
//! AES-256-GCM, as `{"$enc": "v1:<base64 of nonce ‖ ciphertext ‖ tag>"}` (the format is in
//! docs/WIRE.md, "Encrypted fields"). Without a key, [`Plain`] leaves values as they are.
//! [`from_env`] picks one from `SAGAFLOW_PAYLOAD_KEY` and `SAGAFLOW_SENSITIVE_FIELDS`.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{Map, Value};

/// The environment variable holding the key: 32 bytes, base64 (standard alphabet).
pub const KEY_ENV: &str = "SAGAFLOW_PAYLOAD_KEY";
/// The environment variable listing the sensitive field names, comma-separated.
pub const FIELDS_ENV: &str = "SAGAFLOW_SENSITIVE_FIELDS";
/// The name of the one field of an encrypted value's object.
pub const MARKER: &str = "$enc";
/// The prefix of this version's encrypted values.
const V1: &str = "v1:";
/// Bound to every ciphertext with the field name, so a value cannot be moved to another field.
const AAD_PREFIX: &[u8] = b"sagaflow-payload-v1:";
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;

/// Encodes payloads where they leave the process for storage or the wire, decodes them where
/// they come back.
pub trait PayloadCodec: Send + Sync + fmt::Debug {
    /// `value` as it may be stored or sent.
    fn encode(&self, value: Value) -> Result<Value, CodecError>;
    /// `value` as it was before [`PayloadCodec::encode`]: what saga code and handlers see.
    /// Fails on a value this codec cannot decode (no key, another key, altered).
    fn decode(&self, value: Value) -> Result<Value, CodecError>;
    /// `value` decoded as far as this codec can, for people to read (the CLI, the HTTP API):
    /// what it cannot decode is shown as stored.
    fn reveal(&self, value: Value) -> Value;
}

/// A codec shared by the tasks of a process.
pub type SharedCodec = Arc<dyn PayloadCodec>;

/// Why a payload could not be encoded or decoded, or the codec not configured. Never holds
/// key material or the clear text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Set `SAGAFLOW_PAYLOAD_KEY` to 32 random bytes in base64 (`openssl rand -base64 32`).
    #[error("{KEY_ENV} must be 32 bytes in base64 (e.g. from `openssl rand -base64 32`): {0}")]
    BadKey(String),
    /// The payload was encrypted, and this process has no key: give it the same
    /// `SAGAFLOW_PAYLOAD_KEY` as the processes that wrote it.
    #[error("field {field:?} is encrypted, but {KEY_ENV} is not set in this process")]
    NoKey { field: String },
    /// Another key encrypted it, or it was altered: check that every process has the same
    /// `SAGAFLOW_PAYLOAD_KEY`.
    #[error("field {field:?} cannot be decrypted: {KEY_ENV} is not the key it was encrypted with, or the value was altered")]
    Undecryptable { field: String },
    /// Not an encrypted value of a version this build reads.
    #[error("field {field:?} holds a malformed encrypted value: {reason}")]
    Malformed { field: String, reason: String },
}

/// No encryption: values pass as they are. Decoding an encrypted value fails with
/// [`CodecError::NoKey`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl PayloadCodec for Plain {
    fn encode(&self, value: Value) -> Result<Value, CodecError> {
        Ok(value)
    }

    fn decode(&self, value: Value) -> Result<Value, CodecError> {
        map_encrypted(value, &mut |field, _| {
            Err(CodecError::NoKey {
                field: field.to_owned(),
            })
        })
    }

    fn reveal(&self, value: Value) -> Value {
        value
    }
}

/// Encrypts the values of the listed object fields, wherever they are in a payload, with
/// AES-256-GCM under one key; a random nonce per value.
pub struct SensitiveFields {
    cipher: Aes256Gcm,
    fields: BTreeSet<String>,
}

impl fmt::Debug for SensitiveFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("SensitiveFields")
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

impl SensitiveFields {
    /// A codec with `key` (base64 of 32 bytes) for `fields`.
    pub fn new(
        key_base64: &str,
        fields: impl IntoIterator<Item = String>,
    ) -> Result<Self, CodecError> {
        let key = BASE64
            .decode(key_base64.trim())
            .map_err(|_| CodecError::BadKey("not valid base64".into()))?;
        let cipher = Aes256Gcm::new_from_slice(&key)
            .map_err(|_| CodecError::BadKey(format!("{} bytes, not 32", key.len())))?;
        Ok(SensitiveFields {
            cipher,
            fields: fields.into_iter().collect(),
        })
    }

    /// The field names whose values are encrypted.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(String::as_str)
    }

    fn encrypt(&self, field: &str, value: &Value) -> Result<Value, CodecError> {
        let clear = serde_json::to_vec(value).expect("a JSON value serializes");
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = aad(field);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &clear,
                    aad: &aad,
                },
            )
            .map_err(|_| CodecError::Malformed {
                field: field.to_owned(),
                reason: "too large to encrypt".into(),
            })?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        let mut marker = Map::new();
        marker.insert(
            MARKER.to_owned(),
            Value::String(format!("{V1}{}", BASE64.encode(bytes))),
        );
        Ok(Value::Object(marker))
    }

    fn decrypt(&self, field: &str, encrypted: &str) -> Result<Value, CodecError> {
        let malformed = |reason: &str| CodecError::Malformed {
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        let body = encrypted
            .strip_prefix(V1)
            .ok_or_else(|| malformed("not of version v1"))?;
        let bytes = BASE64
            .decode(body)
            .map_err(|_| malformed("not valid base64"))?;
        if bytes.len() < NONCE_BYTES + TAG_BYTES {
            return Err(malformed("too short"));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let aad = aad(field);
        let clear = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| CodecError::Undecryptable {
                field: field.to_owned(),
            })?;
        serde_json::from_slice(&clear).map_err(|_| malformed("the clear text is not JSON"))
    }
}

impl PayloadCodec for SensitiveFields {
    fn encode(&self, value: Value) -> Result<Value, CodecError> {
        self.encode_value(value)
    }

    fn decode(&self, value: Value) -> Result<Value, CodecError> {
        map_encrypted(value, &mut |field, encrypted| {
            self.decrypt(field, encrypted)
        })
    }

    fn reveal(&self, value: Value) -> Value {
        map_encrypted(value, &mut |field, encrypted| {
            Ok(self
                .decrypt(field, encrypted)
                .unwrap_or_else(|_| marker(encrypted)))
        })
        .unwrap_or_else(|never: std::convert::Infallible| match never {})
    }
}

impl SensitiveFields {
    fn encode_value(&self, value: Value) -> Result<Value, CodecError> {
        Ok(match value {
            Value::Object(object) => {
                let mut encoded = Map::with_capacity(object.len());
                for (field, value) in object {
                    let value = if self.fields.contains(&field) && encrypted(&value).is_none() {
                        self.encrypt(&field, &value)?
                    } else {
                        // Encoding twice changes nothing: an encrypted value stays as it is.
                        self.encode_value(value)?
                    };
                    encoded.insert(field, value);
                }
                Value::Object(encoded)
            }
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|item| self.encode_value(item))
                    .collect::<Result<_, _>>()?,
            ),
            other => other,
        })
    }
}

/// The codec the environment configures: [`SensitiveFields`] when `SAGAFLOW_PAYLOAD_KEY` is
/// set (the fields from `SAGAFLOW_SENSITIVE_FIELDS`), else [`Plain`].
pub fn from_env() -> Result<SharedCodec, CodecError> {
    let Some(key) = std::env::var(KEY_ENV).ok().filter(|k| !k.trim().is_empty()) else {
        return Ok(Arc::new(Plain));
    };
    let fields = std::env::var(FIELDS_ENV).unwrap_or_default();
    Ok(Arc::new(SensitiveFields::new(&key, parse_fields(&fields))?))
}

/// Field names from a comma-separated list, blanks dropped.
pub fn parse_fields(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect()
}

fn aad(field: &str) -> Vec<u8> {
    [AAD_PREFIX, field.as_bytes()].concat()
}

/// The encrypted text of `value` if it is an encrypted value (`{"$enc": "…"}`).
fn encrypted(value: &Value) -> Option<&str> {
    match value {
        Value::Object(object) if object.len() == 1 => object.get(MARKER)?.as_str(),
        _ => None,
    }
}

fn marker(encrypted: &str) -> Value {
    let mut marker = Map::new();
    marker.insert(MARKER.to_owned(), Value::String(encrypted.to_owned()));
    Value::Object(marker)
}

/// `value` with every encrypted field value replaced by what `replace` makes of it (given the
/// field's name and the encrypted text).
fn map_encrypted<E>(
    value: Value,
    replace: &mut impl FnMut(&str, &str) -> Result<Value, E>,
) -> Result<Value, E> {
    Ok(match value {
        Value::Object(object) => {
            let mut decoded = Map::with_capacity(object.len());
            for (field, value) in object {
                let value = match encrypted(&value) {
                    Some(text) => replace(&field, text)?,
                    None => map_encrypted(value, replace)?,
                };
                decoded.insert(field, value);
            }
            Value::Object(decoded)
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| map_encrypted(item, replace))
                .collect::<Result<_, _>>()?,
        ),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const OTHER_KEY: &str = "HxwdHhscGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

    fn codec(key: &str) -> SensitiveFields {
        SensitiveFields::new(key, parse_fields("card_token, email")).unwrap()
    }

    fn payload() -> Value {
        json!({
            "order_id": "order-1",
            "email": "ada@example.com",
            "card_token": "tok_4242abcdef123456",
            "nested": [{"email": {"primary": "a@b.c"}}, 7],
        })
    }

    #[test]
    fn sensitive_fields_round_trip_and_nothing_sensitive_is_left_in_clear_text() {
        let codec = codec(KEY);
        let encoded = codec.encode(payload()).unwrap();
        let text = encoded.to_string();
        for secret in ["ada@example.com", "tok_4242", "a@b.c"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(encoded["order_id"], "order-1", "other fields stay readable");
        assert!(encoded["email"]["$enc"]
            .as_str()
            .unwrap()
            .starts_with("v1:"));
        assert_eq!(codec.decode(encoded.clone()).unwrap(), payload());
        assert_eq!(codec.reveal(encoded), payload());
    }

    #[test]
    fn encoding_twice_is_encoding_once_and_nonces_differ() {
        let codec = codec(KEY);
        let once = codec.encode(payload()).unwrap();
        assert_eq!(codec.encode(once.clone()).unwrap(), once);
        assert_ne!(
            codec.encode(payload()).unwrap(),
            once,
            "a fresh nonce per value"
        );
    }

    #[test]
    fn a_tampered_value_is_detected() {
        let codec = codec(KEY);
        let mut encoded = codec.encode(payload()).unwrap();
        let text = encoded["email"]["$enc"].as_str().unwrap().to_owned();
        let mut bytes = BASE64.decode(&text[3..]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        encoded["email"]["$enc"] = json!(format!("v1:{}", BASE64.encode(bytes)));
        assert_eq!(
            codec.decode(encoded).unwrap_err(),
            CodecError::Undecryptable {
                field: "email".into()
            }
        );
    }

    #[test]
    fn a_value_moved_to_another_field_is_detected() {
        let codec = codec(KEY);
        let mut encoded = codec.encode(payload()).unwrap();
        encoded["card_token"] = encoded["email"].clone();
        assert!(matches!(
            codec.decode(encoded),
            Err(CodecError::Undecryptable { field }) if field == "card_token"
        ));
    }

    #[test]
    fn the_wrong_key_is_a_clear_error_that_shows_no_key() {
        let encoded = codec(KEY).encode(payload()).unwrap();
        let error = codec(OTHER_KEY).decode(encoded.clone()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("SAGAFLOW_PAYLOAD_KEY is not the key"),
            "{message}"
        );
        assert!(!message.contains(KEY) && !message.contains(OTHER_KEY));
        // Shown as stored to people, not failed.
        assert_eq!(codec(OTHER_KEY).reveal(encoded.clone()), encoded);
    }

    #[test]
    fn without_a_key_values_pass_and_encrypted_ones_are_refused() {
        assert_eq!(Plain.encode(payload()).unwrap(), payload());
        assert_eq!(Plain.decode(payload()).unwrap(), payload());
        let encoded = codec(KEY).encode(payload()).unwrap();
        let error = Plain.decode(encoded.clone()).unwrap_err();
        assert!(matches!(error, CodecError::NoKey { .. }), "{error}");
        assert_eq!(Plain.reveal(encoded.clone()), encoded);
    }

    #[test]
    fn a_bad_key_is_refused_without_echoing_it() {
        for key in ["not base64!", "AAEC", ""] {
            let error = SensitiveFields::new(key, Vec::new()).unwrap_err();
            assert!(matches!(error, CodecError::BadKey(_)), "{key}: {error}");
        }
        let error = SensitiveFields::new("AAECAwQ=", Vec::new()).unwrap_err();
        assert!(!error.to_string().contains("AAECAwQ="));
    }

    #[test]
    fn malformed_encrypted_values_are_errors_not_panics() {
        let codec = codec(KEY);
        for text in ["v2:AAAA", "v1:!!!", "v1:AAAA", "plain"] {
            let error = codec.decode(json!({"email": {"$enc": text}})).unwrap_err();
            assert!(
                matches!(error, CodecError::Malformed { .. }),
                "{text}: {error}"
            );
        }
    }
}
