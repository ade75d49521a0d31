//! The orchestrator service with the demo `ProcessPayment` saga registered.

use anyhow::Context;
use clap::Parser;
use sagaflow_orchestrator::{demo, Config, Orchestrator};

/// Runs sagas: consumes start messages and activity results, advances sagas durably in
/// PostgreSQL, and publishes activity commands to RabbitMQ.
#[derive(Parser)]
#[command(name = "orchestrator", version)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

/// Exits with the error printed once per cause (`Report`).
#[tokio::main]
async fn main() -> Result<(), sagaflow_process::Report> {
    Ok(run().await?)
}

async fn run() -> anyhow::Result<()> {
    let _crash_points = sagaflow_process::init_process()?;
    let cli = Cli::parse();
    let shutdown =
        sagaflow_process::shutdown_on_signals().context("cannot listen for SIGTERM/SIGINT")?;
    Orchestrator::new(demo::registry())
        .run(cli.config, shutdown)
        .await
        .context("orchestrator failed")
}
