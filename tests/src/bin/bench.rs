//! Throughput benchmark: the real binaries (build them with `--release`), the local PostgreSQL
//! and RabbitMQ, N payment sagas started at once. Run it through `scripts/bench`.
//!
//! Prints sagas per second (start message published → every saga completed) and the latency of
//! single sagas (saga row created → completed), with the saga cache on and off.

use std::time::{Duration, Instant};

use sagaflow_e2e::{payment, wait_until, Bin, Deployment};

#[tokio::main]
async fn main() {
    let sagas: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("usage: bench [number of sagas]"))
        .unwrap_or(1000);
    println!("{sagas} ProcessPayment sagas, 1 orchestrator, 1 replica of each activity service");
    for (label, cache_size) in [
        ("cache on", "10000"),
        ("cache off (replay every message)", "0"),
    ] {
        let (per_second, p50, p99) = run(sagas, cache_size).await;
        println!(
            "{label:<34} {per_second:>8.1} sagas/s   latency p50 {p50:>6.1} ms   p99 {p99:>6.1} ms"
        );
    }
}

async fn run(sagas: usize, cache_size: &str) -> (f64, f64, f64) {
    let mut deployment = Deployment::new().await;
    let tuning = [
        ("SAGAFLOW_DB_MAX_CONNECTIONS", "16"),
        ("SAGAFLOW_CONCURRENCY", "32"),
        ("SAGAFLOW_CACHE_SIZE", cache_size),
        ("RUST_LOG", "warn"),
    ];
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &tuning);
    let _services: Vec<_> = [Bin::PaymentValidator, Bin::Charger, Bin::ReceiptSender]
        .into_iter()
        .map(|bin| deployment.spawn(bin, &tuning))
        .collect();
    // Warm up: every process is connected and every queue declared once this saga completes.
    deployment.publish_start(&payment::start("warm-up")).await;
    deployment
        .wait_for_end("warm-up", Duration::from_secs(60))
        .await;

    let started = Instant::now();
    for i in 0..sagas {
        deployment
            .publish_start(&payment::start(&format!("bench-{i}")))
            .await;
    }
    let sql = "SELECT count(*) FROM sagas WHERE status = 'completed'";
    wait_until("every saga completed", Duration::from_secs(600), || async {
        (deployment.count(sql).await == sagas as i64 + 1).then_some(())
    })
    .await;
    let elapsed = started.elapsed();

    let (p50, p99): (f64, f64) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)
         FROM (SELECT extract(epoch FROM updated_at - created_at) * 1000 AS ms
               FROM sagas WHERE start_key LIKE 'bench-%') AS latencies",
    )
    .fetch_one(&deployment.db)
    .await
    .expect("latencies can be computed");
    (sagas as f64 / elapsed.as_secs_f64(), p50, p99)
}
