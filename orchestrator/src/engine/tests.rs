//! The engine as histories in, commands out: no database, no broker.

use sagaflow_contracts::payments::{Charge, PaymentRequest, Receipt, PROCESS_PAYMENT};
use sagaflow_contracts::{ActivityError, SagaEvent, SagaId, StepSeq};
use serde_json::{json, Value};

use super::*;
use crate::demo;

const SAGA: SagaId = SagaId(uuid::uuid!("6f1a1c33-5b7e-4c1e-9d8e-2a4b2f9a0c11"));

fn order() -> PaymentRequest {
    PaymentRequest {
        order_id: "order-1".into(),
        customer_id: "cust-1".into(),
        email: "ada@example.com".into(),
        amount_cents: 4200,
        currency: "EUR".into(),
        card_number: "4242 4242 4242 4242".into(),
    }
}

fn recorded_history() -> Vec<SagaEvent> {
    serde_json::from_str(include_str!("testdata/process_payment_completed.json"))
        .expect("the recorded history parses")
}

fn commands_recorded_in(history: &[SagaEvent]) -> Vec<Command> {
    history.iter().filter_map(Command::recorded_in).collect()
}

/// Runs the demo saga as the orchestrator would, answering each activity from `answers`, and
/// returns the history it writes.
fn run_to_end(
    registry: &SagaRegistry,
    answers: &dyn Fn(&str) -> Result<Value, ActivityError>,
) -> Vec<SagaEvent> {
    let input = serde_json::to_value(order()).unwrap();
    let definition = registry.get(PROCESS_PAYMENT).unwrap();
    let mut run = SagaRun::start(definition, SAGA, input.clone()).unwrap();
    let mut history = vec![SagaEvent::SagaStarted {
        saga_type: PROCESS_PAYMENT.into(),
        input,
        start_key: None,
    }];
    let mut pending = run.advance().unwrap();
    while !pending.is_empty() {
        history.extend(pending.iter().map(Command::to_event));
        let mut next = Vec::new();
        for command in pending {
            if let Command::ScheduleActivity { step, activity, .. } = command {
                let result = answers(&activity);
                history.push(match &result {
                    Ok(output) => SagaEvent::ActivityCompleted {
                        step,
                        output: output.clone(),
                    },
                    Err(error) => SagaEvent::ActivityFailed {
                        step,
                        error: error.clone(),
                    },
                });
                next.extend(run.on_result(step, result).unwrap());
            }
        }
        pending = next;
    }
    assert!(run.is_finished(), "the saga did not finish");
    history
}

fn demo_answers(activity: &str) -> Result<Value, ActivityError> {
    let charge_id = uuid::uuid!("0b5c8a5e-0a4f-4d43-8d7e-3f6d0e6c9a01");
    Ok(match activity {
        "ValidatePaymentInfo" => json!({ "masked_card": "************4242" }),
        "ChargeCustomer" => {
            json!({ "charge_id": charge_id, "order_id": "order-1", "amount_cents": 4200, "currency": "EUR" })
        }
        "SendReceipt" => {
            json!({ "receipt_id": uuid::uuid!("9d1e4b7a-6c2f-4e3a-8b5d-1a2c3d4e5f60"), "charge_id": charge_id, "email": "ada@example.com" })
        }
        other => panic!("unexpected activity {other}"),
    })
}

