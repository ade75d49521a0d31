use sagaflow_contracts::{SagaEvent, SagaFailure, StepSeq};
use serde_json::Value;

/// What saga code asks for when it advances. Each command is recorded as the event of the same
/// name, and `ScheduleActivity` also becomes an outgoing activity command message.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    ScheduleActivity {
        step: StepSeq,
        activity: String,
        input: Value,
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
            } => SagaEvent::ActivityScheduled {
                step,
                activity,
                input,
                attempt: 1,
            },
            Command::CompleteSaga { output } => SagaEvent::SagaCompleted { output },
            Command::FailSaga { error } => SagaEvent::SagaFailed { error },
        }
    }

    /// The command recorded by `event`, if `event` records one.
    pub fn recorded_in(event: &SagaEvent) -> Option<Command> {
        match event.clone() {
            SagaEvent::ActivityScheduled {
                step,
                activity,
                input,
                ..
            } => Some(Command::ScheduleActivity {
                step,
                activity,
                input,
            }),
            SagaEvent::SagaCompleted { output } => Some(Command::CompleteSaga { output }),
            SagaEvent::SagaFailed { error } => Some(Command::FailSaga { error }),
            _ => None,
        }
    }
}
