//! JSON Schemas of the wire contracts, checked in under `contracts/schema/`.

use schemars::schema::RootSchema;
use schemars::schema_for;

use crate::{
    ActivityCommand, ActivityHeartbeat, ActivityResult, HistoryEvent, SagaEvent, StartSaga,
};

/// Every published schema with its file name.
pub fn all() -> Vec<(&'static str, RootSchema)> {
    vec![
        ("start-saga.json", schema_for!(StartSaga)),
        ("activity-command.json", schema_for!(ActivityCommand)),
        ("activity-result.json", schema_for!(ActivityResult)),
        ("saga-event.json", schema_for!(SagaEvent)),
        ("activity-heartbeat.json", schema_for!(ActivityHeartbeat)),
        ("history-event.json", schema_for!(HistoryEvent)),
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
            let path = super::dir().join(name);
            let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                checked_in == super::render(&schema),
                "{} is stale: run `cargo run -p sagaflow-contracts --bin generate-schemas`",
                path.display()
            );
        }
    }
}
