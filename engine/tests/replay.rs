//! Replay against recorded histories (JSON under testdata/): to the end of the history, then
//! live.

mod common;

use common::*;
use sagaflow_contracts::{HistoryEvent, SagaEvent, StepSeq};
use sagaflow_engine::{SagaRun, TimerKey};
use serde_json::json;

const RECORDED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testdata/");

fn recorded(name: &str) -> Vec<HistoryEvent> {
    let text = std::fs::read_to_string(format!("{RECORDED}{name}")).expect("recorded history");
    serde_json::from_str(&text).expect("the recorded history parses")
}

/// Compares `written` with the checked-in `name`; `SAGAFLOW_RECORD_HISTORIES=1` re-records it
/// after an intended change.
fn assert_recorded(name: &str, written: &[HistoryEvent]) {
    if std::env::var_os("SAGAFLOW_RECORD_HISTORIES").is_some() {
        let text = serde_json::to_string_pretty(written).unwrap() + "\n";
        std::fs::write(format!("{RECORDED}{name}"), text).unwrap();
    }
    assert_eq!(
        written,
        recorded(name),
        "{name} differs from what the saga writes today"
    );
}

fn payment_with_retries() -> Harness {
    let mut saga = Harness::start(registry(), "ProcessPayment", order_json());
    saga.complete(1, 1, json!({"masked_card": "****4242"}));
    saga.fail(
        2,
        1,
        sagaflow_contracts::ActivityError::transient("Busy", "bank busy"),
    );
    saga.advance_clock(std::time::Duration::from_secs(1));
    saga.fire(TimerKey::Retry(StepSeq(2)), 1);
    saga.complete(2, 2, charge_json());
    saga.complete(3, 1, receipt_json());
    saga
}

fn payment_with_a_pause() -> Harness {
    let mut saga = Harness::start(registry(), "PaymentWithAPause", order_json());
    saga.complete(1, 1, json!({"masked_card": "****4242"}));
    saga.complete(2, 1, charge_json());
    saga.advance_clock(std::time::Duration::from_secs(86_400));
    saga.fire(TimerKey::Sleep(sagaflow_contracts::TimerSeq(1)), 0);
    saga.complete(3, 1, receipt_json());
    saga
}

#[test]
fn the_recorded_histories_are_what_the_sagas_write_today() {
    assert_recorded(
        "process_payment_with_a_retry.json",
        &payment_with_retries().history,
    );
    assert_recorded("payment_with_a_pause.json", &payment_with_a_pause().history);
}

#[test]
fn replaying_a_recorded_history_rebuilds_the_finished_saga() {
    for name in [
        "process_payment_with_a_retry.json",
        "payment_with_a_pause.json",
    ] {
        let history = recorded(name);
        let replayed = SagaRun::replay(&registry(), SAGA, &history, defaults(), t0()).unwrap();
        assert!(replayed.run.is_finished(), "{name}");
        assert!(replayed.continuation.is_empty(), "{name}");
    }
}

#[test]
fn a_replayed_saga_continues_exactly_like_the_cached_one() {
    let mut cached = Harness::start(registry(), "ProcessPayment", order_json());
    cached.complete(1, 1, json!({"masked_card": "****4242"}));
    let mut replayed = cached.replay().run;
    let fact = sagaflow_engine::Fact::ActivityResult {
        step: StepSeq(2),
        activity: Some("ChargeCustomer".into()),
        attempt: 1,
        outcome: sagaflow_contracts::ActivityOutcome::Completed {
            output: charge_json(),
        },
    };
    let from_replay = replayed.handle(fact.clone(), cached.now).unwrap();
    let from_cache = cached.run.handle(fact, cached.now).unwrap();
    assert_eq!(from_replay, from_cache);
}

#[test]
fn a_history_that_ends_in_the_middle_continues_live() {
    // Results recorded while the saga was stuck: the history ends after a fact whose commands
    // were never recorded.
    let mut saga = Harness::start(registry(), "ProcessPayment", order_json());
    saga.complete(1, 1, json!({"masked_card": "****4242"}));
    let mut history = saga.history.clone();
    history.truncate(3); // SagaStarted, ActivityScheduled(1), ActivityCompleted(1)
    let replayed = SagaRun::replay(&registry(), SAGA, &history, defaults(), saga.now).unwrap();
    let continuation = replayed.continuation;
    assert!(matches!(
        continuation.events[..],
        [SagaEvent::ActivityScheduled {
            step: StepSeq(2),
            ..
        }]
    ));
    assert_eq!(sent(&continuation), [(2, "ChargeCustomer".into(), 1)]);
}

#[test]
fn histories_written_before_retries_existed_still_replay() {
    let events: Vec<SagaEvent> = serde_json::from_str(
        &std::fs::read_to_string(format!("{RECORDED}v1_process_payment_completed.json")).unwrap(),
    )
    .unwrap();
    let history: Vec<HistoryEvent> = events
        .into_iter()
        .enumerate()
        .map(|(seq, event)| HistoryEvent {
            seq: seq as i64,
            at: t0(),
            event,
        })
        .collect();
    let replayed = SagaRun::replay(&registry(), SAGA, &history, defaults(), t0()).unwrap();
    assert!(replayed.run.is_finished());
}
