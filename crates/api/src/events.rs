//! Asynchronous invocations, idempotency keys, dead letters, schedules and the manual
//! clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use ignis_control::AcceptError;
use ignis_core::limits::MAX_IDEMPOTENCY_KEY_BYTES;
use ignis_core::response::FRAMING_HEADERS;
use ignis_store::{AsyncRow, AttemptRow, IdempotentRecord};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::answers::{Accepted, AsyncView, Attempt, ClockView, DeadLetters, Schedules};
use crate::error::internal;
use crate::functions::path_name;
use crate::invocations::{blocking, exists, log_lines, stored_json, ts};
use crate::openapi::errors;
use crate::params::{invocation_id, Limit};
use crate::{json_body, read_body, ApiError, AppState, NoParams, Path, Query};

/// How a caller asked for an invocation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InvocationType {
    Sync,
    Async,
}

pub(crate) fn invocation_type(headers: &HeaderMap) -> Result<InvocationType, ApiError> {
    let Some(v) = single_header(headers, "x-ignis-invocation-type", "invalid_header")? else {
        return Ok(InvocationType::Sync);
    };
    let given = String::from_utf8_lossy(v.as_bytes());
    match given.to_ascii_lowercase().as_str() {
        "sync" | "requestresponse" => Ok(InvocationType::Sync),
        "async" | "event" => Ok(InvocationType::Async),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_header",
            format!(
                "x-ignis-invocation-type must be sync (or RequestResponse) or async (or Event), got {given:?}"
            ),
        )
        .with("field", "x-ignis-invocation-type")),
    }
}

/// A header that means one thing: refused when sent more than once (which one would win
/// is not for the server to guess).
fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
    code: &'static str,
) -> Result<Option<&'h HeaderValue>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("{name} is sent more than once; send it once"),
        )
        .with("field", name));
    }
    Ok(first)
}

/// The `idempotency-key` header, checked.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = single_header(headers, "idempotency-key", "invalid_idempotency_key")? else {
        return Ok(None);
    };
    let bad = |why: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            format!("idempotency-key {why}"),
        )
        .with("field", "idempotency-key")
    };
    let key = v.to_str().map_err(|_| bad("must be printable ASCII"))?;
    if key.is_empty() {
        return Err(bad("must not be empty"));
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(bad(&format!(
            "is {} bytes; the limit is {MAX_IDEMPOTENCY_KEY_BYTES}",
            key.len()
        )));
    }
    if !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(bad("must be printable ASCII"));
    }
    Ok(Some(key.to_owned()))
}

fn accept_error(e: AcceptError) -> ApiError {
    match e {
        AcceptError::NotFound(_) => ApiError::not_found(e.to_string()),
        AcceptError::QueueFull(_) => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", e.to_string())
        }
        AcceptError::Store(e) => crate::error::store_error(&e),
    }
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
        ignis_control::Accepted::New { id } => Ok(accepted(&id, "queued", false, None)),
        ignis_control::Accepted::Existing(first) => replay(s, first).await,
    }
}

fn accepted(id: &str, status: &str, replayed: bool, redrive_of: Option<String>) -> Response {
    let body = Accepted {
        invocation_id: id.to_owned(),
        status: status.to_owned(),
        redrive_of,
    };
    let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert("x-ignis-invocation-id", v);
    }
    if replayed {
        resp.headers_mut()
            .insert("x-ignis-idempotent-replay", HeaderValue::from_static("true"));
    }
    resp
}

