//! Durable timers: rows armed in the transaction that records why, fired by any replica.

use chrono::{DateTime, Utc};
use sagaflow_contracts::{SagaId, StepSeq};
use sqlx::PgExecutor;

use sqlx::PgConnection;

/// One armed timer.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TimerRow {
    pub id: i64,
    pub saga_id: uuid::Uuid,
    pub key: String,
    pub attempt: i32,
    pub fire_at: DateTime<Utc>,
}

/// Disarms the timers of `step` (its retry wait and timeouts) and forgets its heartbeats.
pub async fn cancel_step_timers(
    tx: &mut PgConnection,
    saga: SagaId,
    step: StepSeq,
) -> Result<(), sqlx::Error> {
    // One statement, one round trip.
    sqlx::query(
        "WITH disarmed AS (DELETE FROM timers WHERE saga_id = $1 AND key LIKE $2)
         DELETE FROM activity_heartbeats WHERE saga_id = $1 AND step = $3",
    )
    .bind(saga.0)
    .bind(format!("activity/{step}/%"))
    .bind(step.0 as i32)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Deletes the timer that fired.
pub async fn delete_timer(tx: &mut PgConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM timers WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Up to `limit` timers due at `now`, oldest first.
pub async fn due_timers(
    db: impl PgExecutor<'_>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<TimerRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, saga_id, key, attempt, fire_at FROM timers
         WHERE fire_at <= $1 ORDER BY fire_at, id LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The timer `id`, locked for the rest of `tx`, if it is still armed and due at `now` (a
/// heartbeat may have moved it, another replica may have fired it).
pub async fn lock_due_timer(
    tx: &mut PgConnection,
    id: i64,
    now: DateTime<Utc>,
) -> Result<Option<TimerRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, saga_id, key, attempt, fire_at FROM timers
         WHERE id = $1 AND fire_at <= $2 FOR UPDATE",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await
}

/// When the next timer is due, if any is armed.
pub async fn next_fire_at(db: impl PgExecutor<'_>) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar("SELECT min(fire_at) FROM timers")
        .fetch_one(db)
        .await
}

/// A heartbeat of `attempt` of `step` arrived at `now`: moves the attempt's heartbeat timeout
/// and keeps `details` for a later attempt. Returns whether the attempt is still timed by a
/// heartbeat timer (false when it ended, or has no heartbeat timeout).
pub async fn record_heartbeat(
    tx: &mut PgConnection,
    saga: SagaId,
    step: StepSeq,
    attempt: u32,
    details: Option<&serde_json::Value>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query(
        "UPDATE timers SET fire_at = $4 + make_interval(secs => period_ms / 1000.0)
         WHERE saga_id = $1 AND key = $2 AND attempt = $3 AND period_ms IS NOT NULL",
    )
    .bind(saga.0)
    .bind(format!("activity/{step}/heartbeat"))
    .bind(attempt as i32)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if details.is_some() {
        sqlx::query(
            "INSERT INTO activity_heartbeats (saga_id, step, attempt, details, received_at)
             SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM sagas WHERE id = $1)
             ON CONFLICT (saga_id, step) DO UPDATE
             SET attempt = EXCLUDED.attempt, details = EXCLUDED.details, received_at = EXCLUDED.received_at
             WHERE activity_heartbeats.attempt <= EXCLUDED.attempt",
        )
        .bind(saga.0)
        .bind(step.0 as i32)
        .bind(attempt as i32)
        .bind(details)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    Ok(moved > 0)
}

/// The details of the last heartbeat of `step`, for its next attempt.
pub async fn last_heartbeat_details(
    tx: &mut PgConnection,
    saga: SagaId,
    step: StepSeq,
) -> Result<Option<serde_json::Value>, sqlx::Error> {
    sqlx::query_scalar("SELECT details FROM activity_heartbeats WHERE saga_id = $1 AND step = $2")
        .bind(saga.0)
        .bind(step.0 as i32)
        .fetch_optional(&mut *tx)
        .await
        .map(Option::flatten)
}

/// Asks for `saga` to be resumed: a `resume` timer due at once, which any orchestrator replica
/// fires. Returns whether the saga exists and is stuck.
pub async fn request_resume(db: impl PgExecutor<'_>, saga: SagaId) -> Result<bool, sqlx::Error> {
    let armed = sqlx::query(
        "INSERT INTO timers (saga_id, key, attempt, fire_at)
         SELECT id, 'resume', 0, now() FROM sagas WHERE id = $1 AND status = 'stuck'
         ON CONFLICT (saga_id, key) DO UPDATE SET fire_at = EXCLUDED.fire_at",
    )
    .bind(saga.0)
    .execute(db)
    .await?
    .rows_affected();
    Ok(armed > 0)
}

/// Asks for every stuck saga of `saga_type` to be resumed; returns how many.
pub async fn request_resume_all_stuck(
    db: impl PgExecutor<'_>,
    saga_type: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "INSERT INTO timers (saga_id, key, attempt, fire_at)
         SELECT id, 'resume', 0, now() FROM sagas WHERE saga_type = $1 AND status = 'stuck'
         ON CONFLICT (saga_id, key) DO UPDATE SET fire_at = EXCLUDED.fire_at",
    )
    .bind(saga_type)
    .execute(db)
    .await?
    .rows_affected())
}
