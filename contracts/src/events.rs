use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ActivityError, ActivityOptions, StepSeq, TimerSeq};

/// One entry of a saga's append-only history. Replaying these events through the saga code
/// rebuilds its state.
///
/// Two sorts of events alternate in a history. A *fact* is something that happened to the saga
/// (it started, an attempt answered, a timer fired); each fact begins an *activation*, in which
/// the saga code runs until it waits again. The *commands* the code issued in that activation
/// (schedule an activity, start a timer, end the saga) follow their fact, in the order the code
/// issued them. Replay relies on that order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum SagaEvent {
    /// Fact. Always the first event.
    SagaStarted {
        saga_type: String,
        input: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_key: Option<String>,
    },
    /// Command: the saga code awaited an activity for the first time; attempt 1 was sent.
    ActivityScheduled {
        step: StepSeq,
        activity: String,
        input: Value,
        /// Always 1: later attempts are [`SagaEvent::ActivityRetried`].
        attempt: u32,
        /// Hash of `input` as the code gave it, to catch code that now sends another input.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input_hash: Option<String>,
        /// Retry policy and timeouts of the step, fixed when it is scheduled.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        options: Option<ActivityOptions>,
        /// Set when this step is the compensation of that (completed) step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        compensates: Option<StepSeq>,
    },
    /// Fact: one attempt failed (the service said `retryable`, or it timed out) and another
    /// attempt is due at `retry_at`. The saga code does not see it.
    ActivityAttemptFailed {
        step: StepSeq,
        attempt: u32,
        error: ActivityError,
        retry_at: DateTime<Utc>,
    },
    /// Fact: the retry timer fired; `attempt` was sent with the same idempotency key.
    ActivityRetried { step: StepSeq, attempt: u32 },
    /// Fact: the step succeeded.
    ActivityCompleted {
        step: StepSeq,
        output: Value,
        /// The attempt that succeeded; absent in histories written before retries existed.
        #[serde(default = "first_attempt")]
        attempt: u32,
    },
    /// Fact: the step failed for good (a permanent error, its attempts used up, or a timeout
    /// of the whole step). The saga code sees this error.
    ActivityFailed {
        step: StepSeq,
        error: ActivityError,
        #[serde(default = "first_attempt")]
        attempt: u32,
    },
    /// Fact: a result arrived for an attempt that is no longer current (it timed out, or the
    /// step already ended). Kept for the record; nothing changes.
    ActivityResultIgnored {
        step: StepSeq,
        attempt: u32,
        /// `completed` or `failed`.
        status: String,
        reason: String,
    },
    /// Command: the saga code started a durable timer (`ctx.sleep`).
    TimerStarted {
        timer: TimerSeq,
        fire_at: DateTime<Utc>,
    },
    /// Fact: the timer fired.
    TimerFired { timer: TimerSeq },
    /// Fact: a signal arrived (kept, in order, until the code waits for it).
    SignalReceived {
        name: String,
        payload: Value,
        signal_id: String,
    },
    /// Command: the code took the new branch of a versioned change (`ctx.patched`).
    PatchMarked { patch: String },
    /// Fact: an operator (or a control message) asked the saga to stop; its code sees the
    /// cancellation at its next await.
    CancelRequested { reason: String },
    /// Fact: an operator asked to run a failed compensation again.
    CompensationRetried {},
    /// Fact: an operator terminated the saga; nothing more runs. Always the last event.
    SagaTerminated { reason: String },
    /// Fact: an operator resumed a stuck saga (`sagaflow resume`); it was replayed with the
    /// code deployed then, and went on from where its history ends.
    SagaResumed {},
    /// Command: the saga function returned `Ok`. Always the last event.
    SagaCompleted { output: Value },
    /// Command: the saga function returned `Err`. Always the last event.
    SagaFailed { error: SagaFailure },
    /// Command: the saga failed and every completed step's compensation ran. Always the last
    /// event.
    SagaCompensated { error: SagaFailure },
    /// Command: a compensation failed for good; the saga waits for an operator
    /// (`sagaflow retry-compensation`).
    SagaCompensationFailed {
        error: SagaFailure,
        /// The compensation step that failed.
        step: StepSeq,
        reason: String,
    },
    /// Command: the saga was cancelled and the compensations of its completed steps ran.
    /// Always the last event.
    SagaCancelled { reason: String },
}

fn first_attempt() -> u32 {
    1
}

