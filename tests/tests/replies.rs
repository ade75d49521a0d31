//! The outcome back to the caller: `sagaflow start --wait` listens on a reply queue of its own
//! (no database needed), and learns at once why a start was rejected.

use sagaflow_e2e::{payment, Bin, Deployment};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_wait_gets_the_outcome_through_reply_to_and_a_rejection_at_once() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _services = deployment.spawn_activity_services();
    let input = serde_json::to_string(&payment::request("order-reply")).unwrap();
    // A database the CLI cannot reach: the outcome must come through the broker.
    let unreachable = "postgres://postgres@127.0.0.1:1/nowhere";
    let out = deployment
        .run_cli(&[
            "start",
            "--input",
            &input,
            "--start-key",
            "order-reply",
            "--wait",
            "--timeout-secs",
            "60",
            "--database-url",
            unreachable,
        ])
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("status     completed"), "{stdout}");
    assert!(stdout.contains("receipt_id"), "{stdout}");

    // A start that does not fit the saga's input: rejected, and the caller is told why (not
    // left waiting for a saga that will never exist).
    let out = deployment
        .run_cli(&[
            "start",
            "--input",
            r#"{"order_id": 7}"#,
            "--wait",
            "--timeout-secs",
            "60",
            "--database-url",
            unreachable,
        ])
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("status     rejected"), "{stdout}");
    assert!(
        stdout.contains("does not fit saga type ProcessPayment"),
        "{stdout}"
    );
}
