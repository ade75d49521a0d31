//! `charger`: the activity service behind `ChargeCustomer`. Charges are rows in its own
//! `charges` table, one per idempotency key, so a retried or redelivered command never charges
//! twice.
//!
//! For demos it can misbehave on purpose: `--fail-rate` fails attempts transiently (the
//! orchestrator retries them), `--hang-rate` never answers (the orchestrator times them out).

mod chaos;
mod charges;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use sagaflow_sdk::contracts::payments::{Charge, PaymentRequest, CHARGE_CUSTOMER};
use sagaflow_sdk::postgres::DatabaseArgs;
use sagaflow_sdk::{ActivityContext, ActivityError, ActivityWorker, CancellationToken, WorkerArgs};
use sqlx::PgPool;

use crate::chaos::{ChaosArgs, Mischief};

/// Charges customers for the ProcessPayment saga, once per saga step.
///
/// For demos of retries and timeouts, --fail-rate and --hang-rate make a fraction of attempts
/// fail transiently before charging, or never answer.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Args {
    #[command(flatten)]
    worker: WorkerArgs,

    #[command(flatten)]
    database: DatabaseArgs,

    #[command(flatten)]
    chaos: ChaosArgs,
}

/// What every attempt needs.
#[derive(Clone)]
struct Charger {
    pool: PgPool,
    chaos: ChaosArgs,
    shutdown: CancellationToken,
}

impl Charger {
    async fn charge_customer(
        self,
        ctx: ActivityContext,
        request: PaymentRequest,
    ) -> Result<Charge, ActivityError> {
        if request.amount_cents <= 0 {
            return Err(ActivityError::permanent(
                "InvalidAmount",
                format!("cannot charge {} cents", request.amount_cents),
            ));
        }
        // `FAILPOINTS=charger.transient-failure=2*return` fails the first two attempts.
        if sagaflow_sdk::fault_injected("charger.transient-failure") {
            return Err(simulated_outage("the charger.transient-failure fail point"));
        }
        match self.chaos.draw() {
            Mischief::None => {}
            Mischief::Fail => {
                tracing::warn!(
                    fail_rate = self.chaos.fail_rate,
                    "failing this attempt on purpose (--fail-rate); nothing is charged"
                );
                return Err(simulated_outage("--fail-rate"));
            }
            Mischief::Hang => {
                tracing::warn!(
                    hang_rate = self.chaos.hang_rate,
                    "hanging this attempt on purpose (--hang-rate) until the charger stops"
                );
                self.shutdown.cancelled().await;
                return Err(ActivityError::transient(
                    "ChargerStopped",
                    "the charger stopped while this attempt hung on purpose (--hang-rate); nothing was charged",
                ));
            }
        }
        charges::charge_once(&self.pool, &ctx, &request)
            .await
            .map_err(|error| {
                ActivityError::transient(
                    "DatabaseUnavailable",
                    format!("could not record the charge: {error}"),
                )
            })
    }
}

/// The transient failure the charger fakes because of `cause`, before charging anything.
fn simulated_outage(cause: &str) -> ActivityError {
    ActivityError::transient(
        "SimulatedOutage",
        format!("simulated transient failure ({cause}); nothing was charged"),
    )
}

/// Exits with the error printed once per cause (`Report`).
#[tokio::main]
async fn main() -> Result<(), sagaflow_sdk::Report> {
    Ok(run().await?)
}

async fn run() -> anyhow::Result<()> {
    let _crash_points = sagaflow_sdk::init_process()?;
    let args = Args::parse();
    if let Err(error) = args.chaos.validate() {
        Args::command()
            .error(clap::error::ErrorKind::ArgumentConflict, error)
            .exit();
    }
    let shutdown =
        sagaflow_sdk::shutdown_on_signals().context("cannot listen for SIGTERM/SIGINT")?;

    let pool = args
        .database
        .connect(args.worker.concurrency.into())
        .await?;
    charges::create_table(&pool).await?;

    let charger = Charger {
        pool,
        chaos: args.chaos,
        shutdown: shutdown.clone(),
    };
    ActivityWorker::new(args.worker.into_config("charger"))
        .register(CHARGE_CUSTOMER, move |ctx, request| {
            charger.clone().charge_customer(ctx, request)
        })
        .run(shutdown)
        .await
        .context("charger stopped")?;
    Ok(())
}
