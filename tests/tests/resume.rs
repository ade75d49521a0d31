//! A stuck saga is resumed after its code is fixed: `sagaflow resume`, by id or for every
//! stuck saga of a type.

use std::time::Duration;

use sagaflow_e2e::test_sagas::EVOLVING;
use sagaflow_e2e::{payment, Bin, Deployment};

const END: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_saga_resumes_and_completes_once_its_code_is_fixed() {
    let mut deployment = Deployment::new().await;
    let buggy = deployment.spawn(Bin::TestOrchestrator, &[("TEST_SAGA_BUG", "1")]);
    let _services = deployment.spawn_activity_services();
    for key in ["order-bug-1", "order-bug-2"] {
        let input = serde_json::to_value(payment::request(key)).unwrap();
        deployment.start_saga(EVOLVING, input, key).await;
    }
    let stuck = deployment
        .wait_for_status("order-bug-1", "stuck", END)
        .await;
    deployment
        .wait_for_status("order-bug-2", "stuck", END)
        .await;
    let reason = deployment.saga_error("order-bug-1").await;
    assert!(
        reason["reason"]
            .as_str()
            .unwrap()
            .contains("a bug after validation"),
        "{reason}"
    );

    // Resuming with the same code parks it again, with the same reason.
    let out = deployment.run_cli(&["resume", &stuck.to_string()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sagaflow_e2e::wait_until("the buggy orchestrator tried the resume", END, || async {
        let left = deployment
            .count("SELECT count(*) FROM timers WHERE key = 'resume'")
            .await;
        (left == 0).then_some(())
    })
    .await;
    assert_eq!(deployment.saga_error("order-bug-1").await, reason);
    assert_eq!(
        deployment.saga_by_key("order-bug-1").await.unwrap().1,
        "stuck"
    );

    // The fix is deployed: the buggy orchestrator goes, the fixed one comes.
    buggy.kill();
    let _fixed = deployment.spawn(Bin::TestOrchestrator, &[]);
    let out = deployment.run_cli(&["resume", &stuck.to_string()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    deployment
        .wait_for_status("order-bug-1", "completed", END)
        .await;

    let out = deployment
        .run_cli(&["resume", "--all-stuck", "--saga-type", EVOLVING])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 stuck saga(s)"));
    deployment
        .wait_for_status("order-bug-2", "completed", END)
        .await;

    let kinds = deployment.history_kinds(stuck).await;
    assert!(kinds.contains(&"SagaResumed".to_owned()), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("SagaCompleted"));
    assert_eq!(deployment.count("SELECT count(*) FROM charges").await, 2);
    assert_eq!(deployment.count("SELECT count(*) FROM receipts").await, 2);

    // A saga that is not stuck is not resumed, and the CLI says why.
    let out = deployment.run_cli(&["resume", &stuck.to_string()]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is completed, not stuck"));
}
