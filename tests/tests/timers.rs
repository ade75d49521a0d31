//! Durable timers: `ctx.sleep` and retry backoffs survive an orchestrator SIGKILL and fire
//! once, also with two replicas.

use std::time::Duration;

use sagaflow_contracts::{ActivityError, ActivityOptions, ActivityOutcome, RetryPolicy};
use sagaflow_e2e::test_sagas::{OneStep, PaymentAfterPause, ONE_STEP, PAYMENT_AFTER_PAUSE};
use sagaflow_e2e::{payment, Bin, Deployment};
use serde_json::json;

const END: Duration = Duration::from_secs(60);
/// How late a timer may fire: the claimer polls every second for timers other replicas armed.
const TOLERANCE_MS: i64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_fires_once_after_the_orchestrator_is_killed_with_two_replicas_taking_over() {
    let mut deployment = Deployment::new().await;
    let first = deployment.spawn(Bin::TestOrchestrator, &[]);
    let _services = deployment.spawn_activity_services();
    let input = PaymentAfterPause {
        pause_ms: 3_000,
        payment: payment::request("order-paused"),
    };
    deployment
        .start_saga(
            PAYMENT_AFTER_PAUSE,
            serde_json::to_value(input).unwrap(),
            "order-paused",
        )
        .await;
    let saga = deployment.wait_for_start("order-paused", END).await;
    let history = deployment.wait_for_event(saga, "TimerStarted", END).await;
    first.kill();
    let _replicas = [
        deployment.spawn(Bin::TestOrchestrator, &[]),
        deployment.spawn(Bin::TestOrchestrator, &[]),
    ];

    deployment
        .wait_for_status("order-paused", "completed", END)
        .await;
    let history_after = deployment.history(saga).await;
    let fired: Vec<_> = history_after
        .iter()
        .filter(|e| e.kind == "TimerFired")
        .collect();
    assert_eq!(fired.len(), 1, "the timer fired once");
    let started = history.iter().find(|e| e.kind == "TimerStarted").unwrap();
    let fire_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(started.event["fire_at"].clone()).unwrap();
    let late = (fired[0].at - fire_at).num_milliseconds();
    assert!(
        (0..TOLERANCE_MS).contains(&late),
        "the timer fired {late} ms after its time"
    );
    assert_eq!(deployment.count("SELECT count(*) FROM charges").await, 1);
    assert_eq!(deployment.count("SELECT count(*) FROM receipts").await, 1);
    assert_eq!(deployment.count("SELECT count(*) FROM timers").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_backoff_survives_an_orchestrator_kill_and_retries_once() {
    let mut deployment = Deployment::new().await;
    let first = deployment.spawn(Bin::TestOrchestrator, &[]);
    let mut service = deployment.raw_activity("RawCharge").await;
    let input = OneStep {
        activity: "RawCharge".into(),
        input: json!({}),
        options: ActivityOptions {
            retry: RetryPolicy {
                initial_interval_ms: 2_000,
                ..RetryPolicy::default()
            },
            ..ActivityOptions::default()
        },
    };
    deployment
        .start_saga(ONE_STEP, serde_json::to_value(input).unwrap(), "backoff")
        .await;
    let command = service.next(END).await;
    let error = ActivityError::transient("BankBusy", "later");
    service
        .reply(&command, ActivityOutcome::Failed { error })
        .await;
    let (saga, _) = deployment.saga_by_key("backoff").await.unwrap();
    deployment
        .wait_for_event(saga, "ActivityAttemptFailed", END)
        .await;
    first.kill();
    let _replicas = [
        deployment.spawn(Bin::TestOrchestrator, &[]),
        deployment.spawn(Bin::TestOrchestrator, &[]),
    ];

    let second = service.next(END).await;
    assert_eq!(second.command.attempt, 2);
    service
        .reply(
            &second,
            ActivityOutcome::Completed {
                output: json!("ok"),
            },
        )
        .await;
    deployment
        .wait_for_status("backoff", "completed", END)
        .await;
    let retried = deployment
        .history(saga)
        .await
        .iter()
        .filter(|e| e.kind == "ActivityRetried")
        .count();
    assert_eq!(retried, 1);
}
