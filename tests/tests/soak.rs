//! Many sagas while orchestrator replicas are SIGKILLed and restarted over and over.

use std::time::Duration;

use sagaflow_e2e::{payment, Bin, Deployment};

const SAGAS: usize = 200;
/// How often a replica is killed and replaced.
const KILL_EVERY: Duration = Duration::from_millis(300);
const DEADLINE: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_saga_completes_exactly_once_while_orchestrators_are_killed_every_few_hundred_milliseconds(
) {
    let mut deployment = Deployment::new().await;
    let _services = deployment.spawn_activity_services();
    let mut replicas = [
        deployment.spawn(Bin::Orchestrator, &[]),
        deployment.spawn(Bin::Orchestrator, &[]),
    ];

    let started = tokio::time::Instant::now();
    let mut chaos = tokio::time::interval(KILL_EVERY);
    let mut kills = 0;
    let mut published = 0;
    loop {
        // Starts trickle in, so that the kills land on every phase of the sagas' lives.
        let batch = published..(published + SAGAS / 10).min(SAGAS);
        published = batch.end;
        for i in batch {
            deployment
                .publish_start(&payment::start(&format!("soak-{i:03}")))
                .await;
        }
        let done = deployment
            .count("SELECT count(*) FROM sagas WHERE status <> 'running'")
            .await;
        if done == SAGAS as i64 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "only {done} of {SAGAS} sagas ended within {DEADLINE:?} ({kills} kills; logs: {})",
            deployment.log_dir().display()
        );
        chaos.tick().await;
        let victim = kills % replicas.len();
        let fresh = deployment.spawn(Bin::Orchestrator, &[]);
        std::mem::replace(&mut replicas[victim], fresh).kill();
        kills += 1;
    }
    eprintln!(
        "{SAGAS} sagas ended in {:?} with {kills} orchestrator kills",
        started.elapsed()
    );

    sagaflow_e2e::wait_until("the outbox is empty", Duration::from_secs(60), || async {
        (deployment.count("SELECT count(*) FROM outbox").await == 0).then_some(())
    })
    .await;
    assert_eq!(
        deployment
            .count("SELECT count(*) FROM sagas WHERE status = 'completed'")
            .await,
        SAGAS as i64
    );
    assert_eq!(
        deployment.count("SELECT count(*) FROM charges").await,
        SAGAS as i64,
        "one charge per saga"
    );
    assert_eq!(
        deployment
            .count("SELECT count(DISTINCT order_id) FROM charges")
            .await,
        SAGAS as i64
    );
    assert_eq!(
        deployment.count("SELECT count(*) FROM receipts").await,
        SAGAS as i64,
        "one receipt per saga"
    );
    assert_eq!(
        deployment
            .count("SELECT count(DISTINCT saga_id) FROM receipts")
            .await,
        SAGAS as i64
    );
    assert_eq!(
        deployment
            .count("SELECT count(*) FROM saga_events WHERE kind = 'ActivityScheduled'")
            .await,
        3 * SAGAS as i64,
        "no step was scheduled twice"
    );
}
