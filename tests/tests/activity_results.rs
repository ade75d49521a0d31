//! Replies on the results queue that cannot be used are set aside; the sagas go on.

use std::time::Duration;

use sagaflow_contracts::{ActivityOutcome, ActivityResult, SagaId, StepSeq};
use sagaflow_e2e::{payment, Bin, Deployment};

const END: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_results_are_dead_lettered_with_their_reason_and_sagas_keep_going() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _services = deployment.spawn_activity_services();
    deployment
        .publish_start(&payment::start("order-first"))
        .await;
    assert_eq!(
        deployment.wait_for_end("order-first", END).await,
        "completed"
    );
    let (saga, _) = deployment.saga("order-first").await.unwrap();

    let results = deployment.topology.results_queue();
    deployment
        .publish_raw(&results, b"\x00\x01 binary".to_vec(), "garbage")
        .await;
    let orphan = ActivityResult {
        saga_id: SagaId::new_random(),
        step: StepSeq(1),
        activity: "ChargeCustomer".into(),
        attempt: 1,
        outcome: ActivityOutcome::Completed {
            output: serde_json::json!({}),
        },
    };
    deployment
        .publish_raw(&results, serde_json::to_vec(&orphan).unwrap(), "orphan")
        .await;
    // A late duplicate for a saga that has ended is acked and changes nothing.
    let late = ActivityResult {
        saga_id: SagaId(saga),
        ..orphan.clone()
    };
    deployment
        .publish_raw(&results, serde_json::to_vec(&late).unwrap(), "late")
        .await;

    deployment
        .publish_start(&payment::start("order-second"))
        .await;
    assert_eq!(
        deployment.wait_for_end("order-second", END).await,
        "completed"
    );
    let letters = deployment.take_dead_letters(2, END).await;
    let reasons: Vec<String> = letters
        .iter()
        .map(|l| l.reason.clone().unwrap_or_default())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not an ActivityResult message")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains(&format!("no saga {} exists", orphan.saga_id))),
        "{reasons:?}"
    );
    assert_eq!(
        deployment.history_kinds(saga).await.len(),
        8,
        "the ended saga's history is unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_a_service_cannot_take_fails_its_saga_instead_of_leaving_it_waiting() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _validator = deployment.spawn(
        Bin::PaymentValidator,
        &[("SAGAFLOW_MAX_MESSAGE_BYTES", "2048")],
    );

    let mut request = payment::request("order-large");
    request.customer_id = "c".repeat(4096);
    deployment
        .publish_start(&payment::start_with(request))
        .await;

    assert_eq!(deployment.wait_for_end("order-large", END).await, "failed");
    let error = deployment.saga_error("order-large").await;
    assert_eq!(error["details"]["kind"], "CommandRejected", "{error}");
    let letters = deployment.take_dead_letters(1, END).await;
    let reason = letters[0].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("exceeds the limit of 2048 bytes"),
        "{reason}"
    );
    assert_eq!(
        letters[0].queue.as_deref(),
        Some(
            deployment
                .topology
                .activity_queue("ValidatePaymentInfo")
                .as_str()
        )
    );
}
