//! Starting sagas with messages on the start queue: duplicates and malformed input.

use std::time::Duration;

use sagaflow_e2e::{payment, Bin, Deployment};

const END: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_start_key_twice_starts_one_saga() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _services = deployment.spawn_activity_services();

    let start = payment::start("order-twice");
    deployment.publish_start(&start).await;
    deployment.publish_start(&start).await;
    // A third, later start of the same order, after the first has finished.
    assert_eq!(
        deployment.wait_for_end("order-twice", END).await,
        "completed"
    );
    deployment.publish_start(&start).await;
    deployment
        .publish_start(&payment::start("order-after"))
        .await;
    assert_eq!(
        deployment.wait_for_end("order-after", END).await,
        "completed"
    );

    assert_eq!(
        deployment
            .count("SELECT count(*) FROM sagas WHERE start_key = 'order-twice'")
            .await,
        1
    );
    assert_eq!(
        deployment
            .count("SELECT count(*) FROM charges WHERE order_id = 'order-twice'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_start_without_a_start_key_starts_one_saga() {
    let mut deployment = Deployment::new().await;
    // One message at a time: once the marker saga exists, both copies before it were processed.
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[("SAGAFLOW_PREFETCH", "1")]);
    let mut start = payment::start("order-no-key");
    start.start_key = None;
    let body = serde_json::to_vec(&start).unwrap();
    // The same message (same message id) arriving twice, as after a lost ack.
    deployment
        .publish_to_start_queue(body.clone(), "message-1")
        .await;
    deployment.publish_to_start_queue(body, "message-1").await;
    deployment
        .publish_start(&payment::start("order-marker"))
        .await;
    sagaflow_e2e::wait_until("the marker saga started", END, || async {
        deployment.saga("order-marker").await
    })
    .await;
    assert_eq!(
        deployment
            .count("SELECT count(*) FROM sagas WHERE start_key = 'message-1'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_starts_are_dead_lettered_with_their_reason_and_the_next_start_still_completes() {
    let mut deployment = Deployment::new().await;
    // No grace for unknown saga types: no other replica will come to take them.
    let _orchestrator = deployment.spawn(
        Bin::Orchestrator,
        &[
            ("SAGAFLOW_MAX_MESSAGE_BYTES", "4096"),
            ("SAGAFLOW_UNKNOWN_SAGA_TYPE_GRACE_SECS", "0"),
        ],
    );
    let _services = deployment.spawn_activity_services();

    deployment
        .publish_to_start_queue(b"{ this is not json".to_vec(), "bad-json")
        .await;
    let mut unknown = payment::start("order-unknown-type");
    unknown.saga_type = "ShipParcel".into();
    deployment.publish_start(&unknown).await;
    let mut misfit = payment::start("order-misfit");
    misfit.input = serde_json::json!({ "order_id": 7 });
    deployment.publish_start(&misfit).await;
    let mut oversized = payment::start("order-huge");
    oversized.input["order_id"] = serde_json::Value::String("x".repeat(8192));
    deployment.publish_start(&oversized).await;
    // Valid JSON that PostgreSQL cannot store: it must not come round forever.
    let mut nul = payment::start("order-nul");
    nul.input["customer_id"] = serde_json::Value::String("nul\u{0}byte".into());
    deployment.publish_start(&nul).await;
    // No start key and no message id: a redelivery could not be recognised.
    let mut keyless = payment::start("order-keyless");
    keyless.start_key = None;
    deployment
        .publish_to_start_queue(serde_json::to_vec(&keyless).unwrap(), "")
        .await;
    deployment
        .publish_start(&payment::start("order-good"))
        .await;

    assert_eq!(
        deployment.wait_for_end("order-good", END).await,
        "completed"
    );
    let letters = deployment.take_dead_letters(6, END).await;
    let reasons: Vec<String> = letters
        .iter()
        .map(|l| l.reason.clone().unwrap_or_default())
        .collect();
    let has = |needle: &str| reasons.iter().any(|r| r.contains(needle));
    assert!(has("not a StartSaga message"), "{reasons:?}");
    assert!(has("unknown saga type \"ShipParcel\""), "{reasons:?}");
    assert!(has("does not fit saga type ProcessPayment"), "{reasons:?}");
    assert!(has("exceeds the limit of 4096 bytes"), "{reasons:?}");
    assert!(has("PostgreSQL refuses its data"), "{reasons:?}");
    assert!(
        has("neither a start_key nor an AMQP message_id"),
        "{reasons:?}"
    );
    assert!(letters
        .iter()
        .all(|l| l.queue.as_deref() == Some(deployment.topology.start_queue().as_str())));
    assert!(
        letters.iter().any(|l| l.body == b"{ this is not json"),
        "the body is kept as it was"
    );
    assert_eq!(
        deployment.count("SELECT count(*) FROM sagas").await,
        1,
        "only the good start made a saga"
    );
}
