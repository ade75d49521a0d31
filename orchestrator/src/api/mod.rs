//! The HTTP side of the orchestrator (axum): the visibility API under `/api`, the web UI under
//! `/ui`, `/healthz`, `/readyz` and `/metrics`. Off unless `SAGAFLOW_API_ADDR` is set.
//!
//! It reads PostgreSQL through a pool of its own (two connections, created lazily, so the
//! process stays up and `/readyz` can say what is wrong) and keeps one RabbitMQ connection for
//! readiness checks and re-publishing dead letters, opened again when it is lost.

mod auth;
mod dead_letters;
mod error;
mod health;
mod openapi;
mod operations;
mod sagas;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use sagaflow_contracts::Topology;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

/// How long `/readyz` and every request wait for PostgreSQL or RabbitMQ.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(2);

/// What the HTTP server needs from the orchestrator's configuration.
#[derive(Clone)]
pub struct ApiSettings {
    pub database_url: String,
    pub amqp_url: String,
    pub amqp_tls: sagaflow_amqp::AmqpTls,
    pub token: Option<String>,
    pub trace_url_template: Option<String>,
    /// Where operations (cancel, terminate, retry compensation, signal) are published.
    pub namespace: String,
    /// Renders `/metrics` (see [`crate::telemetry::install`]); `/metrics` is a 404 without it.
    pub metrics: Option<PrometheusHandle>,
}

/// Shared by every handler.
pub(crate) struct ApiState {
    pub(crate) db: PgPool,
    pub(crate) amqp_url: String,
    pub(crate) amqp_tls: sagaflow_amqp::AmqpTls,
    pub(crate) amqp: Mutex<Option<Arc<lapin::Connection>>>,
    pub(crate) token: Option<String>,
    pub(crate) trace_url_template: Option<String>,
    pub(crate) metrics: Option<PrometheusHandle>,
    pub(crate) topology: Topology,
    /// Shows payloads decoded when this process has the key (`SAGAFLOW_PAYLOAD_KEY`).
    pub(crate) codec: sagaflow_codec::SharedCodec,
}

impl ApiState {
    /// The API's RabbitMQ connection, opened (again) if there is none or it was lost.
    pub(crate) async fn amqp(&self) -> Result<Arc<lapin::Connection>, ApiError> {
        let mut slot = self.amqp.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(connection.clone());
        }
        let connected = tokio::time::timeout(
            BACKEND_TIMEOUT,
            sagaflow_amqp::connect_with_tls(&self.amqp_url, "sagaflow-api", &self.amqp_tls),
        )
        .await
        .map_err(|_| ApiError::Unavailable("RabbitMQ did not answer in time".into()))?
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let connected = Arc::new(connected);
        *slot = Some(connected.clone());
        Ok(connected)
    }
}

/// The HTTP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another process listens there, or the address is not this machine's. Fix
    /// `SAGAFLOW_API_ADDR`.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Fix SAGAFLOW_NAMESPACE.
    #[error("invalid namespace: {0}")]
    InvalidNamespace(#[from] sagaflow_contracts::InvalidName),
    /// Fix DATABASE_URL.
    #[error("invalid database URL: {0}")]
    InvalidDatabaseUrl(#[source] sqlx::Error),
}

/// Binds `addr` and serves the API until `shutdown`. Returns once listening; the returned
/// handle ends when the server has stopped.
pub async fn serve(
    addr: SocketAddr,
    settings: ApiSettings,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let options: PgConnectOptions = settings
        .database_url
        .parse()
        .map_err(ServeError::InvalidDatabaseUrl)?;
    let db = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(BACKEND_TIMEOUT)
        .connect_lazy_with(options);
    let topology = Topology::new(settings.namespace)?;
    let state = Arc::new(ApiState {
        db,
        amqp_url: settings.amqp_url,
        amqp_tls: settings.amqp_tls,
        amqp: Mutex::new(None),
        token: settings.token,
        trace_url_template: settings.trace_url_template,
        codec: sagaflow_codec::from_env().unwrap_or_else(|_| Arc::new(sagaflow_codec::Plain)),
        metrics: settings.metrics,
        topology,
    });
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %local, "HTTP API listening");
    let app = router(state);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the HTTP API stopped");
        }
    }))
}

/// Every route. `/api/*` and `/metrics` are behind the bearer token when one is configured;
/// health checks, the OpenAPI document and the UI's static pages are not (the pages hold no
/// data: they call the API with the token the user gives them).
fn router(state: Arc<ApiState>) -> Router {
    let protected = Router::new()
        .route("/api/sagas", get(sagas::list_sagas))
        .route("/api/sagas/counts", get(sagas::count_sagas))
        .route("/api/sagas/{id}", get(sagas::get_saga))
        .route("/api/sagas/{id}/resume", post(sagas::resume_saga))
        .route("/api/sagas/{id}/cancel", post(operations::cancel_saga))
        .route(
            "/api/sagas/{id}/terminate",
            post(operations::terminate_saga),
        )
        .route(
            "/api/sagas/{id}/retry-compensation",
            post(operations::retry_compensation),
        )
        .route(
            "/api/sagas/{id}/signals/{name}",
            post(operations::signal_saga),
        )
        .route("/api/dead-letters", get(dead_letters::list_dead_letters))
        .route("/api/dead-letters/{id}", get(dead_letters::get_dead_letter))
        .route(
            "/api/dead-letters/{id}/republish",
            post(dead_letters::republish_dead_letter),
        )
        .route("/metrics", get(health::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .merge(protected)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/", get(ui::index_redirect))
        .route("/ui", get(ui::list_page))
        .route("/ui/sagas/{id}", get(ui::saga_page))
        .route("/ui/app.js", get(ui::app_js))
        .route("/ui/style.css", get(ui::style_css))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}
