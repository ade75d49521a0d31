//! The engine's operations on one saga: cancel, terminate, retry compensation, signal. Each
//! publishes the message the CLI publishes (a `SagaControl` on `<ns>.control`, a `SignalSaga`
//! on `<ns>.signals`) with a publisher confirm, and answers 202: an orchestrator applies it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use sagaflow_amqp::{OutgoingMessage, Publisher};
use sagaflow_contracts::{headers, ControlAction, SagaControl, SagaId, SagaStatus, SignalSaga};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ApiError, ApiState, BACKEND_TIMEOUT};
use crate::store;

const MAX_SIGNAL_NAME_BYTES: usize = sagaflow_contracts::SignalSaga::MAX_NAME_BYTES;

/// The optional body of cancel, terminate and retry-compensation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OperationRequest {
    /// Why, kept in the saga's history.
    reason: Option<String>,
}

/// The optional body of a signal.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignalRequest {
    /// What the saga code receives (`null` when absent).
    #[serde(default)]
    #[schema(value_type = Object)]
    payload: Value,
    /// Makes the signal idempotent: a second signal with the same id reaches the saga once.
    signal_id: Option<String>,
}

/// The operation was published; an orchestrator applies it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OperationAccepted {
    #[schema(value_type = String, format = Uuid)]
    id: SagaId,
    /// `cancel`, `terminate`, `retry_compensation` or `signal`.
    operation: &'static str,
    /// The AMQP message id of what was published.
    message_id: String,
}

type Accepted = Result<(StatusCode, Json<OperationAccepted>), ApiError>;

/// Asks the saga to stop: its code sees the cancellation at its next await, the
/// compensations of its completed steps run, and it ends `cancelled`.
#[utoipa::path(post, path = "/api/sagas/{id}/cancel", tag = "sagas",
    params(("id" = String, Path, description = "The saga's id")),
    request_body(content = Option<OperationRequest>, content_type = "application/json"),
    responses((status = 202, body = OperationAccepted), (status = 400, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody),
              (status = 503, body = super::error::ErrorBody)))]
pub(crate) async fn cancel_saga(
    State(state): State<Arc<ApiState>>,
    id: Result<Path<Uuid>, PathRejection>,
    body: Bytes,
) -> Accepted {
    control(
        &state,
        id,
        body,
        ControlAction::Cancel,
        "cancelled by an operator",
    )
    .await
}

/// Stops the saga at once: nothing more runs, nothing is compensated.
#[utoipa::path(post, path = "/api/sagas/{id}/terminate", tag = "sagas",
    params(("id" = String, Path, description = "The saga's id")),
    request_body(content = Option<OperationRequest>, content_type = "application/json"),
    responses((status = 202, body = OperationAccepted), (status = 400, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody),
              (status = 503, body = super::error::ErrorBody)))]
pub(crate) async fn terminate_saga(
    State(state): State<Arc<ApiState>>,
    id: Result<Path<Uuid>, PathRejection>,
    body: Bytes,
) -> Accepted {
    control(
        &state,
        id,
        body,
        ControlAction::Terminate,
        "terminated by an operator",
    )
    .await
}

/// Runs the failed compensation of a `compensation_failed` saga again.
#[utoipa::path(post, path = "/api/sagas/{id}/retry-compensation", tag = "sagas",
    params(("id" = String, Path, description = "The saga's id")),
    request_body(content = Option<OperationRequest>, content_type = "application/json"),
    responses((status = 202, body = OperationAccepted), (status = 400, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody),
              (status = 503, body = super::error::ErrorBody)))]
pub(crate) async fn retry_compensation(
    State(state): State<Arc<ApiState>>,
    id: Result<Path<Uuid>, PathRejection>,
    body: Bytes,
) -> Accepted {
    control(
        &state,
        id,
        body,
        ControlAction::RetryCompensation,
        "compensation retried by an operator",
    )
    .await
}

/// Sends signal `name` to the saga; it is kept, in order, until the code waits for it.
#[utoipa::path(post, path = "/api/sagas/{id}/signals/{name}", tag = "sagas",
    params(("id" = String, Path, description = "The saga's id"),
           ("name" = String, Path, description = "The signal's name, as the code waits for it")),
    request_body(content = Option<SignalRequest>, content_type = "application/json"),
    responses((status = 202, body = OperationAccepted), (status = 400, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody),
              (status = 503, body = super::error::ErrorBody)))]
