//! Sagaflow's deterministic saga runtime: pure, no I/O, no clock, no randomness.
//!
//! History in, commands out. A saga is an `async fn` over a [`SagaContext`]; the engine polls
//! its future with a no-op waker until it waits again. Each awaitable is a small state machine
//! of its own kind, numbered by a counter per kind: an activity call ([`StepSeq`]) goes
//! scheduled → attempt n running → attempt failed, backing off → attempt n+1 running → … →
//! completed | failed; a durable timer ([`TimerSeq`]) goes started → fired.
//!
//! The orchestrator feeds a live run one [`Fact`] at a time ([`SagaRun::handle`]) and gets back
//! an [`Activation`]: the events to append and the [`Effect`]s (messages, timers) to write in
//! the same transaction. After a restart [`SagaRun::replay`] runs the same code against the
//! recorded history, checking every command against the event recorded at its position, then
//! continues live from where the history ends. Code that no longer reproduces its history is a
//! [`RunError::NonDeterminism`] with a [`Divergence`] a person can act on.
//!
//! [`StepSeq`]: sagaflow_contracts::StepSeq
//! [`TimerSeq`]: sagaflow_contracts::TimerSeq

mod activation;
mod activity;
mod command;
mod compensation;
mod context;
mod input_hash;
mod registry;
mod replay;
mod run;
mod select;
mod signal;
mod state;
mod timer;

pub use activation::{Activation, Effect, Fact, FactRejected, SagaEnd, TimerKey};
pub use activity::{ActivityCall, ActivityFailure};
pub use command::Command;
pub use context::{SagaContext, SagaError};
pub use registry::{InvalidInput, SagaDefinition, SagaRegistry};
pub use replay::{Divergence, ReplayError, Replayed};
pub use run::{panic_message, RunError, SagaRun};
pub use sagaflow_contracts::{ActivityOptions, RetryPolicy};
pub use select::{Either, Select};
pub use signal::{SignalError, SignalWait};
pub use timer::{Cancelled, Sleep};

#[cfg(test)]
mod tests {
    #[test]
    fn public_types_can_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<crate::SagaRegistry>();
        send_sync::<crate::SagaContext>();
        send_sync::<crate::Activation>();
        // A live run holds the saga's future, which need only be Send.
        send::<crate::SagaRun>();
    }
}
