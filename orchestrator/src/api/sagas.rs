//! `/api/sagas`: the list with filters and keyset pagination, counts by status, one saga with
//! its history and timers, and resume.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use sagaflow_contracts::{SagaId, SagaStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{ApiError, ApiState};
use crate::store::{self, SagaCursor, SagaFilter, SagaRow};

/// Page size when the request gives none, and the largest allowed.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

/// Filters of the saga list; all optional, combined with AND.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    /// One status or several separated by commas: `running`, `completed`, `failed`, `stuck`.
    status: Option<String>,
    /// The registered saga type, e.g. `ProcessPayment`.
    saga_type: Option<String>,
    /// The start key the saga was started with.
    start_key: Option<String>,
    /// Created at or after this time (RFC 3339).
    created_after: Option<DateTime<Utc>>,
    /// Created before this time (RFC 3339).
    created_before: Option<DateTime<Utc>>,
    /// Updated at or after this time (RFC 3339).
    updated_after: Option<DateTime<Utc>>,
    /// Updated before this time (RFC 3339).
    updated_before: Option<DateTime<Utc>>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Sagas per page, 1 to 500 (default 50).
    limit: Option<u32>,
}

/// A saga in the list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SagaSummary {
    #[schema(value_type = String, format = Uuid)]
    id: SagaId,
    saga_type: String,
    /// `running`, `completed`, `failed` or `stuck`.
    status: String,
    start_key: Option<String>,
    /// Why it failed or is stuck.
    #[schema(value_type = Option<Object>)]
    error: Option<Value>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// One page of the list, most recently started first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SagaPage {
    sagas: Vec<SagaSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

/// How many sagas match the filters, by status (the `status` filter ignored).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SagaCounts {
    #[schema(value_type = Object)]
    counts: serde_json::Map<String, Value>,
    total: i64,
}

/// A timer the saga waits on.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TimerView {
    /// `sleep/<n>`, `activity/<step>/retry`, `activity/<step>/start-to-close`, … or `resume`.
    key: String,
    attempt: i32,
    fire_at: DateTime<Utc>,
}

/// One saga: its state, full history and armed timers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SagaDetail {
    #[serde(flatten)]
    summary: SagaSummary,
    #[schema(value_type = Object)]
    input: Value,
    #[schema(value_type = Option<Object>)]
    output: Option<Value>,
    next_event_seq: i64,
    /// Every event in order: `{seq, at, event: {type, …}}` (contracts/schema/history-event.json).
    #[schema(value_type = Vec<Object>)]
    history: Vec<Value>,
    timers: Vec<TimerView>,
    /// The saga's trace id (its id as 32 hex digits).
    trace_id: String,
    /// `SAGAFLOW_TRACE_URL_TEMPLATE` with the trace id, when configured.
    trace_url: Option<String>,
}

/// Answer to a resume request.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ResumeAccepted {
    #[schema(value_type = String, format = Uuid)]
    id: SagaId,
    resume_requested: bool,
}

/// Sagas matching the filters, most recently started first, a page at a time.
#[utoipa::path(get, path = "/api/sagas", params(ListParams), tag = "sagas",
    responses((status = 200, body = SagaPage), (status = 400, body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody)))]
pub(crate) async fn list_sagas(
    State(state): State<Arc<ApiState>>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<SagaPage>, ApiError> {
    let Query(params) = params?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}, not {limit}"
        )));
    }
    let after = params.cursor.as_deref().map(parse_cursor).transpose()?;
    let filter = filter_of(&params)?;
    let mut rows = store::search_sagas(&state.db, &filter, after, i64::from(limit) + 1).await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|last| {
            format_cursor(SagaCursor {
                created_at: last.created_at,
                id: last.id,
            })
        })
    } else {
        None
    };
    Ok(Json(SagaPage {
        sagas: rows.into_iter().map(summary).collect(),
        next_cursor,
    }))
}

/// Counts of the sagas matching the filters, by status.
#[utoipa::path(get, path = "/api/sagas/counts", params(ListParams), tag = "sagas",
    responses((status = 200, body = SagaCounts), (status = 400, body = super::error::ErrorBody)))]
pub(crate) async fn count_sagas(
    State(state): State<Arc<ApiState>>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<SagaCounts>, ApiError> {
    let Query(params) = params?;
    let filter = filter_of(&params)?;
    let counts = store::count_sagas_by_status(&state.db, &filter).await?;
    let total = counts.iter().map(|(_, n)| n).sum();
    Ok(Json(SagaCounts {
        counts: counts
            .into_iter()
            .map(|(status, n)| (status, Value::from(n)))
            .collect(),
        total,
    }))
}

/// One saga's state, full history and armed timers.
#[utoipa::path(get, path = "/api/sagas/{id}", tag = "sagas",
    params(("id" = String, Path, format = Uuid, description = "The saga id")),
    responses((status = 200, body = SagaDetail), (status = 400, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody)))]
