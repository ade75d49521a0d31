//! Rebuilding a saga from its history: run the code again, check each command it issues
//! against the event recorded at its position, feed each recorded fact at its position, then
//! continue live from where the history ends.

use std::collections::VecDeque;
use std::fmt;

use chrono::{DateTime, Utc};
use sagaflow_contracts::{ActivityOptions, HistoryEvent, SagaEvent, SagaId};

use crate::command::{describe_event, Command, Issued};
use crate::state::lock;
use crate::{Activation, InvalidInput, RunError, SagaRegistry, SagaRun};

/// Where and how saga code stopped reproducing its history.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// The `seq` of the history event where replay stopped (the history's length when the
    /// code stops short of its end).
    pub seq: i64,
    /// What the history has there.
    pub recorded: String,
    /// What the code did instead.
    pub issued: String,
    /// Where in the saga's source the diverging call is (`file:line:column`), when one call
    /// issued it.
    pub location: Option<String>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at event {}, the history has {}, but the saga code {}",
            self.seq, self.recorded, self.issued
        )?;
        if let Some(location) = &self.location {
            write!(f, " (at {location})")?;
        }
        f.write_str(". Deploy code that reproduces the history (guard the change with a version check), then resume the saga")
    }
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
    /// The saga code does not reproduce its history (or panicked, or blocks, on the way).
    #[error(transparent)]
    Run(#[from] RunError),
}

/// A saga rebuilt from its history.
pub struct Replayed {
    pub run: SagaRun,
    /// What the code did after the last recorded event: commands to record now (a history
    /// that ends in the middle of an activation, e.g. results kept while the saga was stuck).
    /// Empty when the history is complete.
    pub continuation: Activation,
}

impl SagaRun {
    /// Rebuilds a saga by running its code against its whole `history`; `now` is the time
    /// of any continuation (see [`Replayed::continuation`]).
    pub fn replay(
        registry: &SagaRegistry,
        saga_id: SagaId,
        history: &[HistoryEvent],
        defaults: ActivityOptions,
        now: DateTime<Utc>,
    ) -> Result<Replayed, ReplayError> {
        let Some(HistoryEvent {
            at,
            event: SagaEvent::SagaStarted {
                saga_type, input, ..
            },
            ..
        }) = history.first()
        else {
            return Err(ReplayError::InvalidHistory(
                "the first event is not SagaStarted".into(),
            ));
        };
        let definition = registry
            .get(saga_type)
            .ok_or_else(|| ReplayError::UnknownSagaType(saga_type.clone()))?;
        let mut run = SagaRun::new(definition, saga_id, input.clone(), *at, defaults)?;
        // `ctx.patched` answers from the history while replaying it.
        lock(&run.state).recorded_patches = Some(
            history
                .iter()
                .filter_map(|e| match &e.event {
                    SagaEvent::PatchMarked { patch } => Some(patch.clone()),
                    _ => None,
                })
                .collect(),
        );
        let mut issued: VecDeque<Issued> = run.poll()?.into();
        let mut ignored_effects = Vec::new();

        for recorded in &history[1..] {
            let event = &recorded.event;
            if matches!(event, SagaEvent::SagaStarted { .. }) {
                return Err(ReplayError::InvalidHistory(
                    "SagaStarted appears twice".into(),
                ));
            }
            if event.is_command() {
                let Some(next) = issued.pop_front() else {
                    return Err(diverged(recorded, "issues nothing more here".into(), None));
                };
                if !next.command.matches(event) {
                    return Err(diverged(recorded, next.command.describe(), next.location));
                }
                adopt_recorded(&run, recorded);
                continue;
            }
            if let Some(next) = issued.front() {
                return Err(diverged(recorded, next.command.describe(), next.location));
            }
            lock(&run.state).now = recorded.at;
            run.apply_fact(event, &mut ignored_effects)
                .map_err(|reason| diverged(recorded, format!("cannot take it: {reason}"), None))?;
            issued = run.poll()?.into();
        }

        // Past the end of the history the code runs live: new patches are taken.
        lock(&run.state).recorded_patches = None;
        // Commands issued after the last recorded fact belong to its activation: the history
        // ends in the middle of it. They are recorded now, live.
        let mut continuation = Activation::default();
        if !issued.is_empty() {
            let mut pending: Vec<Issued> = issued.into();
            {
                let mut state = lock(&run.state);
                // Their attempts and timeouts start now, not when the last fact was recorded.
                state.now = now;
                for issued in &pending {
                    if let Command::ScheduleActivity { step, .. } = &issued.command {
                        if let Some(machine) = state.activities.get_mut(step) {
                            machine.scheduled_at = now;
                        }
                    }
                }
                state.issued.append(&mut pending);
            }
            run.take_issued(&mut continuation);
        }
        Ok(Replayed { run, continuation })
    }

    /// Records the commands queued in the run's state into `activation`.
    fn take_issued(&mut self, activation: &mut Activation) {
        // `run_code` polls first; polling a run whose code already issued everything it can
        // issues nothing more, so the queued commands come out as they are.
        self.run_code(activation);
    }
}

/// Keeps what the history recorded for a command where the code could compute something else
/// without diverging: the options a step was scheduled with, the time a timer fires.
fn adopt_recorded(run: &SagaRun, recorded: &HistoryEvent) {
    let mut state = lock(&run.state);
    match &recorded.event {
        SagaEvent::ActivityScheduled { step, options, .. } => {
            if let Some(machine) = state.activities.get_mut(step) {
                machine.scheduled_at = recorded.at;
                if let Some(options) = options {
                    machine.options = options.clone();
                }
            }
        }
        SagaEvent::TimerStarted { timer, fire_at } => {
            if let Some(machine) = state.timers.get_mut(timer) {
                machine.fire_at = *fire_at;
            }
        }
        _ => {}
    }
}

fn diverged(
    recorded: &HistoryEvent,
    issued: String,
    location: Option<&'static std::panic::Location<'static>>,
) -> ReplayError {
    RunError::NonDeterminism(Divergence {
        seq: recorded.seq,
        recorded: describe_event(&recorded.event),
        issued,
        location: location.map(|l| l.to_string()),
    })
    .into()
}
