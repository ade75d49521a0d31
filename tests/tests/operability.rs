//! Processes that operators can run: clear start-up errors, graceful stop on SIGTERM.

use std::process::ExitStatus;
use std::time::Duration;

use sagaflow_e2e::{payment, wait_until, Bin, Deployment, Service};

const EXIT: Duration = Duration::from_secs(30);

async fn wait_for_exit(service: &mut Service) -> ExitStatus {
    let what = format!("{} exits", service.bin.name());
    wait_until(&what, EXIT, || {
        let status = service.exited();
        async move { status }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_and_bad_config_stop_each_binary_with_a_clear_error() {
    let mut deployment = Deployment::new().await;
    let cases: &[(Bin, (&str, &str), &str)] = &[
        (
            Bin::Orchestrator,
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
            "cannot connect to PostgreSQL",
        ),
        (
            Bin::Orchestrator,
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f"),
            "cannot connect to RabbitMQ",
        ),
        (
            Bin::Orchestrator,
            ("SAGAFLOW_NAMESPACE", "no spaces allowed"),
            "invalid name",
        ),
        (
            Bin::Charger,
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
            "PostgreSQL",
        ),
        (
            Bin::Charger,
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f"),
            "RabbitMQ",
        ),
        (
            Bin::PaymentValidator,
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f"),
            "RabbitMQ",
        ),
    ];
    for (bin, setting, message) in cases {
        let mut service = deployment.spawn(*bin, &[*setting]);
        let status = wait_for_exit(&mut service).await;
        let log = service.log_text();
        assert!(
            !status.success(),
            "{} with {setting:?} exited successfully: {log}",
            bin.name()
        );
        assert!(
            log.contains(message),
            "{} with {setting:?} did not say {message:?}: {log}",
            bin.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_every_binary_cleanly_and_work_continues_after_a_restart() {
    let mut deployment = Deployment::new().await;
    let mut orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let mut services = deployment.spawn_activity_services();
    deployment
        .publish_start(&payment::start("order-before-stop"))
        .await;
    assert_eq!(
        deployment.wait_for_end("order-before-stop", EXIT).await,
        "completed"
    );

    orchestrator.terminate();
    for service in &services {
        service.terminate();
    }
    for service in std::iter::once(&mut orchestrator).chain(services.iter_mut()) {
        let status = wait_for_exit(service).await;
        assert!(
            status.success(),
            "{} exited with {status} on SIGTERM: {}",
            service.bin.name(),
            service.log_text()
        );
    }

    // Started while everything is down; finished once it is back.
    deployment
        .publish_start(&payment::start("order-while-down"))
        .await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _services = deployment.spawn_activity_services();
    assert_eq!(
        deployment.wait_for_end("order-while-down", EXIT).await,
        "completed"
    );
}

/// Lines a process logged at level ERROR (the log format puts the level after the time).
fn error_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains(" ERROR "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_load_exits_zero_without_an_error_line_and_every_saga_finishes_once() {
    const SAGAS: usize = 12;
    let mut deployment = Deployment::new().await;
    let mut orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    // A charger whose attempts hang until it stops: charges in flight when the signal comes.
    let mut services = vec![
        deployment.spawn(Bin::PaymentValidator, &[]),
        deployment.spawn(Bin::Charger, &[("CHARGER_HANG_RATE", "1")]),
        deployment.spawn(Bin::ReceiptSender, &[]),
    ];
    let keys: Vec<String> = (0..2 * SAGAS).map(|i| format!("order-load-{i}")).collect();
    for key in &keys[..SAGAS] {
        deployment.publish_start(&payment::start(key)).await;
    }
    wait_until(
        "every saga of the first batch waits for its charge",
        EXIT,
        || async {
            let charging = deployment
                .count(
                    "SELECT count(DISTINCT saga_id) FROM saga_events
                 WHERE kind = 'ActivityScheduled' AND event->>'activity' = 'ChargeCustomer'",
                )
                .await;
            (charging == SAGAS as i64).then_some(())
        },
    )
    .await;
    // And a second batch arriving as the signal comes: starts in flight in the orchestrator.
    for key in &keys[SAGAS..] {
        deployment.publish_start(&payment::start(key)).await;
    }

    orchestrator.terminate();
    for service in &services {
        service.terminate();
    }
    for service in std::iter::once(&mut orchestrator).chain(services.iter_mut()) {
        let status = wait_for_exit(service).await;
        let log = service.log_text();
        assert!(
            status.success(),
            "{} exited with {status} on SIGTERM: {log}",
            service.bin.name()
        );
        let errors = error_lines(&log);
        assert!(
            errors.is_empty(),
            "{} logged errors on SIGTERM: {errors:#?}",
            service.bin.name()
        );
    }

    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let _services = deployment.spawn_activity_services();
    for key in &keys {
        assert_eq!(
            deployment.wait_for_end(key, EXIT).await,
            "completed",
            "{key}"
        );
    }
    assert_eq!(
        deployment.count("SELECT count(*) FROM charges").await,
        keys.len() as i64
    );
    assert_eq!(
        deployment.count("SELECT count(*) FROM receipts").await,
        keys.len() as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_by_a_newer_version_is_refused() {
    let mut deployment = Deployment::new().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'from a newer Sagaflow', true, '\\x00', 0)",
    )
    .execute(&deployment.db)
    .await
    .unwrap();
    let mut orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    let status = wait_for_exit(&mut orchestrator).await;
    let log = orchestrator.log_text();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("schema is newer than this orchestrator (migration 9999"),
        "{log}"
    );
}
