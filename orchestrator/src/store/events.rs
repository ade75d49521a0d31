use chrono::{DateTime, Utc};
use sagaflow_codec::PayloadCodec;
use sagaflow_contracts::{HistoryEvent, SagaEvent, SagaId};
use sqlx::PgExecutor;

use super::Tx;

/// Appends `events` to the saga's history from position `first_seq` on, recorded `at` (the
/// orchestrator's clock, which `ctx.now()` replays). Appending at a position that is taken
/// fails on the primary key: the history is never forked. Each event is stored as `codec`
/// encodes it (sensitive fields encrypted).
pub async fn append_events(
    tx: &mut Tx,
    saga: SagaId,
    first_seq: i64,
    events: &[SagaEvent],
    at: DateTime<Utc>,
    codec: &dyn PayloadCodec,
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
        let body = serde_json::to_value(event).map_err(|e| sqlx::Error::Encode(e.into()))?;
        bodies.push(
            codec
                .encode(body)
                .map_err(|e| sqlx::Error::Encode(e.into()))?,
        );
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

/// Why a stored history cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// An event cannot be decoded (encrypted with another key, or with none configured here) or
    /// read: the saga cannot run in this process; it is parked with this reason.
    #[error("event {seq} of the history cannot be read: {reason}")]
    Unreadable { seq: i64, reason: String },
}

/// The saga's history in order, with each event's seq and time, decoded by `codec`: what
/// replay runs against.
pub async fn load_history_decoded(
    db: impl PgExecutor<'_>,
    saga: SagaId,
    codec: &dyn PayloadCodec,
) -> Result<Vec<HistoryEvent>, HistoryError> {
    stored_history(db, saga)
        .await?
        .into_iter()
        .map(|(seq, at, event)| {
            let unreadable = |reason: String| HistoryError::Unreadable { seq, reason };
            let event = codec.decode(event).map_err(|e| unreadable(e.to_string()))?;
            let event = serde_json::from_value(event).map_err(|e| unreadable(e.to_string()))?;
            Ok(HistoryEvent { seq, at, event })
        })
        .collect()
}

/// The saga's history for people to read (the CLI, the HTTP API): decoded as far as `codec`
/// can, encrypted values it cannot decode shown as stored.
pub async fn load_history(
    db: impl PgExecutor<'_>,
    saga: SagaId,
    codec: &dyn PayloadCodec,
) -> Result<Vec<HistoryEvent>, sqlx::Error> {
    stored_history(db, saga)
        .await?
        .into_iter()
        .map(|(seq, at, event)| {
            let event = serde_json::from_value(codec.reveal(event))
                .map_err(|e| sqlx::Error::Decode(e.into()))?;
            Ok(HistoryEvent { seq, at, event })
        })
        .collect()
}

async fn stored_history(
    db: impl PgExecutor<'_>,
    saga: SagaId,
) -> Result<Vec<(i64, DateTime<Utc>, serde_json::Value)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, recorded_at, event FROM saga_events WHERE saga_id = $1 ORDER BY seq",
    )
    .bind(saga.0)
    .fetch_all(db)
    .await
}

/// A step as it was scheduled: its activity and when its `ActivityScheduled` was recorded.
pub struct ScheduledStep {
    pub step: i64,
    pub activity: String,
    pub scheduled_at: DateTime<Utc>,
}

/// The scheduling of each of `steps` of the saga (for metrics: the activity of a result and
/// how long its step took). Steps without an `ActivityScheduled` event are left out.
pub async fn scheduled_steps(
    db: impl PgExecutor<'_>,
    saga: SagaId,
    steps: &[i64],
) -> Result<Vec<ScheduledStep>, sqlx::Error> {
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT (event->>'step')::bigint, event->>'activity', recorded_at FROM saga_events
         WHERE saga_id = $1 AND kind = 'ActivityScheduled'
           AND (event->>'step')::bigint = ANY($2::bigint[])",
    )
    .bind(saga.0)
    .bind(steps)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(step, activity, scheduled_at)| ScheduledStep {
            step,
            activity,
            scheduled_at,
        })
        .collect())
}
