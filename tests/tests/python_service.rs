//! An activity service in another language: `ChargeCustomer` in Python (pika and jsonschema,
//! nothing of ours), with the real orchestrator and the Rust validator and receipt sender.

use std::collections::HashMap;
use std::time::Duration;

use sagaflow_e2e::{payment, run_python, Bin, Deployment, PythonService};

const END: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_complete_through_a_python_charger_with_one_charge_each_after_a_retryable_failure() {
    let mut deployment = Deployment::new().await;
    let _orchestrator =
        deployment.spawn(Bin::Orchestrator, &[("SAGAFLOW_RETRY_INITIAL_MS", "100")]);
    let _validator = deployment.spawn(Bin::PaymentValidator, &[]);
    let _receipts = deployment.spawn(Bin::ReceiptSender, &[]);
    let charges_db = deployment.log_dir().join("python-charges.sqlite3");
    let charges_db = charges_db.to_str().unwrap().to_owned();
    let mut charger = PythonService::spawn(
        "charger.py",
        // Every first attempt answers `retryable: true`: the orchestrator must retry it.
        &["--db", &charges_db, "--fail-first-attempts", "1"],
        &deployment.env(),
        &deployment.log_dir().join("python-charger.log"),
    );

    let orders = ["py-order-1", "py-order-2", "py-order-3"];
    for order in orders {
        deployment.publish_start(&payment::start(order)).await;
    }
    // One more through the Python client, which waits for the outcome itself.
    let mut client_env = deployment.env();
    client_env.push(("SAGAFLOW_CLI".into(), Bin::Cli.path().display().to_string()));
    let input = serde_json::to_string(&payment::request("py-order-client")).unwrap();
    let client = run_python(
        "client.py",
        &[
            "--start-key",
            "py-order-client",
            "--input",
            &input,
            "--timeout-secs",
            "90",
        ],
        &client_env,
    )
    .await;
    assert!(
        client.status.success(),
        "the Python client's saga did not complete: {}{} (logs: {})",
        String::from_utf8_lossy(&client.stdout),
        String::from_utf8_lossy(&client.stderr),
        deployment.log_dir().display()
    );
    let outcome: serde_json::Value = serde_json::from_slice(&client.stdout).unwrap();
    assert_eq!(outcome["status"], "completed");

    let mut charge_of_saga = HashMap::new();
    for order in orders.into_iter().chain(["py-order-client"]) {
        assert_eq!(
            deployment.wait_for_end(order, END).await,
            "completed",
            "{order}"
        );
        let (saga, _) = deployment.saga(order).await.unwrap();
        let kinds = deployment.history_kinds(saga).await;
        assert!(
            kinds.contains(&"ActivityAttemptFailed".to_owned()),
            "{order}: the retryable failure is an attempt, not the end: {kinds:?}"
        );
        let output: serde_json::Value =
            sqlx::query_scalar("SELECT output FROM sagas WHERE id = $1")
                .bind(saga)
                .fetch_one(&deployment.db)
                .await
                .unwrap();
        charge_of_saga.insert(
            saga.to_string(),
            output["charge_id"].as_str().unwrap().to_owned(),
        );
    }
    assert!(
        charger.exited().is_none(),
        "the Python charger is still running"
    );

    // The Python service's own record: one charge per saga, the one the receipt is for.
    let listed = run_python(
        "charger.py",
        &["--db", &charges_db, "--list-charges"],
        &deployment.env(),
    )
    .await;
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let charges: Vec<serde_json::Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(charges.len(), 4, "one charge per saga: {charges:?}");
    for charge in &charges {
        let saga = charge["saga_id"].as_str().unwrap();
        assert_eq!(
            charge_of_saga.get(saga).map(String::as_str),
            charge["charge_id"].as_str(),
            "the saga's receipt is for the Python service's charge"
        );
        assert_eq!(
            charge["attempt"], 2,
            "charged by the retry, not the failed attempt"
        );
    }
}
