//! Asynchronous invocations at the HTTP edge: accepting one, showing one with its
//! attempts, and a function's dead letters (listed, read, redriven, deleted).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ignis_control::AcceptError;
use ignis_store::{AsyncRow, AsyncStatus, AttemptRow};
use serde_json::Value;

use crate::answers::{log_lines, stored_json, ts, Accepted, AsyncView, Attempt, DeadLetters};
use crate::error::errors;
use crate::functions::path_name;
use crate::idempotency::replay;
use crate::params::{invocation_id, Limit};
use crate::{blocking, exists, ApiError, AppState, NoParams, Path, Query};

fn accept_error(e: AcceptError) -> ApiError {
    match e {
        AcceptError::NotFound(_) => ApiError::not_found(e.to_string()),
        AcceptError::QueueFull(_) => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", e.to_string())
        }
        AcceptError::Store(e) => crate::error::store_error(&e),
    }
}

/// A new invocation's 202 answer: queued (a redrive says which dead letter it runs again).
fn queued(invocation_id: String, redrive_of: Option<String>) -> Response {
    let accepted = Accepted {
        invocation_id,
        status: AsyncStatus::Queued.as_str().to_owned(),
        redrive_of,
    };
    accepted.response(false)
}

/// `POST /v1/functions/{name}/invoke` with `x-ignis-invocation-type: async`.
pub(crate) async fn invoke_async(
    s: &AppState,
    name: &str,
    event: String,
    key: Option<String>,
) -> Result<Response, ApiError> {
    match s
        .platform
        .accept_async(name, event, key)
        .await
        .map_err(accept_error)?
    {
        ignis_control::Accepted::New { id } => Ok(queued(id, None)),
        ignis_control::Accepted::Existing(first) => replay(first),
    }
}

/// An asynchronous invocation as the API shows it; `logs` adds each attempt's lines.
pub(crate) async fn async_view(
    s: &AppState,
    row: &AsyncRow,
    attempts: &[AttemptRow],
    logs: bool,
) -> Result<AsyncView, ApiError> {
    let mut list = Vec::new();
    for a in attempts {
        let lines = if !logs {
            None
        } else if a.execution_id.is_empty() {
            Some(Vec::new())
        } else {
            let store = s.platform.store().clone();
            let id = a.execution_id.clone();
            let record = blocking(move || store.get_invocation(&id)).await?;
            Some(record.map(|r| log_lines(&r.logs)).unwrap_or_default())
        };
        list.push(Attempt {
            attempt: a.attempt,
            execution_id: (!a.execution_id.is_empty()).then(|| a.execution_id.clone()),
            version: a.version,
            started_at: ts(a.started_at),
            duration_ms: a.duration_ms,
            status: a.status.clone(),
            error: stored_json(a.error_json.as_deref()),
            logs: lines,
        });
    }
    let open = match row.status {
        AsyncStatus::Queued | AsyncStatus::Failed => true,
        AsyncStatus::Running | AsyncStatus::Succeeded | AsyncStatus::Dead => false,
    };
    let last_error = attempts.last().and_then(|a| stored_json(a.error_json.as_deref()));
    Ok(AsyncView {
        id: row.id.clone(),
        kind: "async",
        function: row.function.clone(),
        status: row.status.as_str().to_owned(),
        source: row.source.as_str().to_owned(),
        request_id: row.id.clone(),
        created_at: ts(row.created_at),
        next_attempt_at: open.then(|| ts(row.next_attempt_at)),
        finished_at: row.finished_at.map(ts),
        attempt_count: attempts.len(),
        attempts: list,
        result: stored_json(row.result.as_deref()),
        error: if row.status == AsyncStatus::Succeeded {
            None
        } else {
            last_error
        },
        dead_reason: row.dead_reason.map(|r| r.as_str().to_owned()),
        dead_letter: row.dead_letter,
        redrive_of: row.redrive_of.clone(),
        redriven_as: row.redriven_as.clone(),
        hops: row.hops,
        event: serde_json::from_str::<Value>(&row.event).unwrap_or(Value::Null),
    })
}

/// `GET /v1/invocations/{id}` for an asynchronous invocation, if `id` is one.
pub(crate) async fn get_async(s: &AppState, id: &str) -> Result<Option<AsyncView>, ApiError> {
    let store = s.platform.store().clone();
    let lookup = id.to_owned();
    match blocking(move || store.get_async(&lookup)).await? {
        Some((row, attempts)) => Ok(Some(async_view(s, &row, &attempts, true).await?)),
        None => Ok(None),
    }
}

