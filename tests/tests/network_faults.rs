//! Network faults between the processes and the servers, made by a TCP proxy in front of each
//! server (`sagaflow_e2e::Proxy`) while a few hundred sagas run: connections cut, delayed and
//! blackholed, and every process SIGKILLed at random moments during a fault. Only this test's
//! proxies are disturbed, never the shared servers. After each: every saga completed with one
//! charge and one receipt, the outbox empty, nothing dead-lettered, and no process that was not
//! killed exited: outages are waited out in process.
//!
//! The one with kills is named `chaos_*` for its weight (five processes killed and started again
//! over four rounds of faults, about 35 s): it runs alone, after the rest of the suite.

use std::time::Duration;

use rand::Rng;
use sagaflow_e2e::{assert_none_exited, Bin, Deployment, Fault, ServerProxies, Service};
use sagaflow_orchestrator::store::{self, DatabaseTimeouts};
use tokio::time::Instant;

const SAGAS: usize = 200;
/// Starts are published this many at a time, at this pace: about ten seconds of them, so that
/// the faults land on every phase of the sagas' lives.
const BATCH: usize = 10;
const PACE: Duration = Duration::from_millis(500);
/// How long progress may take after a fault ends.
const RECOVERY: Duration = Duration::from_secs(60);
/// Sagas that must complete between two faults: the system recovered from the one before.
const PROGRESS: i64 = 15;

/// Deadlines short enough that a stalled connection is given up within seconds (a blackhole is
/// noticed only by deadlines), and retries that outlast the faults.
fn short_deadlines(deployment: &mut Deployment) {
    for (key, value) in [
        ("SAGAFLOW_CONNECT_TIMEOUT_SECS", "2"),
        ("SAGAFLOW_CONFIRM_TIMEOUT_SECS", "3"),
        ("SAGAFLOW_DB_ACQUIRE_TIMEOUT_SECS", "5"),
        ("SAGAFLOW_DB_STATEMENT_TIMEOUT_SECS", "5"),
        ("SAGAFLOW_DB_IDLE_IN_TRANSACTION_TIMEOUT_SECS", "5"),
        ("SAGAFLOW_DB_WORK_TIMEOUT_SECS", "8"),
        ("SAGAFLOW_RETRY_INITIAL_MS", "200"),
        ("SAGAFLOW_RETRY_MAX_INTERVAL_MS", "2000"),
        ("SAGAFLOW_RETRY_MAX_ATTEMPTS", "0"),
        ("SAGAFLOW_START_TO_CLOSE_TIMEOUT_SECS", "20"),
    ] {
        deployment.set_env(key, value);
    }
}

fn spawn_all(deployment: &mut Deployment) -> Vec<Service> {
    let mut running = vec![
        deployment.spawn(Bin::Orchestrator, &[]),
        deployment.spawn(Bin::Orchestrator, &[]),
    ];
    running.extend(deployment.spawn_activity_services());
    running
}

/// Holds `fault` on `proxy` for `length` (the fault's duration, not a wait for anything).
async fn hold(proxy: &sagaflow_e2e::Proxy, fault: Fault, length: Duration) {
    proxy.set(fault);
    tokio::time::sleep(length).await;
    proxy.set(Fault::Pass);
}

