//! Sagaflow's wire contracts.
//!
//! Everything that crosses a process boundary is defined here: the JSON envelopes on the queues
//! ([`StartSaga`], [`ActivityCommand`], [`ActivityResult`]), the saga history events
//! ([`SagaEvent`]), and the names of queues, exchanges and headers ([`Topology`], [`headers`]).
//! JSON Schemas generated from these types live in `contracts/schema/` so that services written in
//! any language can take part. This crate does no I/O.

pub mod decode;
mod events;
pub mod headers;
mod ids;
mod messages;
mod options;
pub mod payments;
pub mod reason;
pub mod schema;
mod topology;
pub mod travel;
mod wire_version;

pub use events::{ExportedHistory, HistoryEvent, SagaEvent, SagaFailure, SagaStatus};
pub use ids::{IdempotencyKey, SagaId, StepSeq, TimerSeq};
pub use messages::{
    error_kinds, ActivityCancel, ActivityCommand, ActivityError, ActivityHeartbeat,
    ActivityOutcome, ActivityResult, ControlAction, SagaControl, SagaFinished, SignalSaga,
    StartSaga,
};
pub use options::{millis, ActivityOptions, RetryPolicy};
pub use topology::{validate_name, InvalidName, Topology};
pub use wire_version::{check_content_type, UnsupportedWireVersion, CONTENT_TYPE, WIRE_VERSION};

/// Messages larger than this are dead-lettered unread, unless configured otherwise.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
