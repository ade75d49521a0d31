//! The deterministic saga runtime: pure, no I/O, no clock, no randomness.
//!
//! History in, commands out. A saga is an `async fn` over a [`SagaContext`]; the engine polls its
//! future with a no-op waker until it stalls. Every activity the code awaits gets the next
//! [`StepSeq`](sagaflow_contracts::StepSeq); a step with no `ActivityScheduled` event in the
//! history becomes a [`Command`], a step with a result in the history resolves at once. Replay
//! after a restart runs the same code against the recorded history; a step whose activity does not
//! match the history is a [`RunError::NonDeterminism`] and the saga is parked, never silently diverged.

mod cache;
mod command;
mod context;
mod registry;
mod run;
#[cfg(test)]
mod tests;

pub use cache::{CachedSaga, SagaCache};
pub use command::Command;
pub use context::{ActivityCall, ActivityFailure, SagaContext, SagaError};
pub use registry::{InvalidInput, SagaDefinition, SagaRegistry};
pub use run::{panic_message, ReplayError, RunError, SagaRun};
