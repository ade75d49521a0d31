//! Outages are waited out in process: RabbitMQ stopped and started again, PostgreSQL connections
//! cut, in the middle of a few dozen sagas. Every saga finishes with one charge and one receipt,
//! no outbox row is left, and no process is restarted by hand.
//!
//! These tests stop the shared broker: they run alone (the `chaos` test group, one at a time, in
//! `.config/nextest.toml`), and a guard starts the broker again even when they fail.

use std::process::Command;
use std::time::Duration;

use sagaflow_e2e::{payment, wait_until, Bin, Deployment};

const END: Duration = Duration::from_secs(120);
const SAGAS: usize = 30;

/// Runs `rabbitmqctl start_app` when dropped: the broker is started again whatever happens.
struct BrokerStopped;

impl BrokerStopped {
    fn stop() -> BrokerStopped {
        rabbitmqctl("stop_app");
        BrokerStopped
    }
}

impl Drop for BrokerStopped {
    fn drop(&mut self) {
        rabbitmqctl("start_app");
    }
}

fn rabbitmqctl(command: &str) {
    let status = Command::new("rabbitmqctl")
        .arg(command)
        .status()
        .expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {command} failed: {status}");
}

async fn publish_sagas(deployment: &Deployment, prefix: &str) -> Vec<String> {
    let keys: Vec<String> = (0..SAGAS).map(|i| format!("{prefix}-{i}")).collect();
    for key in &keys {
        deployment.publish_start(&payment::start(key)).await;
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sagas_finish_once_when_rabbitmq_restarts_in_the_middle() {
    let mut deployment = Deployment::new().await;
    let mut running = vec![deployment.spawn(Bin::Orchestrator, &[])];
    running.extend(deployment.spawn_activity_services());
    let keys = publish_sagas(&deployment, "order-broker-outage").await;
    wait_until("a first charge is made", END, || async {
        (deployment.count("SELECT count(*) FROM charges").await > 0).then_some(())
    })
    .await;

    {
        let _stopped = BrokerStopped::stop();
        wait_until("the orchestrator notices the broker is gone", END, || {
            let noticed = running[0].log_text().contains("lost RabbitMQ");
            async move { noticed.then_some(()) }
        })
        .await;
    }
    wait_until("the orchestrator is connected again", END, || {
        let back = running[0]
            .log_text()
            .contains("connected to RabbitMQ again");
        async move { back.then_some(()) }
    })
    .await;

    deployment
        .assert_payments_done_and_running(&keys, &mut running, END)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sagas_finish_once_when_postgresql_connections_are_cut() {
    let mut deployment = Deployment::new().await;
    let mut running = vec![deployment.spawn(Bin::Orchestrator, &[])];
    running.extend(deployment.spawn_activity_services());
    let keys = publish_sagas(&deployment, "order-db-outage").await;
    wait_until("a first charge is made", END, || async {
        (deployment.count("SELECT count(*) FROM charges").await > 0).then_some(())
    })
    .await;

    // Every connection to this test's database but the one asking, three times over: what a
    // failover or a restart does to the clients (only this test's database is touched).
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&deployment.db)
        .await
        .unwrap();
    for round in 0..3 {
        let cut: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()) AS t",
        )
        .bind(&database)
        .fetch_one(&deployment.db)
        .await
        .unwrap();
        // Later rounds may find every process still connecting again: nothing to cut then.
        assert!(
            cut > 0 || round > 0,
            "no connection of the test database was cut"
        );
    }

    deployment
        .assert_payments_done_and_running(&keys, &mut running, END)
        .await;
}
