use sagaflow_amqp::OutgoingMessage;
use sqlx::PgExecutor;

/// One message waiting in the outbox.
#[derive(Debug)]
pub struct OutboxRow {
    pub id: i64,
    /// Failed publishes so far.
    pub attempts: i32,
    pub message: OutgoingMessage,
}

/// Claims up to `limit` of the oldest relayable messages for `lease`, in one short statement:
/// no lock is held while the caller publishes. Rows another relay holds a lease on, rows waiting
/// for their next attempt and parked rows are skipped. A relay that dies leaves its rows to be
/// claimed again when the lease ends (then published twice; consumers de-duplicate).
pub async fn claim_outbox_batch(
    db: impl PgExecutor<'_>,
    limit: i64,
    lease: std::time::Duration,
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Record {
        id: i64,
        exchange: String,
        routing_key: String,
        message_id: String,
        message_type: String,
        headers: sqlx::types::Json<Vec<(String, String)>>,
        body: Vec<u8>,
        correlation_id: Option<String>,
        attempts: i32,
    }
    let records: Vec<Record> = sqlx::query_as(
        "UPDATE outbox SET claimed_until = now() + make_interval(secs => $2)
         WHERE id IN (
             SELECT id FROM outbox
             WHERE parked_at IS NULL AND (claimed_until IS NULL OR claimed_until < now())
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING id, exchange, routing_key, message_id, message_type, headers, body, correlation_id, attempts",
    )
    .bind(limit)
    .bind(lease.as_secs_f64())
    .fetch_all(db)
    .await?;
    let mut rows: Vec<OutboxRow> = records
        .into_iter()
        .map(|r| OutboxRow {
            id: r.id,
            attempts: r.attempts,
            message: OutgoingMessage {
                exchange: r.exchange,
                routing_key: r.routing_key,
                message_id: r.message_id,
                message_type: r.message_type,
                headers: r.headers.0,
                body: r.body,
                correlation_id: r.correlation_id,
                ..Default::default()
            },
        })
        .collect();
    rows.sort_by_key(|row| row.id);
    Ok(rows)
}

/// Records a failed publish of row `id`: counts it, keeps `error`, and lets the row be claimed
/// again after `retry_after`; parks it when it has failed `max_attempts` times.
pub async fn record_outbox_failure(
    db: impl PgExecutor<'_>,
    id: i64,
    error: &str,
    retry_after: std::time::Duration,
    max_attempts: i32,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2,
             claimed_until = now() + make_interval(secs => $3),
             parked_at = CASE WHEN attempts + 1 >= $4 THEN now() END
         WHERE id = $1 RETURNING parked_at IS NOT NULL",
    )
    .bind(id)
    .bind(sagaflow_contracts::reason::bounded(error).as_ref())
    .bind(retry_after.as_secs_f64())
    .bind(max_attempts)
    .fetch_optional(db)
    .await
    .map(|parked| parked.unwrap_or(false))
}

/// A message set aside after too many failed publishes.
#[derive(Debug, sqlx::FromRow)]
pub struct ParkedOutboxRow {
    pub id: i64,
    pub saga_id: uuid::Uuid,
    pub exchange: String,
    pub routing_key: String,
    pub message_type: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub body_bytes: i32,
    pub parked_at: chrono::DateTime<chrono::Utc>,
}

/// The parked outbox rows, oldest first.
pub async fn parked_outbox_rows(
    db: impl PgExecutor<'_>,
) -> Result<Vec<ParkedOutboxRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, saga_id, exchange, routing_key, message_type, attempts, last_error,
                length(body) AS body_bytes, parked_at
         FROM outbox WHERE parked_at IS NOT NULL ORDER BY id",
    )
    .fetch_all(db)
    .await
}

/// Puts parked rows back in line (all of them when `ids` is empty) with their count reset;
/// returns how many.
pub async fn unpark_outbox_rows(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "UPDATE outbox SET parked_at = NULL, attempts = 0, claimed_until = NULL
         WHERE parked_at IS NOT NULL AND (cardinality($1::bigint[]) = 0 OR id = ANY($1))",
    )
    .bind(ids)
    .execute(db)
    .await
    .map(|done| done.rows_affected())
}

/// Deletes published messages.
pub async fn delete_outbox_rows(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .bind(ids)
        .execute(db)
        .await?;
    Ok(())
}

/// How many messages wait to be published.
pub async fn outbox_len(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(db)
        .await
}
