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
    },
    StartTimer {
        timer: TimerSeq,
        fire_at: DateTime<Utc>,
    },
    CompleteSaga {
        output: Value,
    },
    FailSaga {
        error: SagaFailure,
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
            } => SagaEvent::ActivityScheduled {
                step,
                activity,
                input,
                attempt: 1,
                input_hash: Some(input_hash),
                options: Some(options),
            },
            Command::StartTimer { timer, fire_at } => SagaEvent::TimerStarted { timer, fire_at },
            Command::CompleteSaga { output } => SagaEvent::SagaCompleted { output },
            Command::FailSaga { error } => SagaEvent::SagaFailed { error },
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
                    ..
                },
                SagaEvent::ActivityScheduled {
                    step: recorded_step,
                    activity: recorded_activity,
                    input_hash: recorded_hash,
                    ..
                },
            ) => {
                step == recorded_step
                    && activity == recorded_activity
                    && recorded_hash.as_ref().is_none_or(|h| h == input_hash)
            }
            (Command::StartTimer { timer, .. }, SagaEvent::TimerStarted { timer: t, .. }) => {
                timer == t
            }
            (Command::CompleteSaga { .. }, SagaEvent::SagaCompleted { .. })
            | (Command::FailSaga { .. }, SagaEvent::SagaFailed { .. }) => true,
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
            Command::CompleteSaga { .. } => "completes the saga".to_owned(),
            Command::FailSaga { .. } => "fails the saga".to_owned(),
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
