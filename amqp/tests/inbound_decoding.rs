//! Property test: whatever a publisher sends — any body, any headers, any nesting — checking and
//! decoding an inbound message never panics, and every rejection has a reason that is not empty
//! and fits [`MAX_REASON_BYTES`]; its dead letter stays far below the smallest AMQP frame.

use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::BasicProperties;
use proptest::prelude::*;
use sagaflow_amqp::{check_properties, dead_letter_message, header_text};
use sagaflow_contracts::reason::MAX_REASON_BYTES;
use sagaflow_contracts::{decode, Topology};

fn value() -> impl Strategy<Value = AMQPValue> {
    let leaf = prop_oneof![
        ".{0,300}".prop_map(|s| AMQPValue::LongString(s.into())),
        ".{0,40}".prop_map(|s| AMQPValue::ShortString(s.into())),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        any::<i32>().prop_map(AMQPValue::LongInt),
        any::<bool>().prop_map(AMQPValue::Boolean),
        any::<f64>().prop_map(AMQPValue::Double),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| AMQPValue::ByteArray(b.into())),
        Just(AMQPValue::Void),
    ];
    leaf.prop_recursive(24, 200, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|values| AMQPValue::FieldArray(FieldArray::from(values))),
            proptest::collection::btree_map("[a-z-]{0,12}", inner, 0..4)
                .prop_map(|entries| AMQPValue::FieldTable(table(entries))),
        ]
    })
}

fn table(entries: std::collections::BTreeMap<String, AMQPValue>) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in entries {
        table.insert(name.into(), value);
    }
    table
}

fn properties() -> impl Strategy<Value = BasicProperties> {
    (
        proptest::collection::btree_map(".{0,60}", value(), 0..12),
        proptest::option::of(".{0,80}"),
        proptest::option::of(".{0,80}"),
        0..40usize,
    )
        .prop_map(|(mut headers, message_id, kind, nesting)| {
            // Random trees rarely nest past the limit of 16: one header nests 0..40 levels.
            let mut deep = AMQPValue::Void;
            for _ in 0..nesting {
                deep = AMQPValue::FieldArray(vec![deep].into());
            }
            headers.insert("deep".into(), deep);
            let mut properties = BasicProperties::default().with_headers(table(headers));
            if let Some(id) = message_id {
                properties = properties.with_message_id(id.as_str().into());
            }
            if let Some(kind) = kind {
                properties = properties.with_type(kind.as_str().into());
            }
            properties
        })
}

/// Bodies that reach past the first byte of the decoders: random bytes, random text, and the
/// envelopes' fields with random (and sometimes huge) values.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        ".{0,20}".prop_map(serde_json::Value::String),
        "x{1000,5000}".prop_map(serde_json::Value::String),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        Just(serde_json::json!({"status": "completed", "output": null})),
        Just(serde_json::json!({"status": "failed"})),
        Just(serde_json::Value::Null),
    ];
    let names = prop_oneof![
        Just("saga_type"),
        Just("input"),
        Just("start_key"),
        Just("saga_id"),
        Just("step"),
        Just("activity"),
        Just("attempt"),
        Just("idempotency_key"),
        Just("outcome"),
        Just("unknown"),
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        ".{0,512}".prop_map(String::into_bytes),
        proptest::collection::btree_map(names, field, 0..9)
            .prop_map(|fields| serde_json::to_vec(&fields).expect("a map serializes")),
    ]
}

fn assert_reason(reason: &str) {
    assert!(!reason.trim().is_empty(), "an empty reason");
    assert!(
        reason.len() <= MAX_REASON_BYTES,
        "a reason of {} bytes",
        reason.len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_inbound_message_is_accepted_or_rejected_with_a_bounded_reason(
        properties in properties(),
        body in body(),
    ) {
        let topology = Topology::new("prop").expect("a valid namespace");
        let mut reasons = Vec::new();
        if let Err(reason) = check_properties(&properties) {
            reasons.push(reason);
        }
        reasons.extend(decode::start_saga(&body).err().map(|e| e.to_string()));
        reasons.extend(decode::activity_result(&body).err().map(|e| e.to_string()));
        reasons.extend(decode::activity_command(&body).err().map(|e| e.to_string()));
        reasons.extend(decode::activity_heartbeat(&body).err().map(|e| e.to_string()));
        reasons.extend(decode::signal_saga(&body).err().map(|e| e.to_string()));
        reasons.extend(decode::saga_control(&body).err().map(|e| e.to_string()));
        for reason in &reasons {
            assert_reason(reason);
            let letter = dead_letter_message(&topology, &properties, &body, "prop.start", reason);
            let header_bytes: usize = letter
                .headers
                .iter()
                .map(|(name, value)| name.len() + value.len() + 6)
                .sum::<usize>()
                + letter.message_id.len()
                + letter.message_type.len();
            prop_assert!(header_bytes < 3500, "{header_bytes} bytes of properties");
            prop_assert_eq!(&letter.body, &body);
        }
        if let Some(headers) = properties.headers() {
            for value in headers.inner().values() {
                let _ = header_text(value);
            }
        }
    }
}
