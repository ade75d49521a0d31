use sagaflow_amqp::OutgoingMessage;
use sagaflow_contracts::SagaId;
use sqlx::PgExecutor;

use super::Tx;

/// One message waiting in the outbox.
#[derive(Debug)]
pub struct OutboxRow {
    pub id: i64,
    pub message: OutgoingMessage,
}

/// Writes `messages` into the outbox within `tx`: they are published if and only if `tx` commits.
pub async fn enqueue_outbox(
    tx: &mut Tx,
    saga: SagaId,
    messages: &[OutgoingMessage],
) -> Result<(), sqlx::Error> {
    if messages.is_empty() {
        return Ok(());
    }
    let column = |field: fn(&OutgoingMessage) -> &String| -> Vec<&str> {
        messages.iter().map(|m| field(m).as_str()).collect()
    };
    let headers = messages
        .iter()
        .map(|m| serde_json::to_value(&m.headers).map_err(|e| sqlx::Error::Encode(e.into())))
        .collect::<Result<Vec<_>, _>>()?;
    let bodies: Vec<&[u8]> = messages.iter().map(|m| m.body.as_slice()).collect();
    let correlation_ids: Vec<Option<&str>> = messages
        .iter()
        .map(|m| m.correlation_id.as_deref())
        .collect();
    // One statement for all of an advance's messages, in their order.
    sqlx::query(
        "INSERT INTO outbox (saga_id, exchange, routing_key, message_id, message_type, headers, body, correlation_id)
         SELECT $1, exchange, routing_key, message_id, message_type, headers, body, correlation_id
         FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::bytea[], $8::text[])
         WITH ORDINALITY AS m(exchange, routing_key, message_id, message_type, headers, body, correlation_id, n)
         ORDER BY n",
    )
    .bind(saga.0)
    .bind(column(|m| &m.exchange))
    .bind(column(|m| &m.routing_key))
    .bind(column(|m| &m.message_id))
    .bind(column(|m| &m.message_type))
    .bind(headers)
    .bind(bodies)
    .bind(correlation_ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Claims up to `limit` of the oldest messages for the rest of `tx`. Rows another relay has
/// claimed are skipped, so several replicas relay in parallel without publishing a row twice
/// (unless one dies after publishing and before its commit; consumers de-duplicate that).
pub async fn claim_outbox_batch(tx: &mut Tx, limit: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
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
    }
    let records: Vec<Record> = sqlx::query_as(
        "SELECT id, exchange, routing_key, message_id, message_type, headers, body, correlation_id
         FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    Ok(records
        .into_iter()
        .map(|r| OutboxRow {
            id: r.id,
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
        .collect())
}

/// Deletes published messages.
pub async fn delete_outbox_rows(tx: &mut Tx, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .bind(ids)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// How many messages wait to be published.
pub async fn outbox_len(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(db)
        .await
}
