//! Signals with real processes: kept when sent before the saga waits, delivered once per id,
//! a deadline that is a durable timer across an orchestrator SIGKILL, and a clear reason for a
//! signal to a saga that has ended.

use std::time::Duration;

use sagaflow_e2e::test_sagas::{CollectApprovals, COLLECT_APPROVALS};
use sagaflow_e2e::{payment, Bin, Deployment};

const END: Duration = Duration::from_secs(60);

fn approvals(order_id: &str, count: u32, timeout_ms: u64) -> serde_json::Value {
    serde_json::to_value(CollectApprovals {
        payment: payment::request(order_id),
        count,
        timeout_ms,
    })
    .unwrap()
}

async fn signal(deployment: &Deployment, key: &str, payload: &str, signal_id: &str) {
    let out = deployment
        .run_cli(&[
            "signal",
            "--saga-type",
            COLLECT_APPROVALS,
            "--start-key",
            key,
            "--name",
            "approved",
            "--payload",
            payload,
            "--signal-id",
            signal_id,
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_sent_before_the_saga_waits_are_kept_in_order_and_delivered_once() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::TestOrchestrator, &[]);
    // No validator yet: the saga cannot reach its wait before the signals arrive.
    deployment
        .start_saga(
            COLLECT_APPROVALS,
            approvals("order-early", 2, 60_000),
            "order-early",
        )
        .await;
    let saga = deployment.wait_for_start("order-early", END).await;
    signal(&deployment, "order-early", r#""ada""#, "signal-1").await;
    signal(&deployment, "order-early", r#""ada""#, "signal-1").await; // the same signal again
    signal(&deployment, "order-early", r#""bob""#, "signal-2").await;
    sagaflow_e2e::wait_until("both signals are recorded", END, || async {
        let history = deployment.history(saga).await;
        (history
            .iter()
            .filter(|e| e.kind == "SignalReceived")
            .count()
            == 2)
            .then_some(())
    })
    .await;

    let _validator = deployment.spawn(Bin::PaymentValidator, &[]);
    deployment
        .wait_for_status("order-early", "completed", END)
        .await;
    let output: serde_json::Value = sqlx::query_scalar("SELECT output FROM sagas WHERE id = $1")
        .bind(saga)
        .fetch_one(&deployment.db)
        .await
        .unwrap();
    assert_eq!(output, serde_json::json!(["ada", "bob"]));
    let received = deployment
        .history(saga)
        .await
        .iter()
        .filter(|e| e.kind == "SignalReceived")
        .count();
    assert_eq!(received, 2, "the duplicate was not delivered");

    // A signal to a saga that has ended is refused with the reason.
    signal(&deployment, "order-early", r#""carol""#, "signal-3").await;
    let letters = deployment.take_dead_letters(1, END).await;
    let reason = letters[0].reason.clone().unwrap_or_default();
    assert!(reason.contains("has ended (completed)"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_deadline_fires_once_across_an_orchestrator_restart() {
    let mut deployment = Deployment::new().await;
    let first = deployment.spawn(Bin::TestOrchestrator, &[]);
    let _validator = deployment.spawn(Bin::PaymentValidator, &[]);
    deployment
        .start_saga(
            COLLECT_APPROVALS,
            approvals("order-late", 1, 2_000),
            "order-late",
        )
        .await;
    let saga = deployment.wait_for_start("order-late", END).await;
    deployment.wait_for_event(saga, "TimerStarted", END).await;
    first.kill();
    let _second = deployment.spawn(Bin::TestOrchestrator, &[]);
    deployment
        .wait_for_status("order-late", "completed", END)
        .await;
    let history = deployment.history(saga).await;
    assert_eq!(history.iter().filter(|e| e.kind == "TimerFired").count(), 1);
    let output: serde_json::Value = sqlx::query_scalar("SELECT output FROM sagas WHERE id = $1")
        .bind(saga)
        .fetch_one(&deployment.db)
        .await
        .unwrap();
    assert_eq!(output, serde_json::json!(["no approval in time"]));
}
