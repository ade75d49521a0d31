//! `charger`: the activity service behind `ChargeCustomer` and its compensation `RefundCharge`.
//! Charges are rows in its own `charges` table, one per idempotency key, so a retried or
//! redelivered command never charges twice; refunds are rows in `refunds`, one per charge, so a
//! charge is never refunded twice.
//!
//! For demos it can misbehave on purpose: `--fail-rate` fails charge attempts transiently (the
//! orchestrator retries them), `--hang-rate` never answers them (the orchestrator times them out,
//! or cancels them with their saga).

mod chaos;
mod charges;
mod refunds;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use sagaflow_sdk::contracts::error_kinds;
use sagaflow_sdk::contracts::payments::{
    Charge, PaymentRequest, Refund, RefundRequest, CHARGE_CUSTOMER, REFUND_CHARGE,
};
use sagaflow_sdk::postgres::{within_deadline, DatabaseArgs};
use sagaflow_sdk::{ActivityContext, ActivityError, ActivityWorker, CancellationToken, WorkerArgs};
use sqlx::PgPool;

use crate::chaos::{ChaosArgs, Mischief};
use crate::refunds::RefundError;

/// Charges customers for the ProcessPayment saga, once per saga step (ChargeCustomer), and
/// refunds a charge once when the saga compensates (RefundCharge; an unknown charge_id fails
/// permanently with UnknownCharge).
///
/// For demos of retries and timeouts, --fail-rate and --hang-rate make a fraction of charge
/// attempts fail transiently before charging, or never answer (until the saga is cancelled or the
/// charger stops). Refunds always behave.
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
                    "hanging this attempt on purpose (--hang-rate) until it is cancelled or the charger stops"
                );
                tokio::select! {
                    () = ctx.cancelled() => return Err(ActivityError::permanent(
                        error_kinds::CANCELLED,
                        format!(
                            "cancelled while this attempt hung on purpose (--hang-rate); nothing was charged: {}",
                            ctx.cancellation_reason().unwrap_or_default()
                        ),
                    )),
                    () = self.shutdown.cancelled() => return Err(ActivityError::transient(
                        "ChargerStopped",
                        "the charger stopped while this attempt hung on purpose (--hang-rate); nothing was charged",
                    )),
                }
            }
        }
        within_deadline(charges::charge_once(&self.pool, &ctx, &request))
            .await
            .map_err(|error| {
                ActivityError::transient(
                    "DatabaseUnavailable",
                    format!("could not record the charge: {error}"),
                )
            })
    }
}

/// Refunds the charge `request` names, once per charge. The compensation of
/// [`Charger::charge_customer`].
async fn refund_charge(
    pool: PgPool,
    ctx: ActivityContext,
    request: RefundRequest,
) -> Result<Refund, ActivityError> {
    within_deadline(refunds::refund_once(&pool, &ctx, &request))
        .await
        .map_err(|error| match error {
            RefundError::UnknownCharge(_) => {
                ActivityError::permanent("UnknownCharge", error.to_string())
            }
            RefundError::Database(_) => {
                ActivityError::transient("DatabaseUnavailable", error.to_string())
            }
        })
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
    refunds::create_table(&pool).await?;

    let charger = Charger {
        pool: pool.clone(),
        chaos: args.chaos,
        shutdown: shutdown.clone(),
    };
    ActivityWorker::new(args.worker.into_config("charger"))
        .register(CHARGE_CUSTOMER, move |ctx, request| {
            charger.clone().charge_customer(ctx, request)
        })
        .register(REFUND_CHARGE, move |ctx, request| {
            refund_charge(pool.clone(), ctx, request)
        })
        .run(shutdown)
        .await
        .context("charger stopped")?;
    Ok(())
}
