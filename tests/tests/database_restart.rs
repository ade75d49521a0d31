//! PostgreSQL restarted in the middle of a few hundred sagas: an operator's restart (`pg_ctl
//! restart -m fast`), a crash and recovery (`-m immediate`), and a few seconds down. The
//! server is the test's own (`LocalPostgres`, on a free port), so the shared one is never
//! touched. Every saga completes with one charge and one receipt, the outbox empties, nothing is
//! dead-lettered, and no process exits: the pools connect again by themselves.

use std::time::Duration;

use sagaflow_e2e::{Bin, Deployment, LocalPostgres, StopMode};

const SAGAS: usize = 200;
const BATCH: usize = 10;
const PACE: Duration = Duration::from_millis(500);
const RECOVERY: Duration = Duration::from_secs(60);
const PROGRESS: i64 = 15;
/// How long the server stays down in the last fault: longer than a restart, shorter than the
/// acquire deadline below, so that waits for a connection span the outage.
const DOWN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_finish_once_when_postgresql_restarts_in_the_middle() {
    // Declared first, dropped last: the deployment drops its database on it first.
    let postgres = LocalPostgres::start();
    let amqp_url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let mut deployment = Deployment::on_servers(&postgres.url(), &amqp_url).await;
    for (key, value) in [
        ("SAGAFLOW_DB_ACQUIRE_TIMEOUT_SECS", "10"),
        ("SAGAFLOW_RETRY_INITIAL_MS", "200"),
        ("SAGAFLOW_RETRY_MAX_INTERVAL_MS", "2000"),
        ("SAGAFLOW_RETRY_MAX_ATTEMPTS", "0"),
    ] {
        deployment.set_env(key, value);
    }
    let mut running = vec![
        deployment.spawn(Bin::Orchestrator, &[]),
        deployment.spawn(Bin::Orchestrator, &[]),
    ];
    running.extend(deployment.spawn_activity_services());

    let faults = async {
        let mut done = deployment.wait_for_completions(0, PROGRESS, RECOVERY).await;
        for mode in [StopMode::Fast, StopMode::Immediate] {
            tokio::task::block_in_place(|| postgres.restart(mode));
            done = deployment
                .wait_for_completions(done, PROGRESS, RECOVERY)
                .await;
        }
        tokio::task::block_in_place(|| postgres.stop(StopMode::Immediate));
        // The length of the outage, not a wait for anything.
        tokio::time::sleep(DOWN).await;
        tokio::task::block_in_place(|| postgres.start_again());
        deployment
            .wait_for_completions(done, PROGRESS, RECOVERY)
            .await;
    };
    let (keys, ()) = tokio::join!(
        deployment.publish_payments_over_time("postgres-restart", SAGAS, BATCH, PACE),
        faults
    );

    deployment
        .assert_payments_completed_once(&keys, RECOVERY)
        .await;
    for service in running.iter_mut() {
        if let Some(status) = service.exited() {
            panic!(
                "{} exited ({status}) instead of waiting PostgreSQL out: {}",
                service.bin.name(),
                service.log_text()
            );
        }
    }
}
