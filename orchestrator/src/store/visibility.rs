//! Read-only queries for people: the saga list with filters and keyset pagination, counts by
//! status, and the timers a saga waits on.

use chrono::{DateTime, Utc};
use sagaflow_contracts::SagaId;
use sqlx::PgExecutor;

use super::sagas::{saga_row, COLUMNS};
use super::SagaRow;

/// Which sagas to list. Every field narrows the list; `None` does not.
#[derive(Debug, Clone, Default)]
pub struct SagaFilter {
    /// Any of these statuses (as stored: `running`, `completed`, …).
    pub statuses: Option<Vec<String>>,
    pub saga_type: Option<String>,
    pub start_key: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub updated_after: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
}

/// A position in the list: the `(created_at, id)` of the last saga of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SagaCursor {
    pub created_at: DateTime<Utc>,
    pub id: SagaId,
}

const FILTERS: &str = "($1::text[] IS NULL OR status = ANY($1))
     AND ($2::text IS NULL OR saga_type = $2)
     AND ($3::text IS NULL OR start_key = $3)
     AND ($4::timestamptz IS NULL OR created_at >= $4)
     AND ($5::timestamptz IS NULL OR created_at < $5)
     AND ($6::timestamptz IS NULL OR updated_at >= $6)
     AND ($7::timestamptz IS NULL OR updated_at < $7)";

fn bind_filter<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    filter: &'q SagaFilter,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(filter.statuses.as_deref())
        .bind(filter.saga_type.as_deref())
        .bind(filter.start_key.as_deref())
        .bind(filter.created_after)
        .bind(filter.created_before)
        .bind(filter.updated_after)
        .bind(filter.updated_before)
}

/// Up to `limit` sagas matching `filter`, most recently started first, after `cursor`.
pub async fn search_sagas(
    db: impl PgExecutor<'_>,
    filter: &SagaFilter,
    after: Option<SagaCursor>,
    limit: i64,
) -> Result<Vec<SagaRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM sagas WHERE {FILTERS}
         AND ($8::timestamptz IS NULL OR (created_at, id) < ($8, $9))
         ORDER BY created_at DESC, id DESC LIMIT $10"
    );
    bind_filter(sqlx::query(&sql), filter)
        .bind(after.map(|c| c.created_at))
        .bind(after.map(|c| c.id.0))
        .bind(limit)
        .try_map(saga_row)
        .fetch_all(db)
        .await
}

/// How many sagas match `filter` (its statuses ignored), by status.
pub async fn count_sagas_by_status(
    db: impl PgExecutor<'_>,
    filter: &SagaFilter,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let filter = SagaFilter {
        statuses: None,
        ..filter.clone()
    };
    let sql = format!(
        "SELECT status, count(*) FROM sagas WHERE {FILTERS} GROUP BY status ORDER BY status"
    );
    let rows = bind_filter(sqlx::query(&sql), &filter)
        .fetch_all(db)
        .await?;
    use sqlx::Row;
    rows.into_iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// A timer a saga waits on.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingTimer {
    pub key: String,
    pub attempt: i32,
    pub fire_at: DateTime<Utc>,
}

/// The saga's armed timers, soonest first.
pub async fn pending_timers(
    db: impl PgExecutor<'_>,
    saga: SagaId,
) -> Result<Vec<PendingTimer>, sqlx::Error> {
    sqlx::query_as(
        "SELECT key, attempt, fire_at FROM timers WHERE saga_id = $1 ORDER BY fire_at, id",
    )
    .bind(saga.0)
    .fetch_all(db)
    .await
}
