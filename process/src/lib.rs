//! What every Sagaflow process does the same way: structured logs, traces and metrics, graceful
//! shutdown on SIGTERM/SIGINT, and the crash points the end-to-end tests arm.

mod crash;
mod metrics_export;
mod report;
mod signals_and_logs;
mod traces;

pub use crash::{crash_point, fail_scenario, fault_injected, sigkill_self, InvalidFailPoints};
pub use metrics_export::{
    install_metrics, metrics_enabled, otlp_metrics_interval, serve_metrics, MetricsGuard,
    MetricsSettings,
};
/// Renders the Prometheus text of [`install_metrics`]'s registry.
pub use metrics_exporter_prometheus::PrometheusHandle;
pub use report::Report;
pub use signals_and_logs::{init_trace_export, init_tracing, shutdown_on_signals};
pub use traces::{set_remote_parent, trace_headers, TracesGuard};

/// What every Sagaflow binary does first: logging and traces ([`init_tracing`]), then the
/// crash points of `FAILPOINTS` ([`fail_scenario`]). Keep the returned guard for the life of
/// the process: dropping it flushes the spans and OTLP metrics not yet exported (metrics are
/// installed later, by [`install_metrics`], once the process knows whether it serves them).
pub fn init_process() -> Result<ProcessGuard, InvalidFailPoints> {
    let traces = init_tracing();
    Ok(ProcessGuard {
        _metrics: MetricsGuard::new(),
        _crash_points: fail_scenario()?,
        _traces: traces,
    })
}

/// Keeps the crash points armed and the trace and metric exporters running (see
/// [`init_process`]).
pub struct ProcessGuard {
    _metrics: MetricsGuard,
    _crash_points: fail::FailScenario<'static>,
    _traces: TracesGuard,
}
