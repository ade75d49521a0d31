//! Gauges that describe stored state, read from PostgreSQL at each scrape: every replica
//! reports the same values (use `max`, not `sum`, across replicas).

use std::fmt::Write;

use sqlx::PgPool;

use super::ApiError;

/// The gauges in Prometheus text format.
pub(crate) async fn render(db: &PgPool) -> Result<String, ApiError> {
    let (outbox, oldest): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at))::float8 FROM outbox",
    )
    .fetch_one(db)
    .await?;
    let due: i64 = sqlx::query_scalar("SELECT count(*) FROM timers WHERE fire_at <= now()")
        .fetch_one(db)
        .await?;
    let by_status: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT saga_type, status, count(*) FROM sagas GROUP BY saga_type, status ORDER BY 1, 2",
    )
    .fetch_all(db)
    .await?;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP sagaflow_outbox_backlog Messages in the outbox not yet confirmed by the broker.\n# TYPE sagaflow_outbox_backlog gauge\nsagaflow_outbox_backlog {outbox}");
    let _ = writeln!(out, "# HELP sagaflow_outbox_oldest_age_seconds Age of the oldest outbox row (0 when empty).\n# TYPE sagaflow_outbox_oldest_age_seconds gauge\nsagaflow_outbox_oldest_age_seconds {}", oldest.unwrap_or(0.0));
    let _ = writeln!(out, "# HELP sagaflow_timers_due Timers whose time has come and that are not fired yet.\n# TYPE sagaflow_timers_due gauge\nsagaflow_timers_due {due}");
    let _ = writeln!(out, "# HELP sagaflow_sagas Sagas in the database, by type and status.\n# TYPE sagaflow_sagas gauge");
    for (saga_type, status, n) in by_status {
        let _ = writeln!(
            out,
            "sagaflow_sagas{{saga_type=\"{}\",status=\"{status}\"}} {n}",
            escape(&saga_type)
        );
    }
    Ok(out)
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
