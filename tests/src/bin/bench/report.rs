//! The figures of one bench invocation, as tables or JSON.

use std::time::Duration;

use sagaflow_e2e::Deployment;
use serde::Serialize;

use crate::load::{Check, Outcome, Sleeping};
use crate::{floor, ADVANCES_PER_SAGA, MESSAGES_PER_SAGA};

/// The servers alone at one concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    pub level: usize,
    /// Orchestrator-shaped transactions per second (lock, 2 events, 1 outbox row, update).
    pub postgres_commits_per_s: Option<f64>,
    /// Confirmed publish + consume + ack per second on a quorum queue.
    pub rabbitmq_messages_per_s: Option<f64>,
    /// Why a part could not be measured.
    pub errors: Vec<String>,
}

impl Floor {
    pub async fn measure(deployment: &Deployment, level: usize, duration: Duration) -> Floor {
        let mut errors = Vec::new();
        let postgres =
            floor::postgres_commits_per_second(&deployment.database_url, level, duration)
                .await
                .map_err(|e| errors.push(format!("postgresql at {level}: {e:#}")))
                .ok();
        let rabbitmq = floor::rabbitmq_messages_per_second(
            &deployment.amqp_url,
            &deployment.topology,
            level,
            duration,
        )
        .await
        .map_err(|e| errors.push(format!("rabbitmq at {level}: {e:#}")))
        .ok();
        Floor {
            level,
            postgres_commits_per_s: postgres,
            rabbitmq_messages_per_s: rabbitmq,
            errors,
        }
    }
}

