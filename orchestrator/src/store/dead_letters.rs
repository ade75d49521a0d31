//! Dead letters kept for people: recorded as the orchestrator sees them on its watch queue,
//! listed and re-published through the HTTP API.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgExecutor;

/// One row of `dead_letters`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeadLetterRow {
    pub id: i64,
    pub message_id: String,
    pub message_type: String,
    pub reason: String,
    pub source_queue: Option<String>,
    /// The message's headers as a JSON object of strings.
    pub headers: Value,
    pub body: Vec<u8>,
    pub dead_lettered_at: DateTime<Utc>,
    pub republished_at: Option<DateTime<Utc>>,
}

impl DeadLetterRow {
    /// The message to publish to re-deliver it: to its source queue (through the default
    /// exchange), with its message id, type, body and headers less the dead-letter ones.
    /// `None` when the queue it came from is unknown.
    pub fn republish_message(&self) -> Option<sagaflow_amqp::OutgoingMessage> {
        let queue = self.source_queue.clone()?;
        let headers = self
            .headers
            .as_object()
            .map(|map| {
                map.iter()
                    .filter(|(k, _)| {
                        *k != sagaflow_contracts::headers::DEAD_LETTER_REASON
                            && *k != sagaflow_contracts::headers::DEAD_LETTER_QUEUE
                            && !k.starts_with("x-death")
                            && !k.starts_with("x-first-death")
                            && !k.starts_with("x-last-death")
                    })
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Some(sagaflow_amqp::OutgoingMessage {
            exchange: String::new(),
            routing_key: queue,
            message_id: self.message_id.clone(),
            message_type: self.message_type.clone(),
            headers,
            body: self.body.clone(),
            ..Default::default()
        })
    }
}

/// A dead letter about to be recorded.
pub struct NewDeadLetter<'a> {
    pub message_id: &'a str,
    pub message_type: &'a str,
    pub reason: &'a str,
    pub source_queue: Option<&'a str>,
    pub headers: &'a Value,
    pub body: &'a [u8],
}

/// Records a dead letter; returns its id.
pub async fn record_dead_letter(
    db: impl PgExecutor<'_>,
    letter: NewDeadLetter<'_>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO dead_letters (message_id, message_type, reason, source_queue, headers, body)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(letter.message_id)
    .bind(letter.message_type)
    .bind(letter.reason)
    .bind(letter.source_queue)
    .bind(letter.headers)
    .bind(letter.body)
    .fetch_one(db)
    .await
}

const COLUMNS: &str = "id, message_id, message_type, reason, source_queue, headers, body, dead_lettered_at, republished_at";

/// Up to `limit` dead letters, newest first, with ids below `before` if given.
pub async fn list_dead_letters(
    db: impl PgExecutor<'_>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<DeadLetterRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE $1::bigint IS NULL OR id < $1
         ORDER BY id DESC LIMIT $2"
    ))
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The dead letter, if it exists.
pub async fn get_dead_letter(
    db: impl PgExecutor<'_>,
    id: i64,
) -> Result<Option<DeadLetterRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM dead_letters WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Notes that the dead letter was published again to its queue.
pub async fn mark_republished(db: impl PgExecutor<'_>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE dead_letters SET republished_at = now() WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}
