use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ActivityError, StepSeq};

/// One entry of a saga's append-only history. Replaying these events through the saga code
/// rebuilds its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum SagaEvent {
    /// Always the first event.
    SagaStarted {
        saga_type: String,
        input: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_key: Option<String>,
    },
    /// The saga code awaited an activity that had not run yet; a command was sent.
    ActivityScheduled {
        step: StepSeq,
        activity: String,
        input: Value,
        attempt: u32,
    },
    ActivityCompleted {
        step: StepSeq,
        output: Value,
    },
    ActivityFailed {
        step: StepSeq,
        error: ActivityError,
    },
    /// The saga function returned `Ok`. Always the last event.
    SagaCompleted {
        output: Value,
    },
    /// The saga function returned `Err`. Always the last event.
    SagaFailed {
        error: SagaFailure,
    },
}

impl SagaEvent {
    /// The event's type name, as stored and shown.
    pub fn kind(&self) -> &'static str {
        match self {
            SagaEvent::SagaStarted { .. } => "SagaStarted",
            SagaEvent::ActivityScheduled { .. } => "ActivityScheduled",
            SagaEvent::ActivityCompleted { .. } => "ActivityCompleted",
            SagaEvent::ActivityFailed { .. } => "ActivityFailed",
            SagaEvent::SagaCompleted { .. } => "SagaCompleted",
            SagaEvent::SagaFailed { .. } => "SagaFailed",
        }
    }
}

/// Why a saga failed: the error its code returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SagaFailure {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// Where a saga is in its life, as stored in `sagas.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SagaStatus {
    Running,
    Completed,
    Failed,
    /// Replay did not match the history (non-determinism); parked until the code is fixed.
    Stuck,
}

impl SagaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SagaStatus::Running => "running",
            SagaStatus::Completed => "completed",
            SagaStatus::Failed => "failed",
            SagaStatus::Stuck => "stuck",
        }
    }

    /// Whether the saga will never change again.
    pub fn is_final(self) -> bool {
        matches!(self, SagaStatus::Completed | SagaStatus::Failed)
    }
}

impl std::str::FromStr for SagaStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "running" => Ok(SagaStatus::Running),
            "completed" => Ok(SagaStatus::Completed),
            "failed" => Ok(SagaStatus::Failed),
            "stuck" => Ok(SagaStatus::Stuck),
            other => Err(format!("unknown saga status {other:?}")),
        }
    }
}

impl std::fmt::Display for SagaStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