/// One concurrency level of Sagaflow.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub in_flight: usize,
    pub sagas_per_s: f64,
    pub latency_ms: Percentiles,
    /// Process (group) → CPU milliseconds per saga.
    pub cpu_ms_per_saga: Vec<(String, f64)>,
    /// The whole machine's busy CPU time per saga (every process, also other users').
    pub machine_cpu_ms_per_saga: f64,
    /// Share of the machine's CPU time that was busy during the run.
    pub machine_busy: f64,
    pub orchestrator_rss_mib: Option<f64>,
    pub orchestrator_peak_rss_mib: Option<f64>,
    /// Transactions committed in the deployment's database per saga, all processes.
    pub postgres_commits_per_saga: f64,
    /// The floor's sagas/s bound: floor commits/s ÷ the orchestrator's 4 advances per saga.
    pub postgres_floor_sagas_per_s: Option<f64>,
    /// The floor's sagas/s bound: floor messages/s ÷ messages per saga.
    pub rabbitmq_floor_sagas_per_s: Option<f64>,
    /// sagas/s ÷ the lower of the two bounds.
    pub fraction_of_floor: Option<f64>,
    pub not_completed: usize,
    pub check: Check,
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(latencies: &[Duration]) -> Percentiles {
        let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| -> f64 {
            if ms.is_empty() {
                return 0.0;
            }
            let rank = ((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len());
            ms[rank - 1]
        };
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

impl Run {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sagas: usize,
        in_flight: usize,
        outcome: Outcome,
        cpu_seconds: Vec<(String, f64)>,
        machine_busy: f64,
        rss: Option<(f64, f64)>,
        postgres_commits_per_saga: f64,
        check: Check,
        floor: Option<&Floor>,
    ) -> Run {
        let n = sagas as f64;
        let seconds = outcome.elapsed.as_secs_f64();
        let sagas_per_s = n / seconds;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let postgres_floor_sagas_per_s = floor
            .and_then(|f| f.postgres_commits_per_s)
            .map(|rate| rate / ADVANCES_PER_SAGA);
        let rabbitmq_floor_sagas_per_s = floor
            .and_then(|f| f.rabbitmq_messages_per_s)
            .map(|rate| rate / MESSAGES_PER_SAGA);
        let bound = match (postgres_floor_sagas_per_s, rabbitmq_floor_sagas_per_s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Run {
            in_flight,
            sagas_per_s,
            latency_ms: Percentiles::of(&outcome.latencies),
            cpu_ms_per_saga: cpu_seconds
                .into_iter()
                .map(|(name, s)| (name, s * 1e3 / n))
                .collect(),
            machine_cpu_ms_per_saga: machine_busy * cpus * seconds * 1e3 / n,
            machine_busy,
            orchestrator_rss_mib: rss.map(|r| r.0),
            orchestrator_peak_rss_mib: rss.map(|r| r.1),
            postgres_commits_per_saga,
            postgres_floor_sagas_per_s,
            rabbitmq_floor_sagas_per_s,
            fraction_of_floor: bound.map(|b| sagas_per_s / b),
            not_completed: outcome.not_completed,
            check,
        }
    }
}

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub sagas: usize,
    pub cache_size: usize,
    /// Finished sagas in the tables before the run (`--preload-finished`).
    pub preloaded_finished_sagas: u64,
    pub orchestrators: usize,
    /// Activities per saga of the `Steps` saga; 0: ProcessPayment.
    pub steps: u32,
    /// The sleeping sagas started before the runs (`--sleeping`).
    pub sleeping: Option<Sleeping>,
    pub cpus: usize,
    pub messages_per_saga: f64,
    pub advances_per_saga: f64,
    pub floors: Vec<Floor>,
    pub runs: Vec<Run>,
}

fn opt(value: Option<f64>, precision: usize) -> String {
    value.map_or("-".into(), |v| format!("{v:.precision$}"))
}

impl Report {
    pub fn print_tables(&self) {
        let saga = match self.steps {
            0 => "ProcessPayment (3 activities)".to_owned(),
            n => format!("Steps ({n} activities, one after the other)"),
        };
        println!(
            "{saga}, {} sagas per run, {} CPUs, {} orchestrator(s), saga cache {}, {} finished sagas preloaded",
            self.sagas, self.cpus, self.orchestrators, self.cache_size, self.preloaded_finished_sagas
        );
        if let Some(sleeping) = &self.sleeping {
            println!(
                "{} sleeping sagas started and their timers stored in {:.1} s; orchestrator RSS then {} MiB (peak {} MiB)",
                sleeping.sagas,
                sleeping.seconds,
                opt(sleeping.orchestrator_rss_mib, 1),
                opt(sleeping.orchestrator_peak_rss_mib, 1)
            );
        }
        println!();
        println!("| in flight | sagas/s | p50 ms | p90 ms | p99 ms | max ms | all completed (ProcessPayment: 1 charge each) |");
        println!("|---|---|---|---|---|---|---|");
        for run in &self.runs {
            let l = &run.latency_ms;
            println!(
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
                run.in_flight,
                run.sagas_per_s,
                l.p50,
                l.p90,
                l.p99,
                l.max,
                if run.check.ok() {
                    "yes".to_owned()
                } else {
                    format!("NO: {:?}", run.check)
                }
            );
        }
        println!();
        if let Some(first) = self.runs.first() {
            let names: Vec<&str> = first
                .cpu_ms_per_saga
                .iter()
                .map(|(n, _)| n.as_str())
                .collect();
            println!(
                "CPU ms per saga: | in flight | {} | machine (all users) | machine busy | orchestrator RSS MiB (peak) |",
                names.join(" | ")
            );
            println!("|---|{}---|---|---|", "---|".repeat(names.len()));
            for run in &self.runs {
                let cells: Vec<String> = run
                    .cpu_ms_per_saga
                    .iter()
                    .map(|(_, ms)| format!("{ms:.2}"))
                    .collect();
                println!(
                    "| {} | {} | {:.2} | {:.0}% | {} ({}) |",
                    run.in_flight,
                    cells.join(" | "),
                    run.machine_cpu_ms_per_saga,
                    run.machine_busy * 100.0,
                    opt(run.orchestrator_rss_mib, 1),
                    opt(run.orchestrator_peak_rss_mib, 1),
                );
            }
            println!();
        }
        if !self.floors.is_empty() {
            println!("Floor (servers alone, same run): | connections / in flight | PostgreSQL orchestrator-shaped commits/s | RabbitMQ quorum publish+confirm+consume+ack msgs/s |");
            println!("|---|---|---|");
            for floor in &self.floors {
                println!(
                    "| {} | {} | {} |",
                    floor.level,
                    opt(floor.postgres_commits_per_s, 0),
                    opt(floor.rabbitmq_messages_per_s, 0)
                );
                for error in &floor.errors {
                    println!("  (not measured: {error})");
                }
            }
            println!();
            println!(
                "Sagaflow against the floor: | in flight | commits/saga measured (all processes) | PostgreSQL bound ({} advances/saga) sagas/s | RabbitMQ bound ({} msgs/saga) sagas/s | Sagaflow sagas/s | fraction of the lower bound |",
                self.advances_per_saga, self.messages_per_saga
            );
            println!("|---|---|---|---|---|---|");
            for run in &self.runs {
                println!(
                    "| {} | {:.1} | {} | {} | {:.1} | {} |",
                    run.in_flight,
                    run.postgres_commits_per_saga,
                    opt(run.postgres_floor_sagas_per_s, 0),
                    opt(run.rabbitmq_floor_sagas_per_s, 0),
                    run.sagas_per_s,
                    opt(run.fraction_of_floor, 2)
                );
            }
        }
    }
}
