//! Load generator: the real binaries (build them with `--release`), the local PostgreSQL and
//! RabbitMQ, N ProcessPayment sagas started through the start queue with C in flight, each
//! awaited through the reply path (`reply_to` + `correlation_id` → `SagaFinished`). Run it
//! through `scripts/bench`; `--help` lists the options.
//!
//! Prints, per concurrency: sagas per second, client-side start-to-completion latency
//! percentiles, CPU seconds per saga of each process (from /proc), the orchestrator's RSS,
//! PostgreSQL commits per saga, and the floor — what PostgreSQL and RabbitMQ alone carry for the
//! same work, measured in the same run — with Sagaflow's throughput as a fraction of it.
//! Checks that every saga completed with exactly one charge; exits non-zero if not.

mod cpu;
mod floor;
mod load;
mod report;

use std::time::Duration;

use clap::Parser;
use sagaflow_e2e::{payment, Bin, Deployment};

use report::{Floor, Report};

/// Messages one ProcessPayment saga sends through RabbitMQ: the start, 3 activity commands,
/// 3 results and the `SagaFinished` reply.
const MESSAGES_PER_SAGA: f64 = 8.0;

/// Orchestrator transactions of the floor's shape one ProcessPayment saga commits: the start and
/// one advance per activity result. (Relay, poll and service transactions come on top: the bench
/// reports all commits per saga as measured.)
const ADVANCES_PER_SAGA: f64 = 4.0;

#[derive(Parser, Debug)]
#[command(name = "bench", about = "Sagaflow load generator (see BENCHMARKS.md)")]
struct Args {
    /// Sagas started per concurrency level.
    #[arg(short = 'n', long, default_value_t = 1000)]
    sagas: usize,
    /// Sagas in flight (comma-separated list: one run each, on the same deployment).
    #[arg(short = 'c', long, value_delimiter = ',', default_value = "1,50")]
    concurrency: Vec<usize>,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    json: bool,
    /// The orchestrator's saga cache (SAGAFLOW_CACHE_SIZE); 0 replays on every message.
    #[arg(long, default_value_t = 10000)]
    cache_size: usize,
    /// SAGAFLOW_DB_MAX_CONNECTIONS of every process.
    #[arg(long, default_value_t = 16)]
    db_connections: usize,
    /// SAGAFLOW_CONCURRENCY of every process.
    #[arg(long, default_value_t = 32)]
    process_concurrency: usize,
    /// Seconds each floor measurement runs; 0 skips the floor.
    #[arg(long, default_value_t = 3.0)]
    floor_seconds: f64,
    /// Finished sagas (8 events each) inserted with SQL before the run: the cost must not grow
    /// with the history kept.
    #[arg(long, default_value_t = 0)]
    preload_finished: u64,
    /// Seconds to wait for one saga's outcome before the run fails.
    #[arg(long, default_value_t = 120)]
    timeout_seconds: u64,
    /// Orchestrator replicas.
    #[arg(long, default_value_t = 1)]
    orchestrators: usize,
    /// SAGAFLOW_MAX_BATCH of the orchestrators (group commit); 1 gives every message a
    /// transaction of its own.
    #[arg(long, default_value_t = 8)]
    max_batch: u16,
    /// Run the `Steps` saga with this many activities, one after the other (the cost of a long
    /// saga), instead of ProcessPayment; on the test orchestrator.
    #[arg(long, default_value_t = 0)]
    steps: u32,
    /// Before the runs, start this many `Sleep` sagas waiting on a timer of a day, and report
    /// the orchestrator's RSS with them; on the test orchestrator.
    #[arg(long, default_value_t = 0)]
    sleeping: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let deployment = Deployment::new().await;
    let floor_duration = Duration::from_secs_f64(args.floor_seconds);
    let mut floors = Vec::new();
    if args.floor_seconds > 0.0 {
        // Before the processes start, so that only the servers work.
        let mut levels = vec![1];
        levels.extend(args.concurrency.iter().copied().filter(|&c| c > 1));
        levels.dedup();
        for &level in &levels {
            floors.push(Floor::measure(&deployment, level, floor_duration).await);
        }
    }

