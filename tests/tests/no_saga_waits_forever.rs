//! Every path that used to leave a saga `running` with nothing saying why now ends visibly:
//! results the orchestrator cannot record, commands the broker dead-letters, starts of a saga
//! type no replica knows yet.

use std::time::Duration;

use sagaflow_contracts::{error_kinds, ActivityOptions, ActivityOutcome, RetryPolicy};
use sagaflow_e2e::test_sagas::{OneStep, PaymentAfterPause, ONE_STEP, PAYMENT_AFTER_PAUSE};
use sagaflow_e2e::{payment, Bin, Deployment};
use serde_json::json;

const END: Duration = Duration::from_secs(60);

fn one_attempt() -> serde_json::Value {
    serde_json::to_value(OneStep {
        activity: "RawCharge".into(),
        input: json!({}),
        options: ActivityOptions {
            retry: RetryPolicy::no_retries(),
            ..ActivityOptions::default()
        },
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_that_cannot_be_recorded_fail_their_attempt_instead_of_leaving_the_saga_waiting() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(
        Bin::TestOrchestrator,
        &[("SAGAFLOW_MAX_MESSAGE_BYTES", "4096")],
    );
    let mut service = deployment.raw_activity("RawCharge").await;
    for key in ["too-large", "nul", "not-json"] {
        deployment.start_saga(ONE_STEP, one_attempt(), key).await;
    }
    for _ in 0..3 {
        let command = service.next(END).await;
        let (saga, _) = sqlx::query_as::<_, (String, uuid::Uuid)>(
            "SELECT start_key, id FROM sagas WHERE id = $1",
        )
        .bind(command.command.saga_id.0)
        .fetch_one(&deployment.db)
        .await
        .unwrap();
        let body = match saga.as_str() {
            "too-large" => serde_json::to_vec(&command.command.reply(ActivityOutcome::Completed {
                output: json!("x".repeat(10_000)),
            }))
            .unwrap(),
            "nul" => serde_json::to_vec(&command.command.reply(ActivityOutcome::Completed {
                output: json!("nul\u{0}byte"),
            }))
            .unwrap(),
            _ => b"{ not json".to_vec(),
        };
        service.reply_raw(&command, body).await;
    }
    for (key, says) in [
        (
            "too-large",
            "exceeds the orchestrator's limit of 4096 bytes",
        ),
        ("nul", "PostgreSQL refuses its data"),
        ("not-json", "not an ActivityResult message"),
    ] {
        deployment.wait_for_status(key, "failed", END).await;
        let error = deployment.saga_error(key).await;
        assert_eq!(
            error["details"]["kind"],
            error_kinds::RESULT_REJECTED,
            "{key}: {error}"
        );
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{key}: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_the_broker_dead_letters_fails_its_attempt() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::TestOrchestrator, &[]);
    let mut service = deployment.raw_activity("RawCharge").await;
    deployment
        .start_saga(ONE_STEP, one_attempt(), "rejected")
        .await;
    let command = service.next(END).await;
    service.reject(&command).await;
    deployment.wait_for_status("rejected", "failed", END).await;
    let error = deployment.saga_error("rejected").await;
    assert_eq!(
        error["details"]["kind"],
        error_kinds::COMMAND_DEAD_LETTERED,
        "{error}"
    );
    // People still find the command on the dead-letter queue.
    let letters = deployment.take_dead_letters(1, END).await;
    assert_eq!(
        letters[0].queue, None,
        "dead-lettered by the broker, not by Sagaflow"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_of_a_saga_type_this_replica_does_not_know_waits_for_one_that_does() {
    let mut deployment = Deployment::new().await;
    // The demo orchestrator does not know PaymentAfterPause: an older replica in a rolling
    // deploy.
    let old = deployment.spawn(Bin::Orchestrator, &[]);
    let _services = deployment.spawn_activity_services();
    let input = PaymentAfterPause {
        pause_ms: 0,
        payment: payment::request("order-rolling"),
    };
    deployment
        .start_saga(
            PAYMENT_AFTER_PAUSE,
            serde_json::to_value(input).unwrap(),
            "order-rolling",
        )
        .await;
    sagaflow_e2e::wait_until("the old replica puts the start back", END, || {
        let put_back = old.log_text().contains("putting it back");
        async move { put_back.then_some(()) }
    })
    .await;
    let _new = deployment.spawn(Bin::TestOrchestrator, &[]);
    deployment
        .wait_for_status("order-rolling", "completed", END)
        .await;
    assert_eq!(deployment.count("SELECT count(*) FROM sagas").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_no_replica_knows_is_dead_lettered_after_the_grace_period() {
    let mut deployment = Deployment::new().await;
    let orchestrator = deployment.spawn(
        Bin::Orchestrator,
        &[("SAGAFLOW_UNKNOWN_SAGA_TYPE_GRACE_SECS", "3")],
    );
    deployment
        .start_saga("ShipParcel", json!({}), "parcel-1")
        .await;
    let letters = deployment.take_dead_letters(1, END).await;
    let reason = letters[0].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("unknown saga type \"ShipParcel\"") && reason.contains("within 3 s"),
        "{reason}"
    );
    assert!(orchestrator.log_text().contains("putting it back"));
}
