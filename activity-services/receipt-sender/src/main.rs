//! `receipt-sender`: the activity service behind `SendReceipt`. Receipts are rows in its own
//! `receipts` table, one per idempotency key, so a customer never gets the same receipt twice.

mod receipts;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sagaflow_sdk::contracts::payments::{Receipt, ReceiptRequest, SEND_RECEIPT};
use sagaflow_sdk::{ActivityContext, ActivityError, ActivityWorker, WorkerArgs};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// How long to wait for PostgreSQL: at start-up, and for a pooled connection.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends receipts for the ProcessPayment saga, once per saga step.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    worker: WorkerArgs,

    /// PostgreSQL URL of the database holding the `receipts` table.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    database_url: String,
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
    receipts::create_table(&pool)
        .await
        .with_context(|| format!("cannot create the receipts table in {database}"))?;

    ActivityWorker::new(args.worker.into_config("receipt-sender"))
        .register(SEND_RECEIPT, move |ctx, request| {
            send_receipt(pool.clone(), ctx, request)
        })
        .run_until_signalled()
        .await
        .context("receipt-sender stopped")?;
    Ok(())
}
