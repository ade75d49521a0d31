//! The activity state machine: attempts, retries by policy, timeouts, late and duplicate
//! results.

mod common;

use std::time::Duration;

use common::*;
use sagaflow_contracts::{error_kinds, ActivityError, SagaEvent, StepSeq};
use sagaflow_engine::TimerKey;
use serde_json::json;

fn busy() -> ActivityError {
    ActivityError::transient("Busy", "the bank is busy")
}

#[test]
fn a_new_saga_schedules_its_steps_one_after_another() {
    let mut saga = Harness::start(registry(), "ProcessPayment", order_json());
    assert_eq!(
        sent(&saga.activations[0]),
        [(1, "ValidatePaymentInfo".into(), 1)]
    );
    let charge = saga
        .complete(1, 1, json!({"masked_card": "****4242"}))
        .unwrap();
    assert_eq!(sent(&charge), [(2, "ChargeCustomer".into(), 1)]);
    saga.complete(2, 1, charge_json());
    let end = saga.complete(3, 1, receipt_json()).unwrap();
    assert!(matches!(
        end.end,
        Some(sagaflow_engine::SagaEnd::Completed(_))
    ));
    assert_eq!(
        saga.kinds(),
        [
            "SagaStarted",
            "ActivityScheduled",
            "ActivityCompleted",
            "ActivityScheduled",
            "ActivityCompleted",
            "ActivityScheduled",
            "ActivityCompleted",
            "SagaCompleted"
        ]
    );
    // Each attempt is timed out by the configured default start-to-close timeout.
    assert_eq!(
        armed(&saga.activations[0]),
        [(
            TimerKey::StartToClose(StepSeq(1)),
            1,
            t0() + chrono::Duration::seconds(30)
        )]
    );
}

#[test]
fn a_retryable_failure_backs_off_then_sends_the_next_attempt_with_the_same_step() {
    let mut saga = Harness::start(registry(), "ProcessPayment", order_json());
    saga.complete(1, 1, json!({"masked_card": "****4242"}));

    let failed = saga.fail(2, 1, busy()).unwrap();
    assert!(
        sent(&failed).is_empty(),
        "nothing is sent before the backoff"
    );
    let retry_at = t0() + chrono::Duration::seconds(1);
    assert_eq!(armed(&failed), [(TimerKey::Retry(StepSeq(2)), 1, retry_at)]);
    assert!(matches!(
        saga.last(),
        SagaEvent::ActivityAttemptFailed { attempt: 1, .. }
    ));

    saga.advance_clock(Duration::from_secs(1));
    let retried = saga.fire(TimerKey::Retry(StepSeq(2)), 1).unwrap();
    assert_eq!(sent(&retried), [(2, "ChargeCustomer".into(), 2)]);

    // The second wait is twice the first.
    let failed = saga.fail(2, 2, busy()).unwrap();
    assert_eq!(
        armed(&failed),
        [(
            TimerKey::Retry(StepSeq(2)),
            2,
            saga.now + chrono::Duration::seconds(2)
        )]
    );
    saga.fire(TimerKey::Retry(StepSeq(2)), 2);
    let charged = saga.complete(2, 3, charge_json()).unwrap();
    assert_eq!(sent(&charged), [(3, "SendReceipt".into(), 1)]);
    assert_eq!(
        saga.kinds()[3..],
        [
            "ActivityScheduled",
            "ActivityAttemptFailed",
            "ActivityRetried",
            "ActivityAttemptFailed",
            "ActivityRetried",
            "ActivityCompleted",
            "ActivityScheduled"
        ]
    );
}

#[test]
fn the_saga_sees_only_the_final_failure_with_its_attempt_count() {
    let mut saga = Harness::start(registry(), "ProcessPayment", order_json());
    saga.complete(1, 1, json!({"masked_card": "****4242"}));
    for attempt in 1..=2 {
        saga.fail(2, attempt, busy());
        saga.fire(TimerKey::Retry(StepSeq(2)), attempt);
    }
    let last = saga.fail(2, 3, busy()).unwrap();
    let Some(sagaflow_engine::SagaEnd::Failed(failure)) = last.end else {
        panic!("the saga did not fail: {last:?}");
    };
    assert!(
        failure.message.contains("after 3 attempt(s)"),
        "{}",
        failure.message
    );
    assert!(matches!(
        saga.history[saga.history.len() - 2].event,
        SagaEvent::ActivityFailed { attempt: 3, .. }
    ));
}

