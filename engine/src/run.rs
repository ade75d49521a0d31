use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use chrono::{DateTime, Utc};
use sagaflow_contracts::{ActivityOptions, SagaEvent, SagaFailure, SagaId};
use serde_json::Value;

use crate::activation::SagaEnd;
use crate::activity::{ActivityState, AttemptEnd};
use crate::command::{Command, Issued};
use crate::compensation::{has_compensations, next_compensation, Next};
use crate::registry::SagaFuture;
use crate::replay::Divergence;
use crate::state::{lock, Phase, RunState, Waiter};
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
            if let SagaEvent::SagaTerminated { reason } = &event {
                activation.end = Some(SagaEnd::Terminated {
                    reason: reason.clone(),
                });
            }
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
                    if let Some(end) = end_of(&command) {
                        activation.end = Some(end);
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
                let completed_with_compensation =
                    matches!(event, SagaEvent::ActivityCompleted { .. })
                        && machine.compensation.is_some()
                        && machine.compensates.is_none();
                if completed_with_compensation {
                    state.completed_order.push(step);
                }
                if resolved {
                    effects.push(Effect::CancelStepTimers { step });
                    state.wake(Waiter::Activity(step));
                }
                Ok(())
            }
            SagaEvent::SignalReceived {
                name,
                payload,
                signal_id,
            } => {
                state.signal_ids.insert(signal_id.clone());
                let received = state.signals.entry(name.clone()).or_default();
                received.push(payload.clone());
                let index = received.len() - 1;
                state.wake(Waiter::Signal(name.clone(), index));
                Ok(())
            }
            SagaEvent::CancelRequested { reason } => {
                state.cancelled = Some(reason.clone());
                let error = sagaflow_contracts::ActivityError::permanent(
                    sagaflow_contracts::error_kinds::CANCELLED,
                    format!("the saga was cancelled: {reason}"),
                );
                // A step waiting to retry does not try again; one in flight is told to stop
                // (if it completes anyway, it is compensated).
                for (step, machine) in state.activities.iter_mut() {
                    match machine.state {
                        ActivityState::BackingOff { failed_attempt, .. } => {
                            machine.state = ActivityState::Failed {
                                error: error.clone(),
                                attempt: failed_attempt,
                            };
                            effects.push(Effect::CancelStepTimers { step: *step });
                        }
                        ActivityState::Running { attempt } if machine.compensates.is_none() => {
                            effects.push(Effect::CancelActivity {
                                step: *step,
                                activity: machine.activity.clone(),
                                attempt,
                                reason: reason.clone(),
                            })
                        }
                        _ => {}
                    }
                }
                state.wake_all();
                Ok(())
            }
            SagaEvent::CompensationRetried {} => {
                let Phase::CompensationFailed { error, cancelled } = state.phase.clone() else {
                    return Err("CompensationRetried while no compensation failed".to_owned());
                };
                state.compensation_round += 1;
                state.phase = Phase::Compensating { error, cancelled };
                Ok(())
            }
            SagaEvent::SagaTerminated { reason } => {
                for (step, machine) in &state.activities {
                    if let ActivityState::Running { attempt } = machine.state {
                        effects.push(Effect::CancelActivity {
                            step: *step,
                            activity: machine.activity.clone(),
                            attempt,
                            reason: reason.clone(),
                        });
                    }
                }
                state.phase = Phase::Ended;
                drop(state);
                // Nothing more runs: the code is dropped where it waits.
                self.future = None;
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
            Command::MarkPatch { .. }
            | Command::CompleteSaga { .. }
            | Command::FailSaga { .. }
            | Command::EndCompensated { .. }
            | Command::FailCompensation { .. }
            | Command::EndCancelled { .. } => {}
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
                code_returned(&mut lock(&self.state), result);
            }
        }
        let mut state = lock(&self.state);
        drive_compensation(&mut state);
        let issued = std::mem::take(&mut state.issued);
        if self.future.is_some() && issued.is_empty() && !state.has_pending_awaitables() {
            return Err(RunError::Blocked);
        }
        Ok(issued)
    }

    /// Whether the saga has ended: nothing will ever run for it again.
    pub fn is_finished(&self) -> bool {
        lock(&self.state).phase == Phase::Ended
    }

    /// Whether the saga waits only for durable timers (no activity in flight): such a run need
    /// not be kept in memory, it is replayed when a timer fires.
    pub fn waits_only_on_timers(&self) -> bool {
        let state = lock(&self.state);
        !state.activities.values().any(|m| m.is_pending())
    }

    /// The activity of `step` and when it was scheduled, if the code scheduled it.
    pub fn scheduled(
        &self,
        step: sagaflow_contracts::StepSeq,
    ) -> Option<(String, chrono::DateTime<chrono::Utc>)> {
        lock(&self.state)
            .activities
            .get(&step)
            .map(|m| (m.activity.clone(), m.scheduled_at))
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
    if state.phase == Phase::Ended {
        return Ok(Vec::new());
    }
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
        Fact::Signal {
            name,
            payload,
            signal_id,
        } => {
            if state.signal_ids.contains(&signal_id) || state.phase == Phase::Ended {
                Vec::new()
            } else {
                vec![SagaEvent::SignalReceived {
                    name,
                    payload,
                    signal_id,
                }]
            }
        }
        Fact::Cancel { reason } => {
            if state.cancelled.is_some() || state.phase != Phase::Running {
                Vec::new()
            } else {
                vec![SagaEvent::CancelRequested { reason }]
            }
        }
        Fact::Terminate { reason } => {
            if state.phase == Phase::Ended {
                Vec::new()
            } else {
                vec![SagaEvent::SagaTerminated { reason }]
            }
        }
        Fact::RetryCompensation => match state.phase {
            Phase::CompensationFailed { .. } => vec![SagaEvent::CompensationRetried {}],
            _ => Vec::new(),
        },
    })
}

