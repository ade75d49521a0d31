use sagaflow_amqp::Delivery;
use sagaflow_contracts::{ActivityOutcome, ActivityResult, SagaEvent, SagaStatus};
use tracing::Instrument;

use super::{Disposition, ProcessError, Processor};
use crate::engine::{CachedSaga, ReplayError, SagaRun};
use crate::store;

impl Processor {
    /// An activity result: recorded in the saga's history, then the saga advances.
    pub(crate) async fn record_result(
        &self,
        delivery: &Delivery,
    ) -> Result<Disposition, ProcessError> {
        let result: ActivityResult =
            match sagaflow_contracts::decode::activity_result(&delivery.data) {
                Ok(result) => result,
                Err(e) => return Ok(Disposition::DeadLetter(e.to_string())),
            };
        let span = tracing::info_span!(
            "record_result",
            saga_id = %result.saga_id,
            step = %result.step,
            activity = %result.activity,
        );
        self.advance_with_result(result).instrument(span).await
    }

    async fn advance_with_result(
        &self,
        result: ActivityResult,
    ) -> Result<Disposition, ProcessError> {
        let mut tx = self.pool.begin().await?;
        let Some(saga) = store::lock_saga(&mut tx, result.saga_id).await? else {
            return Ok(Disposition::DeadLetter(format!(
                "no saga {} exists",
                result.saga_id
            )));
        };
        match saga.status {
            SagaStatus::Running => {}
            SagaStatus::Stuck => return self.keep_for_resume(tx, &saga, &result).await,
            SagaStatus::Completed | SagaStatus::Failed => {
                tracing::info!(status = %saga.status, "result for a saga that has ended; ignored");
                return Ok(Disposition::Ack);
            }
        }
        let cached = self
            .cache
            .take(saga.id)
            .filter(|cached| cached.next_event_seq == saga.next_event_seq);
        let mut run = match cached {
            Some(CachedSaga { run, .. }) => run,
            None => {
                let history = store::load_events(&mut *tx, saga.id).await?;
                match SagaRun::replay(&self.registry, saga.id, &history) {
                    Ok((run, _)) => run,
                    Err(ReplayError::UnknownSagaType(saga_type)) => {
                        return Err(ProcessError::UnknownSagaType(saga_type))
                    }
                    Err(error) => {
                        let inbound =
                            (!has_result(&history, &result)).then(|| result_event(&result));
                        self.park(tx, saga.id, saga.next_event_seq, inbound, error.to_string())
                            .await?;
                        return Ok(Disposition::Ack);
                    }
                }
            }
        };

        match run.scheduled_activity(result.step) {
            None => {
                return Ok(Disposition::DeadLetter(format!(
                    "saga {} has no step {}",
                    saga.id, result.step
                )))
            }
            Some(activity) if activity != result.activity => {
                return Ok(Disposition::DeadLetter(format!(
                    "step {} of saga {} runs {activity:?}, not {:?}",
                    result.step, saga.id, result.activity
                )))
            }
            Some(_) => {}
        }
        if run.has_result(result.step) {
            tracing::debug!("duplicate result; the step is already resolved");
            self.cache.put(
                saga.id,
                CachedSaga {
                    run,
                    next_event_seq: saga.next_event_seq,
                },
            );
            return Ok(Disposition::Ack);
        }

        let event = result_event(&result);
        let advanced = run.on_result(
            result.step,
            match result.outcome {
                ActivityOutcome::Completed { output } => Ok(output),
                ActivityOutcome::Failed { error } => Err(error),
            },
        );
        self.commit_advance(tx, saga.id, saga.next_event_seq, event, run, advanced)
            .await?;
        Ok(Disposition::Ack)
    }
}

impl Processor {
    /// A stuck saga does not advance, but its results are kept in its history, so that nothing
    /// is lost when its code is fixed and it is replayed.
    async fn keep_for_resume(
        &self,
        mut tx: store::Tx,
        saga: &store::SagaRow,
        result: &ActivityResult,
    ) -> Result<Disposition, ProcessError> {
        let history = store::load_events(&mut *tx, saga.id).await?;
        let resolved = has_result(&history, result);
        if !resolved {
            store::append_events(
                &mut tx,
                saga.id,
                saga.next_event_seq,
                &[result_event(result)],
            )
            .await?;
            let update = store::SagaUpdate {
                status: SagaStatus::Stuck,
                next_event_seq: saga.next_event_seq + 1,
                output: None,
                error: saga.error.as_ref(),
            };
            store::update_saga(&mut tx, saga.id, update).await?;
            tx.commit().await?;
            tracing::warn!("result kept in the history of a stuck saga");
        }
        Ok(Disposition::Ack)
    }
}

/// Whether `history` already records a result for the step of `result`.
fn has_result(history: &[SagaEvent], result: &ActivityResult) -> bool {
    history.iter().any(|event| {
        matches!(event,
            SagaEvent::ActivityCompleted { step, .. } | SagaEvent::ActivityFailed { step, .. }
                if *step == result.step)
    })
}

fn result_event(result: &ActivityResult) -> SagaEvent {
    match &result.outcome {
        ActivityOutcome::Completed { output } => SagaEvent::ActivityCompleted {
            step: result.step,
            output: output.clone(),
        },
        ActivityOutcome::Failed { error } => SagaEvent::ActivityFailed {
            step: result.step,
            error: error.clone(),
        },
    }
}
