use chrono::Utc;
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