/// The answer to a repeated idempotency key: the first invocation's.
async fn replay(s: &AppState, first: IdempotentRecord) -> Result<Response, ApiError> {
    if first.kind == "async" {
        let store = s.platform.store().clone();
        let id = first.invocation_id.clone();
        let status = blocking(move || store.get_async(&id))
            .await?
            .map_or_else(|| "deleted".to_owned(), |(row, _)| row.status);
        return Ok(accepted(&first.invocation_id, &status, true, None));
    }
    let reply: Value = first
        .reply
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .ok_or_else(|| internal(&"a stored idempotent reply is unreadable"))?;
    let status = reply["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let body = base64::engine::general_purpose::STANDARD
        .decode(reply["body"].as_str().unwrap_or(""))
        .map_err(|e| internal(&e))?;
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    for (n, v) in replayed_headers(&reply["headers"]) {
        resp.headers_mut().append(n, v);
    }
    resp.headers_mut()
        .insert("x-ignis-idempotent-replay", HeaderValue::from_static("true"));
    Ok(resp)
}

/// The headers of a stored reply (`[[name, value], ...]`) to answer again. The server
/// frames the replayed body itself: framing and connection headers are dropped (a reply
/// stored by an older version may hold a handler's).
fn replayed_headers(stored: &Value) -> Vec<(HeaderName, HeaderValue)> {
    let pairs = stored.as_array().into_iter().flatten();
    pairs
        .filter_map(|pair| {
            let (n, v) = (pair[0].as_str()?, pair[1].as_str()?);
            if FRAMING_HEADERS.contains(&n.to_ascii_lowercase().as_str()) {
                return None;
            }
            Some((HeaderName::try_from(n).ok()?, HeaderValue::try_from(v).ok()?))
        })
        .collect()
}

/// Synchronous calls with an idempotency key that are running: a repeat waits for the
/// first one instead of running the handler again.
#[derive(Default, Clone)]
pub(crate) struct InFlight(Arc<Mutex<HashMap<FunctionKey, watch::Receiver<()>>>>);

/// A function's name and an idempotency key.
type FunctionKey = (String, String);

/// Holds a key while its first call runs; dropping it lets the waiters look again.
struct Lead {
    map: InFlight,
    key: FunctionKey,
    _done: watch::Sender<()>,
}

impl Drop for Lead {
    fn drop(&mut self) {
        self.map
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// A synchronous invocation with an idempotency key.
pub(crate) async fn invoke_sync_once(
    s: &AppState,
    name: &str,
    key: String,
    run: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Result<Response, ApiError> {
    let map_key = (name.to_owned(), key.clone());
    let lead = loop {
        let waiting = {
            let mut map = s.inflight.0.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&map_key) {
                Some(rx) => Some(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(());
                    map.insert(map_key.clone(), rx);
                    drop(map);
                    break Lead {
                        map: s.inflight.clone(),
                        key: map_key.clone(),
                        _done: tx,
                    };
                }
            }
        };
        if let Some(mut rx) = waiting {
            // Ends when the first call's Lead is dropped (the sender goes away).
            while rx.changed().await.is_ok() {}
        }
    };
    let store = s.platform.store().clone();
    let (n, k) = (name.to_owned(), key.clone());
    let now = OffsetDateTime::now_utc();
    let fresh_after = now - time::Duration::seconds(ignis_core::limits::IDEMPOTENCY_TTL_SECS as i64);
    if let Some(first) = blocking(move || store.idempotent_record(&n, &k, fresh_after)).await? {
        return replay(s, first).await;
    }
    let resp = run.await?;
    // Only an invocation that ran is remembered: a throttle or a missing function is not.
    let Some(id) = resp
        .headers()
        .get("x-ignis-invocation-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return Ok(resp);
    };
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| internal(&e))?;
    let headers: Vec<Value> = parts
        .headers
        .iter()
        .filter_map(|(n, v)| Some(json!([n.as_str(), v.to_str().ok()?])))
        .collect();
    let reply = json!({
        "status": parts.status.as_u16(),
        "headers": headers,
        "body": base64::engine::general_purpose::STANDARD.encode(&bytes),
    })
    .to_string();
    let store = s.platform.store().clone();
    let n = name.to_owned();
    match blocking(move || store.save_idempotent_reply(&n, &key, &id, &reply, now)).await {
        Ok(()) => {}
        // The function ran: its answer goes back even if the disk cannot keep it for a
        // replay (a retry with this key then runs it again).
        Err(e) if e.status == StatusCode::INSUFFICIENT_STORAGE => {
            tracing::warn!(
                function = name,
                "idempotency key not remembered: the disk is full"
            );
        }
        Err(e) => return Err(e),
    }
    drop(lead);
    Ok(Response::from_parts(parts, Body::from(bytes)))
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
    let open = matches!(row.status.as_str(), "queued" | "failed");
    let last_error = attempts.last().and_then(|a| stored_json(a.error_json.as_deref()));
    Ok(AsyncView {
        id: row.id.clone(),
        kind: "async",
        function: row.function.clone(),
        status: row.status.clone(),
        source: row.source.clone(),
        request_id: row.id.clone(),
        created_at: ts(row.created_at),
        next_attempt_at: open.then(|| ts(row.next_attempt_at)),
        finished_at: row.finished_at.map(ts),
        attempt_count: attempts.len(),
        attempts: list,
        result: stored_json(row.result.as_deref()),
        error: if row.status == "succeeded" {
            None
        } else {
            last_error
        },
        dead_reason: row.dead_reason.clone(),
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
        Some(new) => Ok(accepted(&new, "queued", false, Some(id))),
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

/// Every function's schedules, with their next fire times.
#[utoipa::path(get, operation_id = "list_schedules", path = "/v1/schedules", tag = "events",
    responses((status = 200, body = Schedules), errors::BadQuery, errors::Unauthorized))]
pub(crate) async fn schedules(State(s): State<AppState>, _: Query<NoParams>) -> Result<Response, ApiError> {
    let schedules = s.platform.schedules().await.map_err(|e| internal(&e))?;
    Ok(Json(Schedules { schedules }).into_response())
}

/// The time schedules follow.
#[utoipa::path(get, operation_id = "get_clock", path = "/v1/clock", tag = "events",
    responses((status = 200, body = ClockView), errors::BadQuery, errors::Unauthorized))]
pub(crate) async fn get_clock(State(s): State<AppState>, _: Query<NoParams>) -> Json<ClockView> {
    let manual = matches!(s.platform.clock(), ignis_control::Clock::Manual(_));
    Json(ClockView {
        now: ts(s.platform.clock().now()),
        manual,
    })
}

/// The body of `PUT /v1/clock`.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct SetClock {
    /// RFC 3339.
    #[schema(format = DateTime, example = "2026-03-29T00:30:00Z")]
    now: String,
}

