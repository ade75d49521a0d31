//! What one activation writes, in one statement: its events, its outbox messages, the saga
//! row, the timers it arms, and the timers and heartbeats it disarms. Each round trip to PostgreSQL costs both processes more CPU than the rows it carries, so
//! the three writes every advance makes travel together (writable CTEs, each executed exactly
//! once whether or not the final `SELECT` reads it).

use chrono::{DateTime, Utc};
use sagaflow_amqp::OutgoingMessage;
use sagaflow_contracts::{SagaEvent, SagaId, StepSeq};

use sagaflow_codec::PayloadCodec;

use super::events::event_columns;
use super::SagaUpdate;
use sqlx::PgConnection;

/// The timers an activation arms, and the timers and heartbeats it disarms: those of the steps
/// it resolved, or all of the saga's when it ended. All in one statement, so they must be the
/// net result of the activation's timer effects (`inbound/advance.rs`, `timer_changes`): no
/// key armed twice, no step both armed and disarmed (that statement's deletes do not see what it
/// inserts).
#[derive(Debug, Default, PartialEq)]
pub struct TimerChanges {
    pub arm: Vec<TimerArm>,
    pub disarm_steps: Vec<StepSeq>,
    pub disarm_all: bool,
}

/// A timer to arm, or to move if its key is armed already.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerArm {
    pub key: String,
    pub attempt: u32,
    pub fire_at: DateTime<Utc>,
    pub period_ms: Option<u64>,
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
    timers: &TimerChanges,
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
    let timer_patterns: Vec<String> = match timers.disarm_all {
        true => vec!["%".to_owned()],
        false => timers
            .disarm_steps
            .iter()
            .map(|step| format!("activity/{step}/%"))
            .collect(),
    };
    let steps: Vec<i32> = timers
        .disarm_steps
        .iter()
        .map(|step| step.0 as i32)
        .collect();
    let arm = &timers.arm;
    let arm_keys: Vec<&str> = arm.iter().map(|timer| timer.key.as_str()).collect();
    let arm_attempts: Vec<i32> = arm.iter().map(|timer| timer.attempt as i32).collect();
    let arm_fire_at: Vec<DateTime<Utc>> = arm.iter().map(|timer| timer.fire_at).collect();
    let arm_periods: Vec<Option<i64>> = arm
        .iter()
        .map(|timer| {
            timer
                .period_ms
                .map(|p| i64::try_from(p).unwrap_or(i64::MAX))
        })
        .collect();
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
         ), armed AS (
             INSERT INTO timers (saga_id, key, attempt, fire_at, period_ms)
             SELECT $1, key, attempt, fire_at, period_ms
             FROM UNNEST($21::text[], $22::integer[], $23::timestamptz[], $24::bigint[])
                  AS t(key, attempt, fire_at, period_ms)
             ON CONFLICT (saga_id, key) DO UPDATE
             SET attempt = EXCLUDED.attempt, fire_at = EXCLUDED.fire_at,
                 period_ms = EXCLUDED.period_ms
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
    .bind(timers.disarm_all)
    .bind(steps)
    .bind(arm_keys)
    .bind(arm_attempts)
    .bind(arm_fire_at)
    .bind(arm_periods)
    .fetch_all(&mut *tx)
    .await?;
    ids.sort_unstable();
    Ok(ids)
}
