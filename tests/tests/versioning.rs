//! Changing saga code while sagas run: a patched change keeps old sagas on the old path and
//! new ones on the new path; the replay check catches an unpatched change before it ships.

use std::time::Duration;

use sagaflow_e2e::test_sagas::{self, Version, VERSIONED};
use sagaflow_e2e::{payment, Bin, Deployment};

const END: Duration = Duration::from_secs(60);

fn validations(history: &[sagaflow_e2e::Recorded]) -> usize {
    history
        .iter()
        .filter(|e| e.kind == "ActivityScheduled" && e.event["activity"] == "ValidatePaymentInfo")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patched_change_keeps_old_sagas_on_the_old_path_and_the_replay_check_catches_an_unpatched_one(
) {
    let mut deployment = Deployment::new().await;
    let v1 = deployment.spawn(Bin::TestOrchestrator, &[("TEST_SAGA_VERSION", "1")]);
    let _validator = deployment.spawn(Bin::PaymentValidator, &[]);
    // No charger yet: the old saga waits for its charge while the code changes.
    let input = serde_json::to_value(payment::request("order-old")).unwrap();
    deployment.start_saga(VERSIONED, input, "order-old").await;
    let old = deployment.wait_for_start("order-old", END).await;
    deployment
        .wait_for_event(old, "ActivityCompleted", END)
        .await;

    // The saga moves past its charge on v1 and waits for its receipt (no receipt sender yet).
    let _charger = deployment.spawn(Bin::Charger, &[]);
    sagaflow_e2e::wait_until("the old saga schedules its receipt", END, || async {
        let history = deployment.history(old).await;
        history
            .iter()
            .any(|e| e.kind == "ActivityScheduled" && e.event["activity"] == "SendReceipt")
            .then_some(())
    })
    .await;
    // Before v2 is deployed, the replay check over an export of the running saga says whether
    // it would diverge.
    let dir = deployment.log_dir().join("histories");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("order-old.json");
    let out = deployment
        .run_cli(&["export", &old.to_string(), "--out", file.to_str().unwrap()])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let check = |version| {
        let mut registry = sagaflow_orchestrator::SagaRegistry::new();
        test_sagas::register(&mut registry, false, version);
        sagaflow_orchestrator::replay_check(&registry, &dir).unwrap()
    };
    let unpatched = check(Version::V2Unpatched);
    let reason = unpatched[0]
        .divergence
        .clone()
        .expect("the unpatched change diverges");
    assert!(
        reason.contains("ValidatePaymentInfo") && reason.contains("SendReceipt"),
        "{reason}"
    );
    assert!(check(Version::V2Patched)[0].divergence.is_none());

    // v2 (patched) is deployed: the old saga finishes on the old path, a new one takes the new.
    v1.kill();
    let _v2 = deployment.spawn(Bin::TestOrchestrator, &[("TEST_SAGA_VERSION", "2")]);
    let _receipts = deployment.spawn(Bin::ReceiptSender, &[]);
    deployment
        .wait_for_status("order-old", "completed", END)
        .await;
    let input = serde_json::to_value(payment::request("order-new")).unwrap();
    deployment.start_saga(VERSIONED, input, "order-new").await;
    let new = deployment
        .wait_for_status("order-new", "completed", END)
        .await;
    assert_eq!(validations(&deployment.history(old).await), 1);
    let new_history = deployment.history(new).await;
    assert_eq!(validations(&new_history), 2);
    assert!(new_history.iter().any(|e| e.kind == "PatchMarked"));
}
