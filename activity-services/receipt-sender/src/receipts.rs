//! The `receipts` table: one row per receipt sent, at most one per idempotency key.

use sagaflow_sdk::contracts::payments::{Receipt, ReceiptRequest};
use sagaflow_sdk::postgres::{create_table_once, DatabaseError};
use sagaflow_sdk::ActivityContext;
use sqlx::PgPool;
use uuid::Uuid;

/// Creates the `receipts` table if it does not exist.
pub async fn create_table(pool: &PgPool) -> Result<(), DatabaseError> {
    create_table_once(
        pool,
        "receipts",
        "CREATE TABLE IF NOT EXISTS receipts (
            receipt_id uuid PRIMARY KEY,
            idempotency_key text NOT NULL UNIQUE,
            saga_id uuid NOT NULL,
            charge_id uuid NOT NULL,
            email text NOT NULL,
            sent_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
}

/// Sends the receipt for `request` once per idempotency key of `ctx`: the first call records and
/// "sends" it (we have no mail server: a log line), every later call returns the same receipt.
pub async fn send_once(
    pool: &PgPool,
    ctx: &ActivityContext,
    request: &ReceiptRequest,
) -> Result<Receipt, sqlx::Error> {
    // One statement when the receipt is new (the common case); the row is read back only when
    // an earlier attempt made it.
    let new_row = sqlx::query_as::<_, (Uuid, Uuid, String)>(
        "INSERT INTO receipts (receipt_id, idempotency_key, saga_id, charge_id, email)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING receipt_id, charge_id, email",
    )
    .bind(Uuid::new_v4())
    .bind(&ctx.idempotency_key().0)
    .bind(ctx.saga_id().0)
    .bind(request.charge.charge_id)
    .bind(&request.email)
    .fetch_optional(pool)
    .await?;
    let inserted = new_row.is_some();
    let (receipt_id, charge_id, email) = match new_row {
        Some(row) => row,
        None => {
            sqlx::query_as::<_, (Uuid, Uuid, String)>(
                "SELECT receipt_id, charge_id, email FROM receipts WHERE idempotency_key = $1",
            )
            .bind(&ctx.idempotency_key().0)
            .fetch_one(pool)
            .await?
        }
    };
    if inserted {
        tracing::info!(
            %receipt_id,
            %charge_id,
            email,
            order_id = request.charge.order_id,
            amount_cents = request.charge.amount_cents,
            currency = request.charge.currency,
            "receipt sent"
        );
    } else {
        tracing::info!(%receipt_id, "receipt already sent for this step; returning the same receipt");
    }
    Ok(Receipt {
        receipt_id,
        charge_id,
        email,
    })
}
