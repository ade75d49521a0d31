//! Compensation: what a failed (or cancelled) saga undoes, in which order, and what an
//! operator can do when undoing fails. Also terminate.

mod common;

use common::*;
use sagaflow_contracts::{error_kinds, ActivityError, SagaEvent, StepSeq};
use sagaflow_engine::{Effect, Fact, SagaEnd};
use serde_json::json;

fn bounce() -> ActivityError {
    ActivityError::permanent("MailboxUnavailable", "no such mailbox")
}

#[test]
fn a_receipt_that_fails_after_the_charge_refunds_it_once_and_ends_compensated() {
    let mut saga = Harness::start(registry(), "PaymentWithRefund", order_json());
    saga.complete(1, 1, json!({"masked_card": "****4242"}));
    saga.complete(2, 1, charge_json());
    let failed = saga.fail(3, 1, bounce()).unwrap();
    // The refund is step 4, built from the charge's output, retried without limit.
    assert_eq!(sent(&failed), [(4, "RefundCharge".into(), 1)]);
    let SagaEvent::ActivityScheduled {
        input,
        compensates,
        options,
        ..
    } = saga.last().clone()
    else {
        panic!("{:?}", saga.last());
    };
    assert_eq!(
        input,
        json!({ "charge_id": "0b5c8a5e-0a4f-4d43-8d7e-3f6d0e6c9a01" })
    );
    assert_eq!(compensates, Some(StepSeq(2)));
    assert_eq!(options.unwrap().retry.maximum_attempts, 0);
    assert!(failed.end.is_none(), "the saga waits for its refund");

    let refunded = saga.complete(4, 1, json!({"refund_id": "r-1"})).unwrap();
    let Some(SagaEnd::Compensated(error)) = refunded.end else {
        panic!("{refunded:?}");
    };
    assert!(
        error.message.contains("MailboxUnavailable"),
        "{}",
        error.message
    );
    assert!(saga.replay().run.is_finished());
}

#[test]
fn a_declined_card_fails_without_compensating_anything() {
    let mut saga = Harness::start(registry(), "PaymentWithRefund", order_json());
    let failed = saga
        .fail(1, 1, ActivityError::permanent("CardDeclined", "declined"))
        .unwrap();
    assert!(matches!(failed.end, Some(SagaEnd::Failed(_))));
    assert!(sent(&failed).is_empty());
}

#[test]
fn branches_are_compensated_newest_first_and_an_in_flight_one_once_it_completes() {
    let mut saga = Harness::start(registry(), "BookTrip", json!("trip-1"));
    assert_eq!(sent(&saga.activations[0]).len(), 3);
    saga.complete(2, 1, json!("hotel-1"));
    // The car fails while the flight is still in flight: the hotel is cancelled at once.
    let failed = saga
        .fail(3, 1, ActivityError::permanent("NoCarAvailable", "none"))
        .unwrap();
    assert_eq!(sent(&failed), [(4, "CancelHotel".into(), 1)]);
    let cancelled = saga.complete(4, 1, json!("hotel-cancelled")).unwrap();
    assert!(
        sent(&cancelled).is_empty(),
        "the flight has not completed yet"
    );
    assert!(cancelled.end.is_none());
    // The flight completes after the failure: it is cancelled too, with its own output.
    let flight = saga.complete(1, 1, json!("flight-1")).unwrap();
    assert_eq!(sent(&flight), [(5, "CancelFlight".into(), 1)]);
    let SagaEvent::ActivityScheduled { input, .. } = saga.last() else {
        panic!()
    };
    assert_eq!(*input, json!("flight-1"));
    let end = saga.complete(5, 1, json!("flight-cancelled")).unwrap();
    assert!(matches!(end.end, Some(SagaEnd::Compensated(_))));
    assert!(saga.replay().run.is_finished());
}

