//! The Sagaflow orchestrator: runs sagas written as async Rust, durably, on PostgreSQL and
//! RabbitMQ.
//!
//! Register your sagas in a [`SagaRegistry`], then run an [`Orchestrator`] with them; see the
//! README's "Write your own saga" walkthrough and `examples/my_saga.rs`.

pub mod api;
pub mod bus;
mod cache;
mod config;
pub mod demo;
pub mod inbound;
mod orchestrator;
pub mod replay_check;
pub mod store;
pub mod telemetry;

pub use config::Config;
pub use orchestrator::{Orchestrator, OrchestratorError};
pub use replay_check::replay_check;
/// The deterministic saga runtime, re-exported: write sagas against it.
pub use sagaflow_engine as engine;
pub use sagaflow_engine::{
    ActivityFailure, ActivityOptions, Either, RetryPolicy, SagaContext, SagaError, SagaRegistry,
};
pub use sagaflow_process::{init_tracing, shutdown_on_signals};

#[cfg(test)]
mod tests {
    #[test]
    fn public_types_can_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<crate::Orchestrator>();
        send_sync::<crate::SagaRegistry>();
        send_sync::<crate::SagaContext>();
        send_sync::<crate::cache::SagaCache>();
        send_sync::<crate::OrchestratorError>();
        // A live run holds the saga's future, which need only be Send.
        send::<crate::engine::SagaRun>();
    }
}
