//! AMQP header names and message type names. Header values are strings.

/// The saga a message belongs to.
pub const SAGA_ID: &str = "x-sagaflow-saga-id";
/// The step of an activity command or result.
pub const STEP: &str = "x-sagaflow-step";
/// The attempt of an activity command or result.
pub const ATTEMPT: &str = "x-sagaflow-attempt";
/// The idempotency key of an activity command.
pub const IDEMPOTENCY_KEY: &str = "x-sagaflow-idempotency-key";
/// Why a message was dead-lettered.
pub const DEAD_LETTER_REASON: &str = "x-sagaflow-dead-letter-reason";
/// The queue a dead-lettered message was taken from.
pub const DEAD_LETTER_QUEUE: &str = "x-sagaflow-dead-letter-queue";
/// When a start of an unknown saga type was first seen (milliseconds since the epoch); set on
/// the copies an orchestrator puts back.
pub const FIRST_SEEN_MS: &str = "x-sagaflow-first-seen-ms";
/// How many times a start was put back.
pub const PUT_BACKS: &str = "x-sagaflow-put-backs";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Values of the AMQP `type` property.
pub mod message_type {
    pub const START_SAGA: &str = "sagaflow.StartSaga";
    pub const ACTIVITY_COMMAND: &str = "sagaflow.ActivityCommand";
    pub const ACTIVITY_RESULT: &str = "sagaflow.ActivityResult";
    pub const ACTIVITY_HEARTBEAT: &str = "sagaflow.ActivityHeartbeat";
    pub const ACTIVITY_CANCEL: &str = "sagaflow.ActivityCancel";
    pub const SIGNAL_SAGA: &str = "sagaflow.SignalSaga";
    pub const SAGA_CONTROL: &str = "sagaflow.SagaControl";
    pub const SAGA_FINISHED: &str = "sagaflow.SagaFinished";
}