impl SagaEvent {
    /// The event's type name, as stored and shown.
    pub fn kind(&self) -> &'static str {
        match self {
            SagaEvent::SagaStarted { .. } => "SagaStarted",
            SagaEvent::ActivityScheduled { .. } => "ActivityScheduled",
            SagaEvent::ActivityAttemptFailed { .. } => "ActivityAttemptFailed",
            SagaEvent::ActivityRetried { .. } => "ActivityRetried",
            SagaEvent::ActivityCompleted { .. } => "ActivityCompleted",
            SagaEvent::ActivityFailed { .. } => "ActivityFailed",
            SagaEvent::ActivityResultIgnored { .. } => "ActivityResultIgnored",
            SagaEvent::TimerStarted { .. } => "TimerStarted",
            SagaEvent::TimerFired { .. } => "TimerFired",
            SagaEvent::SignalReceived { .. } => "SignalReceived",
            SagaEvent::PatchMarked { .. } => "PatchMarked",
            SagaEvent::CancelRequested { .. } => "CancelRequested",
            SagaEvent::CompensationRetried { .. } => "CompensationRetried",
            SagaEvent::SagaTerminated { .. } => "SagaTerminated",
            SagaEvent::SagaCompensated { .. } => "SagaCompensated",
            SagaEvent::SagaCompensationFailed { .. } => "SagaCompensationFailed",
            SagaEvent::SagaCancelled { .. } => "SagaCancelled",
            SagaEvent::SagaResumed { .. } => "SagaResumed",
            SagaEvent::SagaCompleted { .. } => "SagaCompleted",
            SagaEvent::SagaFailed { .. } => "SagaFailed",
        }
    }

    /// Whether the saga code issued this event (a command) rather than the world (a fact).
    pub fn is_command(&self) -> bool {
        matches!(
            self,
            SagaEvent::ActivityScheduled { .. }
                | SagaEvent::TimerStarted { .. }
                | SagaEvent::PatchMarked { .. }
                | SagaEvent::SagaCompleted { .. }
                | SagaEvent::SagaFailed { .. }
                | SagaEvent::SagaCompensated { .. }
                | SagaEvent::SagaCompensationFailed { .. }
                | SagaEvent::SagaCancelled { .. }
        )
    }
}

/// One event as stored: its position in the history and when it was recorded. This is also
/// the format of an exported history file (a JSON array of these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryEvent {
    pub seq: i64,
    /// The orchestrator's clock when the event was recorded; `ctx.now()` in saga code is the
    /// time of the fact that began the current activation.
    pub at: DateTime<Utc>,
    pub event: SagaEvent,
}

/// A saga's history as `sagaflow export` writes it and `sagaflow replay-check` reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExportedHistory {
    pub saga_id: crate::SagaId,
    pub saga_type: String,
    pub history: Vec<HistoryEvent>,
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
    /// Its code does not reproduce its history, panicked, or waits on nothing Sagaflow can
    /// wake; parked with the reason until the code is fixed and it is resumed.
    Stuck,
    /// Failed, and the compensations of its completed steps ran.
    Compensated,
    /// A compensation failed for good; waits for `sagaflow retry-compensation`.
    CompensationFailed,
    /// Cancelled by an operator; the compensations of its completed steps ran.
    Cancelled,
    /// Stopped at once by an operator; nothing was compensated.
    Terminated,
}

impl SagaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SagaStatus::Running => "running",
            SagaStatus::Completed => "completed",
            SagaStatus::Failed => "failed",
            SagaStatus::Stuck => "stuck",
            SagaStatus::Compensated => "compensated",
            SagaStatus::CompensationFailed => "compensation_failed",
            SagaStatus::Cancelled => "cancelled",
            SagaStatus::Terminated => "terminated",
        }
    }

    /// Whether the saga will never change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            SagaStatus::Completed
                | SagaStatus::Failed
                | SagaStatus::Compensated
                | SagaStatus::Cancelled
                | SagaStatus::Terminated
        )
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
            "compensated" => Ok(SagaStatus::Compensated),
            "compensation_failed" => Ok(SagaStatus::CompensationFailed),
            "cancelled" => Ok(SagaStatus::Cancelled),
            "terminated" => Ok(SagaStatus::Terminated),
            other => Err(format!("unknown saga status {other:?}")),
        }
    }
}

impl std::fmt::Display for SagaStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