pub(crate) async fn signal_saga(
    State(state): State<Arc<ApiState>>,
    path: Result<Path<(Uuid, String)>, PathRejection>,
    body: Bytes,
) -> Accepted {
    let Path((id, name)) = path?;
    let id = SagaId(id);
    if name.trim().is_empty() || name.len() > MAX_SIGNAL_NAME_BYTES {
        return Err(ApiError::BadRequest(format!(
            "a signal name has 1 to {MAX_SIGNAL_NAME_BYTES} bytes"
        )));
    }
    let request: SignalRequest = optional_json(&body)?;
    let saga = saga_status(&state, id).await?;
    if saga.is_final() {
        return Err(ApiError::Conflict(format!(
            "saga {id} is {saga}; it takes no more signals"
        )));
    }
    let message_id = request
        .signal_id
        .clone()
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let signal = SignalSaga {
        saga_id: Some(id),
        saga_type: None,
        start_key: None,
        name,
        payload: request.payload,
        signal_id: request.signal_id,
    };
    let message = OutgoingMessage {
        routing_key: state.topology.signals_queue(),
        message_id: message_id.clone(),
        message_type: headers::message_type::SIGNAL_SAGA.to_owned(),
        body: serde_json::to_vec(&signal).map_err(|e| ApiError::Internal(e.to_string()))?,
        ..Default::default()
    };
    publish(&state, &message).await?;
    tracing::info!(saga = %id, signal = %signal.name, "signal published");
    accepted(id, "signal", message_id)
}

async fn control(
    state: &ApiState,
    id: Result<Path<Uuid>, PathRejection>,
    body: Bytes,
    action: ControlAction,
    default_reason: &str,
) -> Accepted {
    let Path(id) = id?;
    let id = SagaId(id);
    let request: OperationRequest = optional_json(&body)?;
    let status = saga_status(state, id).await?;
    let operation = match action {
        ControlAction::Cancel => "cancel",
        ControlAction::Terminate => "terminate",
        ControlAction::RetryCompensation => "retry_compensation",
        ControlAction::Resume => "resume",
    };
    if status.is_final() {
        return Err(ApiError::Conflict(format!("saga {id} has ended: {status}")));
    }
    if action == ControlAction::RetryCompensation && status != SagaStatus::CompensationFailed {
        return Err(ApiError::Conflict(format!(
            "saga {id} is {status}; only a compensation_failed saga retries its compensation"
        )));
    }
    let control = SagaControl {
        saga_id: id,
        action,
        reason: request
            .reason
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| default_reason.to_owned()),
    };
    let message_id = Uuid::new_v4().to_string();
    let message = OutgoingMessage {
        routing_key: state.topology.control_queue(),
        message_id: message_id.clone(),
        message_type: headers::message_type::SAGA_CONTROL.to_owned(),
        body: serde_json::to_vec(&control).map_err(|e| ApiError::Internal(e.to_string()))?,
        ..Default::default()
    };
    publish(state, &message).await?;
    tracing::info!(saga = %id, operation, "saga operation published");
    accepted(id, operation, message_id)
}

fn accepted(id: SagaId, operation: &'static str, message_id: String) -> Accepted {
    Ok((
        StatusCode::ACCEPTED,
        Json(OperationAccepted {
            id,
            operation,
            message_id,
        }),
    ))
}

/// The saga's status; 404 when there is no such saga.
async fn saga_status(state: &ApiState, id: SagaId) -> Result<SagaStatus, ApiError> {
    store::get_saga(&state.db, id)
        .await?
        .map(|saga| saga.status)
        .ok_or_else(|| ApiError::NotFound(format!("no saga {id}")))
}

/// An empty body is the default request; anything else must be the JSON object.
fn optional_json<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("request body: {e}")))
}

async fn publish(state: &ApiState, message: &OutgoingMessage) -> Result<(), ApiError> {
    let connection = state.amqp().await?;
    let publish = async {
        let publisher = Publisher::open(&connection).await?;
        publisher.publish_confirmed(message).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    };
    tokio::time::timeout(BACKEND_TIMEOUT * 5, publish)
        .await
        .map_err(|_| ApiError::Unavailable("RabbitMQ did not confirm in time".into()))?
        .map_err(|e| {
            ApiError::Unavailable(format!("cannot publish to {}: {e}", message.routing_key))
        })
}
