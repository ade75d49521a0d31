//! `charger`: the activity service behind `ChargeCustomer`. Charges are rows in its own
//! `charges` table, one per idempotency key, so a retried or redelivered command never charges
//! twice.

mod charges;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sagaflow_sdk::contracts::payments::{Charge, PaymentRequest, CHARGE_CUSTOMER};
use sagaflow_sdk::{ActivityContext, ActivityError, ActivityWorker, WorkerArgs};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// How long to wait for PostgreSQL: at start-up, and for a pooled connection.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Charges customers for the ProcessPayment saga, once per saga step.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    worker: WorkerArgs,

    /// PostgreSQL URL of the database holding the `charges` table.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    database_url: String,
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

/// A pool of up to `max_connections`, after one connection proved the database reachable (the
/// pool itself would only report a timeout, not why).
async fn connect_database(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url).context("DATABASE_URL is not a valid URL")?;
    let probe = tokio::time::timeout(DATABASE_TIMEOUT, options.connect())
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {DATABASE_TIMEOUT:?}"))??;
    probe.close().await?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(DATABASE_TIMEOUT)
        .connect_lazy_with(options))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _crash_points = sagaflow_sdk::init_process()?;
    let args = Args::parse();

    let database = sagaflow_sdk::redact_url(&args.database_url);
    let pool = connect_database(&args.database_url, args.worker.concurrency.into())
        .await
        .with_context(|| {
            format!("cannot connect to PostgreSQL at {database}: check DATABASE_URL and that the database is running")
        })?;
    charges::create_table(&pool)
        .await
        .with_context(|| format!("cannot create the charges table in {database}"))?;

    ActivityWorker::new(args.worker.into_config("charger"))
        .register(CHARGE_CUSTOMER, move |ctx, request| {
            charge_customer(pool.clone(), ctx, request)
        })
        .run_until_signalled()
        .await
        .context("charger stopped")?;
    Ok(())
}
