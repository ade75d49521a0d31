//! Metrics: names, labels, and the Prometheus recorder behind `/metrics`.
//!
//! Counters and histograms are recorded where things happen, with the `metrics` macros (a
//! no-op until [`install_prometheus`] runs); gauges that describe stored state (outbox
//! backlog, timers due) are read from PostgreSQL when `/metrics` is scraped.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

// The engine's counters are recorded after each commit (`inbound/saga_metrics.rs`), the
// dead letters where they are seen.

/// Sagas started, by `saga_type`.
pub const SAGAS_STARTED: &str = "sagaflow_sagas_started_total";
/// Sagas that ended or stopped for an operator, by `saga_type` and `status` (`completed`,
/// `failed`, `compensated`, `cancelled`, `terminated`, `compensation_failed`, `stuck`).
pub const SAGAS_ENDED: &str = "sagaflow_sagas_ended_total";
/// Activity attempts sent (the first and every retry), by `activity`.
pub const ATTEMPTS: &str = "sagaflow_activity_attempts_total";
/// Retries sent (attempts after the first), by `activity`.
pub const RETRIES: &str = "sagaflow_activity_retries_total";
/// Attempts that failed or timed out, by `activity` and `kind` (the error's kind).
pub const ATTEMPTS_FAILED: &str = "sagaflow_activity_attempts_failed_total";
/// Seconds from a step's `ActivityScheduled` to its `ActivityCompleted` or `ActivityFailed`
/// (every attempt and retry included), by `activity` and `outcome` (`completed`, `failed`).
pub const STEP_SECONDS: &str = "sagaflow_step_duration_seconds";
/// Activations that took the live run from the cache.
pub const CACHE_HITS: &str = "sagaflow_cache_hits_total";
/// Activations that replayed the saga from its history.
pub const REPLAYS: &str = "sagaflow_replays_total";
/// Messages seen on the dead-letter exchange, by `reason_class`.
pub const DEAD_LETTERS: &str = "sagaflow_dead_letters_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
pub fn install_prometheus() -> Result<PrometheusHandle, String> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(STEP_SECONDS.to_owned()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ],
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// A small, stable label for why a message was dead-lettered: the broker's reason
/// (`rejected`, `expired`, `delivery_limit`, `maxlen`) or the kind of the orchestrator's.
pub fn dead_letter_reason_class(broker_reason: Option<&str>, reason: &str) -> &'static str {
    match broker_reason {
        Some("rejected") => return "broker_rejected",
        Some("expired") => return "broker_expired",
        Some("delivery_limit") => return "broker_delivery_limit",
        Some("maxlen") => return "broker_maxlen",
        Some(_) => return "broker_other",
        None => {}
    }
    let reason = reason.to_ascii_lowercase();
    if reason.contains("exceeds the limit") {
        "too_large"
    } else if reason.starts_with("not a") || reason.contains("json") {
        "malformed"
    } else if reason.contains("unknown saga type") {
        "unknown_saga_type"
    } else if reason.contains("start key") || reason.contains("start_key") {
        "bad_start_key"
    } else if reason.contains("panicked") {
        "panic"
    } else if reason.contains("postgresql refuses") {
        "refused_by_database"
    } else if reason.starts_with("no saga") {
        "unknown_saga"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::dead_letter_reason_class as class;

    #[test]
    fn dead_letter_reasons_fall_into_few_classes() {
        assert_eq!(class(Some("rejected"), "x"), "broker_rejected");
        assert_eq!(
            class(None, "message of 9 bytes exceeds the limit of 1 bytes"),
            "too_large"
        );
        assert_eq!(class(None, "not a StartSaga message: EOF"), "malformed");
        assert_eq!(
            class(
                None,
                "unknown saga type \"X\" (registered: A); no replica took it"
            ),
            "unknown_saga_type"
        );
        assert_eq!(class(None, "something new"), "other");
    }
}
