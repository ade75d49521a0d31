//! Retries and timeouts owned by the orchestrator, for any activity service: here a service
//! written against the wire contract alone (plain AMQP), as one in another language would be.

use std::collections::HashSet;
use std::time::Duration;

use sagaflow_contracts::{
    error_kinds, ActivityError, ActivityOptions, ActivityOutcome, RetryPolicy,
};
use sagaflow_e2e::test_sagas::{OneStep, ONE_STEP};
use sagaflow_e2e::{Bin, Deployment, Recorded};
use serde_json::json;

const END: Duration = Duration::from_secs(60);

fn one_step(options: ActivityOptions) -> serde_json::Value {
    serde_json::to_value(OneStep {
        activity: "RawCharge".into(),
        input: json!({ "amount_cents": 4200 }),
        options,
    })
    .unwrap()
}

fn quick_retries(maximum_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        initial_interval_ms: 200,
        backoff_coefficient: 2.0,
        maximum_interval_ms: 1_000,
        maximum_attempts,
        non_retryable_kinds: Vec::new(),
    }
}

fn kinds(history: &[Recorded]) -> Vec<&str> {
    history.iter().map(|e| e.kind.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_answers_retryable_twice_is_retried_until_it_completes_with_one_effect() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::TestOrchestrator, &[]);
    let mut service = deployment.raw_activity("RawCharge").await;
    let options = ActivityOptions {
        retry: quick_retries(5),
        ..ActivityOptions::default()
    };
    deployment
        .start_saga(ONE_STEP, one_step(options), "retried")
        .await;

    // The service charges once per idempotency key, whatever the attempt.
    let mut charged = HashSet::new();
    let mut attempts = Vec::new();
    for answer in 1..=3 {
        let command = service.next(END).await;
        charged.insert(command.command.idempotency_key.clone());
        attempts.push(command.command.attempt);
        let outcome = if answer < 3 {
            ActivityOutcome::Failed {
                error: ActivityError::transient("BankBusy", "try again"),
            }
        } else {
            ActivityOutcome::Completed {
                output: json!({ "charge_id": "ch-1" }),
            }
        };
        service.reply(&command, outcome).await;
    }

    let saga = deployment
        .wait_for_status("retried", "completed", END)
        .await;
    assert_eq!(attempts, [1, 2, 3]);
    assert_eq!(
        charged.len(),
        1,
        "every attempt carried the same idempotency key"
    );
    let history = deployment.history(saga).await;
    assert_eq!(
        kinds(&history),
        [
            "SagaStarted",
            "ActivityScheduled",
            "ActivityAttemptFailed",
            "ActivityRetried",
            "ActivityAttemptFailed",
            "ActivityRetried",
            "ActivityCompleted",
            "SagaCompleted"
        ]
    );
    // Each retry waited out its backoff, the second twice the first.
    let waited = |failed: usize| (history[failed + 1].at - history[failed].at).num_milliseconds();
    assert!(waited(2) >= 200, "first backoff {} ms", waited(2));
    assert!(waited(4) >= 400, "second backoff {} ms", waited(4));
    assert_eq!(history[6].event["attempt"], 3);
    assert_eq!(
        deployment.count("SELECT count(*) FROM timers").await,
        0,
        "no timer is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_sees_the_final_failure_after_the_last_attempt() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::TestOrchestrator, &[]);
    let mut service = deployment.raw_activity("RawCharge").await;
    let options = ActivityOptions {
        retry: quick_retries(2),
        ..ActivityOptions::default()
    };
    deployment
        .start_saga(ONE_STEP, one_step(options), "exhausted")
        .await;
    for _ in 1..=2 {
        let command = service.next(END).await;
        let error = ActivityError::transient("BankBusy", "still busy");
        service
            .reply(&command, ActivityOutcome::Failed { error })
            .await;
    }
    let saga = deployment.wait_for_status("exhausted", "failed", END).await;
    let error = deployment.saga_error("exhausted").await;
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("after 2 attempt(s)") && message.contains("BankBusy"),
        "{error}"
    );
    assert_eq!(
        kinds(&deployment.history(saga).await)[2..],
        [
            "ActivityAttemptFailed",
            "ActivityRetried",
            "ActivityFailed",
            "SagaFailed"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_attempt_times_out_and_is_retried_and_its_late_result_is_ignored() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::TestOrchestrator, &[]);
    let mut service = deployment.raw_activity("RawCharge").await;
    let options = ActivityOptions {
        retry: quick_retries(3),
        start_to_close_timeout_ms: Some(1_000),
        ..ActivityOptions::default()
    };
    deployment
        .start_saga(ONE_STEP, one_step(options), "hung")
        .await;

    let hung = service.next(END).await; // not answered in time
    let second = service.next(END).await;
    assert_eq!(second.command.attempt, 2);
    // The first attempt answers at last, while the second runs: recorded, nothing changes.
    service
        .reply(
            &hung,
            ActivityOutcome::Completed {
                output: json!("first"),
            },
        )
        .await;
    let (saga, _) = deployment.saga_by_key("hung").await.unwrap();
    deployment
        .wait_for_event(saga, "ActivityResultIgnored", END)
        .await;
    service
        .reply(
            &second,
            ActivityOutcome::Completed {
                output: json!("second"),
            },
        )
        .await;
    deployment.wait_for_status("hung", "completed", END).await;
    let history = deployment.history(saga).await;
    assert_eq!(
        kinds(&history)[2..],
        [
            "ActivityAttemptFailed",
            "ActivityRetried",
            "ActivityResultIgnored",
            "ActivityCompleted",
            "SagaCompleted"
        ]
    );
    let timed_out = &history[2];
    assert_eq!(timed_out.kind, "ActivityAttemptFailed");
    assert_eq!(timed_out.event["error"]["kind"], error_kinds::TIMED_OUT);
    let output: serde_json::Value = sqlx::query_scalar("SELECT output FROM sagas WHERE id = $1")
        .bind(saga)
        .fetch_one(&deployment.db)
        .await
        .unwrap();
    assert_eq!(output, json!("second"));
    assert_eq!(history[4].event["attempt"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeating_attempt_outlives_its_heartbeat_timeout_and_the_next_attempt_gets_its_progress(
) {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::TestOrchestrator, &[]);
    let mut service = deployment.raw_activity("RawCharge").await;
    let options = ActivityOptions {
        retry: quick_retries(3),
        heartbeat_timeout_ms: Some(1_000),
        ..ActivityOptions::default()
    };
    deployment
        .start_saga(ONE_STEP, one_step(options), "long")
        .await;

    let first = service.next(END).await;
    assert_eq!(first.command.heartbeat_timeout_ms, Some(1_000));
    // Work for three heartbeat timeouts, reporting progress: the attempt is not timed out.
    let started = tokio::time::Instant::now();
    let mut progress = 0;
    while started.elapsed() < Duration::from_secs(3) {
        progress += 1;
        service
            .heartbeat(&first, Some(json!({ "rows": progress })))
            .await;
        tokio::time::sleep(Duration::from_millis(250)).await; // the work between heartbeats
    }
    let (saga, _) = deployment.saga_by_key("long").await.unwrap();
    assert_eq!(
        kinds(&deployment.history(saga).await),
        ["SagaStarted", "ActivityScheduled"],
        "a heartbeating attempt is not timed out"
    );
    // Then it falls silent: timed out, and attempt 2 starts from its last progress.
    let second = service.next(END).await;
    assert_eq!(second.command.attempt, 2);
    assert_eq!(
        second.command.heartbeat_details,
        Some(json!({ "rows": progress }))
    );
    service
        .reply(
            &second,
            ActivityOutcome::Completed {
                output: json!("done"),
            },
        )
        .await;
    deployment.wait_for_status("long", "completed", END).await;
    let failed = &deployment.history(saga).await[2];
    assert_eq!(failed.event["error"]["kind"], error_kinds::TIMED_OUT);
    assert!(
        failed.event["error"]["message"]
            .as_str()
            .unwrap()
            .contains("heartbeat"),
        "{:?}",
        failed.event
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_runs_out_of_time_fails_the_saga_as_timed_out() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::TestOrchestrator, &[]);
    let mut service = deployment.raw_activity("RawCharge").await;
    let options = ActivityOptions {
        retry: quick_retries(0),
        schedule_to_close_timeout_ms: Some(1_500),
        ..ActivityOptions::default()
    };
    deployment
        .start_saga(ONE_STEP, one_step(options), "too-slow")
        .await;
    let _never_answered = service.next(END).await;
    deployment.wait_for_status("too-slow", "failed", END).await;
    let error = deployment.saga_error("too-slow").await;
    assert_eq!(error["details"]["kind"], error_kinds::TIMED_OUT, "{error}");
}
