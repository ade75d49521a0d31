//! Compensation with real processes: a charge is refunded exactly once when the receipt fails
//! after it — also across a SIGKILL of the orchestrator right after it committed the refund,
//! and of the refunding service before it replied. A declined card charges nothing.

use std::time::Duration;

use sagaflow_e2e::{payment, wait_until, Bin, Deployment, Service};

const END: Duration = Duration::from_secs(60);

/// A payment whose receipt bounces: its mailbox does not exist (receipt-sender's demo rule).
fn bouncing(order_id: &str) -> sagaflow_contracts::StartSaga {
    let mut request = payment::request(order_id);
    request.email = "nobody@bounce.example".into();
    payment::start_with(request)
}

async fn assert_refunded_once(deployment: &Deployment, order_id: &str) {
    assert_eq!(deployment.wait_for_end(order_id, END).await, "compensated");
    let count = |table: &str| format!("SELECT count(*) FROM {table} WHERE order_id = '{order_id}'");
    assert_eq!(deployment.count(&count("charges")).await, 1);
    assert_eq!(deployment.count("SELECT count(*) FROM receipts").await, 0);
    assert_eq!(
        deployment
            .count(&format!(
                "SELECT count(*) FROM refunds r JOIN charges c USING (charge_id) WHERE c.order_id = '{order_id}'"
            ))
            .await,
        1
    );
    let (saga, _) = deployment.saga(order_id).await.unwrap();
    let kinds = deployment.history_kinds(saga).await;
    assert_eq!(kinds.last().map(String::as_str), Some("SagaCompensated"));
}

async fn wait_for_sigkill(what: &str, service: &mut Service) {
    wait_until(what, END, || {
        let exited = service.exited();
        async move { exited }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_that_fails_after_the_charge_is_refunded_once() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _services = deployment.spawn_activity_services();
    deployment.publish_start(&bouncing("order-bounce")).await;
    assert_refunded_once(&deployment, "order-bounce").await;

    // A declined card fails before anything is charged: nothing to refund.
    let mut declined = payment::request("order-declined");
    declined.card_token = "tok_declined0000".into();
    deployment
        .publish_start(&payment::start_with(declined))
        .await;
    assert_eq!(
        deployment.wait_for_end("order-declined", END).await,
        "failed"
    );
    let error = deployment.saga_error("order-declined").await;
    assert!(
        error["message"].as_str().unwrap().contains("declined"),
        "{error}"
    );
    assert_eq!(
        deployment
            .count("SELECT count(*) FROM charges WHERE order_id = 'order-declined'")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refund_happens_once_when_the_orchestrator_dies_right_after_committing_it() {
    let mut deployment = Deployment::new().await;
    let mut first = deployment.spawn(
        Bin::Orchestrator,
        &[(
            "FAILPOINTS",
            "orchestrator.after-commit.RefundCharge=return",
        )],
    );
    let _services = deployment.spawn_activity_services();
    deployment.publish_start(&bouncing("order-crash")).await;
    wait_for_sigkill(
        "the orchestrator dies after committing the refund",
        &mut first,
    )
    .await;
    let _second = deployment.spawn(Bin::Orchestrator, &[]);
    assert_refunded_once(&deployment, "order-crash").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refund_happens_once_when_the_refunding_service_dies_before_replying() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _validator = deployment.spawn(Bin::PaymentValidator, &[]);
    let _receipts = deployment.spawn(Bin::ReceiptSender, &[]);
    let mut charger = deployment.spawn(
        Bin::Charger,
        &[("FAILPOINTS", "activity.before-reply.RefundCharge=return")],
    );
    deployment
        .publish_start(&bouncing("order-refund-crash"))
        .await;
    wait_for_sigkill(
        "the charger dies before replying to the refund",
        &mut charger,
    )
    .await;
    let _charger = deployment.spawn(Bin::Charger, &[]);
    assert_refunded_once(&deployment, "order-refund-crash").await;
}
