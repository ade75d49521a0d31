//! What a handler knows about the command it runs: [`ActivityContext`].

use sagaflow_contracts::{ActivityCommand, IdempotencyKey, SagaId, StepSeq};

/// The saga step an activity handler is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityContext {
    saga_id: SagaId,
    step: StepSeq,
    attempt: u32,
    activity: String,
    idempotency_key: IdempotencyKey,
}

impl ActivityContext {
    /// The context of `command`. The worker builds it for you; this is for calling a handler
    /// directly, e.g. in a test.
    pub fn from_command(command: &ActivityCommand) -> Self {
        ActivityContext {
            saga_id: command.saga_id,
            step: command.step,
            attempt: command.attempt,
            activity: command.activity.clone(),
            idempotency_key: command.idempotency_key.clone(),
        }
    }

    /// The saga this step belongs to.
    pub fn saga_id(&self) -> SagaId {
        self.saga_id
    }

    /// The step's position in its saga.
    pub fn step(&self) -> StepSeq {
        self.step
    }

    /// Which attempt this is, from 1. A redelivered command keeps its attempt number, so the same
    /// attempt can run more than once.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The activity name the handler was registered under.
    pub fn activity(&self) -> &str {
        &self.activity
    }

    /// The same for every attempt and every redelivery of this step: use it to do the step's
    /// effect once (e.g. a unique column, `INSERT … ON CONFLICT DO NOTHING`, or the idempotency
    /// key of a payment provider's API).
    pub fn idempotency_key(&self) -> &IdempotencyKey {
        &self.idempotency_key
    }
}
