//! How a saga's input type may change while producers still send the old shape: a new field
//! needs a default (`#[serde(default)]`), or every start without it is dead-lettered.

use sagaflow_engine::{SagaContext, SagaError, SagaRegistry};
use serde::Deserialize;
use serde_json::json;

/// Version 1 of an order, as producers send it today.
fn v1_start() -> serde_json::Value {
    json!({ "order_id": "order-1", "amount_cents": 4200 })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderV2WithDefault {
    #[allow(dead_code)]
    order_id: String,
    #[allow(dead_code)]
    amount_cents: i64,
    /// Added in version 2: producers that do not send it yet get the default.
    #[serde(default = "default_currency")]
    #[allow(dead_code)]
    currency: String,
}

fn default_currency() -> String {
    "EUR".into()
}

#[derive(Deserialize)]
struct OrderV2WithoutDefault {
    #[allow(dead_code)]
    order_id: String,
    #[allow(dead_code)]
    amount_cents: i64,
    #[allow(dead_code)]
    currency: String,
}

async fn with_default(_ctx: SagaContext, _order: OrderV2WithDefault) -> Result<(), SagaError> {
    Ok(())
}

async fn without_default(
    _ctx: SagaContext,
    _order: OrderV2WithoutDefault,
) -> Result<(), SagaError> {
    Ok(())
}

fn registry() -> SagaRegistry {
    let mut registry = SagaRegistry::new();
    registry
        .register("WithDefault", with_default)
        .unwrap()
        .register("WithoutDefault", without_default)
        .unwrap();
    registry
}

#[test]
fn a_new_input_field_with_a_default_accepts_starts_of_producers_that_do_not_send_it() {
    let registry = registry();
    let saga = registry.get("WithDefault").unwrap();
    assert_eq!(saga.check_input(&v1_start()), Ok(()));
}

#[test]
fn a_new_input_field_without_a_default_refuses_old_starts_naming_the_field() {
    let registry = registry();
    let saga = registry.get("WithoutDefault").unwrap();
    let error = saga.check_input(&v1_start()).unwrap_err();
    assert!(
        error.to_string().contains("missing field `currency`"),
        "{error}"
    );
}
