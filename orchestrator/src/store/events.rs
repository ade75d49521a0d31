use chrono::{DateTime, Utc};
use sagaflow_contracts::{HistoryEvent, SagaEvent, SagaId};
use sqlx::PgExecutor;

use super::Tx;

/// Appends `events` to the saga's history from position `first_seq` on, recorded `at` (the
/// orchestrator's clock, which `ctx.now()` replays). Appending at a position that is taken
/// fails on the primary key: the history is never forked.
pub async fn append_events(
    tx: &mut Tx,
    saga: SagaId,
    first_seq: i64,
    events: &[SagaEvent],
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let mut seqs = Vec::with_capacity(events.len());
    let mut kinds = Vec::with_capacity(events.len());
    let mut bodies = Vec::with_capacity(events.len());
    for (offset, event) in events.iter().enumerate() {
        seqs.push(first_seq + offset as i64);
        kinds.push(event.kind());
        bodies.push(serde_json::to_value(event).map_err(|e| sqlx::Error::Encode(e.into()))?);
    }
    sqlx::query(
        "INSERT INTO saga_events (saga_id, seq, kind, event, recorded_at)
         SELECT $1, seq, kind, event, $5
         FROM UNNEST($2::bigint[], $3::text[], $4::jsonb[]) AS e(seq, kind, event)",
    )
    .bind(saga.0)
    .bind(&seqs)
    .bind(&kinds)
    .bind(&bodies)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The saga's history in order, with each event's seq and time: what replay runs against.
pub async fn load_history(
    db: impl PgExecutor<'_>,
    saga: SagaId,
) -> Result<Vec<HistoryEvent>, sqlx::Error> {
    let rows: Vec<(i64, DateTime<Utc>, sqlx::types::Json<SagaEvent>)> = sqlx::query_as(
        "SELECT seq, recorded_at, event FROM saga_events WHERE saga_id = $1 ORDER BY seq",
    )
    .bind(saga.0)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, at, event)| HistoryEvent {
            seq,
            at,
            event: event.0,
        })
        .collect())
}
