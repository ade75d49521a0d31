//! Code that no longer reproduces its history is caught, with a diagnostic a person can act
//! on: the event, what the history says, what the code did, and where in the source.

mod common;

use common::*;
use sagaflow_contracts::payments::PaymentRequest;
use sagaflow_contracts::SagaId;
use sagaflow_engine::{ReplayError, RunError, SagaContext, SagaError, SagaRegistry, SagaRun};
use serde_json::json;

/// A history of the demo saga that has charged and waits for the receipt.
fn charged_history() -> Vec<sagaflow_contracts::HistoryEvent> {
    let mut saga = Harness::start(registry(), "ProcessPayment", order_json());
    saga.complete(1, 1, json!({"masked_card": "****4242"}));
    saga.complete(2, 1, charge_json());
    saga.history
}

fn replay_with(
    saga: impl Fn(
            SagaContext,
            PaymentRequest,
        ) -> futures::future::BoxFuture<'static, Result<serde_json::Value, SagaError>>
        + Send
        + Sync
        + 'static,
) -> Result<sagaflow_engine::Replayed, ReplayError> {
    let mut registry = SagaRegistry::new();
    registry.register("ProcessPayment", saga).unwrap();
    SagaRun::replay(&registry, SAGA, &charged_history(), defaults(), t0())
}

fn divergence(
    result: Result<sagaflow_engine::Replayed, ReplayError>,
) -> sagaflow_engine::Divergence {
    match result {
        Err(ReplayError::Run(RunError::NonDeterminism(divergence))) => divergence,
        Err(other) => panic!("expected non-determinism, got {other}"),
        Ok(_) => panic!("expected non-determinism, the replay succeeded"),
    }
}

#[test]
fn another_activity_at_a_recorded_step_is_caught_with_its_event_and_source_line() {
    let divergence = divergence(replay_with(|ctx, order| {
        Box::pin(async move {
            let _: serde_json::Value = ctx.activity("ValidatePaymentInfo", &order).await?;
            let _: serde_json::Value = ctx.activity("ReserveFunds", &order).await?;
            Ok(json!(null))
        })
    }));
    assert_eq!(divergence.seq, 3);
    assert!(
        divergence.recorded.contains("\"ChargeCustomer\" as step 2"),
        "{divergence}"
    );
    assert!(
        divergence.issued.contains("\"ReserveFunds\" as step 2"),
        "{divergence}"
    );
    let location = divergence.location.clone().expect("the call's location");
    assert!(location.contains("determinism.rs"), "{location}");
    assert!(
        divergence.to_string().contains("resume the saga"),
        "{divergence}"
    );
}

#[test]
fn the_same_activity_with_another_input_is_caught() {
    let divergence = divergence(replay_with(|ctx, mut order| {
        Box::pin(async move {
            let _: serde_json::Value = ctx.activity("ValidatePaymentInfo", &order).await?;
            order.amount_cents *= 2;
            let _: serde_json::Value = ctx.activity("ChargeCustomer", &order).await?;
            Ok(json!(null))
        })
    }));
    assert_eq!(divergence.seq, 3);
    assert!(divergence.issued.contains("input hash"), "{divergence}");
}

#[test]
fn code_that_stops_short_of_its_history_is_caught() {
    let divergence = divergence(replay_with(|ctx, order| {
        Box::pin(async move {
            let _: serde_json::Value = ctx.activity("ValidatePaymentInfo", &order).await?;
            Ok(json!("done early"))
        })
    }));
    assert_eq!(divergence.seq, 3);
    assert!(
        divergence.issued.contains("completes the saga"),
        "{divergence}"
    );
}

#[test]
fn a_new_sleep_before_a_recorded_step_is_caught() {
    let divergence = divergence(replay_with(|ctx, order| {
        Box::pin(async move {
            let _: serde_json::Value = ctx.activity("ValidatePaymentInfo", &order).await?;
            ctx.sleep(std::time::Duration::from_secs(5)).await?;
            let _: serde_json::Value = ctx.activity("ChargeCustomer", &order).await?;
            Ok(json!(null))
        })
    }));
    assert!(divergence.issued.contains("starts timer 1"), "{divergence}");
}

#[test]
fn a_history_of_an_unregistered_saga_type_is_refused() {
    let result = SagaRun::replay(
        &SagaRegistry::new(),
        SAGA,
        &charged_history(),
        defaults(),
        t0(),
    );
    assert!(matches!(result, Err(ReplayError::UnknownSagaType(t)) if t == "ProcessPayment"));
}

async fn panics(_ctx: SagaContext, _: ()) -> Result<(), SagaError> {
    panic!("boom");
}

async fn awaits_a_channel(_ctx: SagaContext, _: ()) -> Result<(), SagaError> {
    let (_tx, rx) = futures::channel::oneshot::channel::<()>();
    let _ = rx.await;
    Ok(())
}

#[test]
fn a_panicking_or_blocked_saga_is_stuck_not_a_crashed_orchestrator() {
    let mut registry = SagaRegistry::new();
    registry.register("Panics", panics).unwrap();
    registry.register("Blocks", awaits_a_channel).unwrap();
    let start = |name| {
        SagaRun::start(
            registry.get(name).unwrap(),
            SagaId::new_random(),
            json!(null),
            None,
            t0(),
            defaults(),
        )
        .unwrap()
        .1
    };
    assert_eq!(
        start("Panics").stuck,
        Some(RunError::Panicked("boom".into()))
    );
    assert_eq!(start("Blocks").stuck, Some(RunError::Blocked));
}

#[test]
fn ids_from_the_context_are_the_same_on_replay() {
    async fn ids(ctx: SagaContext, _: ()) -> Result<Vec<uuid::Uuid>, SagaError> {
        let first = ctx.new_uuid();
        let _: serde_json::Value = ctx.activity("Step", &()).await?;
        Ok(vec![first, ctx.new_uuid()])
    }
    let mut registry = SagaRegistry::new();
    registry.register("Ids", ids).unwrap();
    let mut saga = Harness::start(registry, "Ids", json!(null));
    let live = saga.complete(1, 1, json!(1)).unwrap().end;
    let mut replay_history = saga.history.clone();
    replay_history.truncate(3);
    let replayed =
        SagaRun::replay(&saga.registry, SAGA, &replay_history, defaults(), t0()).unwrap();
    assert_eq!(replayed.continuation.end, live);
}
