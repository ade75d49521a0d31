//! Write a Sagaflow activity service in Rust.
//!
//! An activity service consumes [`ActivityCommand`](contracts::ActivityCommand)s from one queue
//! per activity, runs a typed handler for each, publishes the
//! [`ActivityResult`](contracts::ActivityResult) to the orchestrator with a publisher confirm and
//! only then acks the command. If the service dies anywhere in between, the command is
//! redelivered, so **handlers must be idempotent**: every attempt and every redelivery of one
//! saga step carries the same [`ActivityContext::idempotency_key`]; do the effect once per key.
//!
//! Errors are results too: an [`ActivityError::transient`] failure is reported with
//! `retryable: true` and the orchestrator sends the next attempt when the step's retry policy
//! says so ([`ActivityContext::attempt`]). A long handler reports progress with
//! [`ActivityContext::heartbeat`], and a retry reads it back with
//! [`ActivityContext::heartbeat_details`]. When its saga is cancelled or terminated, the
//! orchestrator cancels the running attempt: [`ActivityContext::cancelled`] resolves and
//! [`ActivityContext::is_cancelled`] turns `true`, so the handler can stop early.
//!
//! ```no_run
//! use sagaflow_sdk::{ActivityContext, ActivityError, ActivityWorker, WorkerArgs};
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     worker: WorkerArgs,
//! }
//!
//! async fn greet(_ctx: ActivityContext, name: String) -> Result<String, ActivityError> {
//!     Ok(format!("hello {name}"))
//! }
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     let _crash_points = sagaflow_sdk::init_process()?;
//!     let args = Args::parse();
//!     ActivityWorker::new(args.worker.into_config("greeter"))
//!         .register("Greet", greet)
//!         .run_until_signalled()
//!         .await?;
//!     Ok(())
//! }
//! ```
//!
//! Metrics per activity (attempts by outcome, handler durations, attempts in flight, dead
//! letters, heartbeats, cancels, consumer lag) are served as Prometheus text on `GET /metrics`
//! when [`WorkerConfig::metrics_addr`] is set (`--metrics-addr`, `SAGAFLOW_METRICS_ADDR`), and
//! exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is.
//!
//! See `examples/my_activity.rs` for a complete service.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod cancel;
mod config;
mod context;
mod delivery;
mod handler;
mod heartbeat;
mod outgoing;
#[cfg(feature = "postgres")]
pub mod postgres;
mod worker;
mod worker_metrics;

pub use config::{WorkerArgs, WorkerConfig, DEFAULT_CONNECT_TIMEOUT};
pub use context::ActivityContext;
pub use heartbeat::MAX_HEARTBEAT_DETAILS_BYTES;
pub use sagaflow_process::{
    crash_point, fail_scenario, fault_injected, init_process, init_tracing, shutdown_on_signals,
    sigkill_self, InvalidFailPoints, Report,
};
pub use worker::{ActivityWorker, WorkerError};

pub use sagaflow_amqp::{redact as redact_url, QueueType};
/// The wire contracts (message envelopes, ids, the demo payment payloads).
pub use sagaflow_contracts as contracts;
pub use sagaflow_contracts::ActivityError;
pub use tokio_util::sync::CancellationToken;