    if args.preload_finished > 0 {
        load::preload_finished(&deployment.db, args.preload_finished).await?;
    }
    let mut deployment = deployment;
    let tuning = [
        (
            "SAGAFLOW_DB_MAX_CONNECTIONS",
            args.db_connections.to_string(),
        ),
        ("SAGAFLOW_CONCURRENCY", args.process_concurrency.to_string()),
        ("SAGAFLOW_CACHE_SIZE", args.cache_size.to_string()),
        ("SAGAFLOW_MAX_BATCH", args.max_batch.to_string()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let tuning: Vec<(&str, &str)> = tuning.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The test sagas (Steps, Sleep) live in the test orchestrator, which also has the demo's.
    let orchestrator_bin = match args.steps > 0 || args.sleeping > 0 {
        true => Bin::TestOrchestrator,
        false => Bin::Orchestrator,
    };
    let orchestrators: Vec<_> = (0..args.orchestrators.max(1))
        .map(|_| deployment.spawn(orchestrator_bin, &tuning))
        .collect();
    let orchestrator = &orchestrators[0];
    let services: Vec<_> = [Bin::PaymentValidator, Bin::Charger, Bin::ReceiptSender]
        .into_iter()
        .map(|bin| deployment.spawn(bin, &tuning))
        .collect();

    let driver =
        load::Driver::connect(&deployment, Duration::from_secs(args.timeout_seconds)).await?;
    // Warm-up: every process is connected and every queue declared once this saga completes.
    driver
        .run(&[payment::start("warm-up")], 1)
        .await
        .map_err(|e| anyhow::anyhow!("the warm-up saga did not complete: {e}"))?;

    let sleeping = match args.sleeping {
        0 => None,
        n => Some(load::start_sleeping(&driver, &deployment.db, n, orchestrator.pid()).await?),
    };

    let mut groups = vec![(
        "orchestrator".to_owned(),
        orchestrators.iter().map(|o| o.pid()).collect(),
    )];
    for service in &services {
        groups.push((service.bin.name().to_owned(), vec![service.pid()]));
    }
    groups.push((
        "postgresql".to_owned(),
        load::postgres_pids(&deployment.db).await?,
    ));
    groups.push(("rabbitmq".to_owned(), cpu::pgrep("beam.smp")));
    groups.push(("bench client".to_owned(), vec![std::process::id()]));
    let postgres_group = groups.len() - 3;

    let mut runs = Vec::new();
    for (round, &in_flight) in args.concurrency.iter().enumerate() {
        let starts: Vec<_> = (0..args.sagas)
            .map(|i| load::start(&format!("bench-{round}-{i}"), args.steps))
            .collect();
        let commits_before = load::commits(&deployment.db).await?;
        let before = cpu::Snapshot::take(&groups);
        let outcome = match driver.run(&starts, in_flight).await {
            Ok(outcome) => outcome,
            Err(error) => {
                keep_logs(&deployment);
                return Err(error);
            }
        };
        // The pools open connections as the load grows: backends started during the run count
        // whole.
        groups[postgres_group].1 = load::postgres_pids(&deployment.db).await?;
        let after = cpu::Snapshot::take(&groups);
        let commits = load::commits_since(&deployment.db, commits_before).await?;
        let check =
            load::check(&deployment.db, &format!("bench-{round}-"), args.steps == 0).await?;
        let floor = floors
            .iter()
            .find(|f| f.level == in_flight)
            .or(floors.last());
        runs.push(report::Run::new(
            args.sagas,
            in_flight,
            outcome,
            after.since(&before),
            after.machine_busy_since(&before),
            cpu::rss_mib(orchestrator.pid()),
            commits as f64 / args.sagas as f64,
            check,
            floor,
        ));
    }
    let report = Report {
        sagas: args.sagas,
        cache_size: args.cache_size,
        preloaded_finished_sagas: args.preload_finished,
        orchestrators: orchestrators.len(),
        steps: args.steps,
        sleeping,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        messages_per_saga: MESSAGES_PER_SAGA,
        advances_per_saga: ADVANCES_PER_SAGA,
        floors,
        runs,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print_tables();
    }
    drop(driver);
    drop(services);
    drop(orchestrators);
    if report.runs.iter().any(|r| !r.check.ok()) {
        anyhow::bail!("some sagas did not complete with exactly one charge (see the report)");
    }
    Ok(())
}

/// Copies the processes' logs where the deployment's clean-up does not delete them.
fn keep_logs(deployment: &Deployment) {
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let logs = target.join("e2e-logs").join(&deployment.namespace);
    let kept = target.join("bench-failed").join(&deployment.namespace);
    let copied = std::fs::create_dir_all(&kept).and_then(|()| {
        for entry in std::fs::read_dir(&logs)? {
            let entry = entry?;
            std::fs::copy(entry.path(), kept.join(entry.file_name()))?;
        }
        Ok(())
    });
    match copied {
        Ok(()) => eprintln!("the processes' logs are in {}", kept.display()),
        Err(error) => eprintln!("the logs in {} could not be kept: {error}", logs.display()),
    }
}
