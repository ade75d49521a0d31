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
}

impl ActivityCommand {
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
