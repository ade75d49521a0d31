use chrono::{DateTime, Utc};
use sagaflow_contracts::SagaId;
use sagaflow_engine::{Fact, TimerKey};

use super::work::Work;
use super::{Disposition, ProcessError, Processor};
use crate::store::{self, TimerRow};

/// Fires the timers due now, up to `batch`, one transaction each; returns how many were due.
pub(crate) async fn fire_due_timers(
    processor: &Processor,
    batch: i64,
) -> Result<usize, ProcessError> {
    let due = processor
        .within_deadline(store::due_timers(&processor.pool, Utc::now(), batch))
        .await??;
    for timer in &due {
        let fired = processor.within_deadline(processor.fire_timer(timer)).await;
        if let Err(error) = fired.and_then(|fired| fired) {
            tracing::warn!(%error, timer = timer.key, saga_id = %timer.saga_id, "firing a timer failed; it is tried again");
        }
    }
    Ok(due.len())
}

impl Processor {
    /// One due timer through the one path, which locks the saga, then the timer row (the order
    /// every path takes); if another replica fired it meanwhile, or a heartbeat moved it,
    /// nothing happens.
    async fn fire_timer(&self, timer: &TimerRow) -> Result<(), ProcessError> {
        let saga_id = SagaId(timer.saga_id);
        let key: TimerKey = match timer.key.parse() {
            Ok(key) => key,
            Err(reason) => {
                tracing::error!(
                    reason,
                    "a timer row this version does not know; deleting it"
                );
                let mut tx = self.pool.begin().await?;
                store::delete_timer(&mut tx, timer.id).await?;
                tx.commit().await?;
                return Ok(());
            }
        };
        let fact = match key {
            TimerKey::Resume => Fact::Resumed,
            key => Fact::TimerFired {
                key,
                attempt: u32::try_from(timer.attempt).unwrap_or(0),
            },
        };
        let disposition = self
            .advance(&mut Work::Alone(&self.pool), saga_id, fact, Some(timer.id))
            .await?;
        if let Disposition::DeadLetter(reason) = disposition {
            tracing::warn!(%saga_id, timer = timer.key, reason, "timer did not apply");
        }
        Ok(())
    }
}

/// Tells the timer claimer when the earliest timer this process armed is due, so that it wakes
/// for it, and only for it: a timer due after the claimer's next wake-up costs no query.
#[derive(Default)]
pub(crate) struct TimerWakeup {
    earliest: std::sync::Mutex<Option<DateTime<Utc>>>,
    armed: tokio::sync::Notify,
}

impl TimerWakeup {
    /// A commit armed a timer due at `fire_at`.
    pub(crate) fn armed(&self, fire_at: DateTime<Utc>) {
        let mut earliest = self
            .earliest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if earliest.is_none_or(|earliest| fire_at < earliest) {
            *earliest = Some(fire_at);
            self.armed.notify_one();
        }
    }

    /// Waits until `wake_at`, or until a timer due before it is armed; returns when to wake up
    /// now (never later than `wake_at`).
    pub(crate) async fn wait(&self, wake_at: tokio::time::Instant) -> tokio::time::Instant {
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(wake_at) => return wake_at,
                _ = self.armed.notified() => {
                    let armed = self
                        .earliest
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .take();
                    if let Some(fire_at) = armed {
                        let due_in = (fire_at - Utc::now()).to_std().unwrap_or_default();
                        let due_at = tokio::time::Instant::now() + due_in;
                        if due_at < wake_at {
                            return due_at;
                        }
                    }
                }
            }
        }
    }
}