fn no_dead_letter(name: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("function {name:?} has no dead letter {id:?}"))
}

/// A function's dead letters: asynchronous invocations that failed for good, newest first.
#[utoipa::path(get, operation_id = "list_dead_letters", path = "/v1/functions/{name}/dead-letters", tag = "events",
    params(("name" = String, Path, description = "The function's name", example = "hello"), Query<Limit<50, 1000>>),
    responses(
        (status = 200, body = DeadLetters),
        errors::BadQuery, errors::Unauthorized, errors::NotFound,
    ))]
pub(crate) async fn dead_letters(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(Limit(limit)): Query<Limit<50, 1000>>,
) -> Result<Response, ApiError> {
    let name = path_name(&name)?;
    exists(&s, name.as_str())?;
    let store = s.platform.store().clone();
    let n = name.as_str().to_owned();
    let rows = blocking(move || store.dead_letters(&n, limit)).await?;
    let mut dead_letters = Vec::new();
    for (row, attempts) in &rows {
        dead_letters.push(async_view(&s, row, attempts, false).await?);
    }
    Ok(Json(DeadLetters { dead_letters }).into_response())
}

/// One dead letter, with each attempt's logs.
#[utoipa::path(get, operation_id = "get_dead_letter", path = "/v1/functions/{name}/dead-letters/{id}", tag = "events",
    params(("name" = String, Path, description = "The function's name", example = "hello"), ("id" = String, Path, description = "The dead letter's invocation id (a UUID)", example = "0190c5a4-6b1e-7c3d-8e2f-1a2b3c4d5e6f")),
    responses(
        (status = 200, body = AsyncView),
        errors::BadQuery, errors::Unauthorized, errors::NotFound,
    ))]
pub(crate) async fn dead_letter(
    State(s): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<Response, ApiError> {
    let name = path_name(&name)?;
    let id = invocation_id(&id)?;
    exists(&s, name.as_str())?;
    let store = s.platform.store().clone();
    let lookup = id.clone();
    let Some((row, attempts)) = blocking(move || store.get_async(&lookup)).await? else {
        return Err(no_dead_letter(name.as_str(), &id));
    };
    if row.function != name.as_str() || !row.dead_letter {
        return Err(no_dead_letter(name.as_str(), &id));
    }
    Ok(Json(async_view(&s, &row, &attempts, true).await?).into_response())
}

/// Runs a dead letter's event again as a new asynchronous invocation.
#[utoipa::path(post, operation_id = "redrive_dead_letter", path = "/v1/functions/{name}/dead-letters/{id}/redrive", tag = "events",
    params(("name" = String, Path, description = "The function's name", example = "hello"), ("id" = String, Path, description = "The dead letter's invocation id (a UUID)", example = "0190c5a4-6b1e-7c3d-8e2f-1a2b3c4d5e6f")),
    responses(
        (status = 202, description = "Queued", body = Accepted, links(
            ("get" = (operation_id = "get_invocation", parameters(("id" = "$response.body#/invocation_id")))),
        )),
        errors::BadQuery, errors::Unauthorized, errors::NotFound, errors::Busy, errors::DiskFull,
    ))]
pub(crate) async fn redrive(
    State(s): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<Response, ApiError> {
    let name = path_name(&name)?;
    let id = invocation_id(&id)?;
    exists(&s, name.as_str())?;
    match s
        .platform
        .redrive(name.as_str(), &id)
        .await
        .map_err(accept_error)?
    {
        Some(new) => Ok(queued(new, Some(id))),
        None => Err(no_dead_letter(name.as_str(), &id)),
    }
}

/// Deletes a dead letter.
#[utoipa::path(delete, operation_id = "delete_dead_letter", path = "/v1/functions/{name}/dead-letters/{id}", tag = "events",
    params(("name" = String, Path, description = "The function's name", example = "hello"), ("id" = String, Path, description = "The dead letter's invocation id (a UUID)", example = "0190c5a4-6b1e-7c3d-8e2f-1a2b3c4d5e6f")),
    responses(
        (status = 204, description = "Deleted"),
        errors::BadQuery, errors::Unauthorized, errors::NotFound,
    ))]
pub(crate) async fn delete_dead_letter(
    State(s): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<Response, ApiError> {
    let name = path_name(&name)?;
    let id = invocation_id(&id)?;
    exists(&s, name.as_str())?;
    let store = s.platform.store().clone();
    let (n, i) = (name.as_str().to_owned(), id.clone());
    if blocking(move || store.delete_dead_letter(&n, &i)).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(no_dead_letter(name.as_str(), &id))
    }
}