#[test]
fn a_failed_compensation_waits_for_an_operator_and_is_retried() {
    let mut saga = Harness::start(registry(), "PaymentWithRefund", order_json());
    saga.complete(1, 1, json!({"masked_card": "****4242"}));
    saga.complete(2, 1, charge_json());
    saga.fail(3, 1, bounce());
    let gave_up = saga
        .fail(
            4,
            1,
            ActivityError::permanent("UnknownCharge", "no such charge"),
        )
        .unwrap();
    let Some(SagaEnd::CompensationFailed { step, reason, .. }) = gave_up.end else {
        panic!("{gave_up:?}");
    };
    assert_eq!(step, StepSeq(4));
    assert!(reason.contains("UnknownCharge"), "{reason}");
    // Replayed in that state, it still waits.
    assert!(!saga.replay().run.is_finished());

    let retried = saga.handle(Fact::RetryCompensation).unwrap();
    assert_eq!(sent(&retried), [(5, "RefundCharge".into(), 1)]);
    assert_eq!(
        saga.handle(Fact::RetryCompensation),
        None,
        "one retry at a time"
    );
    let end = saga.complete(5, 1, json!({"refund_id": "r-1"})).unwrap();
    assert!(matches!(end.end, Some(SagaEnd::Compensated(_))));
    assert!(saga.replay().run.is_finished());
}

#[test]
fn a_cancelled_saga_tells_its_running_step_and_undoes_it_if_it_completes_anyway() {
    let mut saga = Harness::start(registry(), "PaymentWithRefund", order_json());
    saga.complete(1, 1, json!({"masked_card": "****4242"}));
    let cancelled = saga
        .handle(Fact::Cancel {
            reason: "customer asked".into(),
        })
        .unwrap();
    assert!(cancelled.effects.contains(&Effect::CancelActivity {
        step: StepSeq(2),
        activity: "ChargeCustomer".into(),
        attempt: 1,
        reason: "customer asked".into(),
    }));
    assert!(cancelled.end.is_none(), "the charge may still complete");
    assert_eq!(
        saga.handle(Fact::Cancel {
            reason: "again".into()
        }),
        None
    );
    // It did complete: refunded, then the saga ends cancelled.
    let charged = saga.complete(2, 1, charge_json()).unwrap();
    assert_eq!(sent(&charged), [(3, "RefundCharge".into(), 1)]);
    let end = saga.complete(3, 1, json!({"refund_id": "r-1"})).unwrap();
    assert_eq!(
        end.end,
        Some(SagaEnd::Cancelled {
            reason: "customer asked".into()
        })
    );
    assert!(saga.replay().run.is_finished());
}

#[test]
fn a_cancelled_step_that_stops_leaves_nothing_to_undo() {
    let mut saga = Harness::start(registry(), "PaymentWithRefund", order_json());
    saga.complete(1, 1, json!({"masked_card": "****4242"}));
    saga.handle(Fact::Cancel {
        reason: "stop".into(),
    });
    let stopped = saga
        .fail(
            2,
            1,
            ActivityError::permanent(error_kinds::CANCELLED, "stopped"),
        )
        .unwrap();
    assert_eq!(
        stopped.end,
        Some(SagaEnd::Cancelled {
            reason: "stop".into()
        })
    );
}

#[test]
fn a_terminated_saga_stops_at_once_and_takes_no_more_facts() {
    let mut saga = Harness::start(registry(), "PaymentWithRefund", order_json());
    saga.complete(1, 1, json!({"masked_card": "****4242"}));
    saga.complete(2, 1, charge_json());
    let terminated = saga
        .handle(Fact::Terminate {
            reason: "fraud".into(),
        })
        .unwrap();
    assert_eq!(
        terminated.end,
        Some(SagaEnd::Terminated {
            reason: "fraud".into()
        })
    );
    assert!(sent(&terminated).is_empty(), "nothing is compensated");
    assert!(terminated.effects.iter().any(|e| matches!(
        e,
        Effect::CancelActivity {
            step: StepSeq(3),
            ..
        }
    )));
    assert_eq!(saga.complete(3, 1, receipt_json()), None);
    assert!(saga.replay().run.is_finished());
}
