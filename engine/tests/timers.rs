//! Durable timers: `ctx.sleep`, `ctx.now`, and `ctx.select` racing a step against a deadline.

mod common;

use std::time::Duration;

use common::*;
use sagaflow_contracts::{SagaEvent, StepSeq, TimerSeq};
use sagaflow_engine::{SagaEnd, TimerKey};
use serde_json::json;

#[test]
fn a_sleep_is_a_durable_timer_with_its_own_counter() {
    let mut saga = Harness::start(registry(), "PaymentWithAPause", order_json());
    saga.complete(1, 1, json!({"masked_card": "****4242"}));
    let slept = saga.complete(2, 1, charge_json()).unwrap();
    let fire_at = t0() + chrono::Duration::days(1);
    assert_eq!(armed(&slept), [(TimerKey::Sleep(TimerSeq(1)), 0, fire_at)]);
    assert!(
        saga.run.waits_only_on_timers(),
        "a sleeping saga need not stay in memory"
    );

    saga.now = fire_at;
    let woke = saga.fire(TimerKey::Sleep(TimerSeq(1)), 0).unwrap();
    // The receipt is step 3: the timer did not take a step number.
    assert_eq!(sent(&woke), [(3, "SendReceipt".into(), 1)]);
    // A timer fires once.
    assert_eq!(saga.fire(TimerKey::Sleep(TimerSeq(1)), 0), None);
}

#[test]
fn a_sleeping_saga_replayed_from_history_wakes_like_the_cached_one() {
    let mut saga = Harness::start(registry(), "PaymentWithAPause", order_json());
    saga.complete(1, 1, json!({"masked_card": "****4242"}));
    saga.complete(2, 1, charge_json());
    let mut replayed = saga.replay();
    assert!(replayed.continuation.is_empty());
    let at = t0() + chrono::Duration::days(1);
    let woke = replayed
        .run
        .handle(
            sagaflow_engine::Fact::TimerFired {
                key: TimerKey::Sleep(TimerSeq(1)),
                attempt: 0,
            },
            at,
        )
        .unwrap()
        .unwrap();
    assert_eq!(sent(&woke), [(3, "SendReceipt".into(), 1)]);
}

#[test]
fn the_deadline_wins_the_race_when_it_fires_first_and_the_late_result_changes_nothing() {
    let mut saga = Harness::start(registry(), "ApprovalWithDeadline", order_json());
    saga.advance_clock(Duration::from_secs(3_600));
    let ended = saga.fire(TimerKey::Sleep(TimerSeq(1)), 0).unwrap();
    let expected = format!("timed out at {}", saga.now);
    assert_eq!(ended.end, Some(SagaEnd::Completed(json!(expected))));
    // ctx.now() is the recorded time of the fact: replay gives the same answer.
    let replayed = saga.replay();
    assert!(replayed.run.is_finished());
}

#[test]
fn the_step_wins_the_race_when_its_result_comes_first() {
    let mut saga = Harness::start(registry(), "ApprovalWithDeadline", order_json());
    let ended = saga.complete(1, 1, json!("approved")).unwrap();
    assert_eq!(ended.end, Some(SagaEnd::Completed(json!("approved"))));
    assert!(saga.replay().run.is_finished());
    assert!(matches!(
        saga.history[1].event,
        SagaEvent::ActivityScheduled {
            step: StepSeq(1),
            ..
        }
    ));
}
