//! The demo payment saga, end to end: orchestrator and three activity services as processes.

use std::time::Duration;

use sagaflow_e2e::{payment, Bin, Deployment};

const END: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_saga_runs_to_the_end_with_one_charge_and_one_receipt() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _services = deployment.spawn_activity_services();

    deployment.publish_start(&payment::start("order-1")).await;

    assert_eq!(deployment.wait_for_end("order-1", END).await, "completed");
    let (saga, _) = deployment.saga("order-1").await.unwrap();
    assert_eq!(
        deployment.history_kinds(saga).await,
        [
            "SagaStarted",
            "ActivityScheduled",
            "ActivityCompleted",
            "ActivityScheduled",
            "ActivityCompleted",
            "ActivityScheduled",
            "ActivityCompleted",
            "SagaCompleted"
        ]
    );
    assert_eq!(deployment.count("SELECT count(*) FROM charges").await, 1);
    assert_eq!(deployment.count("SELECT count(*) FROM receipts").await, 1);
    let output: serde_json::Value = sqlx::query_scalar("SELECT output FROM sagas WHERE id = $1")
        .bind(saga)
        .fetch_one(&deployment.db)
        .await
        .unwrap();
    let charge_id: uuid::Uuid = sqlx::query_scalar("SELECT charge_id FROM charges")
        .fetch_one(&deployment.db)
        .await
        .unwrap();
    assert_eq!(
        output["charge_id"],
        charge_id.to_string(),
        "the receipt is for the charge"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_card_fails_the_saga_before_anything_is_charged() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _services = deployment.spawn_activity_services();

    let mut request = payment::request("order-bad-card");
    // A card number where the vault's token belongs: refused, never stored past validation.
    request.card_token = "4242 4242 4242 4241".into();
    deployment
        .publish_start(&payment::start_with(request))
        .await;

    assert_eq!(
        deployment.wait_for_end("order-bad-card", END).await,
        "failed"
    );
    let error = deployment.saga_error("order-bad-card").await;
    assert_eq!(error["details"]["kind"], "InvalidPayment", "{error}");
    assert_eq!(deployment.count("SELECT count(*) FROM charges").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_wait_in_their_queue_until_the_activity_service_starts() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    deployment
        .publish_start(&payment::start("order-early"))
        .await;
    sagaflow_e2e::wait_until("the first command left the outbox", END, || async {
        (deployment
            .count("SELECT count(*) FROM saga_events WHERE kind = 'ActivityScheduled'")
            .await
            == 1
            && deployment.count("SELECT count(*) FROM outbox").await == 0)
            .then_some(())
    })
    .await;

    let _services = deployment.spawn_activity_services();
    assert_eq!(
        deployment.wait_for_end("order-early", END).await,
        "completed"
    );
}