/// Two orchestrators and the services behind the test's proxies, with short deadlines; payments
/// published over time (keys `<prefix>-<i>`) while `faults` runs on the proxies; then every saga
/// must have completed once and no process exited. Returns the deployment (its logs) and the
/// processes, still running.
async fn sagas_through(
    prefix: &str,
    faults: impl AsyncFnOnce(&Deployment, &ServerProxies),
) -> (Deployment, Vec<Service>) {
    let mut deployment = Deployment::new().await;
    let proxies = deployment.route_through_proxies().await;
    short_deadlines(&mut deployment);
    let mut running = spawn_all(&mut deployment);
    let (keys, ()) = tokio::join!(
        deployment.publish_payments_over_time(prefix, SAGAS, BATCH, PACE),
        faults(&deployment, &proxies)
    );
    deployment
        .assert_payments_completed_once(&keys, RECOVERY)
        .await;
    assert_none_exited(&mut running);
    (deployment, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_finish_once_when_rabbitmq_connections_are_cut_and_blackholed() {
    let (_deployment, running) = sagas_through("rabbitmq-faults", async |deployment, proxies| {
        let rabbitmq = &proxies.rabbitmq;
        let mut done = deployment.wait_for_completions(0, PROGRESS, RECOVERY).await;
        for _ in 0..3 {
            rabbitmq.cut();
            done = deployment
                .wait_for_completions(done, PROGRESS, RECOVERY)
                .await;
        }
        hold(rabbitmq, Fault::Blackhole, Duration::from_secs(10)).await;
        done = deployment
            .wait_for_completions(done, PROGRESS, RECOVERY)
            .await;
        rabbitmq.cut();
        deployment
            .wait_for_completions(done, PROGRESS, RECOVERY)
            .await;
    })
    .await;
    // The faults were real: every process lost its connection (and, completing sagas after,
    // made a new one).
    for service in &running {
        assert!(
            service.log_text().contains("lost RabbitMQ"),
            "{} never lost RabbitMQ: {}",
            service.bin.name(),
            service.log_text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_finish_once_when_postgresql_connections_are_cut_and_delayed() {
    sagas_through("postgres-faults", async |deployment, proxies| {
        let postgres = &proxies.postgres;
        let mut done = deployment.wait_for_completions(0, PROGRESS, RECOVERY).await;
        // A saga takes a few dozen round trips to PostgreSQL: fewer of them complete under delay.
        for delay in [10, 40] {
            postgres.set(Fault::Delay(Duration::from_millis(delay)));
            done = deployment
                .wait_for_completions(done, PROGRESS / 3, RECOVERY)
                .await;
            // Cut in the middle of slow statements and transactions.
            postgres.cut();
            done = deployment
                .wait_for_completions(done, PROGRESS / 3, RECOVERY)
                .await;
        }
        postgres.set(Fault::Pass);
        for _ in 0..2 {
            postgres.cut();
            done = deployment
                .wait_for_completions(done, PROGRESS, RECOVERY)
                .await;
        }
    })
    .await;
}

// Named `chaos_*`: it runs alone, after the suite (inside it, its leftover server sessions could
// use up the shared PostgreSQL's connections). It was flaky while sqlx's pool waited without a
// deadline to give back a connection whose server went silent (closing it over TLS never
// returned): each abandoned work cost its pool a place for good, and an orchestrator that
// abandoned four works (the pool's size) over the two stalls stayed exhausted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sagas_finish_once_when_open_postgresql_connections_go_silent() {
    sagas_through("postgres-silent", async |deployment, proxies| {
        let mut done = deployment.wait_for_completions(0, PROGRESS, RECOVERY).await;
        for _ in 0..2 {
            proxies.postgres.stall_open();
            done = deployment
                .wait_for_completions(done, PROGRESS, RECOVERY)
                .await;
        }
    })
    .await;
}

/// The mechanism under the test above, alone: a unit of work abandoned at its deadline because
/// its server went silent gives its connection's place in the pool back within seconds (the
/// patched sqlx-core, `vendor/sqlx-core/SAGAFLOW-PATCH.md`). Unpatched, a pool of one never got
/// it back: closing a silent connection over TLS waits for good, and so does its ping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_gets_back_the_place_of_work_abandoned_on_a_silent_connection() {
    let mut deployment = Deployment::new().await;
    let proxies = deployment.route_through_proxies().await;
    let url = deployment
        .env()
        .into_iter()
        .find_map(|(key, value)| (key == "DATABASE_URL").then_some(value))
        .expect("the deployment has a database URL");
    let timeouts = DatabaseTimeouts {
        acquire: Duration::from_secs(30),
        ..DatabaseTimeouts::default()
    };
    let pool = store::connect(&url, 1, timeouts)
        .await
        .expect("the pool connects through the proxy");

    let abandoned = tokio::time::timeout(Duration::from_secs(1), async {
        let mut tx = pool.begin().await?;
        proxies.postgres.stall_open();
        sqlx::query("SELECT 1").execute(&mut *tx).await
    });
    assert!(abandoned.await.is_err(), "a silent server answered");

    let next = tokio::time::timeout(
        Duration::from_secs(15),
        sqlx::query("SELECT 1").execute(&pool),
    );
    match next.await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => panic!("the next work failed: {error}"),
        Err(_) => panic!("the pool did not get its connection back within 15 s"),
    }
}

/// One process slot, kept filled as a supervisor (systemd, Kubernetes) would: the test kills its
/// process and starts a replacement, and starts it again if it exits on its own.
struct Slot {
    bin: Bin,
    service: Service,
    started: Instant,
}

/// The processes of a deployment under a supervisor of the test's.
struct Supervised {
    slots: Vec<Slot>,
    /// Processes that exited on their own and were started again.
    restarts: Vec<String>,
}

impl Supervised {
    fn start(deployment: &mut Deployment) -> Supervised {
        let slots = spawn_all(deployment)
            .into_iter()
            .map(|service| Slot {
                bin: service.bin,
                service,
                started: Instant::now(),
            })
            .collect();
        Supervised {
            slots,
            restarts: Vec::new(),
        }
    }

    /// SIGKILLs the process of slot `index` and starts a replacement.
    fn kill_and_replace(&mut self, deployment: &mut Deployment, index: usize) {
        let slot = &mut self.slots[index];
        let fresh = deployment.spawn(slot.bin, &[]);
        std::mem::replace(&mut slot.service, fresh).kill();
        slot.started = Instant::now();
    }

    /// Starts again every process that exited. One that was running before `fault_began` must
    /// not have exited: a running process waits outages out; only a start during a fault may
    /// fail (the first connections must succeed) and be retried by the supervisor.
    fn restart_exited(&mut self, deployment: &mut Deployment, fault_began: Instant) {
        for slot in &mut self.slots {
            if let Some(status) = slot.service.exited() {
                assert!(
                    slot.started >= fault_began,
                    "{} was running before the fault and exited ({status}): {}",
                    slot.bin.name(),
                    slot.service.log_text()
                );
                self.restarts
                    .push(format!("{} ({status})", slot.bin.name()));
                slot.service = deployment.spawn(slot.bin, &[]);
                slot.started = Instant::now();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sagas_finish_once_when_every_process_is_killed_at_random_during_network_faults() {
    let mut deployment = Deployment::new().await;
    let proxies = deployment.route_through_proxies().await;
    short_deadlines(&mut deployment);
    let mut supervised = Supervised::start(&mut deployment);

    // Published up front: the supervisor below needs the deployment mutably.
    let keys = deployment
        .publish_payments_over_time("kills-and-faults", SAGAS, SAGAS, PACE)
        .await;
    let mut done = deployment.wait_for_completions(0, PROGRESS, RECOVERY).await;
    let rounds: [(&sagaflow_e2e::Proxy, Fault, bool); 4] = [
        (&proxies.rabbitmq, Fault::Blackhole, false),
        (
            &proxies.postgres,
            Fault::Delay(Duration::from_millis(50)),
            true,
        ),
        (&proxies.postgres, Fault::Blackhole, false),
        (
            &proxies.rabbitmq,
            Fault::Delay(Duration::from_millis(50)),
            true,
        ),
    ];
    for (round, (proxy, fault, cut)) in rounds.into_iter().enumerate() {
        assert!(
            done <= (SAGAS as i64) - PROGRESS,
            "round {round}: the sagas ended before the fault, it would prove nothing"
        );
        let fault_began = Instant::now();
        proxy.set(fault);
        // Every process in the first round, about half of them after; each at its own moment
        // within the next three seconds, while the fault lasts.
        let mut moments: Vec<(Duration, usize)> = {
            let mut rng = rand::thread_rng();
            let mut moments = Vec::new();
            for index in 0..supervised.slots.len() {
                if round == 0 || rng.gen_bool(0.5) {
                    moments.push((Duration::from_millis(rng.gen_range(0..3_000)), index));
                }
            }
            moments
        };
        moments.sort();
        for (at, index) in moments {
            tokio::time::sleep_until(fault_began + at).await;
            supervised.kill_and_replace(&mut deployment, index);
        }
        if cut {
            proxy.cut();
        }
        tokio::time::sleep_until(fault_began + Duration::from_secs(5)).await;
        proxy.set(Fault::Pass);
        supervised.restart_exited(&mut deployment, fault_began);
        // Supervise while waiting: a replacement started during the fault may have given up.
        let deadline = Instant::now() + RECOVERY;
        let since = done;
        while done < since + PROGRESS {
            assert!(
                Instant::now() < deadline,
                "round {round}: only {} more sagas completed within {RECOVERY:?} after the fault (logs: {})",
                done - since,
                deployment.log_dir().display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            supervised.restart_exited(&mut deployment, fault_began);
            done = deployment.completed_sagas().await;
        }
    }

    deployment
        .assert_payments_completed_once(&keys, RECOVERY)
        .await;
    supervised.restart_exited(&mut deployment, Instant::now());
    eprintln!(
        "started again by the supervisor after exiting on their own: {:?}",
        supervised.restarts
    );
}
