use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use chrono::{DateTime, Utc};
use sagaflow_contracts::{ActivityOptions, SagaEvent, SagaId};
use serde_json::Value;

use crate::activation::SagaEnd;
use crate::activity::AttemptEnd;
use crate::command::{Command, Issued};
use crate::registry::SagaFuture;
use crate::replay::Divergence;
use crate::state::{lock, RunState, Waiter};
use crate::{
    Activation, Effect, Fact, FactRejected, InvalidInput, SagaContext, SagaDefinition, TimerKey,
};

/// One live saga: its suspended code and the state machines of its awaitables. Kept in the
/// orchestrator's cache between messages so that advancing a saga does not replay it.
pub struct SagaRun {
    pub(crate) state: Arc<Mutex<RunState>>,
    /// `None` once the saga code has returned.
    pub(crate) future: Option<SagaFuture>,
}

/// The saga can no longer run: its code contradicts its history, panicked, or waits for
/// nothing Sagaflow can wake. The saga is parked (`stuck`) with this reason until its code is
/// fixed and it is resumed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    #[error("non-determinism: {0}")]
    NonDeterminism(Divergence),
    #[error("the saga code panicked: {0}")]
    Panicked(String),
    /// Nothing the code awaits can happen: it awaits something that is not a Sagaflow
    /// awaitable (a tokio timer, a channel, I/O), which will never wake it.
    #[error("the saga code waits for something that is not a Sagaflow awaitable (await only ctx.activity, ctx.sleep, ctx.select and futures built from them)")]
    Blocked,
}

impl SagaRun {
    /// Starts a new saga at `at`: records `SagaStarted` and runs the code until it waits.
    pub fn start(
        definition: &SagaDefinition,
        saga_id: SagaId,
        input: Value,
        start_key: Option<String>,
        at: DateTime<Utc>,
        defaults: ActivityOptions,
    ) -> Result<(Self, Activation), InvalidInput> {
        let mut run = Self::new(definition, saga_id, input.clone(), at, defaults)?;
        let mut activation = Activation {
            events: vec![SagaEvent::SagaStarted {
                saga_type: definition.name().to_owned(),
                input,
                start_key,
            }],
            ..Activation::default()
        };
        run.run_code(&mut activation);
        Ok((run, activation))
    }

    pub(crate) fn new(
        definition: &SagaDefinition,
        saga_id: SagaId,
        input: Value,
        at: DateTime<Utc>,
        defaults: ActivityOptions,
    ) -> Result<Self, InvalidInput> {
        let state = Arc::new(Mutex::new(RunState::new(saga_id, at, defaults)));
        let future = definition.start(SagaContext::new(state.clone()), input)?;
        Ok(SagaRun {
            state,
            future: Some(future),
        })
    }

    /// Handles one fact at `at`: decides what it means for the awaitable it concerns (by the
    /// step's retry policy, say), records that, and runs the code if it can go on.
    ///
    /// Returns `Ok(None)` when the fact changes nothing (a duplicate result, a timer that is
    /// no longer current), and [`FactRejected`] when it does not belong to this saga.
    pub fn handle(
        &mut self,
        fact: Fact,
        at: DateTime<Utc>,
    ) -> Result<Option<Activation>, FactRejected> {
        let facts = {
            let mut state = lock(&self.state);
            state.now = at;
            decide(&state, fact)?
        };
        if facts.is_empty() {
            return Ok(None);
        }
        let mut activation = Activation::default();
        for event in facts {
            self.apply_fact(&event, &mut activation.effects)
                .map_err(FactRejected)?;
            activation.events.push(event);
        }
        self.run_code(&mut activation);
        Ok(Some(activation))
    }

    /// Runs the code and records what it issued into `activation`.
    pub(crate) fn run_code(&mut self, activation: &mut Activation) {
        match self.poll() {
            Ok(issued) => {
                for Issued { command, .. } in issued {
                    self.command_effects(&command, &mut activation.effects);
                    match &command {
                        Command::CompleteSaga { output } => {
                            activation.end = Some(SagaEnd::Completed(output.clone()))
                        }
                        Command::FailSaga { error } => {
                            activation.end = Some(SagaEnd::Failed(error.clone()))
                        }
                        _ => {}
                    }
                    activation.events.push(command.to_event());
                }
            }
            Err(error) => activation.stuck = Some(error),
        }
    }

