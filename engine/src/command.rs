use std::panic::Location;

use chrono::{DateTime, Utc};
use sagaflow_contracts::{ActivityOptions, SagaEvent, SagaFailure, StepSeq, TimerSeq};
use serde_json::Value;

/// What saga code asks for when it runs. Each command is recorded as the event of the same
/// meaning, right after the fact that began its activation.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    ScheduleActivity {
        step: StepSeq,
        activity: String,
        input: Value,
        input_hash: String,
        options: ActivityOptions,
        /// The completed step this one compensates.
        compensates: Option<StepSeq>,
    },
    StartTimer {
        timer: TimerSeq,
        fire_at: DateTime<Utc>,
    },
    /// `ctx.patched(patch)` took the new branch.
    MarkPatch {
        patch: String,
    },
    CompleteSaga {
        output: Value,
    },
    FailSaga {
        error: SagaFailure,
    },
    /// The saga failed and its compensations ran.
    EndCompensated {
        error: SagaFailure,
    },
    /// A compensation failed for good.
    FailCompensation {
        error: SagaFailure,
        step: StepSeq,
        reason: String,
    },
    /// The saga was cancelled and its compensations ran.
    EndCancelled {
        reason: String,
    },
}

impl Command {
    /// The history event that records this command.
    pub fn to_event(&self) -> SagaEvent {
        match self.clone() {
            Command::ScheduleActivity {
                step,
                activity,
                input,
                input_hash,
                options,
                compensates,
            } => SagaEvent::ActivityScheduled {
                step,
                activity,
                input,
                attempt: 1,
                input_hash: Some(input_hash),
                options: Some(options),
                compensates,
            },
            Command::StartTimer { timer, fire_at } => SagaEvent::TimerStarted { timer, fire_at },
            Command::MarkPatch { patch } => SagaEvent::PatchMarked { patch },
            Command::CompleteSaga { output } => SagaEvent::SagaCompleted { output },
            Command::FailSaga { error } => SagaEvent::SagaFailed { error },
            Command::EndCompensated { error } => SagaEvent::SagaCompensated { error },
            Command::FailCompensation {
                error,
                step,
                reason,
            } => SagaEvent::SagaCompensationFailed {
                error,
                step,
                reason,
            },
            Command::EndCancelled { reason } => SagaEvent::SagaCancelled { reason },
        }
    }

    /// Whether `event` records this command. Inputs are compared by their hash when the event
    /// has one (histories written before hashes existed compare names only); timer durations
    /// and the saga's output are not compared.
    pub(crate) fn matches(&self, event: &SagaEvent) -> bool {
        match (self, event) {
            (
                Command::ScheduleActivity {
                    step,
                    activity,
                    input_hash,
                    compensates,
                    ..
                },
                SagaEvent::ActivityScheduled {
                    step: recorded_step,
                    activity: recorded_activity,
                    input_hash: recorded_hash,
                    compensates: recorded_compensates,
                    ..
                },
            ) => {
                step == recorded_step
                    && activity == recorded_activity
                    && compensates == recorded_compensates
                    && recorded_hash.as_ref().is_none_or(|h| h == input_hash)
            }
            (Command::MarkPatch { patch }, SagaEvent::PatchMarked { patch: p }) => patch == p,
            (Command::StartTimer { timer, .. }, SagaEvent::TimerStarted { timer: t, .. }) => {
                timer == t
            }
            (Command::CompleteSaga { .. }, SagaEvent::SagaCompleted { .. })
            | (Command::FailSaga { .. }, SagaEvent::SagaFailed { .. })
            | (Command::EndCompensated { .. }, SagaEvent::SagaCompensated { .. })
            | (Command::EndCancelled { .. }, SagaEvent::SagaCancelled { .. }) => true,
            (
                Command::FailCompensation { step, .. },
                SagaEvent::SagaCompensationFailed { step: s, .. },
            ) => step == s,
            _ => false,
        }
    }

    /// The command in words, for a divergence report.
    pub(crate) fn describe(&self) -> String {
        match self {
            Command::ScheduleActivity {
                step,
                activity,
                input_hash,
                ..
            } => {
                format!("schedules activity {activity:?} as step {step} (input hash {input_hash})")
            }
            Command::StartTimer { timer, .. } => format!("starts timer {timer}"),
            Command::MarkPatch { patch } => format!("marks patch {patch:?}"),
            Command::CompleteSaga { .. } => "completes the saga".to_owned(),
            Command::FailSaga { .. } => "fails the saga".to_owned(),
            Command::EndCompensated { .. } => "ends the saga compensated".to_owned(),
            Command::FailCompensation { step, .. } => {
                format!("gives up compensating (step {step} failed)")
            }
            Command::EndCancelled { .. } => "ends the saga cancelled".to_owned(),
        }
    }
}

/// A command with the place in the saga's source that issued it.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub command: Command,
    /// `None` for the saga's end, which no single call issues.
    pub location: Option<&'static Location<'static>>,
}

/// An event in words, for a divergence report.
pub(crate) fn describe_event(event: &SagaEvent) -> String {
    match event {
        SagaEvent::ActivityScheduled {
            step,
            activity,
            input_hash,
            ..
        } => format!(
            "ActivityScheduled of {activity:?} as step {step}{}",
            input_hash
                .as_ref()
                .map(|h| format!(" (input hash {h})"))
                .unwrap_or_default()
        ),
        SagaEvent::TimerStarted { timer, .. } => format!("TimerStarted of timer {timer}"),
        SagaEvent::ActivityCompleted { step, .. } => format!("ActivityCompleted of step {step}"),
        SagaEvent::ActivityFailed { step, .. } => format!("ActivityFailed of step {step}"),
        SagaEvent::ActivityAttemptFailed { step, attempt, .. } => {
            format!("ActivityAttemptFailed of step {step} attempt {attempt}")
        }
        SagaEvent::ActivityRetried { step, attempt } => {
            format!("ActivityRetried of step {step} attempt {attempt}")
        }
        SagaEvent::TimerFired { timer } => format!("TimerFired of timer {timer}"),
        other => other.kind().to_owned(),
    }
}
