//! Processes die at the worst moments — by SIGKILL, at exact crash points — and every saga still
//! finishes with each side effect done once.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use sagaflow_e2e::{payment, wait_until, Bin, Deployment, Service};

const END: Duration = Duration::from_secs(90);

/// Waits until one of `services` has exited, and checks that SIGKILL ended it.
async fn wait_for_sigkill(what: &str, services: &mut [Service]) -> usize {
    let dead = wait_until(what, END, || {
        let exited = services.iter_mut().position(|s| s.exited().is_some());
        async move { exited }
    })
    .await;
    let status = services[dead].exited().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{} ended by {status}, not SIGKILL",
        services[dead].bin.name()
    );
    dead
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charge_happens_once_when_the_orchestrator_dies_right_after_committing_the_charge_command()
{
    let mut deployment = Deployment::new().await;
    // Both replicas are armed: whichever advances the saga past validation dies right after its
    // commit, before it can publish the ChargeCustomer command or ack the result.
    let crash = [(
        "FAILPOINTS",
        "orchestrator.after-commit.ChargeCustomer=return",
    )];
    let mut replicas = vec![
        deployment.spawn(Bin::Orchestrator, &crash),
        deployment.spawn(Bin::Orchestrator, &crash),
    ];
    let _services = deployment.spawn_activity_services();

    deployment
        .publish_start(&payment::start("order-crash"))
        .await;
    let dead = wait_for_sigkill(
        "an orchestrator replica hits its crash point",
        &mut replicas,
    )
    .await;
    let (saga, _) = deployment.saga("order-crash").await.unwrap();
    // The crash came after the commit: the charge step is in the history (the other replica may
    // already have taken the saga further).
    let charge_scheduled = "SELECT count(*) FROM saga_events
         WHERE kind = 'ActivityScheduled' AND event->>'activity' = 'ChargeCustomer'";
    assert_eq!(deployment.count(charge_scheduled).await, 1);

    // The other replica replays the history and finishes the saga; a restarted one joins it.
    replicas.remove(dead);
    let _restarted = deployment.spawn(Bin::Orchestrator, &[]);
    assert_eq!(
        deployment.wait_for_end("order-crash", END).await,
        "completed"
    );
    assert_eq!(deployment.count("SELECT count(*) FROM charges").await, 1);
    assert_eq!(deployment.count("SELECT count(*) FROM receipts").await, 1);
    assert_eq!(
        deployment
            .history_kinds(saga)
            .await
            .iter()
            .filter(|k| *k == "ActivityScheduled")
            .count(),
        3,
        "each step was scheduled once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charge_happens_once_when_the_charger_dies_after_charging_and_before_replying() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _validator = deployment.spawn(Bin::PaymentValidator, &[]);
    let _receipts = deployment.spawn(Bin::ReceiptSender, &[]);
    let mut charger = vec![deployment.spawn(
        Bin::Charger,
        &[("FAILPOINTS", "charger.after-charge=return")],
    )];

    deployment
        .publish_start(&payment::start("order-charger-crash"))
        .await;
    wait_for_sigkill("the charger hits its crash point", &mut charger).await;
    assert_eq!(
        deployment.count("SELECT count(*) FROM charges").await,
        1,
        "the charge was recorded before the crash"
    );

    // The unacked command is redelivered to a new charger, which finds the charge already made.
    let _charger = deployment.spawn(Bin::Charger, &[]);
    assert_eq!(
        deployment.wait_for_end("order-charger-crash", END).await,
        "completed"
    );
    assert_eq!(deployment.count("SELECT count(*) FROM charges").await, 1);
    assert_eq!(deployment.count("SELECT count(*) FROM receipts").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_published_twice_is_recorded_once() {
    let mut deployment = Deployment::new().await;
    let orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _validator = deployment.spawn(Bin::PaymentValidator, &[]);
    let _charger = deployment.spawn(Bin::Charger, &[]);
    // Dies after its reply is confirmed and before it acks the command: the command comes back,
    // runs again, and the same result is published a second time.
    let mut sender = vec![deployment.spawn(
        Bin::ReceiptSender,
        &[("FAILPOINTS", "activity.before-ack=return")],
    )];

    deployment
        .publish_start(&payment::start("order-double-reply"))
        .await;
    wait_for_sigkill("the receipt sender hits its crash point", &mut sender).await;
    let _sender = deployment.spawn(Bin::ReceiptSender, &[]);

    assert_eq!(
        deployment.wait_for_end("order-double-reply", END).await,
        "completed"
    );
    // The redelivered command runs again and its second reply reaches the orchestrator.
    wait_until("the second reply is judged a duplicate", END, || {
        let judged = orchestrator
            .log_text()
            .contains("fact for a saga that has ended; ignored");
        async move { judged.then_some(()) }
    })
    .await;
    let (saga, _) = deployment.saga("order-double-reply").await.unwrap();
    let kinds = deployment.history_kinds(saga).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "ActivityCompleted").count(),
        3,
        "{kinds:?}"
    );
    assert_eq!(kinds.last().map(String::as_str), Some("SagaCompleted"));
    assert_eq!(deployment.count("SELECT count(*) FROM receipts").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_after_charging_runs_the_step_again_and_charges_once() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _validator = deployment.spawn(Bin::PaymentValidator, &[]);
    let _receipts = deployment.spawn(Bin::ReceiptSender, &[]);
    // The first attempt charges, then loses its database connection before it can read the
    // charge back: a transient failure, so the command runs again.
    let charger = deployment.spawn(
        Bin::Charger,
        &[(
            "FAILPOINTS",
            "charger.lose-connection-after-charge=1*return",
        )],
    );

    deployment
        .publish_start(&payment::start("order-transient"))
        .await;
    assert_eq!(
        deployment.wait_for_end("order-transient", END).await,
        "completed"
    );
    assert_eq!(deployment.count("SELECT count(*) FROM charges").await, 1);
    assert_eq!(deployment.count("SELECT count(*) FROM receipts").await, 1);
    let log = charger.log_text();
    assert!(
        log.contains("transient failure"),
        "the first attempt failed transiently: {log}"
    );
    assert!(
        log.contains("already charged for this step"),
        "the second attempt found the charge: {log}"
    );
}
