//! `/api/dead-letters`: list, inspect and re-publish the dead letters the orchestrator
//! recorded (see `store::dead_letters`). The broker's `<ns>.dead-letter` queue keeps its own
//! copies, untouched by this API.

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use sagaflow_amqp::Publisher;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiState, BACKEND_TIMEOUT};
use crate::store::{self, DeadLetterRow};

/// Page of the dead-letter list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeadLetterParams {
    /// Only dead letters with an id below this (the `next_cursor` of the previous page).
    cursor: Option<i64>,
    /// Per page, 1 to 500 (default 50).
    limit: Option<u32>,
}

/// A dead letter in the list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterSummary {
    /// The id to inspect or re-publish it by.
    id: i64,
    /// The AMQP message id (may be empty, and is not unique).
    message_id: String,
    /// The AMQP type, e.g. `sagaflow.StartSaga`.
    message_type: String,
    reason: String,
    /// The queue it was taken from, where re-publishing sends it.
    source_queue: Option<String>,
    dead_lettered_at: DateTime<Utc>,
    republished_at: Option<DateTime<Utc>>,
}

/// One dead letter with its headers and body.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterDetail {
    #[serde(flatten)]
    summary: DeadLetterSummary,
    #[schema(value_type = Object)]
    headers: Value,
    /// The body as JSON when it is JSON, otherwise as text (invalid UTF-8 replaced).
    #[schema(value_type = Object)]
    body: Value,
    body_is_json: bool,
}

/// A page of dead letters, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterPage {
    dead_letters: Vec<DeadLetterSummary>,
    next_cursor: Option<i64>,
}

/// Dead letters, newest first.
#[utoipa::path(get, path = "/api/dead-letters", params(DeadLetterParams), tag = "dead letters",
    responses((status = 200, body = DeadLetterPage), (status = 400, body = super::error::ErrorBody)))]
pub(crate) async fn list_dead_letters(
    State(state): State<Arc<ApiState>>,
    params: Result<Query<DeadLetterParams>, QueryRejection>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let Query(params) = params?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and 500, not {limit}"
        )));
    }
    let mut rows = store::list_dead_letters(&state.db, params.cursor, i64::from(limit) + 1).await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Json(DeadLetterPage {
        dead_letters: rows.into_iter().map(summary).collect(),
        next_cursor,
    }))
}

/// One dead letter with its headers and body.
#[utoipa::path(get, path = "/api/dead-letters/{id}", tag = "dead letters",
    params(("id" = i64, Path, description = "The dead letter's id")),
    responses((status = 200, body = DeadLetterDetail), (status = 404, body = super::error::ErrorBody)))]
pub(crate) async fn get_dead_letter(
    State(state): State<Arc<ApiState>>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<DeadLetterDetail>, ApiError> {
    let Path(id) = id?;
    let row = store::get_dead_letter(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no dead letter {id}")))?;
    Ok(Json(detail(row)))
}

/// Publishes the dead letter again to the queue it came from (with publisher confirm), with
/// its original message id, type, body and headers (less the dead-letter ones). Refused if it
/// was re-published already or its queue is unknown.
#[utoipa::path(post, path = "/api/dead-letters/{id}/republish", tag = "dead letters",
    params(("id" = i64, Path, description = "The dead letter's id")),
    responses((status = 200, body = DeadLetterDetail), (status = 404, body = super::error::ErrorBody),
              (status = 409, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody)))]
pub(crate) async fn republish_dead_letter(
    State(state): State<Arc<ApiState>>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<DeadLetterDetail>, ApiError> {
    let Path(id) = id?;
    let row = store::get_dead_letter(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no dead letter {id}")))?;
    if let Some(at) = row.republished_at {
        return Err(ApiError::Conflict(format!(
            "dead letter {id} was re-published at {at}"
        )));
    }
    let Some(message) = row.republish_message() else {
        return Err(ApiError::Conflict(format!(
            "dead letter {id} does not say which queue it came from"
        )));
    };
    let queue = message.routing_key.clone();
    let connection = state.amqp().await?;
    let publish = async {
        let publisher = Publisher::open(&connection).await?;
        publisher.publish_confirmed(&message).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    };
    tokio::time::timeout(BACKEND_TIMEOUT * 5, publish)
        .await
        .map_err(|_| ApiError::Unavailable("RabbitMQ did not confirm in time".into()))?
        .map_err(|e| ApiError::Unavailable(format!("cannot publish to {queue}: {e}")))?;
    store::mark_republished(&state.db, id).await?;
    tracing::info!(id, queue, "dead letter re-published");
    let row = store::get_dead_letter(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no dead letter {id}")))?;
    Ok(Json(detail(row)))
}

fn summary(row: DeadLetterRow) -> DeadLetterSummary {
    DeadLetterSummary {
        id: row.id,
        message_id: row.message_id,
        message_type: row.message_type,
        reason: row.reason,
        source_queue: row.source_queue,
        dead_lettered_at: row.dead_lettered_at,
        republished_at: row.republished_at,
    }
}

fn detail(mut row: DeadLetterRow) -> DeadLetterDetail {
    let headers = std::mem::take(&mut row.headers);
    let body = std::mem::take(&mut row.body);
    let (body, body_is_json) = match serde_json::from_slice(&body) {
        Ok(json) => (json, true),
        Err(_) => (
            Value::String(String::from_utf8_lossy(&body).into_owned()),
            false,
        ),
    };
    DeadLetterDetail {
        summary: summary(row),
        headers,
        body,
        body_is_json,
    }
}
