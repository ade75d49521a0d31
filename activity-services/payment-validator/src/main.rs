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

/// Exits with the error printed once per cause (`Report`).
#[tokio::main]
async fn main() -> Result<(), sagaflow_sdk::Report> {
    Ok(run().await?)
}

async fn run() -> anyhow::Result<()> {
    let _crash_points = sagaflow_sdk::init_process()?;
    let args = Args::parse();
    ActivityWorker::new(args.worker.into_config("payment-validator"))
        .register(VALIDATE_PAYMENT_INFO, validate_payment_info)
        .run_until_signalled()
        .await
        .context("payment-validator stopped")?;
    Ok(())
}
