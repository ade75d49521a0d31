//! What one activation writes, in one statement: its events, its outbox messages, the saga
//! row, and the timers and heartbeats it disarms. Each round trip to PostgreSQL costs both processes more CPU than the rows it carries, so
//! the three writes every advance makes travel together (writable CTEs, each executed exactly
//! once whether or not the final `SELECT` reads it).

use chrono::{DateTime, Utc};
use sagaflow_amqp::OutgoingMessage;
use sagaflow_contracts::{SagaEvent, SagaId, StepSeq};

use sagaflow_codec::PayloadCodec;

use super::events::event_columns;
use super::SagaUpdate;
use sqlx::PgConnection;

/// The timers and heartbeats an activation disarms: those of the steps it resolved, or all of
/// the saga's when it ended. They are deleted by the activation's last statement, after any
/// timer it armed: a step whose timers an activation disarms and then arms again is disarmed
/// on its own, in order, with `cancel_step_timers`.
#[derive(Debug, Default)]
pub struct Disarm {
    pub steps: Vec<StepSeq>,
    pub all: bool,
}

/// Appends `events` from position `first_seq` on (recorded `at`, stored as `codec` encodes them), writes `messages` into the
/// outbox reserved for `handover` (the committing process publishes them right after the
/// commit; other relays wait that long), and updates the saga row; returns the messages' outbox
/// ids, in order.
///
/// Appending at a taken position fails on the primary key: the history is never forked.
#[allow(clippy::too_many_arguments)]
pub async fn write_activation(
    tx: &mut PgConnection,
    saga: SagaId,
    first_seq: i64,
    events: &[SagaEvent],
    codec: &dyn PayloadCodec,
    at: DateTime<Utc>,
    messages: &[OutgoingMessage],
    handover: std::time::Duration,
    update: SagaUpdate<'_>,
    disarm: &Disarm,
) -> Result<Vec<i64>, sqlx::Error> {
    let encode = |e: serde_json::Error| sqlx::Error::Encode(e.into());
    let (seqs, kinds, bodies) = event_columns(first_seq, events, codec)?;
    let column = |field: fn(&OutgoingMessage) -> &String| -> Vec<&str> {
        messages.iter().map(|m| field(m).as_str()).collect()
    };
    let headers = messages
        .iter()
        .map(|m| serde_json::to_value(&m.headers))
        .collect::<Result<Vec<_>, _>>()
        .map_err(encode)?;
    let message_bodies: Vec<&[u8]> = messages.iter().map(|m| m.body.as_slice()).collect();
    let correlation_ids: Vec<Option<&str>> = messages
        .iter()
        .map(|m| m.correlation_id.as_deref())
        .collect();
    // The keys of a step's timers are `activity/<step>/<kind>` (TimerKey).
    let timer_patterns: Vec<String> = match disarm.all {
        true => vec!["%".to_owned()],
        false => disarm
            .steps
            .iter()
            .map(|step| format!("activity/{step}/%"))
            .collect(),
    };
    let steps: Vec<i32> = disarm.steps.iter().map(|step| step.0 as i32).collect();
    // Outbox ids come from a sequence in insertion order, which is the messages' order.
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "WITH appended AS (
             INSERT INTO saga_events (saga_id, seq, kind, event, recorded_at)
             SELECT $1, seq, kind, event, $5
             FROM UNNEST($2::bigint[], $3::text[], $4::jsonb[]) AS e(seq, kind, event)
         ), enqueued AS (
             INSERT INTO outbox (saga_id, exchange, routing_key, message_id, message_type, headers,
                                 body, correlation_id, claimed_until)
             SELECT $1, exchange, routing_key, message_id, message_type, headers, body,
                    correlation_id, now() + make_interval(secs => $13)
             FROM UNNEST($6::text[], $7::text[], $8::text[], $9::text[], $10::jsonb[],
                         $11::bytea[], $12::text[])
             WITH ORDINALITY AS m(exchange, routing_key, message_id, message_type, headers, body,
                                  correlation_id, n)
             ORDER BY n
             RETURNING id
         ), updated AS (
             UPDATE sagas
             SET status = $14, next_event_seq = $15, output = $16, error = $17, updated_at = now()
             WHERE id = $1
         ), disarmed AS (
             DELETE FROM timers WHERE saga_id = $1 AND key LIKE ANY($18::text[])
         ), forgotten AS (
             DELETE FROM activity_heartbeats
             WHERE saga_id = $1 AND ($19 OR step = ANY($20::integer[]))
         )
         SELECT id FROM enqueued",
    )
    .bind(saga.0)
    .bind(&seqs)
    .bind(&kinds)
    .bind(&bodies)
    .bind(at)
    .bind(column(|m| &m.exchange))
    .bind(column(|m| &m.routing_key))
    .bind(column(|m| &m.message_id))
    .bind(column(|m| &m.message_type))
    .bind(headers)
    .bind(message_bodies)
    .bind(correlation_ids)
    .bind(handover.as_secs_f64())
    .bind(update.status.as_str())
    .bind(update.next_event_seq)
    .bind(update.output)
    .bind(update.error)
    .bind(timer_patterns)
    .bind(disarm.all)
    .bind(steps)
    .fetch_all(&mut *tx)
    .await?;
    ids.sort_unstable();
    Ok(ids)
}
