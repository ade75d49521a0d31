//! The outcome back to the caller: `sagaflow start --wait` listens on a reply queue of its own
//! (no database needed), and learns at once why a start was rejected.

use std::time::Duration;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_wait_publishes_nothing_when_no_orchestrator_could_answer() {
    let mut deployment = Deployment::new().await;
    let input = serde_json::to_string(&payment::request("order-nobody")).unwrap();
    // The start queue exists (the deployment declared it), but no orchestrator consumes it.
    let out = deployment
        .run_cli(&[
            "start",
            "--input",
            &input,
            "--start-key",
            "order-nobody",
            "--wait",
            "--timeout-secs",
            "2",
        ])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no orchestrator consumed") && stderr.contains("nothing was published"),
        "{stderr}"
    );
    let out = deployment
        .run_cli(&["start", "--input", &input, "--wait", "--timeout-secs", "0"])
        .await;
    assert!(!out.status.success(), "a wait of 0 s is refused");

    // Once an orchestrator runs, a later start completes, and the refused one never existed.
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _services = deployment.spawn_activity_services();
    deployment
        .publish_start(&payment::start("order-later"))
        .await;
    assert_eq!(
        deployment
            .wait_for_end("order-later", Duration::from_secs(60))
            .await,
        "completed"
    );
    assert_eq!(deployment.count("SELECT count(*) FROM sagas").await, 1);
}