    /// Moves the state machines by a recorded fact; `effects` gets what the orchestrator must
    /// do about it. The same code runs live and on replay (which drops the effects).
    pub(crate) fn apply_fact(
        &mut self,
        event: &SagaEvent,
        effects: &mut Vec<Effect>,
    ) -> Result<(), String> {
        let mut state = lock(&self.state);
        match event {
            SagaEvent::ActivityCompleted { step, .. }
            | SagaEvent::ActivityFailed { step, .. }
            | SagaEvent::ActivityAttemptFailed { step, .. }
            | SagaEvent::ActivityRetried { step, .. }
            | SagaEvent::ActivityResultIgnored { step, .. } => {
                let step = *step;
                let now = state.now;
                let machine = state.activities.get_mut(&step).ok_or_else(|| {
                    format!(
                        "{} for step {step}, which the saga code never scheduled",
                        event.kind()
                    )
                })?;
                let resolved = machine
                    .apply(event)
                    .map_err(|e| format!("step {step}: {e}"))?;
                match event {
                    SagaEvent::ActivityAttemptFailed {
                        attempt, retry_at, ..
                    } => {
                        effects.push(Effect::ArmTimer {
                            key: TimerKey::Retry(step),
                            attempt: *attempt,
                            fire_at: *retry_at,
                            period_ms: None,
                        });
                    }
                    SagaEvent::ActivityRetried { attempt, .. } => attempt_effects(
                        step,
                        &machine.activity,
                        *attempt,
                        machine.input.clone(),
                        &machine.options,
                        now,
                        effects,
                    ),
                    _ => {}
                }
                if resolved {
                    effects.push(Effect::CancelStepTimers { step });
                    state.wake(Waiter::Activity(step));
                }
                Ok(())
            }
            SagaEvent::TimerFired { timer } => {
                let machine = state.timers.get_mut(timer).ok_or_else(|| {
                    format!("TimerFired for timer {timer}, which the saga code never started")
                })?;
                machine
                    .apply_fired()
                    .map_err(|e| format!("timer {timer}: {e}"))?;
                state.wake(Waiter::Timer(*timer));
                Ok(())
            }
            SagaEvent::SagaResumed {} => Ok(()),
            other => Err(format!("{} is not a fact", other.kind())),
        }
    }

    /// What the orchestrator must do about a command the code issued.
    fn command_effects(&self, command: &Command, effects: &mut Vec<Effect>) {
        let now = lock(&self.state).now;
        match command {
            Command::ScheduleActivity {
                step,
                activity,
                input,
                options,
                ..
            } => {
                attempt_effects(*step, activity, 1, input.clone(), options, now, effects);
                if let Some(timeout) = options.schedule_to_close_timeout_ms {
                    effects.push(Effect::ArmTimer {
                        key: TimerKey::ScheduleToClose(*step),
                        attempt: 0,
                        fire_at: after(now, timeout),
                        period_ms: None,
                    });
                }
            }
            Command::StartTimer { timer, fire_at } => effects.push(Effect::ArmTimer {
                key: TimerKey::Sleep(*timer),
                attempt: 0,
                fire_at: *fire_at,
                period_ms: None,
            }),
            Command::CompleteSaga { .. } | Command::FailSaga { .. } => {}
        }
    }

