//! The orchestrator with the demo sagas and the end-to-end tests' own (`test_sagas`).
//! `TEST_SAGA_BUG=1` builds the `Evolving` saga with its bug, as an older release would have;
//! `TEST_SAGA_VERSION=1|2|2-unpatched` picks the build of `Versioned`.

use anyhow::Context;
use clap::Parser;
use sagaflow_orchestrator::{demo, Config, Orchestrator};

#[derive(Parser)]
#[command(name = "test-orchestrator")]
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
    let mut registry = demo::registry();
    let buggy = std::env::var_os("TEST_SAGA_BUG").is_some();
    let version = sagaflow_e2e::test_sagas::Version::from_env();
    sagaflow_e2e::test_sagas::register(&mut registry, buggy, version);
    Orchestrator::new(registry)
        .run(cli.config, shutdown)
        .await
        .context("orchestrator failed")
}
