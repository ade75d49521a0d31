use chrono::{DateTime, Utc};
use sagaflow_contracts::{SagaId, SagaStatus};
use serde_json::Value;
use sqlx::{PgExecutor, Row};

use sqlx::PgConnection;

/// One row of `sagas`.
#[derive(Debug, Clone)]
pub struct SagaRow {
    pub id: SagaId,
    pub saga_type: String,
    pub status: SagaStatus,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub next_event_seq: i64,
    pub start_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Where the outcome goes when the saga ends, with its correlation id.
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
    /// The W3C trace context (`traceparent`, `tracestate`) every span of the saga continues.
    pub trace_context: Vec<(String, String)>,
}

pub(super) const COLUMNS: &str = "id, saga_type, status, input, output, error, next_event_seq, start_key, created_at, updated_at, reply_to, correlation_id, trace_context";

pub(super) fn saga_row(row: sqlx::postgres::PgRow) -> Result<SagaRow, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(SagaRow {
        id: SagaId(row.try_get("id")?),
        saga_type: row.try_get("saga_type")?,
        status: status
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        input: row.try_get("input")?,
        output: row.try_get("output")?,
        error: row.try_get("error")?,
        next_event_seq: row.try_get("next_event_seq")?,
        start_key: row.try_get("start_key")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        reply_to: row.try_get("reply_to")?,
        trace_context: row
            .try_get::<Option<sqlx::types::Json<std::collections::BTreeMap<String, String>>>, _>(
                "trace_context",
            )?
            .map(|context| context.0.into_iter().collect())
            .unwrap_or_default(),
        correlation_id: row.try_get("correlation_id")?,
    })
}

/// A saga about to be inserted.
pub struct NewSaga<'a> {
    pub id: SagaId,
    pub saga_type: &'a str,
    pub input: &'a Value,
    pub start_key: Option<&'a str>,
    pub reply_to: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
    /// `traceparent` and `tracestate` of the saga's start span (empty when traces are off).
    pub trace_context: &'a [(String, String)],
}

/// Inserts a running saga with no events yet. Returns `false`, inserting nothing, when a saga of
/// the same type already has this start key: the start is a duplicate.
pub async fn insert_saga(tx: &mut PgConnection, saga: NewSaga<'_>) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO sagas (id, saga_type, status, input, next_event_seq, start_key, reply_to, correlation_id, trace_context)
         VALUES ($1, $2, 'running', $3, 0, $4, $5, $6, $7)
         ON CONFLICT (saga_type, start_key) DO NOTHING",
    )
    .bind(saga.id.0)
    .bind(saga.saga_type)
    .bind(saga.input)
    .bind(saga.start_key)
    .bind(saga.reply_to)
    .bind(saga.correlation_id)
    .bind((!saga.trace_context.is_empty()).then(|| {
        sqlx::types::Json(
            saga.trace_context
                .iter()
                .cloned()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
    }))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Locks the saga's row for the rest of `tx`; whoever holds it is the only one advancing it.
pub async fn lock_saga(tx: &mut PgConnection, id: SagaId) -> Result<Option<SagaRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM sagas WHERE id = $1 FOR UPDATE"
    ))
    .bind(id.0)
    .try_map(saga_row)
    .fetch_optional(&mut *tx)
    .await
}

/// Locks the rows of the sagas `ids` that exist, in the order of their ids (so that two
/// transactions locking several sagas cannot deadlock), and returns them.
pub async fn lock_sagas(
    tx: &mut PgConnection,
    ids: &[SagaId],
) -> Result<Vec<SagaRow>, sqlx::Error> {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM sagas WHERE id = ANY($1) ORDER BY id FOR UPDATE"
    ))
    .bind(ids)
    .try_map(saga_row)
    .fetch_all(&mut *tx)
    .await
}

/// The saga, if it exists.
pub async fn get_saga(db: impl PgExecutor<'_>, id: SagaId) -> Result<Option<SagaRow>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM sagas WHERE id = $1"))
        .bind(id.0)
        .try_map(saga_row)
        .fetch_optional(db)
        .await
}

/// The saga of `saga_type` started with `start_key`, if any.
pub async fn find_saga_by_start_key(
    db: impl PgExecutor<'_>,
    saga_type: &str,
    start_key: &str,
) -> Result<Option<SagaRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM sagas WHERE saga_type = $1 AND start_key = $2"
    ))
    .bind(saga_type)
    .bind(start_key)
    .try_map(saga_row)
    .fetch_optional(db)
    .await
}

/// What advancing a saga changed about its row.
pub struct SagaUpdate<'a> {
    pub status: SagaStatus,
    pub next_event_seq: i64,
    pub output: Option<&'a Value>,
    pub error: Option<&'a Value>,
}

/// Writes the saga's new status and history position.
pub async fn update_saga(
    tx: &mut PgConnection,
    id: SagaId,
    update: SagaUpdate<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sagas
         SET status = $2, next_event_seq = $3, output = $4, error = $5, updated_at = now()
         WHERE id = $1",
    )
    .bind(id.0)
    .bind(update.status.as_str())
    .bind(update.next_event_seq)
    .bind(update.output)
    .bind(update.error)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The most recently started sagas, newest first, optionally only those with `status`.
pub async fn list_sagas(
    db: impl PgExecutor<'_>,
    status: Option<SagaStatus>,
    limit: i64,
) -> Result<Vec<SagaRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM sagas WHERE $1::text IS NULL OR status = $1
         ORDER BY created_at DESC, id DESC LIMIT $2"
    ))
    .bind(status.map(SagaStatus::as_str))
    .bind(limit)
    .try_map(saga_row)
    .fetch_all(db)
    .await
}