    /// Runs the saga code until it waits, and returns the commands it issued (its end
    /// included).
    pub(crate) fn poll(&mut self) -> Result<Vec<Issued>, RunError> {
        if let Some(future) = self.future.as_mut() {
            let mut cx = Context::from_waker(Waker::noop());
            let polled =
                std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)))
                    .map_err(|panic| RunError::Panicked(panic_message(&*panic)))?;
            if let Poll::Ready(result) = polled {
                self.future = None;
                lock(&self.state).issued.push(Issued {
                    command: match result {
                        Ok(output) => Command::CompleteSaga { output },
                        Err(error) => Command::FailSaga { error },
                    },
                    location: None,
                });
            }
        }
        let mut state = lock(&self.state);
        let issued = std::mem::take(&mut state.issued);
        if self.future.is_some() && issued.is_empty() && !state.has_pending_awaitables() {
            return Err(RunError::Blocked);
        }
        Ok(issued)
    }

    /// Whether the saga code has returned.
    pub fn is_finished(&self) -> bool {
        self.future.is_none()
    }

    /// Whether the saga waits only for durable timers (no activity in flight): such a run need
    /// not be kept in memory, it is replayed when a timer fires.
    pub fn waits_only_on_timers(&self) -> bool {
        let state = lock(&self.state);
        !state.activities.values().any(|m| m.is_pending())
    }

    /// The activity of `step`, if the code scheduled it.
    pub fn activity_of(&self, step: sagaflow_contracts::StepSeq) -> Option<String> {
        lock(&self.state)
            .activities
            .get(&step)
            .map(|m| m.activity.clone())
    }
}

/// The events that record `fact`, decided by the state machine it concerns.
fn decide(state: &RunState, fact: Fact) -> Result<Vec<SagaEvent>, FactRejected> {
    let machine = |step| {
        state
            .activities
            .get(&step)
            .ok_or_else(|| FactRejected(format!("saga {} has no step {step}", state.saga_id)))
    };
    Ok(match fact {
        Fact::ActivityResult {
            step,
            activity,
            attempt,
            outcome,
        } => {
            let machine = machine(step)?;
            if let Some(activity) = activity.filter(|a| *a != machine.activity) {
                return Err(FactRejected(format!(
                    "step {step} of saga {} runs {:?}, not {activity:?}",
                    state.saga_id, machine.activity
                )));
            }
            machine.decide_attempt_end(step, attempt, AttemptEnd::Result(outcome), state.now)
        }
        Fact::TimerFired { key, attempt } => match key {
            TimerKey::Sleep(timer) => match state.timers.get(&timer) {
                Some(machine) => machine.decide_fired(timer),
                None => Vec::new(),
            },
            TimerKey::Retry(step) => machine(step)?.decide_retry(step, attempt),
            TimerKey::StartToClose(step) | TimerKey::Heartbeat(step) => {
                let machine = machine(step)?;
                let (which, timeout) = match key {
                    TimerKey::Heartbeat(_) => ("heartbeat", machine.options.heartbeat_timeout_ms),
                    _ => ("start-to-close", machine.options.start_to_close_timeout_ms),
                };
                let message = format!(
                    "attempt {attempt} exceeded its {which} timeout of {} ms",
                    timeout.unwrap_or_default()
                );
                machine.decide_attempt_end(step, attempt, AttemptEnd::TimedOut(message), state.now)
            }
            TimerKey::ScheduleToClose(step) => machine(step)?.decide_schedule_to_close(step),
            TimerKey::Resume => vec![SagaEvent::SagaResumed {}],
        },
        Fact::Resumed => vec![SagaEvent::SagaResumed {}],
    })
}

/// Sending `attempt` of a step, with its timeouts.
fn attempt_effects(
    step: sagaflow_contracts::StepSeq,
    activity: &str,
    attempt: u32,
    input: Value,
    options: &ActivityOptions,
    now: DateTime<Utc>,
    effects: &mut Vec<Effect>,
) {
    effects.push(Effect::SendActivityCommand {
        step,
        activity: activity.to_owned(),
        attempt,
        input,
        heartbeat_timeout_ms: options.heartbeat_timeout_ms,
    });
    if let Some(timeout) = options.start_to_close_timeout_ms {
        effects.push(Effect::ArmTimer {
            key: TimerKey::StartToClose(step),
            attempt,
            fire_at: after(now, timeout),
            period_ms: None,
        });
    }
    if let Some(timeout) = options.heartbeat_timeout_ms {
        effects.push(Effect::ArmTimer {
            key: TimerKey::Heartbeat(step),
            attempt,
            fire_at: after(now, timeout),
            period_ms: Some(timeout),
        });
    }
}

fn after(now: DateTime<Utc>, millis: u64) -> DateTime<Utc> {
    now.checked_add_signed(chrono::Duration::milliseconds(
        i64::try_from(millis).unwrap_or(i64::MAX),
    ))
    .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The message of a caught panic.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}