#[test]
fn permanent_errors_and_non_retryable_kinds_fail_at_once() {
    for error in [
        ActivityError::permanent("InvalidPayment", "bad card"),
        ActivityError::transient("CardDeclined", "declined"),
    ] {
        let mut saga = Harness::start(registry(), "ProcessPayment", order_json());
        let failed = saga.fail(1, 1, error.clone()).unwrap();
        assert!(failed.end.is_some(), "{error:?} did not end the saga");
        assert!(armed(&failed).is_empty());
    }
}

#[test]
fn a_hung_attempt_times_out_and_is_retried_and_its_late_result_is_recorded_and_ignored() {
    let mut saga = Harness::start(registry(), "ProcessPayment", order_json());
    saga.advance_clock(Duration::from_secs(30));
    let timed_out = saga.fire(TimerKey::StartToClose(StepSeq(1)), 1).unwrap();
    let SagaEvent::ActivityAttemptFailed { error, .. } = &timed_out.events[0] else {
        panic!("{timed_out:?}");
    };
    assert_eq!(error.kind, error_kinds::TIMED_OUT);
    assert!(
        error.message.contains("start-to-close timeout of 30000 ms"),
        "{}",
        error.message
    );

    saga.advance_clock(Duration::from_secs(1));
    saga.fire(TimerKey::Retry(StepSeq(1)), 1);
    // Attempt 1 answers after all: recorded, ignored; its duplicate is not even recorded.
    let late = saga
        .complete(1, 1, json!({"masked_card": "****4242"}))
        .unwrap();
    assert!(matches!(
        late.events[..],
        [SagaEvent::ActivityResultIgnored { attempt: 1, .. }]
    ));
    assert!(sent(&late).is_empty());
    assert_eq!(
        saga.complete(1, 1, json!({"masked_card": "****4242"})),
        None
    );
    // A stale timer of attempt 1 changes nothing either.
    assert_eq!(saga.fire(TimerKey::StartToClose(StepSeq(1)), 1), None);

    let next = saga
        .complete(1, 2, json!({"masked_card": "****4242"}))
        .unwrap();
    assert_eq!(sent(&next), [(2, "ChargeCustomer".into(), 1)]);
}

#[test]
fn a_duplicate_result_records_nothing() {
    let mut saga = Harness::start(registry(), "ProcessPayment", order_json());
    saga.complete(1, 1, json!({"masked_card": "****4242"}));
    assert_eq!(
        saga.complete(1, 1, json!({"masked_card": "****4242"})),
        None
    );
    assert_eq!(saga.history.len(), 4);
}

#[test]
fn a_result_for_a_step_that_does_not_exist_is_rejected() {
    let mut saga = Harness::start(registry(), "ProcessPayment", order_json());
    let rejected = saga.run.handle(
        sagaflow_engine::Fact::ActivityResult {
            step: StepSeq(9),
            activity: Some("ChargeCustomer".into()),
            attempt: 1,
            outcome: sagaflow_contracts::ActivityOutcome::Completed { output: json!(1) },
        },
        saga.now,
    );
    assert!(rejected.unwrap_err().0.contains("has no step 9"));
    let wrong_activity = saga.run.handle(
        sagaflow_engine::Fact::ActivityResult {
            step: StepSeq(1),
            activity: Some("ChargeCustomer".into()),
            attempt: 1,
            outcome: sagaflow_contracts::ActivityOutcome::Completed { output: json!(1) },
        },
        saga.now,
    );
    assert!(wrong_activity
        .unwrap_err()
        .0
        .contains("runs \"ValidatePaymentInfo\""));
}

async fn slow_step(
    ctx: sagaflow_engine::SagaContext,
    _: (),
) -> Result<String, sagaflow_engine::SagaError> {
    let call = ctx
        .activity::<String, _>("Export", &())
        .retry(sagaflow_contracts::RetryPolicy::exponential(
            Duration::from_secs(5),
            0,
        ))
        .heartbeat_timeout(Duration::from_secs(10))
        .schedule_to_close_timeout(Duration::from_secs(60));
    match call.await {
        Ok(done) => Ok(done),
        Err(failure) if failure.is_timed_out() => Ok("gave up in time".into()),
        Err(failure) => Err(failure.into()),
    }
}

