//! Signals: kept until the code waits for them, in order, once per id; with a deadline.

mod common;

use std::time::Duration;

use common::*;
use sagaflow_contracts::TimerSeq;
use sagaflow_engine::{Fact, SagaEnd, TimerKey};
use serde_json::json;

fn signal(name: &str, payload: serde_json::Value, id: &str) -> Fact {
    Fact::Signal {
        name: name.into(),
        payload,
        signal_id: id.into(),
    }
}

#[test]
fn a_signal_ends_the_wait_and_a_duplicate_is_dropped() {
    let mut saga = Harness::start(registry(), "AwaitsApproval", json!(null));
    let approved = saga
        .handle(signal("approved", json!("ada"), "s-1"))
        .unwrap();
    assert_eq!(
        approved.end,
        Some(SagaEnd::Completed(json!("approved by ada")))
    );
    assert!(saga.replay().run.is_finished());
}

#[test]
fn signals_sent_before_the_wait_are_kept_in_order_once_per_id() {
    async fn two(
        ctx: sagaflow_engine::SagaContext,
        _: (),
    ) -> Result<Vec<u32>, sagaflow_engine::SagaError> {
        let _: serde_json::Value = ctx.activity("First", &()).await?;
        Ok(vec![ctx.signal("n").await?, ctx.signal("n").await?])
    }
    let mut registry = sagaflow_engine::SagaRegistry::new();
    registry.register("Two", two).unwrap();
    let mut saga = Harness::start(registry, "Two", json!(null));
    saga.handle(signal("n", json!(1), "a")).unwrap();
    assert_eq!(
        saga.handle(signal("n", json!(1), "a")),
        None,
        "same id twice"
    );
    saga.handle(signal("other", json!(9), "b")).unwrap();
    saga.handle(signal("n", json!(2), "c")).unwrap();
    let end = saga.complete(1, 1, json!(null)).unwrap();
    assert_eq!(end.end, Some(SagaEnd::Completed(json!([1, 2]))));
    assert!(saga.replay().run.is_finished());
}

#[test]
fn a_signal_deadline_is_a_durable_timer() {
    let mut saga = Harness::start(registry(), "AwaitsApproval", json!(null));
    assert!(!saga.run.is_finished());
    saga.advance_clock(Duration::from_secs(86_400));
    let replayed = saga.replay();
    assert!(replayed.continuation.is_empty());
    let end = saga.fire(TimerKey::Sleep(TimerSeq(1)), 0).unwrap();
    assert_eq!(
        end.end,
        Some(SagaEnd::Completed(json!("no approval in time")))
    );
    // A late signal changes nothing.
    assert_eq!(saga.handle(signal("approved", json!("bob"), "late")), None);
}
