//! A saga whose history the current code no longer reproduces is parked as `stuck`, visibly,
//! and keeps what arrives for it.

use std::time::Duration;

use sagaflow_contracts::{ActivityOutcome, ActivityResult, SagaEvent, SagaId, StepSeq};
use sagaflow_e2e::{payment, Bin, Deployment};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_whose_history_the_code_contradicts_is_stuck_with_the_reason() {
    let mut deployment = Deployment::new().await;
    // A history written by an older ProcessPayment that charged before validating.
    let saga = SagaId::new_random();
    let input = serde_json::to_value(payment::request("order-old-code")).unwrap();
    let history = [
        SagaEvent::SagaStarted {
            saga_type: "ProcessPayment".into(),
            input: input.clone(),
            start_key: None,
        },
        SagaEvent::ActivityScheduled {
            step: StepSeq(1),
            activity: "ChargeCustomer".into(),
            input: input.clone(),
            attempt: 1,
            input_hash: None,
            options: None,
            compensates: None,
        },
    ];
    sqlx::query(
        "INSERT INTO sagas (id, saga_type, status, input, next_event_seq, start_key)
         VALUES ($1, 'ProcessPayment', 'running', $2, 2, 'order-old-code')",
    )
    .bind(saga.0)
    .bind(&input)
    .execute(&deployment.db)
    .await
    .unwrap();
    for (seq, event) in history.iter().enumerate() {
        sqlx::query("INSERT INTO saga_events (saga_id, seq, kind, event) VALUES ($1, $2, $3, $4)")
            .bind(saga.0)
            .bind(seq as i64)
            .bind(event.kind())
            .bind(serde_json::to_value(event).unwrap())
            .execute(&deployment.db)
            .await
            .unwrap();
    }

    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let reply = ActivityResult {
        saga_id: saga,
        step: StepSeq(1),
        activity: "ChargeCustomer".into(),
        attempt: 1,
        outcome: ActivityOutcome::Completed {
            output: json!({ "charge_id": "c-1" }),
        },
    };
    let results = deployment.topology.results_queue();
    deployment
        .publish_raw(&results, serde_json::to_vec(&reply).unwrap(), "reply-1")
        .await;

    let status = deployment
        .wait_for_end("order-old-code", Duration::from_secs(60))
        .await;
    assert_eq!(status, "stuck");
    let error = deployment.saga_error("order-old-code").await;
    let reason = error["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("non-determinism")
            && reason.contains("as step 1")
            && reason.contains("at event 1"),
        "{reason}"
    );
    // The history holds only what the code has seen; the result waits for the resume.
    assert_eq!(
        deployment.history_kinds(saga.0).await,
        ["SagaStarted", "ActivityScheduled"],
    );
    assert_eq!(
        deployment.count("SELECT count(*) FROM parked_facts").await,
        1,
        "the result is kept for when the code is fixed"
    );
    // The orchestrator is still serving other sagas.
    let _services = deployment.spawn_activity_services();
    deployment
        .publish_start(&payment::start("order-new-code"))
        .await;
    assert_eq!(
        deployment
            .wait_for_end("order-new-code", Duration::from_secs(60))
            .await,
        "completed"
    );
}
