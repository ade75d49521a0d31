//! `receipt-sender`: the activity service behind `SendReceipt`. Receipts are rows in its own
//! `receipts` table, one per idempotency key, so a customer never gets the same receipt twice.

mod receipts;

use anyhow::Context;
use clap::Parser;
use sagaflow_sdk::contracts::payments::{Receipt, ReceiptRequest, SEND_RECEIPT};
use sagaflow_sdk::postgres::DatabaseArgs;
use sagaflow_sdk::{ActivityContext, ActivityError, ActivityWorker, WorkerArgs};
use sqlx::PgPool;

/// Sends receipts for the ProcessPayment saga, once per saga step.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    worker: WorkerArgs,

    #[command(flatten)]
    database: DatabaseArgs,
}

async fn send_receipt(
    pool: PgPool,
    ctx: ActivityContext,
    request: ReceiptRequest,
) -> Result<Receipt, ActivityError> {
    if !request.email.contains('@') {
        return Err(ActivityError::permanent(
            "InvalidEmail",
            format!("cannot send a receipt to {:?}", request.email),
        ));
    }
    receipts::send_once(&pool, &ctx, &request)
        .await
        .map_err(|error| {
            ActivityError::transient(
                "DatabaseUnavailable",
                format!("could not record the receipt: {error}"),
            )
        })
}

/// Exits with the error printed once per cause (`Report`).
#[tokio::main]
async fn main() -> Result<(), sagaflow_sdk::Report> {
    Ok(run().await?)
}

async fn run() -> anyhow::Result<()> {
    let _crash_points = sagaflow_sdk::init_process()?;
    let args = Args::parse();

    let pool = args
        .database
        .connect(args.worker.concurrency.into())
        .await?;
    receipts::create_table(&pool).await?;

    ActivityWorker::new(args.worker.into_config("receipt-sender"))
        .register(SEND_RECEIPT, move |ctx, request| {
            send_receipt(pool.clone(), ctx, request)
        })
        .run_until_signalled()
        .await
        .context("receipt-sender stopped")?;
    Ok(())
}
