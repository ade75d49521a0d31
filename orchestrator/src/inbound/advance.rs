use sagaflow_amqp::OutgoingMessage;
use sagaflow_contracts::{
    headers, ActivityCommand, IdempotencyKey, SagaEvent, SagaId, SagaStatus, StepSeq,
};
use serde_json::{json, Value};

use super::{ProcessError, Processor};
use crate::engine::{CachedSaga, Command, RunError, SagaRun};
use crate::store::{self, SagaUpdate, Tx};
use sagaflow_process::crash_point;

impl Processor {
    /// Records `inbound` and what the saga did about it (`advanced`) as events from `first_seq`
    /// on, queues the activity commands in the outbox, and commits. Then the run goes (back)
    /// into the cache and the relay is woken.
    pub(crate) async fn commit_advance(
        &self,
        mut tx: Tx,
        saga: SagaId,
        first_seq: i64,
        inbound: SagaEvent,
        run: SagaRun,
        advanced: Result<Vec<Command>, RunError>,
    ) -> Result<(), ProcessError> {
        let commands = match advanced {
            Ok(commands) => commands,
            Err(error) => {
                return self
                    .park(tx, saga, first_seq, Some(inbound), error.to_string())
                    .await
            }
        };

        let mut events = Vec::with_capacity(1 + commands.len());
        events.push(inbound);
        events.extend(commands.iter().map(Command::to_event));
        let messages: Vec<OutgoingMessage> = commands
            .iter()
            .filter_map(|command| match command {
                Command::ScheduleActivity {
                    step,
                    activity,
                    input,
                } => Some(self.activity_command(saga, *step, activity, input)),
                _ => None,
            })
            .collect();
        let (status, output, error) = outcome(&commands);
        let next_event_seq = first_seq + events.len() as i64;

        store::append_events(&mut tx, saga, first_seq, &events).await?;
        store::enqueue_outbox(&mut tx, saga, &messages).await?;
        let update = SagaUpdate {
            status,
            next_event_seq,
            output: output.as_ref(),
            error: error.as_ref(),
        };
        store::update_saga(&mut tx, saga, update).await?;
        tx.commit().await?;

        crash_point("orchestrator.after-commit");
        // Per-activity crash points cost a string per command: only in builds that have them.
        #[cfg(feature = "failpoints")]
        for command in &commands {
            if let Command::ScheduleActivity { activity, .. } = command {
                crash_point(&format!("orchestrator.after-commit.{activity}"));
            }
        }
        if !messages.is_empty() {
            self.outbox_ready.notify_one();
        }
        if status == SagaStatus::Running {
            self.cache.put(
                saga,
                CachedSaga {
                    run,
                    next_event_seq,
                },
            );
        } else {
            tracing::info!(%saga, %status, "saga finished");
        }
        Ok(())
    }

    /// Parks a saga whose code no longer replays its history (or panicked, or blocks), keeping
    /// the inbound event, if any, in its history.
    pub(crate) async fn park(
        &self,
        mut tx: Tx,
        saga: SagaId,
        first_seq: i64,
        inbound: Option<SagaEvent>,
        reason: String,
    ) -> Result<(), ProcessError> {
        let events: Vec<SagaEvent> = inbound.into_iter().collect();
        store::append_events(&mut tx, saga, first_seq, &events).await?;
        let error = json!({ "reason": reason });
        let update = SagaUpdate {
            status: SagaStatus::Stuck,
            next_event_seq: first_seq + events.len() as i64,
            output: None,
            error: Some(&error),
        };
        store::update_saga(&mut tx, saga, update).await?;
        tx.commit().await?;
        tracing::error!(%saga, reason, "saga is stuck");
        Ok(())
    }

    fn activity_command(
        &self,
        saga: SagaId,
        step: StepSeq,
        activity: &str,
        input: &Value,
    ) -> OutgoingMessage {
        let attempt = 1;
        let command = ActivityCommand {
            saga_id: saga,
            step,
            activity: activity.to_owned(),
            attempt,
            idempotency_key: IdempotencyKey::for_step(saga, step),
            input: input.clone(),
        };
        OutgoingMessage {
            exchange: String::new(),
            routing_key: self.topology.activity_queue(activity),
            message_id: format!("{saga}/{step}/{attempt}"),
            message_type: headers::message_type::ACTIVITY_COMMAND.to_owned(),
            headers: vec![
                (headers::SAGA_ID.to_owned(), saga.to_string()),
                (headers::STEP.to_owned(), step.to_string()),
                (headers::ATTEMPT.to_owned(), attempt.to_string()),
                (
                    headers::IDEMPOTENCY_KEY.to_owned(),
                    command.idempotency_key.to_string(),
                ),
            ],
            body: serde_json::to_vec(&command).expect("an ActivityCommand serializes"),
        }
    }
}

/// The saga's status after `commands`, with its output or error if it ended.
fn outcome(commands: &[Command]) -> (SagaStatus, Option<Value>, Option<Value>) {
    for command in commands {
        match command {
            Command::CompleteSaga { output } => {
                return (SagaStatus::Completed, Some(output.clone()), None)
            }
            Command::FailSaga { error } => {
                return (SagaStatus::Failed, None, serde_json::to_value(error).ok())
            }
            Command::ScheduleActivity { .. } => {}
        }
    }
    (SagaStatus::Running, None, None)
}
