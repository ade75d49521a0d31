use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use sagaflow_contracts::{ActivityError, SagaEvent, SagaId, StepSeq};
use serde_json::Value;

use super::context::{lock, RunState};
use super::registry::SagaFuture;
use super::{Command, InvalidInput, SagaContext, SagaDefinition, SagaRegistry};

/// One live saga: its suspended code and what it has seen. Kept in the cache between messages so
/// that advancing a saga does not replay it.
pub struct SagaRun {
    state: Arc<Mutex<RunState>>,
    /// `None` once the saga code has returned.
    future: Option<SagaFuture>,
}

/// The saga can no longer advance: its code contradicts its history or panicked. The saga is
/// parked (`Stuck`) with this reason until its code is fixed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    #[error("non-determinism: {0}")]
    NonDeterminism(String),
    #[error("the saga code panicked: {0}")]
    Panicked(String),
    /// Every step has its result and the code still waits: it awaits something that is not a
    /// Sagaflow step (a tokio timer, a channel, I/O), which will never wake it.
    #[error("the saga code waits for something that is not a Sagaflow step (await only ctx.activity and futures built from it)")]
    Blocked,
}

/// Rebuilding a saga from its history failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplayError {
    /// No saga of this type is registered with this orchestrator; register it, then resume.
    #[error("no saga type {0:?} is registered")]
    UnknownSagaType(String),
    /// The stored history is not one the engine writes; it was changed by hand or corrupted.
    #[error("invalid history: {0}")]
    InvalidHistory(String),
    /// The recorded input no longer fits the saga's input type.
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    /// The saga code does not reproduce its history.
    #[error(transparent)]
    Run(#[from] RunError),
}

impl SagaRun {
    /// Starts a new saga: builds the code's future; nothing runs until [`SagaRun::advance`].
    pub fn start(
        definition: &SagaDefinition,
        saga_id: SagaId,
        input: Value,
    ) -> Result<Self, InvalidInput> {
        let state = Arc::new(Mutex::new(RunState::new(saga_id)));
        let future = definition.start(SagaContext::new(state.clone()), input)?;
        Ok(SagaRun {
            state,
            future: Some(future),
        })
    }

    /// Rebuilds a saga by running its code against its whole `history`, feeding results in the
    /// order they were recorded. Returns the run, ready for the next result, and every command
    /// the code issued on the way; each of them matched the history.
    pub fn replay(
        registry: &SagaRegistry,
        saga_id: SagaId,
        history: &[SagaEvent],
    ) -> Result<(Self, Vec<Command>), ReplayError> {
        let Some(SagaEvent::SagaStarted {
            saga_type, input, ..
        }) = history.first()
        else {
            return Err(ReplayError::InvalidHistory(
                "the first event is not SagaStarted".into(),
            ));
        };
        let definition = registry
            .get(saga_type)
            .ok_or_else(|| ReplayError::UnknownSagaType(saga_type.clone()))?;
        let mut run = SagaRun::start(definition, saga_id, input.clone())?;

        let mut recorded_steps = BTreeMap::new();
        let mut recorded_end = None;
        for event in history {
            match event {
                SagaEvent::ActivityScheduled { step, activity, .. } => {
                    recorded_steps.insert(*step, activity.clone());
                }
                SagaEvent::SagaCompleted { .. } | SagaEvent::SagaFailed { .. } => {
                    recorded_end = Command::recorded_in(event);
                }
                _ => {}
            }
        }
        lock(&run.state).recorded = recorded_steps.clone();

        let mut issued = run.advance()?;
        for event in &history[1..] {
            let (step, result) = match event {
                SagaEvent::ActivityCompleted { step, output } => (*step, Ok(output.clone())),
                SagaEvent::ActivityFailed { step, error } => (*step, Err(error.clone())),
                SagaEvent::SagaStarted { .. } => {
                    return Err(ReplayError::InvalidHistory(
                        "SagaStarted appears twice".into(),
                    ))
                }
                _ => continue,
            };
            issued.extend(run.on_result(step, result)?);
        }

        let diverged = |reason: String| Err(RunError::NonDeterminism(reason).into());
        for command in &issued {
            match command {
                Command::ScheduleActivity { step, activity, .. } => {
                    if !recorded_steps.contains_key(step) {
                        return diverged(format!(
                            "the saga code now runs activity {activity:?} as step {step}, \
                             which the history does not have"
                        ));
                    }
                }
                Command::CompleteSaga { .. } | Command::FailSaga { .. } => {
                    let same_end = recorded_end.as_ref().is_some_and(|end| {
                        std::mem::discriminant(end) == std::mem::discriminant(command)
                    });
                    if !same_end {
                        return diverged(format!(
                            "the saga code now ends with {} where the history has {}",
                            command.to_event().kind(),
                            recorded_end
                                .as_ref()
                                .map_or("no end", |end| end.to_event().kind())
                        ));
                    }
                }
            }
        }
        let next_step = lock(&run.state).next_step;
        if let Some((step, activity)) = recorded_steps.range(StepSeq(next_step)..).next() {
            return diverged(format!(
                "the history has step {step} (activity {activity:?}), which the saga code no longer reaches"
            ));
        }
        if recorded_end.is_some() && !run.is_finished() {
            return diverged(
                "the history records the saga's end, which the saga code no longer reaches".into(),
            );
        }
        Ok((run, issued))
    }

    /// Runs the saga code until it waits for something it does not have yet, and returns the
    /// commands it issued.
    pub fn advance(&mut self) -> Result<Vec<Command>, RunError> {
        if let Some(future) = self.future.as_mut() {
            let mut cx = Context::from_waker(Waker::noop());
            let polled =
                std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)))
                    .map_err(|panic| RunError::Panicked(panic_message(&*panic)))?;
            if let Poll::Ready(result) = polled {
                self.future = None;
                lock(&self.state).issued.push(match result {
                    Ok(output) => Command::CompleteSaga { output },
                    Err(error) => Command::FailSaga { error },
                });
            }
        }
        let mut state = lock(&self.state);
        if let Some(reason) = &state.divergence {
            return Err(RunError::NonDeterminism(reason.clone()));
        }
        let waits_for_nothing = state.issued.is_empty()
            && state
                .scheduled
                .keys()
                .all(|step| state.results.contains_key(step));
        if self.future.is_some() && waits_for_nothing {
            return Err(RunError::Blocked);
        }
        Ok(std::mem::take(&mut state.issued))
    }

    /// Gives the saga the result of `step` and advances it.
    pub fn on_result(
        &mut self,
        step: StepSeq,
        result: Result<Value, ActivityError>,
    ) -> Result<Vec<Command>, RunError> {
        let waiting = {
            let mut state = lock(&self.state);
            state.results.insert(step, result);
            state.wakers.remove(&step)
        };
        // Combinators that poll only woken children (`FuturesUnordered`, and so `join_all` of
        // many futures) must learn that this step can make progress.
        if let Some(waker) = waiting {
            waker.wake();
        }
        self.advance()
    }

    /// Whether the saga code has returned.
    pub fn is_finished(&self) -> bool {
        self.future.is_none()
    }

    /// The activity scheduled as `step`, if any.
    pub fn scheduled_activity(&self, step: StepSeq) -> Option<String> {
        lock(&self.state).scheduled.get(&step).cloned()
    }

    /// Whether the result of `step` has been seen.
    pub fn has_result(&self, step: StepSeq) -> bool {
        lock(&self.state).results.contains_key(&step)
    }
}

/// The message of a caught panic.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}
