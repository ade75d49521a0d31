//! A command larger than the orchestrator sends (`SAGAFLOW_MAX_COMMAND_BYTES`) is refused when
//! the saga schedules it: the step fails with kind `CommandTooLarge` and the reason, the saga
//! compensates what it did, and no outbox row or queued message is ever made for it.

use std::time::Duration;

use sagaflow_contracts::payments::SEND_RECEIPT;
use sagaflow_e2e::test_sagas::{ChargeThenOversized, CHARGE_THEN_OVERSIZED};
use sagaflow_e2e::{payment, Bin, Deployment};

const END: Duration = Duration::from_secs(60);
const LIMIT: usize = 16 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_over_the_limit_fails_its_step_and_the_saga_compensates() {
    let mut deployment = Deployment::new().await;
    // No receipt-sender: the receipt's queue is only watched, so anything sent to it stays.
    assert_eq!(deployment.activity_queue_depth(SEND_RECEIPT).await, 0);
    let limit = LIMIT.to_string();
    let _orchestrator = deployment.spawn(
        Bin::TestOrchestrator,
        &[("SAGAFLOW_MAX_COMMAND_BYTES", limit.as_str())],
    );
    let _charger = deployment.spawn(Bin::Charger, &[]);
    let input = ChargeThenOversized {
        payment: payment::request("order-oversized"),
        padding_bytes: LIMIT,
    };
    deployment
        .start_saga(
            CHARGE_THEN_OVERSIZED,
            serde_json::to_value(input).unwrap(),
            "order-oversized",
        )
        .await;

    let saga = deployment
        .wait_for_status("order-oversized", "compensated", END)
        .await;
    let history = deployment.history(saga).await;
    let failed = history
        .iter()
        .find(|e| e.kind == "ActivityFailed")
        .expect("the receipt's step failed");
    assert_eq!(failed.event["step"], 2, "{:?}", failed.event);
    assert_eq!(failed.event["error"]["kind"], "CommandTooLarge");
    assert_eq!(failed.event["error"]["retryable"], false);
    let message = failed.event["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("exceeds the limit of {LIMIT} bytes")),
        "{message}"
    );
    // The failure is recorded right after the command it refused, in the same activation.
    let scheduled = history
        .iter()
        .position(|e| e.kind == "ActivityScheduled" && e.event["step"] == 2)
        .expect("the receipt's step was scheduled");
    assert_eq!(history[scheduled + 1].kind, "ActivityFailed");
    assert_eq!(
        history.last().map(|e| e.kind.as_str()),
        Some("SagaCompensated")
    );

    let count = |sql: &str| sql.replace("{order}", "order-oversized");
    assert_eq!(
        deployment
            .count(&count(
                "SELECT count(*) FROM charges WHERE order_id = '{order}'"
            ))
            .await,
        1
    );
    assert_eq!(
        deployment
            .count(&count(
                "SELECT count(*) FROM refunds r JOIN charges c USING (charge_id) WHERE c.order_id = '{order}'"
            ))
            .await,
        1
    );
    let receipt_queue = deployment.topology.activity_queue(SEND_RECEIPT);
    assert_eq!(
        deployment
            .count(&format!(
                "SELECT count(*) FROM outbox WHERE routing_key = '{receipt_queue}'"
            ))
            .await,
        0,
        "no outbox row for the refused command"
    );
    assert_eq!(deployment.activity_queue_depth(SEND_RECEIPT).await, 0);
}
