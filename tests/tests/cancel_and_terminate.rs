//! Cancel and terminate from outside, through the CLI (which sends control messages on the
//! broker): a cancelled saga tells its running activity and undoes its completed steps; a
//! terminated one stops at once.

use std::time::Duration;

use sagaflow_e2e::{payment, Bin, Deployment};

const END: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_saga_tells_its_running_activity_and_ends_cancelled() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _validator = deployment.spawn(Bin::PaymentValidator, &[]);
    // The charge never answers on its own: it runs until it is told to stop.
    let charger = deployment.spawn(Bin::Charger, &[("CHARGER_HANG_RATE", "1")]);
    deployment
        .publish_start(&payment::start("order-hung"))
        .await;
    let saga = deployment.wait_for_start("order-hung", END).await;
    deployment.wait_for_steps(saga, 2, END).await;

    let out = deployment
        .run_cli(&[
            "cancel",
            &saga.to_string(),
            "--reason",
            "customer changed their mind",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        deployment.wait_for_end("order-hung", END).await,
        "cancelled"
    );
    let kinds = deployment.history_kinds(saga).await;
    assert!(kinds.contains(&"CancelRequested".to_owned()), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("SagaCancelled"));
    // The charger learnt it and stopped without charging.
    assert_eq!(deployment.count("SELECT count(*) FROM charges").await, 0);
    sagaflow_e2e::wait_until("the charger reports the cancelled attempt", END, || {
        let told = charger.log_text().contains("cancel");
        async move { told.then_some(()) }
    })
    .await;

    // Cancelling again changes nothing.
    let out = deployment.run_cli(&["cancel", &saga.to_string()]).await;
    assert!(out.status.success());
    assert_eq!(deployment.history_kinds(saga).await, kinds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_after_the_charge_refunds_it() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _validator = deployment.spawn(Bin::PaymentValidator, &[]);
    let _charger = deployment.spawn(Bin::Charger, &[]);
    // No receipt sender: the saga waits for its receipt when it is cancelled.
    deployment
        .publish_start(&payment::start("order-cancel"))
        .await;
    let saga = deployment.wait_for_start("order-cancel", END).await;
    sagaflow_e2e::wait_until("the customer is charged", END, || async {
        (deployment.count("SELECT count(*) FROM charges").await == 1).then_some(())
    })
    .await;
    deployment
        .wait_for_event(saga, "ActivityCompleted", END)
        .await;
    deployment.wait_for_steps(saga, 3, END).await;
    let out = deployment.run_cli(&["cancel", &saga.to_string()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        deployment.wait_for_end("order-cancel", END).await,
        "cancelled"
    );
    assert_eq!(deployment.count("SELECT count(*) FROM refunds").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_saga_stops_at_once_and_runs_nothing_more() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    // No validator: the saga waits at its first step.
    deployment
        .publish_start(&payment::start("order-terminate"))
        .await;
    let saga = deployment.wait_for_start("order-terminate", END).await;
    let out = deployment
        .run_cli(&["terminate", &saga.to_string(), "--reason", "fraud"])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        deployment.wait_for_end("order-terminate", END).await,
        "terminated"
    );
    // The validator comes: its answer is ignored, nothing more is scheduled.
    let _validator = deployment.spawn(Bin::PaymentValidator, &[]);
    let _rest = [Bin::Charger, Bin::ReceiptSender].map(|bin| deployment.spawn(bin, &[]));
    deployment
        .publish_start(&payment::start("order-after-terminate"))
        .await;
    assert_eq!(
        deployment.wait_for_end("order-after-terminate", END).await,
        "completed"
    );
    assert_eq!(
        deployment.history_kinds(saga).await,
        ["SagaStarted", "ActivityScheduled", "SagaTerminated"]
    );
    assert_eq!(
        deployment
            .count("SELECT count(*) FROM charges WHERE order_id = 'order-terminate'")
            .await,
        0
    );
    assert_eq!(
        deployment.saga_error("order-terminate").await["reason"],
        "fraud"
    );
}