#[test]
fn heartbeat_and_schedule_to_close_timeouts_are_armed_and_end_the_step_as_timed_out() {
    let mut registry = sagaflow_engine::SagaRegistry::new();
    registry.register("Slow", slow_step).unwrap();
    let mut saga = Harness::start(registry, "Slow", json!(null));
    let keys: Vec<_> = armed(&saga.activations[0])
        .into_iter()
        .map(|(k, a, _)| (k, a))
        .collect();
    assert_eq!(
        keys,
        [
            (TimerKey::StartToClose(StepSeq(1)), 1),
            (TimerKey::Heartbeat(StepSeq(1)), 1),
            (TimerKey::ScheduleToClose(StepSeq(1)), 0)
        ]
    );
    saga.advance_clock(Duration::from_secs(10));
    saga.fire(TimerKey::Heartbeat(StepSeq(1)), 1).unwrap();
    saga.advance_clock(Duration::from_secs(50));
    let end = saga.fire(TimerKey::ScheduleToClose(StepSeq(1)), 0).unwrap();
    assert_eq!(
        end.end,
        Some(sagaflow_engine::SagaEnd::Completed(json!(
            "gave up in time"
        )))
    );
}

#[test]
fn no_retry_is_scheduled_past_the_schedule_to_close_deadline() {
    let mut registry = sagaflow_engine::SagaRegistry::new();
    registry.register("Slow", slow_step).unwrap();
    let mut saga = Harness::start(registry, "Slow", json!(null));
    saga.advance_clock(Duration::from_secs(58));
    // A retry 5 s later would start after the step's 60 s deadline: the step fails now.
    let failed = saga
        .fail(1, 1, ActivityError::transient("Busy", "later"))
        .unwrap();
    assert!(matches!(failed.events[0], SagaEvent::ActivityFailed { .. }));
}

async fn fan_out(
    ctx: sagaflow_engine::SagaContext,
    n: u32,
) -> Result<u32, sagaflow_engine::SagaError> {
    let calls = (0..n).map(|i| ctx.activity::<u32, _>("Square", &i));
    let squares = futures::future::join_all(calls).await;
    let mut sum = 0;
    for square in squares {
        sum += square?;
    }
    Ok(sum)
}

#[test]
fn joined_activities_are_scheduled_together_and_resolve_in_any_order() {
    let mut registry = sagaflow_engine::SagaRegistry::new();
    registry.register("FanOut", fan_out).unwrap();
    let mut saga = Harness::start(registry, "FanOut", json!(40));
    assert_eq!(sent(&saga.activations[0]).len(), 40);
    for step in (1..=40).rev() {
        saga.complete(step, 1, json!((step - 1) * (step - 1)));
    }
    let sum: u32 = (0..40).map(|i| i * i).sum();
    assert!(matches!(saga.last(), SagaEvent::SagaCompleted { output } if *output == json!(sum)));
    assert!(saga.replay().run.is_finished());
}

#[test]
fn an_output_missing_a_field_fails_the_saga_naming_the_field_the_activity_and_the_step() {
    let mut saga = Harness::start(registry(), "ProcessPayment", order_json());
    saga.complete(1, 1, json!({"masked_card": "****4242"}));
    let mut charge = charge_json();
    charge.as_object_mut().unwrap().remove("currency");

    let end = saga.complete(2, 1, charge).unwrap();

    assert!(sent(&end).is_empty(), "no receipt for an unreadable charge");
    let SagaEvent::SagaFailed { error } = saga.last() else {
        panic!("the saga did not fail: {:?}", saga.last());
    };
    for expected in [
        "ChargeCustomer",
        "step 2",
        "InvalidOutput",
        "missing field `currency`",
    ] {
        assert!(
            error.message.contains(expected),
            "{expected:?} is not in the saga's error {:?}",
            error.message
        );
    }
    assert_eq!(
        error.details.as_ref().and_then(|d| d["kind"].as_str()),
        Some("InvalidOutput")
    );
}
