//! `charger`: the activity service behind `ChargeCustomer`. Charges are rows in its own
//! `charges` table, one per idempotency key, so a retried or redelivered command never charges
//! twice.

mod charges;

use anyhow::Context;
use clap::Parser;
use sagaflow_sdk::contracts::payments::{Charge, PaymentRequest, CHARGE_CUSTOMER};
use sagaflow_sdk::postgres::DatabaseArgs;
use sagaflow_sdk::{ActivityContext, ActivityError, ActivityWorker, WorkerArgs};
use sqlx::PgPool;

/// Charges customers for the ProcessPayment saga, once per saga step.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    worker: WorkerArgs,

    #[command(flatten)]
    database: DatabaseArgs,
}

async fn charge_customer(
    pool: PgPool,
    ctx: ActivityContext,
    request: PaymentRequest,
) -> Result<Charge, ActivityError> {
    if request.amount_cents <= 0 {
        return Err(ActivityError::permanent(
            "InvalidAmount",
            format!("cannot charge {} cents", request.amount_cents),
        ));
    }
    charges::charge_once(&pool, &ctx, &request)
        .await
        .map_err(|error| {
            ActivityError::transient(
                "DatabaseUnavailable",
                format!("could not record the charge: {error}"),
            )
        })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _crash_points = sagaflow_sdk::init_process()?;
    let args = Args::parse();

    let pool = args
        .database
        .connect(args.worker.concurrency.into())
        .await?;
    charges::create_table(&pool).await?;

    ActivityWorker::new(args.worker.into_config("charger"))
        .register(CHARGE_CUSTOMER, move |ctx, request| {
            charge_customer(pool.clone(), ctx, request)
        })
        .run_until_signalled()
        .await
        .context("charger stopped")?;
    Ok(())
}
