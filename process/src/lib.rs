//! What every Sagaflow process does the same way: structured logs, graceful shutdown on
//! SIGTERM/SIGINT, and the crash points the end-to-end tests arm.

mod crash;
mod report;
mod signals_and_logs;

pub use crash::{crash_point, fail_scenario, fault_injected, sigkill_self, InvalidFailPoints};
pub use report::Report;
pub use signals_and_logs::{init_tracing, shutdown_on_signals};

/// What every Sagaflow binary does first: logging ([`init_tracing`]), then the crash points of
/// `FAILPOINTS` ([`fail_scenario`]). Keep the returned guard for the life of the process.
pub fn init_process() -> Result<fail::FailScenario<'static>, InvalidFailPoints> {
    init_tracing();
    fail_scenario()
}