/// The saga code returned: it completed, or its failure is compensated (if any completed step
/// has a compensation), or it simply fails.
fn code_returned(state: &mut RunState, result: Result<Value, SagaFailure>) {
    let command = match result {
        Ok(output) => {
            state.phase = Phase::Ended;
            Command::CompleteSaga { output }
        }
        Err(error) => {
            let cancelled = state.cancelled.clone();
            if has_compensations(state) {
                state.phase = Phase::Compensating { error, cancelled };
                return;
            }
            state.phase = Phase::Ended;
            match cancelled {
                Some(reason) => Command::EndCancelled { reason },
                None => Command::FailSaga { error },
            }
        }
    };
    state.issued.push(Issued {
        command,
        location: None,
    });
}

/// Moves the compensation on by one step, or ends it.
fn drive_compensation(state: &mut RunState) {
    let Phase::Compensating { error, cancelled } = state.phase.clone() else {
        return;
    };
    let command = match next_compensation(state) {
        Next::Wait => return,
        Next::Schedule(forward) => {
            state.schedule_compensation(forward);
            return;
        }
        Next::Failed(step, failure) => {
            state.phase = Phase::CompensationFailed {
                error: error.clone(),
                cancelled,
            };
            Command::FailCompensation {
                error,
                step,
                reason: format!("the compensation (step {step}) failed: {failure}"),
            }
        }
        Next::Done => {
            state.phase = Phase::Ended;
            match cancelled {
                Some(reason) => Command::EndCancelled { reason },
                None => Command::EndCompensated { error },
            }
        }
    };
    state.issued.push(Issued {
        command,
        location: None,
    });
}

/// How a command ends the saga, if it does.
fn end_of(command: &Command) -> Option<SagaEnd> {
    Some(match command.clone() {
        Command::CompleteSaga { output } => SagaEnd::Completed(output),
        Command::FailSaga { error } => SagaEnd::Failed(error),
        Command::EndCompensated { error } => SagaEnd::Compensated(error),
        Command::FailCompensation {
            error,
            step,
            reason,
        } => SagaEnd::CompensationFailed {
            error,
            step,
            reason,
        },
        Command::EndCancelled { reason } => SagaEnd::Cancelled { reason },
        _ => return None,
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
