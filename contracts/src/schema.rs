//! JSON Schemas of the wire contracts, checked in under `contracts/schema/`: the envelopes at the
//! top, and the input and output of each demo activity under `activities/`
//! (`<Activity>.input.json`, `<Activity>.output.json`), and the demo saga's input and output
//! under `sagas/`.

use schemars::schema::RootSchema;
use schemars::schema_for;

use crate::payments::{
    Charge, PaymentRequest, PaymentValidated, Receipt, ReceiptRequest, Refund, RefundRequest,
    CHARGE_CUSTOMER, PROCESS_PAYMENT, REFUND_CHARGE, SEND_RECEIPT, VALIDATE_PAYMENT_INFO,
};
use crate::travel::{
    Cancellation, Itinerary, Reservation, TripRequest, BOOK_TRIP, CANCEL_CAR, CANCEL_FLIGHT,
    CANCEL_HOTEL, RESERVE_CAR, RESERVE_FLIGHT, RESERVE_HOTEL,
};
use crate::{
    ActivityCancel, ActivityCommand, ActivityHeartbeat, ActivityResult, ExportedHistory,
    HistoryEvent, SagaControl, SagaEvent, SagaFinished, SignalSaga, StartSaga,
};

/// Every published schema with its path relative to [`dir`].
pub fn all() -> Vec<(String, RootSchema)> {
    let mut schemas: Vec<(String, RootSchema)> = vec![
        ("start-saga.json".into(), schema_for!(StartSaga)),
        ("activity-command.json".into(), schema_for!(ActivityCommand)),
        ("activity-result.json".into(), schema_for!(ActivityResult)),
        ("saga-event.json".into(), schema_for!(SagaEvent)),
        (
            "activity-heartbeat.json".into(),
            schema_for!(ActivityHeartbeat),
        ),
        ("history-event.json".into(), schema_for!(HistoryEvent)),
        ("activity-cancel.json".into(), schema_for!(ActivityCancel)),
        ("signal-saga.json".into(), schema_for!(SignalSaga)),
        ("saga-control.json".into(), schema_for!(SagaControl)),
        ("saga-finished.json".into(), schema_for!(SagaFinished)),
        ("exported-history.json".into(), schema_for!(ExportedHistory)),
    ];
    for (activity, input, output) in activities() {
        schemas.push((format!("activities/{activity}.input.json"), input));
        schemas.push((format!("activities/{activity}.output.json"), output));
    }
    // What a client sends as a StartSaga's `input`, and reads as the saga's output.
    schemas.push((
        format!("sagas/{PROCESS_PAYMENT}.input.json"),
        schema_for!(PaymentRequest),
    ));
    schemas.push((
        format!("sagas/{PROCESS_PAYMENT}.output.json"),
        schema_for!(Receipt),
    ));
    schemas.push((
        format!("sagas/{BOOK_TRIP}.input.json"),
        schema_for!(TripRequest),
    ));
    schemas.push((
        format!("sagas/{BOOK_TRIP}.output.json"),
        schema_for!(Itinerary),
    ));
    schemas
}

/// Each demo activity with the schemas of its input (the command's `input`) and of its output
/// (the completed result's `output`).
pub fn activities() -> Vec<(&'static str, RootSchema, RootSchema)> {
    vec![
        (
            VALIDATE_PAYMENT_INFO,
            schema_for!(PaymentRequest),
            schema_for!(PaymentValidated),
        ),
        (
            CHARGE_CUSTOMER,
            schema_for!(PaymentRequest),
            schema_for!(Charge),
        ),
        (
            SEND_RECEIPT,
            schema_for!(ReceiptRequest),
            schema_for!(Receipt),
        ),
        (
            REFUND_CHARGE,
            schema_for!(RefundRequest),
            schema_for!(Refund),
        ),
        (
            RESERVE_FLIGHT,
            schema_for!(TripRequest),
            schema_for!(Reservation),
        ),
        (
            CANCEL_FLIGHT,
            schema_for!(Reservation),
            schema_for!(Cancellation),
        ),
        (
            RESERVE_HOTEL,
            schema_for!(TripRequest),
            schema_for!(Reservation),
        ),
        (
            CANCEL_HOTEL,
            schema_for!(Reservation),
            schema_for!(Cancellation),
        ),
        (
            RESERVE_CAR,
            schema_for!(TripRequest),
            schema_for!(Reservation),
        ),
        (
            CANCEL_CAR,
            schema_for!(Reservation),
            schema_for!(Cancellation),
        ),
    ]
}

/// The file contents for `schema`, as checked in.
pub fn render(schema: &RootSchema) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("schemas serialize");
    text.push('\n');
    text
}

/// The directory the schemas are checked in to.
pub fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema")
}

#[cfg(test)]
mod tests {
    #[test]
    fn checked_in_schemas_are_up_to_date() {
        for (name, schema) in super::all() {
            let path = super::dir().join(&name);
            let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                checked_in == super::render(&schema),
                "{} is stale: run `cargo run -p sagaflow-contracts --bin generate-schemas`",
                path.display()
            );
        }
    }

    #[test]
    fn every_checked_in_schema_is_generated() {
        let generated: Vec<String> = super::all().into_iter().map(|(name, _)| name).collect();
        for sub in ["activities", "sagas"] {
            let dir = super::dir().join(sub);
            for entry in std::fs::read_dir(&dir).expect("the schema directory exists") {
                let name = format!("{sub}/{}", entry.unwrap().file_name().to_string_lossy());
                assert!(
                    generated.contains(&name),
                    "{name} is checked in but no longer generated: delete it"
                );
            }
        }
    }

    #[test]
    fn activity_outputs_require_every_field() {
        // A service reads these schemas to know what to send: every field the saga reads must
        // be listed as required.
        for (activity, _, output) in super::activities() {
            let object = output.schema.object.as_ref().expect("an object schema");
            let mut properties: Vec<&String> = object.properties.keys().collect();
            let mut required: Vec<&String> = object.required.iter().collect();
            properties.sort();
            required.sort();
            assert_eq!(properties, required, "{activity}'s output");
        }
    }
}
