use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{IdempotencyKey, SagaId, StepSeq};

/// Starts a saga. Published by a client on the start queue (`<namespace>.start`).
///
/// The same `start_key` twice starts one saga; without a start key the AMQP `message_id`
/// property is the key, so a redelivered start message never starts a second saga. A start with
/// neither is dead-lettered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSaga {
    /// The name the saga was registered under, e.g. `"ProcessPayment"`.
    pub saga_type: String,
    /// The saga's input; must deserialize into the input type of the registered saga.
    pub input: Value,
    /// Business key that makes the start idempotent, e.g. an order id; at most 512 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_key: Option<String>,
}

/// Asks an activity service to run one attempt of one step. Published by the orchestrator on
/// the activity's queue (`<namespace>.activity.<activity>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActivityCommand {
    pub saga_id: SagaId,
    pub step: StepSeq,
    /// The activity type, e.g. `"ChargeCustomer"`.
    pub activity: String,
    /// 1 for the first attempt. A redelivery of the same command keeps its attempt.
    pub attempt: u32,
    /// Equal for every attempt and every redelivery of this step: do the effect once per key.
    pub idempotency_key: IdempotencyKey,
    pub input: Value,
    /// The orchestrator times the attempt out when no [`ActivityHeartbeat`] arrives for this
    /// long (milliseconds); absent when the step has no heartbeat timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout_ms: Option<u64>,
    /// The `details` of the last heartbeat of an earlier attempt of this step, so that a retry
    /// can go on from the progress it reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_details: Option<Value>,
}

impl ActivityCommand {
    /// A heartbeat of this command's attempt (see [`ActivityCommand::reply`] for the result).
    pub fn heartbeat(&self, details: Option<Value>) -> ActivityHeartbeat {
        ActivityHeartbeat {
            saga_id: self.saga_id,
            step: self.step,
            activity: self.activity.clone(),
            attempt: self.attempt,
            details,
        }
    }

    /// The reply to this command with `outcome`.
    pub fn reply(&self, outcome: ActivityOutcome) -> ActivityResult {
        ActivityResult {
            saga_id: self.saga_id,
            step: self.step,
            activity: self.activity.clone(),
            attempt: self.attempt,
            outcome,
        }
    }
}

/// "Still working on it": published by an activity service on the heartbeats queue
/// (`<namespace>.heartbeats`) while a long attempt runs, more often than the command's
/// `heartbeat_timeout_ms`. Fire and forget: a lost heartbeat is only a late one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActivityHeartbeat {
    pub saga_id: SagaId,
    pub step: StepSeq,
    pub activity: String,
    pub attempt: u32,
    /// Progress to hand to the next attempt if this one fails (small: at most a few KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// An activity service's reply to an [`ActivityCommand`], published on the results queue
/// (`<namespace>.results`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActivityResult {
    pub saga_id: SagaId,
    pub step: StepSeq,
    pub activity: String,
    pub attempt: u32,
    pub outcome: ActivityOutcome,
}

/// How one attempt of an activity ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ActivityOutcome {
    Completed { output: Value },
    Failed { error: ActivityError },
}

/// Error kinds the orchestrator itself gives to failed attempts and steps.
pub mod error_kinds {
    /// An attempt or the whole step ran out of time (start-to-close, heartbeat or
    /// schedule-to-close timeout; the message says which).
    pub const TIMED_OUT: &str = "TimedOut";
    /// The saga was cancelled: what its code sees at its next await.
    pub const CANCELLED: &str = "Cancelled";
    /// The orchestrator could not record the service's result (too large, not a result, data
    /// PostgreSQL refuses).
    pub const RESULT_REJECTED: &str = "ResultRejected";
    /// The broker dead-lettered the command (a service rejected it, or its delivery limit was
    /// reached).
    pub const COMMAND_DEAD_LETTERED: &str = "CommandDeadLettered";
    /// The activity service could not read the command.
    pub const COMMAND_REJECTED: &str = "CommandRejected";
    /// The command (the serialized `ActivityCommand`) is larger than the orchestrator's
    /// `SAGAFLOW_MAX_COMMAND_BYTES`: it was never sent. Permanent: the same input is as large
    /// on every attempt.
    pub const COMMAND_TOO_LARGE: &str = "CommandTooLarge";
}

/// Why an activity attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ActivityError {
    /// A stable, machine-readable kind, e.g. `"CardDeclined"`.
    pub kind: String,
    /// What happened, for people.
    pub message: String,
    /// Whether another attempt could succeed.
    #[serde(default)]
    pub retryable: bool,
}

impl ActivityError {
    /// A failure that another attempt would not fix.
    pub fn permanent(kind: impl Into<String>, message: impl Into<String>) -> Self {
        ActivityError {
            kind: kind.into(),
            message: message.into(),
            retryable: false,
        }
    }

    /// A failure that another attempt may fix (a timeout, a busy dependency).
    pub fn transient(kind: impl Into<String>, message: impl Into<String>) -> Self {
        ActivityError {
            retryable: true,
            ..Self::permanent(kind, message)
        }
    }
}

impl std::error::Error for ActivityError {}

impl std::fmt::Display for ActivityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// Tells activity services that an attempt should stop (its saga was cancelled or terminated).
/// Published by the orchestrator on the fanout exchange `<namespace>.activity-cancels`; every
/// service replica binds a queue of its own to it and cancels the attempt if it runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActivityCancel {
    pub saga_id: SagaId,
    pub step: StepSeq,
    pub activity: String,
    pub attempt: u32,
    /// Why, for people.
    pub reason: String,
}

/// Delivers a named signal with a JSON payload to a running saga. Published by anyone on the
/// signals queue (`<namespace>.signals`). Name the saga by `saga_id`, or by `saga_type` and
/// `start_key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalSaga {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saga_id: Option<SagaId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saga_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_key: Option<String>,
    /// The signal's name, e.g. `"approved"`; saga code waits with `ctx.signal("approved")`.
    /// 1 to [`SignalSaga::MAX_NAME_BYTES`] bytes.
    pub name: String,
    #[serde(default)]
    pub payload: Value,
    /// Makes the signal idempotent: a second signal with the same id reaches the saga once.
    /// Without it the AMQP `message_id` is the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_id: Option<String>,
}

impl SignalSaga {
    /// The longest signal name accepted, in bytes: names are kept in the saga's history.
    pub const MAX_NAME_BYTES: usize = 200;
}

/// What an operator asks of a saga. Published on the control queue
/// (`<namespace>.control`), or sent with `sagaflow cancel|terminate|retry-compensation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SagaControl {
    pub saga_id: SagaId,
    pub action: ControlAction,
    /// Why, for the history.
    #[serde(default)]
    pub reason: String,
}

/// An operator's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    /// The saga code sees the cancellation at its next await, in-flight activities are told,
    /// the compensations of completed steps run; the saga ends `cancelled`.
    Cancel,
    /// The saga stops at once: nothing more runs, nothing is compensated.
    Terminate,
    /// Compensation failed: run the failed compensation again and go on.
    RetryCompensation,
    /// The saga is stuck: replay it with the code deployed now.
    Resume,
}

/// How a saga ended, sent to the `reply_to` queue of its start message (with its
/// `correlation_id`) — also when the start was rejected and no saga exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SagaFinished {
    /// Absent when the start was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saga_id: Option<SagaId>,
    pub saga_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_key: Option<String>,
    /// `completed`, `failed`, `compensated`, `compensation_failed`, `cancelled`, `terminated`,
    /// or `rejected` (the start was dead-lettered).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}