/// `PUT /v1/clock {"now": "<RFC 3339>"}`: moves the manual clock (servers started with
/// `--manual-clock`, for tests).
#[utoipa::path(put, operation_id = "set_clock", path = "/v1/clock", tag = "events",
    request_body = SetClock,
    responses(
        (status = 200, body = ClockView),
        errors::BadQuery, errors::Unauthorized, errors::Conflict, errors::TooLarge, errors::Invalid,
    ))]
pub(crate) async fn set_clock(
    State(s): State<AppState>,
    _: Query<NoParams>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, 4096, "clock body").await?;
    let v = json_body(&body)?;
    let Value::Object(fields) = &v else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body must be a JSON object such as {\"now\": \"2026-03-29T00:30:00Z\"}",
        ));
    };
    if let Some(unknown) = fields.keys().find(|k| k.as_str() != "now") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_field",
            format!("unknown field {unknown:?}; the only field is now"),
        )
        .with("field", unknown.clone()));
    }
    let now = v["now"]
        .as_str()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_value",
                "now must be an RFC 3339 time such as 2026-03-29T00:30:00Z",
            )
            .with("field", "now")
        })?;
    if !s.platform.clock().set(now) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "clock_not_manual",
            "this server follows the system clock; start it with --manual-clock to set the time",
        ));
    }
    Ok(Json(ClockView {
        now: ts(now),
        manual: true,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_never_carries_stored_framing_headers() {
        let stored = json!([
            ["content-length", "2"],
            ["Transfer-Encoding", "chunked"],
            ["connection", "close"],
            ["upgrade", "h2c"],
            ["content-type", "text/plain"],
            ["x-ignis-invocation-id", "abc"],
            ["set-cookie", "a=1"],
            ["set-cookie", "b=2"],
            ["bad name", "x"],
        ]);
        let kept: Vec<(String, String)> = replayed_headers(&stored)
            .into_iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().expect("ascii").to_owned()))
            .collect();
        let want = [
            ("content-type", "text/plain"),
            ("x-ignis-invocation-id", "abc"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()));
        assert_eq!(kept, want);
    }
}
