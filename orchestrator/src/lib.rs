//! The Sagaflow orchestrator: runs sagas written as async Rust, durably, on PostgreSQL and
//! RabbitMQ.
//!
//! Register your sagas in a [`SagaRegistry`], then run an [`Orchestrator`] with them; see the
//! README's "Write your own saga" walkthrough.

pub mod demo;
pub mod engine;

pub use engine::{ActivityFailure, SagaContext, SagaError, SagaRegistry};
