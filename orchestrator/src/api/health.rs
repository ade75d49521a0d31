//! `/healthz` (the process answers), `/readyz` (PostgreSQL and RabbitMQ answer) and
//! `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, ApiState, BACKEND_TIMEOUT};

/// The answer of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok`, or `unavailable` when a check failed.
    status: &'static str,
    /// Each check: `ok` or why not.
    #[schema(value_type = Object)]
    checks: serde_json::Map<String, serde_json::Value>,
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        checks: Default::default(),
    })
}

/// Ready when PostgreSQL answers a query and RabbitMQ opens a channel, each within 2 s.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub(crate) async fn readyz(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    let (postgres, rabbitmq) = tokio::join!(check_postgres(&state), check_rabbitmq(&state));
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    for (name, check) in [("postgresql", postgres), ("rabbitmq", rabbitmq)] {
        let value = match check {
            Ok(()) => "ok".to_owned(),
            Err(why) => {
                ready = false;
                why
            }
        };
        checks.insert(name.to_owned(), value.into());
    }
    let (status, word) = match ready {
        true => (StatusCode::OK, "ok"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    (
        status,
        Json(Health {
            status: word,
            checks,
        }),
    )
}

async fn check_postgres(state: &ApiState) -> Result<(), String> {
    match tokio::time::timeout(BACKEND_TIMEOUT, sqlx::query("SELECT 1").execute(&state.db)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(format!("PostgreSQL: {error}")),
        Err(_) => Err("PostgreSQL did not answer within 2 s".into()),
    }
}

async fn check_rabbitmq(state: &ApiState) -> Result<(), String> {
    let connection = state.amqp().await.map_err(|e| e.to_string())?;
    // A channel open and close is a round trip: a half-dead connection fails it.
    let round_trip = async {
        let channel = connection.create_channel().await?;
        channel.close(200, "readiness check").await
    };
    match tokio::time::timeout(BACKEND_TIMEOUT, round_trip).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(format!("RabbitMQ: {error}")),
        Err(_) => Err("RabbitMQ did not answer within 2 s".into()),
    }
}

/// Prometheus text exposition of the orchestrator's metrics.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics(
    State(state): State<Arc<ApiState>>,
) -> Result<impl IntoResponse, ApiError> {
    let Some(handle) = &state.metrics else {
        return Err(ApiError::NotFound("metrics are off in this process".into()));
    };
    // Stored state as of this scrape.
    crate::telemetry::record_stored_gauges(&state.db).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    ))
}
