//! The worker's metrics, labelled by `activity` (one of the worker's registered names, never a
//! string from a message): served on `/metrics` when [`WorkerConfig::metrics_addr`] is set,
//! exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is, and no-ops otherwise.
//!
//! [`WorkerConfig::metrics_addr`]: crate::WorkerConfig::metrics_addr

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use sagaflow_contracts::ActivityOutcome;
use sagaflow_process::PrometheusHandle;

/// Commands handled, by `activity` and `outcome`: `completed`, `failed_permanent`,
/// `failed_retryable` (the handler ran), `rejected` (not runnable; the saga was told with a
/// permanent `CommandRejected` failure) or `dead_lettered` (not runnable, and not even the
/// step it belongs to could be read).
pub(crate) const ATTEMPTS: &str = "sagaflow_worker_attempts_total";
/// Seconds the handler ran, by `activity` and `outcome`.
pub(crate) const ATTEMPT_SECONDS: &str = "sagaflow_worker_attempt_duration_seconds";
/// Handlers running now, by `activity`.
pub(crate) const IN_FLIGHT: &str = "sagaflow_worker_attempts_in_flight";
/// Deliveries moved to the dead-letter queue, by `activity` and `reason_class`.
pub(crate) const DEAD_LETTERS: &str = "sagaflow_worker_dead_letters_total";
/// Heartbeats published and confirmed, by `activity`.
pub(crate) const HEARTBEATS: &str = "sagaflow_worker_heartbeats_total";
/// Cancels of attempts of this worker's activities, by `activity` and `running` (`true`: the
/// attempt ran here and its cancellation was tripped; `false`: remembered for its command).
pub(crate) const CANCELS: &str = "sagaflow_worker_cancels_total";
/// Commands ready in an activity's queue, not yet delivered, by `queue` (polled).
pub(crate) const CONSUMER_LAG: &str = "sagaflow_consumer_lag_messages";
/// How often [`CONSUMER_LAG`] is read from the broker.
pub(crate) const QUEUE_DEPTH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

const ATTEMPT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Installs the process's metrics recorder (once): Prometheus when `/metrics` is served, OTLP
/// when configured. Returns what renders `/metrics`.
pub(crate) fn install(prometheus: bool) -> Option<PrometheusHandle> {
    let handle = sagaflow_process::install_metrics(sagaflow_process::MetricsSettings {
        prometheus,
        histogram_buckets: &[(ATTEMPT_SECONDS, ATTEMPT_BUCKETS)],
    });
    if sagaflow_process::metrics_enabled() {
        describe_counter!(ATTEMPTS, "Activity commands handled, by outcome.");
        describe_histogram!(ATTEMPT_SECONDS, Unit::Seconds, "How long handlers ran.");
        describe_gauge!(IN_FLIGHT, "Handlers running now.");
        describe_counter!(
            DEAD_LETTERS,
            "Activity commands moved to the dead-letter queue."
        );
        describe_counter!(HEARTBEATS, "Heartbeats published and confirmed.");
        describe_counter!(CANCELS, "Cancels of this worker's attempts received.");
        describe_gauge!(
            CONSUMER_LAG,
            "Messages ready in a consumed queue, not yet delivered."
        );
    }
    handle
}

/// The `outcome` label of a handler's result.
pub(crate) fn outcome(outcome: &ActivityOutcome) -> &'static str {
    match outcome {
        ActivityOutcome::Completed { .. } => "completed",
        ActivityOutcome::Failed { error } if error.retryable => "failed_retryable",
        ActivityOutcome::Failed { .. } => "failed_permanent",
    }
}

/// Counts a command that was not run: `rejected` when the saga was told, else `dead_lettered`.
pub(crate) fn record_not_run(activity: &str, told_the_saga: bool, reason_class: &'static str) {
    let outcome = if told_the_saga {
        "rejected"
    } else {
        "dead_lettered"
    };
    counter!(ATTEMPTS, "activity" => activity.to_owned(), "outcome" => outcome).increment(1);
    counter!(DEAD_LETTERS, "activity" => activity.to_owned(), "reason_class" => reason_class)
        .increment(1);
}

/// One handler running: counted in [`IN_FLIGHT`] until dropped (whatever ends it).
pub(crate) struct InFlight(metrics::Gauge);

impl InFlight {
    pub(crate) fn start(activity: &str) -> Self {
        let running = gauge!(IN_FLIGHT, "activity" => activity.to_owned());
        running.increment(1.0);
        InFlight(running)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
