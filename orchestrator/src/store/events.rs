use chrono::{DateTime, Utc};
use sagaflow_codec::PayloadCodec;
use sagaflow_contracts::{HistoryEvent, SagaEvent, SagaId};
use sqlx::PgExecutor;

use sqlx::PgConnection;

/// Appends `events` to the saga's history from position `first_seq` on, recorded `at` (the
/// orchestrator's clock, which `ctx.now()` replays). Appending at a position that is taken
/// fails on the primary key: the history is never forked. Each event is stored as `codec`
/// encodes it (sensitive fields encrypted).
pub async fn append_events(
    tx: &mut PgConnection,
    saga: SagaId,
    first_seq: i64,
    events: &[SagaEvent],
    at: DateTime<Utc>,
    codec: &dyn PayloadCodec,
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let (seqs, kinds, bodies) = event_columns(first_seq, events, codec)?;
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
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The columns of events as stored: seqs, kinds, bodies.
pub(super) type EventColumns = (Vec<i64>, Vec<&'static str>, Vec<serde_json::Value>);

/// The columns of `events` stored from position `first_seq` on, the bodies as `codec` encodes
/// them (sensitive fields encrypted).
pub(super) fn event_columns(
    first_seq: i64,
    events: &[SagaEvent],
    codec: &dyn PayloadCodec,
) -> Result<EventColumns, sqlx::Error> {
    let encode = |e: Box<dyn std::error::Error + Send + Sync>| sqlx::Error::Encode(e);
    let seqs = (0..events.len() as i64).map(|n| first_seq + n).collect();
    let kinds = events.iter().map(SagaEvent::kind).collect();
    let bodies = events
        .iter()
        .map(|event| {
            let body = serde_json::to_value(event).map_err(|e| encode(e.into()))?;
            codec.encode(body).map_err(|e| encode(e.into()))
        })
        .collect::<Result<_, _>>()?;
    Ok((seqs, kinds, bodies))
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
