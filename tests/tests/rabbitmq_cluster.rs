//! A three-node RabbitMQ cluster of the test's own, with quorum queues, loses the node every
//! process is connected to (SIGKILL) while sagas run. Each process was given every node's URL:
//! it connects to the next one, declares its topology again and goes on. Every saga finishes
//! with one charge and one receipt, no outbox row is left, and no process is restarted by hand.
//!
//! Named `chaos_*`: it boots three RabbitMQ nodes, heavy enough to run alone after the suite
//! (`.config/nextest.toml`). It touches only its own nodes (and its own database on the shared
//! PostgreSQL).

use std::time::Duration;

use sagaflow_contracts::payments;
use sagaflow_e2e::{payment, wait_until, Bin, Deployment, LocalRabbitMqCluster, Servers};

const END: Duration = Duration::from_secs(120);
const BEFORE: usize = 40;
const AFTER: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sagas_finish_once_when_a_rabbitmq_cluster_node_is_killed() {
    let mut cluster = LocalRabbitMqCluster::start(3).await;
    let mut deployment = Deployment::on(Servers {
        amqp_url: cluster.urls(),
        own_broker: true,
        ..Servers::shared()
    })
    .await;
    let mut running = vec![deployment.spawn(Bin::Orchestrator, &[])];
    running.extend(deployment.spawn_activity_services());

    // Each quorum queue has a member on every node (a replica to take over).
    let namespace = format!("{}.", deployment.namespace);
    let topology = &deployment.topology;
    let required = [
        topology.start_queue(),
        topology.results_queue(),
        topology.activity_queue(payments::VALIDATE_PAYMENT_INFO),
        topology.activity_queue(payments::CHARGE_CUSTOMER),
        topology.activity_queue(payments::SEND_RECEIPT),
    ];
    wait_until(
        "every quorum queue has a member online on each node",
        END,
        || async {
            let listed = cluster.nodes[1]
                .rabbitmqctl(&[
                    "list_queues",
                    "name",
                    "type",
                    "online",
                    "--formatter",
                    "json",
                ])
                .await;
            let queues: Vec<serde_json::Value> = serde_json::from_str(&listed).ok()?;
            let ours: Vec<_> = queues
                .iter()
                .filter(|q| {
                    q["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(&namespace))
                })
                .filter(|q| q["type"] == "quorum")
                .collect();
            let present = |name: &String| ours.iter().any(|q| q["name"] == name.as_str());
            (required.iter().all(present)
                && ours
                    .iter()
                    .all(|q| q["online"].as_array().map_or(0, Vec::len) == 3))
            .then_some(())
        },
    )
    .await;
    let mut keys: Vec<String> = (0..BEFORE).map(|i| format!("cluster-{i}")).collect();
    for key in &keys {
        deployment.publish_start(&payment::start(key)).await;
    }
    wait_until("five sagas are charged", END, || async {
        (deployment.count("SELECT count(*) FROM charges").await >= 5).then_some(())
    })
    .await;

    // The first URL's node: every process is connected to it, and the queues' leaders are there.
    let in_flight = deployment
        .count("SELECT count(*) FROM sagas WHERE status = 'running'")
        .await;
    cluster.nodes[0].kill();
    assert!(
        in_flight > 0,
        "every saga had finished before the node was killed"
    );
    wait_until("the orchestrator is connected to another node", END, || {
        let back = running[0]
            .log_text()
            .contains("connected to RabbitMQ again");
        async move { back.then_some(()) }
    })
    .await;
    // New starts go to the nodes left, from the CLI (which tries the URLs in turn). Until the
    // start queue has elected a leader among them the broker refuses (nacks) a start: the CLI
    // fails, and is run again with the same start key, as a client should.
    for i in 0..AFTER {
        let key = format!("cluster-after-{i}");
        let input = serde_json::to_string(&payment::request(&key)).unwrap();
        let args = ["start", "--start-key", &key, "--input", &input];
        wait_until(&format!("sagaflow start {key} succeeds"), END, || async {
            let started = deployment.run_cli(&args).await;
            started.status.success().then_some(())
        })
        .await;
        keys.push(key);
    }

    deployment
        .assert_payments_done_and_running(&keys, &mut running, END)
        .await;
}
