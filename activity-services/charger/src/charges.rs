//! The `charges` table: one row per charge, at most one per idempotency key.

use sagaflow_sdk::contracts::payments::{Charge, PaymentRequest};
use sagaflow_sdk::postgres::{create_table_once, DatabaseError};
use sagaflow_sdk::ActivityContext;
use sqlx::PgPool;
use uuid::Uuid;

/// Creates the `charges` table if it does not exist.
pub async fn create_table(pool: &PgPool) -> Result<(), DatabaseError> {
    create_table_once(
        pool,
        "charges",
        "CREATE TABLE IF NOT EXISTS charges (
            charge_id uuid PRIMARY KEY,
            idempotency_key text NOT NULL UNIQUE,
            saga_id uuid NOT NULL,
            order_id text NOT NULL,
            customer_id text NOT NULL,
            amount_cents bigint NOT NULL,
            currency text NOT NULL,
            charged_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
}

/// Charges `request` once per idempotency key of `ctx`: the first call inserts the charge, every
/// later call (a retry, a redelivery) returns that same charge.
pub async fn charge_once(
    pool: &PgPool,
    ctx: &ActivityContext,
    request: &PaymentRequest,
) -> Result<Charge, sqlx::Error> {
    // One statement when the charge is new (the common case); the row is read back only when
    // an earlier attempt made it.
    let new_row = sqlx::query_as::<_, (Uuid, String, i64, String)>(
        "INSERT INTO charges
            (charge_id, idempotency_key, saga_id, order_id, customer_id, amount_cents, currency)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING charge_id, order_id, amount_cents, currency",
    )
    .bind(Uuid::new_v4())
    .bind(&ctx.idempotency_key().0)
    .bind(ctx.saga_id().0)
    .bind(&request.order_id)
    .bind(&request.customer_id)
    .bind(request.amount_cents)
    .bind(&request.currency)
    .fetch_optional(pool)
    .await?;
    // The charge is committed; dying here is the case the idempotency key exists for.
    sagaflow_sdk::crash_point("charger.after-charge");
    if sagaflow_sdk::fault_injected("charger.lose-connection-after-charge") {
        return Err(sqlx::Error::PoolTimedOut);
    }
    let inserted = new_row.is_some();
    let (charge_id, order_id, amount_cents, currency) = match new_row {
        Some(row) => row,
        None => {
            sqlx::query_as::<_, (Uuid, String, i64, String)>(
                "SELECT charge_id, order_id, amount_cents, currency
                 FROM charges WHERE idempotency_key = $1",
            )
            .bind(&ctx.idempotency_key().0)
            .fetch_one(pool)
            .await?
        }
    };
    if inserted {
        tracing::info!(%charge_id, order_id, amount_cents, currency, "customer charged");
    } else {
        tracing::info!(%charge_id, "already charged for this step; returning the same charge");
    }
    Ok(Charge {
        charge_id,
        order_id,
        amount_cents,
        currency,
    })
}
