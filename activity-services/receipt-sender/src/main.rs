//! `receipt-sender`: the activity service behind `SendReceipt`. Receipts are rows in its own
//! `receipts` table, one per idempotency key, so a customer never gets the same receipt twice.
//!
//! For demos of compensation, a receipt to an address at `bounce.example` fails permanently
//! (`MailboxUnavailable`), after the customer was charged: the saga refunds the charge.

mod receipts;

use anyhow::Context;
use clap::Parser;
use sagaflow_sdk::contracts::payments::{Receipt, ReceiptRequest, SEND_RECEIPT};
use sagaflow_sdk::postgres::{within_deadline, DatabaseArgs};
use sagaflow_sdk::{ActivityContext, ActivityError, ActivityWorker, WorkerArgs};
use sqlx::PgPool;

/// Sends receipts for the ProcessPayment saga, once per saga step.
///
/// For demos of compensation: a receipt to an email ending in @bounce.example fails permanently
/// with MailboxUnavailable and nothing is recorded, so the saga refunds the charge.
#[derive(Parser)]
#[command(version, about, long_about)]
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
    if bounces(&request.email) {
        return Err(ActivityError::permanent(
            "MailboxUnavailable",
            format!(
                "the mailbox of {:?} does not exist (addresses at {BOUNCE_DOMAIN} always bounce); no receipt was sent",
                request.email
            ),
        ));
    }
    within_deadline(receipts::send_once(&pool, &ctx, &request))
        .await
        .map_err(|error| {
            ActivityError::transient(
                "DatabaseUnavailable",
                format!("could not record the receipt: {error}"),
            )
        })
}

/// The demo domain whose mailboxes never exist.
const BOUNCE_DOMAIN: &str = "bounce.example";

/// Whether a receipt to `email` bounces: its domain is [`BOUNCE_DOMAIN`] (in any case).
fn bounces(email: &str) -> bool {
    email
        .rsplit_once('@')
        .is_some_and(|(_, domain)| domain.eq_ignore_ascii_case(BOUNCE_DOMAIN))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_at_the_bounce_domain_bounce() {
        assert!(bounces("ada@bounce.example"));
        assert!(bounces("Ada@Bounce.Example"));
        assert!(!bounces("ada@example.com"));
        assert!(!bounces("ada@notbounce.example"));
        assert!(!bounces("bounce.example"));
    }
}
