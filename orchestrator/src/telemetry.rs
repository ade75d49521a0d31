//! Metrics: names, labels, and the recorder behind `/metrics` and OTLP.
//!
//! Counters and histograms are recorded where things happen, with the `metrics` macros (a
//! no-op until [`install`] runs); gauges that describe stored state (outbox backlog, timers
//! due, sagas by status) are read from PostgreSQL ([`record_stored_gauges`]) at each scrape of
//! `/metrics` and, when metrics go over OTLP, at each export interval.

use std::collections::HashSet;
use std::sync::Mutex;

use metrics::gauge;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;

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
/// Transactions that committed the processing of more than one message (group commit).
pub const BATCHES: &str = "sagaflow_batches_total";
/// Messages committed in those transactions.
pub const BATCHED_MESSAGES: &str = "sagaflow_batched_messages_total";
/// Batches rolled back because one of their messages could not be committed with the
/// others; each was then processed alone.
pub const BATCHES_SPLIT: &str = "sagaflow_batches_split_total";
/// Messages seen on the dead-letter exchange, by `reason_class`.
pub const DEAD_LETTERS: &str = "sagaflow_dead_letters_total";
/// Messages ready in a queue this process consumes, not yet delivered, by `queue` (the
/// broker's count, polled every [`QUEUE_DEPTH_INTERVAL`]).
pub const CONSUMER_LAG: &str = "sagaflow_consumer_lag_messages";
/// How often [`CONSUMER_LAG`] is read from the broker.
pub const QUEUE_DEPTH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Messages in the outbox not yet confirmed by the broker.
pub const OUTBOX_BACKLOG: &str = "sagaflow_outbox_backlog";
/// Age in seconds of the oldest outbox row (0 when empty).
pub const OUTBOX_OLDEST_AGE: &str = "sagaflow_outbox_oldest_age_seconds";
/// Timers whose time has come and that are not fired yet.
pub const TIMERS_DUE: &str = "sagaflow_timers_due";
/// Sagas in the database, by `saga_type` and `status`.
pub const SAGAS: &str = "sagaflow_sagas";

/// Bucket bounds (seconds) of the step duration histogram.
const STEP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Installs the process's metrics recorder (see `sagaflow_process::install_metrics`): a
/// Prometheus registry when the HTTP API serves `/metrics`, OTLP when configured. Returns what
/// renders `/metrics`.
pub fn install(prometheus: bool) -> Option<PrometheusHandle> {
    let handle = sagaflow_process::install_metrics(sagaflow_process::MetricsSettings {
        prometheus,
        histogram_buckets: &[(STEP_SECONDS, STEP_BUCKETS)],
    });
    if sagaflow_process::metrics_enabled() {
        describe();
    }
    handle
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(SAGAS_STARTED, "Sagas started.");
    describe_counter!(SAGAS_ENDED, "Sagas that ended or stopped for an operator.");
    describe_counter!(
        ATTEMPTS,
        "Activity attempts sent, the first and every retry."
    );
    describe_counter!(RETRIES, "Activity attempts after the first.");
    describe_counter!(
        ATTEMPTS_FAILED,
        "Activity attempts that failed or timed out."
    );
    describe_histogram!(
        STEP_SECONDS,
        Unit::Seconds,
        "From a step's scheduling to its completion or failure, retries included."
    );
    describe_counter!(
        CACHE_HITS,
        "Activations that took the live run from the cache."
    );
    describe_counter!(
        REPLAYS,
        "Activations that replayed the saga from its history."
    );
    describe_counter!(
        BATCHES,
        "Transactions that committed more than one message (group commit)."
    );
    describe_counter!(
        BATCHED_MESSAGES,
        "Messages committed in those transactions."
    );
    describe_counter!(
        BATCHES_SPLIT,
        "Batches rolled back and processed one message at a time."
    );
    describe_counter!(DEAD_LETTERS, "Messages seen on the dead-letter exchange.");
    describe_gauge!(
        CONSUMER_LAG,
        "Messages ready in a consumed queue, not yet delivered."
    );
    describe_gauge!(
        OUTBOX_BACKLOG,
        "Messages in the outbox not yet confirmed by the broker."
    );
    describe_gauge!(
        OUTBOX_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest outbox row (0 when empty)."
    );
    describe_gauge!(
        TIMERS_DUE,
        "Timers whose time has come and that are not fired yet."
    );
    describe_gauge!(SAGAS, "Sagas in the database, by type and status.");
}

/// Label sets of [`SAGAS`] set before: one that no longer matches any saga is set to 0, not
/// left at its last count.
static SAGA_COUNTS_SEEN: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);

/// Reads the gauges of stored state from PostgreSQL and sets them. Every replica reports the
/// same values (aggregate with `max`, not `sum`).
pub async fn record_stored_gauges(db: &PgPool) -> Result<(), sqlx::Error> {
    let (outbox, oldest): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at))::float8 FROM outbox",
    )
    .fetch_one(db)
    .await?;
    let due: i64 = sqlx::query_scalar("SELECT count(*) FROM timers WHERE fire_at <= now()")
        .fetch_one(db)
        .await?;
    let by_status: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT saga_type, status, count(*) FROM sagas GROUP BY saga_type, status")
            .fetch_all(db)
            .await?;
    gauge!(OUTBOX_BACKLOG).set(outbox as f64);
    gauge!(OUTBOX_OLDEST_AGE).set(oldest.unwrap_or(0.0));
    gauge!(TIMERS_DUE).set(due as f64);
    let mut seen = SAGA_COUNTS_SEEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    let mut now = HashSet::with_capacity(by_status.len());
    for (saga_type, status, n) in by_status {
        gauge!(SAGAS, "saga_type" => saga_type.clone(), "status" => status.clone()).set(n as f64);
        now.insert((saga_type, status));
    }
    for (saga_type, status) in seen.difference(&now) {
        gauge!(SAGAS, "saga_type" => saga_type.clone(), "status" => status.clone()).set(0.0);
    }
    seen.extend(now);
    Ok(())
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