pub(crate) async fn get_saga(
    State(state): State<Arc<ApiState>>,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<SagaDetail>, ApiError> {
    let Path(id) = id?;
    let id = SagaId(id);
    let Some(saga) = store::get_saga(&state.db, id).await? else {
        return Err(ApiError::NotFound(format!("no saga {id}")));
    };
    let history = store::load_history(&state.db, id, &*state.codec)
        .await?
        .into_iter()
        .map(|event| serde_json::to_value(event).unwrap_or(Value::Null))
        .collect();
    let timers = store::pending_timers(&state.db, id)
        .await?
        .into_iter()
        .map(|t| TimerView {
            key: t.key,
            attempt: t.attempt,
            fire_at: t.fire_at,
        })
        .collect();
    // The trace the saga's spans are in (`traceparent` is `00-<trace id>-<span id>-<flags>`);
    // without one (traces were off when it started), its id.
    let trace_id = saga
        .trace_context
        .iter()
        .find(|(key, _)| key == "traceparent")
        .and_then(|(_, value)| value.split('-').nth(1))
        .filter(|id| id.len() == 32)
        .map_or_else(|| id.0.simple().to_string(), str::to_owned);
    let trace_url = state
        .trace_url_template
        .as_ref()
        .map(|template| template.replace("{trace_id}", &trace_id));
    Ok(Json(SagaDetail {
        input: state.codec.reveal(saga.input.clone()),
        output: saga.output.clone().map(|output| state.codec.reveal(output)),
        next_event_seq: saga.next_event_seq,
        summary: summary(saga),
        history,
        timers,
        trace_id,
        trace_url,
    }))
}

/// Asks for a stuck saga to be resumed: the next orchestrator to fire its `resume` timer
/// replays it with the code it runs now (as `sagaflow resume`).
#[utoipa::path(post, path = "/api/sagas/{id}/resume", tag = "sagas",
    params(("id" = String, Path, format = Uuid, description = "The saga id")),
    responses((status = 202, body = ResumeAccepted), (status = 404, body = super::error::ErrorBody),
              (status = 409, description = "The saga is not stuck", body = super::error::ErrorBody)))]
pub(crate) async fn resume_saga(
    State(state): State<Arc<ApiState>>,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<(StatusCode, Json<ResumeAccepted>), ApiError> {
    let Path(id) = id?;
    let id = SagaId(id);
    if !store::request_resume(&state.db, id).await? {
        return match store::get_saga(&state.db, id).await? {
            None => Err(ApiError::NotFound(format!("no saga {id}"))),
            Some(saga) => Err(ApiError::Conflict(format!(
                "saga {id} is {}, not stuck",
                saga.status
            ))),
        };
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(ResumeAccepted {
            id,
            resume_requested: true,
        }),
    ))
}

fn summary(saga: SagaRow) -> SagaSummary {
    SagaSummary {
        id: saga.id,
        saga_type: saga.saga_type,
        status: saga.status.to_string(),
        start_key: saga.start_key,
        error: saga.error,
        created_at: saga.created_at,
        updated_at: saga.updated_at,
    }
}

fn filter_of(params: &ListParams) -> Result<SagaFilter, ApiError> {
    let statuses = params
        .status
        .as_deref()
        .map(|list| {
            list.split(',')
                .map(|s| {
                    SagaStatus::from_str(s.trim())
                        .map(|s| s.as_str().to_owned())
                        .map_err(ApiError::BadRequest)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(SagaFilter {
        statuses,
        saga_type: params.saga_type.clone(),
        start_key: params.start_key.clone(),
        created_after: params.created_after,
        created_before: params.created_before,
        updated_after: params.updated_after,
        updated_before: params.updated_before,
    })
}

/// `<created_at in µs since the epoch>_<saga id>`: opaque to clients, exact for PostgreSQL's
/// microsecond timestamps.
fn format_cursor(cursor: SagaCursor) -> String {
    format!(
        "{}_{}",
        cursor.created_at.timestamp_micros(),
        cursor.id.0.simple()
    )
}

fn parse_cursor(text: &str) -> Result<SagaCursor, ApiError> {
    let invalid = || {
        ApiError::BadRequest(format!(
            "invalid cursor {text:?}: pass the next_cursor of a previous page"
        ))
    };
    let (micros, id) = text.split_once('_').ok_or_else(invalid)?;
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    Ok(SagaCursor {
        created_at: DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?,
        id: SagaId(Uuid::parse_str(id).map_err(|_| invalid())?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_written() {
        let cursor = SagaCursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: SagaId(Uuid::new_v4()),
        };
        assert_eq!(parse_cursor(&format_cursor(cursor)).unwrap(), cursor);
    }

    #[test]
    fn a_cursor_not_handed_out_is_a_bad_request() {
        for bad in ["", "x", "12_nope", "nope_0b8f4a4e1f2a4b7c9d0e1f2a3b4c5d6e"] {
            assert!(matches!(parse_cursor(bad), Err(ApiError::BadRequest(_))));
        }
    }
}
