//! No poison in the outbox: a row the broker refuses every time (here, to an exchange that
//! does not exist, which closes the relay's channel) is retried, then parked with its error —
//! visible with `sagaflow outbox` and put back in line with `--unpark` — while every other row
//! is published and every saga completes.

use std::time::Duration;

use sagaflow_e2e::{payment, wait_until, Bin, Deployment};

const END: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_broker_refuses_is_parked_while_the_other_sagas_complete() {
    let mut deployment = Deployment::new().await;
    // A saga row for the poison row to belong to, then the poison row itself.
    let saga = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO sagas (id, saga_type, status, input, next_event_seq, start_key)
         VALUES ($1, 'ProcessPayment', 'running', '{}', 0, 'poison')",
    )
    .bind(saga)
    .execute(&deployment.db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO outbox (saga_id, exchange, routing_key, message_id, message_type, headers, body)
         VALUES ($1, 'no-such-exchange', '', 'poison-1', 'sagaflow.ActivityCancel', '[]', '\\x7b7d')",
    )
    .bind(saga)
    .execute(&deployment.db)
    .await
    .unwrap();

    let _orchestrator =
        deployment.spawn(Bin::Orchestrator, &[("SAGAFLOW_OUTBOX_MAX_ATTEMPTS", "2")]);
    let _services = deployment.spawn_activity_services();
    for order in ["order-beside-1", "order-beside-2", "order-beside-3"] {
        deployment.publish_start(&payment::start(order)).await;
    }
    for order in ["order-beside-1", "order-beside-2", "order-beside-3"] {
        assert_eq!(deployment.wait_for_end(order, END).await, "completed");
    }
    wait_until("the poison row is parked", END, || async {
        let parked = deployment
            .count("SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL")
            .await;
        (parked == 1).then_some(())
    })
    .await;
    assert_eq!(
        deployment.count("SELECT count(*) FROM outbox").await,
        1,
        "every other row was published"
    );

    let out = deployment.run_cli(&["outbox"]).await;
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(listed.contains("1 parked outbox row(s)"), "{listed}");
    assert!(listed.contains("no-such-exchange"), "{listed}");
    assert!(listed.contains("2 attempts"), "{listed}");

    let out = deployment.run_cli(&["outbox", "--unpark-all"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 parked row(s) put back"));
    // Still refused: parked again, the relay still running.
    wait_until("the row is parked again", END, || async {
        let parked = deployment
            .count("SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL AND attempts = 2")
            .await;
        (parked == 1).then_some(())
    })
    .await;
    deployment
        .publish_start(&payment::start("order-after"))
        .await;
    assert_eq!(
        deployment.wait_for_end("order-after", END).await,
        "completed"
    );
}
