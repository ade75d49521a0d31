//! `payment-validator`: the activity service behind `ValidatePaymentInfo`.

mod validation;

use anyhow::Context;
use clap::Parser;
use sagaflow_sdk::contracts::payments::{PaymentRequest, PaymentValidated, VALIDATE_PAYMENT_INFO};
use sagaflow_sdk::{ActivityContext, ActivityError, ActivityWorker, WorkerArgs};

/// Checks a payment's details (amount, currency, card number, email) for the ProcessPayment saga.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    worker: WorkerArgs,
}

async fn validate_payment_info(
    _ctx: ActivityContext,
    request: PaymentRequest,
) -> Result<PaymentValidated, ActivityError> {
    validation::validate_payment(&request)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sagaflow_sdk::init_tracing();
    let _failpoints = sagaflow_sdk::fail_scenario()?;
    let args = Args::parse();
    let shutdown =
        sagaflow_sdk::shutdown_on_signals().context("cannot listen for SIGTERM/SIGINT")?;
    ActivityWorker::new(args.worker.into_config("payment-validator"))
        .register(VALIDATE_PAYMENT_INFO, validate_payment_info)
        .run(shutdown)
        .await
        .context("payment-validator stopped")?;
    Ok(())
}