#[test]
fn a_new_saga_schedules_its_steps_one_after_another() {
    let history = run_to_end(&demo::registry(), &demo_answers);
    let activities: Vec<_> = history
        .iter()
        .filter_map(|e| match e {
            SagaEvent::ActivityScheduled { step, activity, .. } => {
                Some((step.0, activity.as_str()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        activities,
        [
            (1, "ValidatePaymentInfo"),
            (2, "ChargeCustomer"),
            (3, "SendReceipt")
        ]
    );
    let Some(SagaEvent::SagaCompleted { output }) = history.last() else {
        panic!("the saga did not complete: {history:?}");
    };
    let receipt: Receipt = serde_json::from_value(output.clone()).unwrap();
    assert_eq!(receipt.email, "ada@example.com");
}

/// Set `SAGAFLOW_RECORD_HISTORIES=1` to re-record `testdata/` after an intended change.
#[test]
fn the_recorded_history_is_what_the_saga_writes_today() {
    let written = run_to_end(&demo::registry(), &demo_answers);
    if std::env::var_os("SAGAFLOW_RECORD_HISTORIES").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/engine/testdata/process_payment_completed.json"
        );
        std::fs::write(path, serde_json::to_string_pretty(&written).unwrap() + "\n").unwrap();
    }
    assert_eq!(written, recorded_history());
}

#[test]
fn replaying_a_history_yields_exactly_the_recorded_commands() {
    let history = recorded_history();
    let (run, replayed) = SagaRun::replay(&demo::registry(), SAGA, &history).unwrap();
    assert_eq!(replayed, commands_recorded_in(&history));
    assert!(run.is_finished());
}

#[test]
fn a_replayed_saga_continues_exactly_like_the_cached_one() {
    let full = recorded_history();
    // Cut the history right after ChargeCustomer was scheduled, as a crash would.
    let cut = full
        .iter()
        .position(|e| matches!(e, SagaEvent::ActivityScheduled { activity, .. } if activity == "ChargeCustomer"))
        .unwrap();
    let (mut run, replayed) = SagaRun::replay(&demo::registry(), SAGA, &full[..=cut]).unwrap();
    assert_eq!(replayed, commands_recorded_in(&full[..=cut]));
    assert!(!run.is_finished());
    assert!(!run.has_result(StepSeq(2)));

    let SagaEvent::ActivityCompleted { output, .. } = &full[cut + 1] else {
        panic!()
    };
    let next = run.on_result(StepSeq(2), Ok(output.clone())).unwrap();
    assert_eq!(next, commands_recorded_in(&full[cut + 2..cut + 3]));
}

#[test]
fn changed_saga_code_is_caught_as_non_deterministic() {
    // Someone swapped the charge for a receipt in code that already has running sagas.
    let mut changed = SagaRegistry::new();
    changed
        .register(
            PROCESS_PAYMENT,
            |ctx: SagaContext, order: PaymentRequest| async move {
                let _: Value = ctx.activity("ValidatePaymentInfo", &order).await?;
                let receipt: Receipt = ctx.activity("SendReceipt", &order).await?;
                Ok(receipt)
            },
        )
        .unwrap();
    let err = SagaRun::replay(&changed, SAGA, &recorded_history())
        .err()
        .unwrap();
    let ReplayError::Run(RunError::NonDeterminism(reason)) = err else {
        panic!("{err:?}")
    };
    assert!(
        reason.contains("step 2") && reason.contains("SendReceipt"),
        "{reason}"
    );
}

#[test]
fn code_that_stops_earlier_than_its_history_is_non_deterministic() {
    let mut shorter = SagaRegistry::new();
    shorter
        .register(
            PROCESS_PAYMENT,
            |ctx: SagaContext, order: PaymentRequest| async move {
                let v: Value = ctx.activity("ValidatePaymentInfo", &order).await?;
                Ok(v)
            },
        )
        .unwrap();
    let err = SagaRun::replay(&shorter, SAGA, &recorded_history())
        .err()
        .unwrap();
    assert!(
        matches!(err, ReplayError::Run(RunError::NonDeterminism(_))),
        "{err:?}"
    );
}

#[test]
fn a_history_of_an_unregistered_saga_type_is_refused() {
    let err = SagaRun::replay(&SagaRegistry::new(), SAGA, &recorded_history())
        .err()
        .unwrap();
    assert_eq!(err, ReplayError::UnknownSagaType(PROCESS_PAYMENT.into()));
}

fn fan_out_registry() -> SagaRegistry {
    let mut registry = SagaRegistry::new();
    registry
        .register("FanOut", |ctx: SagaContext, n: u32| async move {
            let (a, b) = futures::join!(
                ctx.activity::<u32, _>("Double", &n),
                ctx.activity::<u32, _>("Square", &n)
            );
            Ok(a? + b?)
        })
        .unwrap();
    registry
}

#[test]
fn joined_activities_are_scheduled_together_and_resolve_in_any_order() {
    let registry = fan_out_registry();
    let mut run = SagaRun::start(registry.get("FanOut").unwrap(), SAGA, json!(3)).unwrap();
    let first = run.advance().unwrap();
    assert_eq!(
        first,
        [
            Command::ScheduleActivity {
                step: StepSeq(1),
                activity: "Double".into(),
                input: json!(3)
            },
            Command::ScheduleActivity {
                step: StepSeq(2),
                activity: "Square".into(),
                input: json!(3)
            },
        ]
    );
    assert_eq!(run.on_result(StepSeq(2), Ok(json!(9))).unwrap(), []);
    assert_eq!(
        run.on_result(StepSeq(1), Ok(json!(6))).unwrap(),
        [Command::CompleteSaga { output: json!(15) }]
    );
}

#[test]
fn a_failed_activity_fails_the_saga_with_its_reason() {
    let declined = ActivityError::permanent("InvalidPayment", "card number fails the Luhn check");
    let history = run_to_end(&demo::registry(), &|activity| match activity {
        "ValidatePaymentInfo" => Err(declined.clone()),
        other => demo_answers(other),
    });
    let Some(SagaEvent::SagaFailed { error }) = history.last() else {
        panic!("{history:?}")
    };
    assert!(
        error.message.contains("ValidatePaymentInfo") && error.message.contains("Luhn"),
        "{}",
        error.message
    );
    assert_eq!(
        error.details,
        Some(serde_json::to_value(&declined).unwrap())
    );
    // The failed saga replays to the same end.
    let (run, _) = SagaRun::replay(&demo::registry(), SAGA, &history).unwrap();
    assert!(run.is_finished());
}

#[test]
fn a_panicking_saga_is_stuck_not_a_crashed_orchestrator() {
    let mut registry = SagaRegistry::new();
    registry
        .register("Buggy", |_ctx: SagaContext, _: Value| async move {
            if true {
                panic!("index out of bounds");
            }
            Ok(())
        })
        .unwrap();
    let mut run = SagaRun::start(registry.get("Buggy").unwrap(), SAGA, json!(null)).unwrap();
    assert_eq!(
        run.advance(),
        Err(RunError::Panicked("index out of bounds".into()))
    );
}

#[test]
fn input_that_does_not_fit_the_saga_type_is_refused_before_anything_runs() {
    let registry = demo::registry();
    let err = registry
        .get(PROCESS_PAYMENT)
        .unwrap()
        .check_input(&json!({ "amount": "lots" }))
        .unwrap_err();
    assert_eq!(err.saga_type, PROCESS_PAYMENT);
}

#[test]
fn ids_from_the_context_are_the_same_on_replay() {
    let mut registry = SagaRegistry::new();
    registry
        .register("Ids", |ctx: SagaContext, _: Value| async move {
            let id = ctx.new_uuid();
            let charge: Charge = ctx.activity("Echo", &id).await?;
            Ok((id, charge.charge_id))
        })
        .unwrap();
    let mut run = SagaRun::start(registry.get("Ids").unwrap(), SAGA, json!(null)).unwrap();
    let [Command::ScheduleActivity { input: first, .. }] = &run.advance().unwrap()[..] else {
        panic!()
    };
    let mut again = SagaRun::start(registry.get("Ids").unwrap(), SAGA, json!(null)).unwrap();
    let [Command::ScheduleActivity { input: second, .. }] = &again.advance().unwrap()[..] else {
        panic!()
    };
    assert_eq!(first, second);
}

#[test]
fn the_cache_hands_a_run_out_once_and_drops_finished_sagas() {
    let registry = fan_out_registry();
    let cache = SagaCache::new(10);
    let mut run = SagaRun::start(registry.get("FanOut").unwrap(), SAGA, json!(1)).unwrap();
    run.advance().unwrap();
    cache.put(
        SAGA,
        CachedSaga {
            run,
            next_event_seq: 3,
        },
    );
    let mut cached = cache.take(SAGA).expect("cached");
    assert!(
        cache.take(SAGA).is_none(),
        "a taken run is out of the cache"
    );
    cached.run.on_result(StepSeq(1), Ok(json!(2))).unwrap();
    cached.run.on_result(StepSeq(2), Ok(json!(1))).unwrap();
    cache.put(SAGA, cached);
    assert!(cache.is_empty(), "a finished saga is not cached");
}

#[test]
fn a_saga_awaiting_something_other_than_a_step_is_stuck_not_silently_waiting() {
    let mut registry = SagaRegistry::new();
    registry
        .register("Sleepy", |ctx: SagaContext, _: Value| async move {
            let _: Value = ctx.activity("First", &()).await?;
            // Never wakes: the engine polls with a no-op waker and nothing records this wait.
            std::future::pending::<()>().await;
            Ok(())
        })
        .unwrap();
    let mut run = SagaRun::start(registry.get("Sleepy").unwrap(), SAGA, json!(null)).unwrap();
    assert_eq!(run.advance().unwrap().len(), 1);
    assert_eq!(
        run.on_result(StepSeq(1), Ok(json!(null))),
        Err(RunError::Blocked)
    );
}

#[test]
fn many_activities_joined_with_join_all_complete() {
    // join_all of more than 30 futures polls only the children that were woken.
    let mut registry = SagaRegistry::new();
    registry
        .register("Many", |ctx: SagaContext, n: u32| async move {
            let calls = (0..n).map(|i| ctx.activity::<u32, _>("Echo", &i));
            let outputs = futures::future::try_join_all(calls).await?;
            Ok(outputs.iter().sum::<u32>())
        })
        .unwrap();
    let mut run = SagaRun::start(registry.get("Many").unwrap(), SAGA, json!(40)).unwrap();
    assert_eq!(run.advance().unwrap().len(), 40);
    for step in (1..=40).rev() {
        let commands = run.on_result(StepSeq(step), Ok(json!(step - 1))).unwrap();
        if step > 1 {
            assert_eq!(commands, []);
        } else {
            assert_eq!(commands, [Command::CompleteSaga { output: json!(780) }]);
        }
    }
}

#[test]
fn an_activity_name_that_cannot_name_a_queue_fails_the_call_without_a_step() {
    let mut registry = SagaRegistry::new();
    registry
        .register("BadName", |ctx: SagaContext, _: Value| async move {
            let _: Value = ctx.activity(&"x".repeat(300), &()).await?;
            Ok(())
        })
        .unwrap();
    let mut run = SagaRun::start(registry.get("BadName").unwrap(), SAGA, json!(null)).unwrap();
    let [Command::FailSaga { error }] = &run.advance().unwrap()[..] else {
        panic!("the saga should fail at once")
    };
    assert_eq!(
        error.details.as_ref().unwrap()["kind"],
        "InvalidActivityName"
    );
}
