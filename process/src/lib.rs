//! What every Sagaflow process does the same way: structured logs, graceful shutdown on
//! SIGTERM/SIGINT, and the crash points the end-to-end tests arm.

mod crash;
mod signals_and_logs;

pub use crash::{crash_point, fail_scenario, sigkill_self, InvalidFailPoints};
pub use signals_and_logs::{init_tracing, shutdown_on_signals};
