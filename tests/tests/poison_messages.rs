//! A malformed or hostile message never stops a process: whatever a publisher puts in the body,
//! the properties or the headers, the message ends on the dead-letter queue with a short reason,
//! every replica keeps running, and the sagas after it complete.

use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use sagaflow_contracts::reason::MAX_REASON_BYTES;
use sagaflow_contracts::{payments, IdempotencyKey, SagaId, StepSeq};
use sagaflow_e2e::{payment, Bin, DeadLetter, Deployment, Service};

const END: Duration = Duration::from_secs(90);
/// Header nesting that overflowed the stack of an unpatched frame parser many times over
/// (about 290 levels in a debug build, 1 700 in a release build), in a 100 KB header frame.
const NESTING: usize = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_on_the_start_and_results_queues_leave_two_orchestrators_running() {
    let mut deployment = Deployment::new().await;
    let mut processes = vec![
        deployment.spawn(Bin::Orchestrator, &[]),
        deployment.spawn(Bin::Orchestrator, &[]),
    ];
    processes.extend(deployment.spawn_activity_services());
    let start = deployment.topology.start_queue();
    let results = deployment.topology.results_queue();

    // Reasons that quote what they reject, each far larger than a frame if quoted whole.
    let mut unknown_type = payment::start("order-unknown-type");
    unknown_type.saga_type = "S".repeat(200_000);
    deployment.publish_start(&unknown_type).await;
    let unknown_field = format!(
        r#"{{"saga_type": "ProcessPayment", "input": {{}}, "{}": 1}}"#,
        "k".repeat(200_000)
    );
    deployment
        .publish_to_start_queue(unknown_field.into_bytes(), "unknown-field")
        .await;
    let mut misfit = payment::start("order-misfit");
    misfit.input["amount_cents"] = serde_json::Value::String("x".repeat(200_000));
    deployment.publish_start(&misfit).await;
    // Headers that must not be copied whole: 1 500 of them, a 20 KB one, a table, binary.
    let mut headers = FieldTable::default();
    for i in 0..1500 {
        headers.insert(
            format!("x-many-{i:04}").into(),
            AMQPValue::LongString("v".repeat(50).into()),
        );
    }
    headers.insert(
        "x-large".into(),
        AMQPValue::LongString("l".repeat(20_000).into()),
    );
    headers.insert(
        "x-table".into(),
        AMQPValue::FieldTable(FieldTable::default()),
    );
    headers.insert("x-bytes".into(), AMQPValue::ByteArray(vec![0; 64].into()));
    let properties = BasicProperties::default()
        .with_message_id("m".repeat(255).as_str().into())
        .with_type("t".repeat(255).as_str().into())
        .with_headers(headers);
    deployment
        .publish_with_properties(&start, b"{ not json", properties)
        .await;
    // A valid start whose headers nest far too deeply.
    let nested_start = serde_json::to_vec(&payment::start("order-nested")).unwrap();
    deployment
        .publish_with_nested_headers(&start, NESTING, &nested_start, "nested-start")
        .await;

    // On the results queue: a serde error quoting a huge variant, and nested headers.
    let bad_status = format!(
        r#"{{"saga_id": "{}", "step": 1, "activity": "ChargeCustomer", "attempt": 1,
            "outcome": {{"status": "{}"}}}}"#,
        SagaId::new_random(),
        "z".repeat(200_000)
    );
    deployment
        .publish_raw(&results, bad_status.into_bytes(), "bad-status")
        .await;
    deployment
        .publish_with_nested_headers(&results, NESTING, b"{}", "nested-result")
        .await;

    let letters = deployment.take_dead_letters(7, END).await;
    let reasons = bounded_reasons(&letters);
    let has = |needle: &str| reasons.iter().any(|r| r.contains(needle));
    assert!(has("unknown saga type \"SSSS"), "{reasons:?}");
    assert!(
        has("not a StartSaga message: unknown field `kkkk"),
        "{reasons:?}"
    );
    assert!(has("does not fit saga type ProcessPayment"), "{reasons:?}");
    assert!(
        has("not a StartSaga message: the body is not JSON"),
        "{reasons:?}"
    );
    assert!(
        has("not an ActivityResult message: unknown variant `zzzz"),
        "{reasons:?}"
    );
    let nested: Vec<&DeadLetter> = letters
        .iter()
        .filter(|l| {
            l.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("header nesting exceeds 16"))
        })
        .collect();
    assert_eq!(nested.len(), 2, "{reasons:?}");
    assert!(nested
        .iter()
        .any(|l| l.body == nested_start && l.queue.as_deref() == Some(start.as_str())));
    assert!(nested
        .iter()
        .any(|l| l.body == b"{}" && l.queue.as_deref() == Some(results.as_str())));
    let many = letters
        .iter()
        .find(|l| l.body == b"{ not json")
        .expect("the message with many headers is dead-lettered");
    assert!(
        many.headers_truncated
            .as_deref()
            .is_some_and(|t| t.contains("headers not copied")),
        "{:?}",
        many.headers_truncated
    );

    complete_two_sagas(&deployment).await;
    assert_eq!(
        deployment.count("SELECT count(*) FROM sagas").await,
        2,
        "no poison message started a saga"
    );
    assert_all_running(&mut processes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_on_an_activity_queue_leave_two_service_replicas_running() {
    let mut deployment = Deployment::new().await;
    let mut processes = vec![
        deployment.spawn(Bin::Orchestrator, &[]),
        deployment.spawn(Bin::PaymentValidator, &[]),
        deployment.spawn(Bin::Charger, &[]),
        deployment.spawn(Bin::Charger, &[]),
        deployment.spawn(Bin::ReceiptSender, &[]),
    ];
    let queue = deployment
        .topology
        .activity_queue(payments::CHARGE_CUSTOMER);
    // The queue is declared by the services; publish once both chargers consume from it.
    sagaflow_e2e::wait_until("both chargers consume", END, || async {
        (processes[2..4]
            .iter()
            .all(|charger| charger.log_text().contains("consuming activity commands")))
        .then_some(())
    })
    .await;

    // A command for another activity, whose name the reason quotes.
    let saga_id = SagaId::new_random();
    let command = serde_json::json!({
        "saga_id": saga_id,
        "step": 2,
        "activity": "R".repeat(200_000),
        "attempt": 1,
        "idempotency_key": IdempotencyKey::for_step(saga_id, StepSeq(2)),
        "input": {},
    });
    deployment
        .publish_raw(
            &queue,
            serde_json::to_vec(&command).unwrap(),
            "wrong-activity",
        )
        .await;
    // Not JSON, with a header too large to copy.
    let mut headers = FieldTable::default();
    headers.insert(
        "x-large".into(),
        AMQPValue::LongString("l".repeat(100_000).into()),
    );
    deployment
        .publish_with_properties(
            &queue,
            b"\xff not json",
            BasicProperties::default().with_headers(headers),
        )
        .await;
    // Headers nested far too deeply.
    deployment
        .publish_with_nested_headers(&queue, NESTING, b"{}", "nested-command")
        .await;

    let letters = deployment.take_dead_letters(3, END).await;
    let reasons = bounded_reasons(&letters);
    let has = |needle: &str| reasons.iter().any(|r| r.contains(needle));
    assert!(has("command for activity \"RRRR"), "{reasons:?}");
    assert!(has("message body is not JSON"), "{reasons:?}");
    assert!(has("header nesting exceeds 16"), "{reasons:?}");
    assert!(letters
        .iter()
        .all(|l| l.queue.as_deref() == Some(queue.as_str())));
    assert!(letters
        .iter()
        .any(|l| l.body == b"\xff not json" && l.headers_truncated.is_some()));

    complete_two_sagas(&deployment).await;
    assert_all_running(&mut processes);
}

/// The reasons of `letters`, each checked to be present, non-empty and bounded.
fn bounded_reasons(letters: &[DeadLetter]) -> Vec<String> {
    letters
        .iter()
        .map(|letter| {
            let reason = letter.reason.clone().expect("a dead letter has a reason");
            assert!(!reason.is_empty());
            assert!(
                reason.len() <= MAX_REASON_BYTES,
                "a reason of {} bytes: {reason}",
                reason.len()
            );
            reason
        })
        .collect()
}

/// Starts two sagas after the poison and checks each completes with one charge and one receipt.
async fn complete_two_sagas(deployment: &Deployment) {
    for order in ["order-after-1", "order-after-2"] {
        deployment.publish_start(&payment::start(order)).await;
    }
    for order in ["order-after-1", "order-after-2"] {
        assert_eq!(deployment.wait_for_end(order, END).await, "completed");
        let charges = format!("SELECT count(*) FROM charges WHERE order_id = '{order}'");
        assert_eq!(deployment.count(&charges).await, 1, "{order}");
        let receipts = format!(
            "SELECT count(*) FROM receipts WHERE saga_id = \
             (SELECT id FROM sagas WHERE start_key = '{order}')"
        );
        assert_eq!(deployment.count(&receipts).await, 1, "{order}");
    }
}

fn assert_all_running(processes: &mut [Service]) {
    for process in processes {
        assert_eq!(
            process.exited(),
            None,
            "{} exited; log: {}",
            process.bin.name(),
            process.log_text()
        );
    }
}
