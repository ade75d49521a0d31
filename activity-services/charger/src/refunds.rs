//! The `refunds` table: one row per refunded charge, at most one per `charge_id`, so a charge
//! is never refunded twice whatever the steps and attempts that ask.

use sagaflow_sdk::contracts::payments::{Refund, RefundRequest};
use sagaflow_sdk::postgres::{create_table_once, DatabaseError};
use sagaflow_sdk::ActivityContext;
use sqlx::PgPool;
use uuid::Uuid;

/// Creates the `refunds` table if it does not exist.
pub async fn create_table(pool: &PgPool) -> Result<(), DatabaseError> {
    create_table_once(
        pool,
        "refunds",
        "CREATE TABLE IF NOT EXISTS refunds (
            refund_id uuid PRIMARY KEY,
            charge_id uuid NOT NULL UNIQUE,
            idempotency_key text NOT NULL,
            saga_id uuid NOT NULL,
            order_id text NOT NULL,
            amount_cents bigint NOT NULL,
            currency text NOT NULL,
            refunded_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
}

/// Why a refund was not made.
#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    /// No charge has this id: nothing to give back. Permanent.
    #[error("no charge {0} exists; nothing is refunded")]
    UnknownCharge(Uuid),
    /// The database failed; another attempt may succeed.
    #[error("could not record the refund: {0}")]
    Database(#[from] sqlx::Error),
}

/// Refunds the charge `request` names, once per charge: the first call records the refund of
/// the amount that was charged, every later call (a retry, a redelivery, another step) returns
/// that same refund.
pub async fn refund_once(
    pool: &PgPool,
    ctx: &ActivityContext,
    request: &RefundRequest,
) -> Result<Refund, RefundError> {
    // The amount is the charge's, not the request's: a refund never gives back more than was
    // taken. No charge row, no insert.
    let inserted = sqlx::query(
        "INSERT INTO refunds
            (refund_id, charge_id, idempotency_key, saga_id, order_id, amount_cents, currency)
         SELECT $1, charge_id, $2, $3, order_id, amount_cents, currency
         FROM charges WHERE charge_id = $4
         ON CONFLICT (charge_id) DO NOTHING",
    )
    .bind(Uuid::new_v4())
    .bind(&ctx.idempotency_key().0)
    .bind(ctx.saga_id().0)
    .bind(request.charge_id)
    .execute(pool)
    .await?
    .rows_affected()
        == 1;
    // The refund is committed; dying here is the case the unique charge id exists for.
    sagaflow_sdk::crash_point("charger.after-refund");
    let refunded = sqlx::query_as::<_, (Uuid, String, i64, String)>(
        "SELECT refund_id, order_id, amount_cents, currency FROM refunds WHERE charge_id = $1",
    )
    .bind(request.charge_id)
    .fetch_optional(pool)
    .await?;
    let Some((refund_id, order_id, amount_cents, currency)) = refunded else {
        return Err(RefundError::UnknownCharge(request.charge_id));
    };
    if inserted {
        tracing::info!(%refund_id, charge_id = %request.charge_id, order_id, amount_cents, currency, "charge refunded");
    } else {
        tracing::info!(%refund_id, charge_id = %request.charge_id, "charge refunded before; returning the same refund");
    }
    if amount_cents != request.amount_cents || currency != request.currency {
        tracing::warn!(
            charged = amount_cents,
            requested = request.amount_cents,
            currency,
            "the refund request names another amount than was charged; the charged amount was refunded"
        );
    }
    Ok(Refund {
        refund_id,
        charge_id: request.charge_id,
    })
}
