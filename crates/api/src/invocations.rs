//! Invoking functions and reading invocation records and logs.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use std::collections::HashSet;

use ignis_control::{Followed, Follower, Invocation, InvokeError};
use ignis_core::limits::{
    MAX_ASYNC_PAYLOAD_BYTES, MAX_EVENT_DEPTH, MAX_IDEMPOTENCY_KEY_BYTES, MAX_PAYLOAD_BYTES,
};
use ignis_core::nesting::json_depth;
use ignis_store::{InvocationRecord, StoredLogLine};
use serde_json::json;
use serde_json::value::RawValue;

use crate::answers::{
    log_lines, stored_json, ts, Accepted, FunctionLogLine, Init, InvocationAnswer, InvocationList,
    InvocationView, LogEvent, Logs,
};
use crate::async_invocations;
use crate::error::internal;
use crate::error::{errors, ErrorBody};
use crate::functions::path_name;
use crate::idempotency;
use crate::params::{invocation_id, Limit, Pairs, Params};
use crate::{blocking, exists, read_body, ApiError, AppState, NoParams, Path, Query};
use ignis_control::StreamEvent;

/// Invokes a function with the body as its event (an empty body is `{}`). Synchronous by
/// default: the answer is the handler's (its status, headers and body, with the
/// `x-ignis-*` headers added). With `x-ignis-invocation-type: async` the call is queued and
/// answered 202; with `stream`, a handler that streams its answer is answered as it
/// writes (chunked, without `x-ignis-*` headers), as a function URL is. An
/// `idempotency-key` makes a repeated call answer as the first one did (a `stream` call
/// with a key is then answered whole).
#[utoipa::path(post, operation_id = "invoke_function", path = "/v1/functions/{name}/invoke", tag = "invocations",
    params(
        ("name" = String, Path, description = "The function's name", example = "hello"),
        ("x-ignis-invocation-type" = Option<String>, Header, nullable = false,
            description = "`sync` (or `RequestResponse`, the default), `async` (or `Event`) or `stream` (or `ResponseStream`), in any case",
            pattern = "^([Ss][Yy][Nn][Cc]|[Aa][Ss][Yy][Nn][Cc]|[Rr][Ee][Qq][Uu][Ee][Ss][Tt][Rr][Ee][Ss][Pp][Oo][Nn][Ss][Ee]|[Ee][Vv][Ee][Nn][Tt]|[Ss][Tt][Rr][Ee][Aa][Mm]|[Rr][Ee][Ss][Pp][Oo][Nn][Ss][Ee][Ss][Tt][Rr][Ee][Aa][Mm])$"),
        ("idempotency-key" = Option<String>, Header, nullable = false,
            description = "1 to 256 printable ASCII characters; a repeat within a day gets the first answer",
            pattern = "^[ -~]{1,256}$"),
    ),
    request_body(content = Option<Value>, description = "The event: any JSON, 64 levels deep at most; `{}` when the body is empty", content_type = "application/json"),
    responses(
        (status = 200, description = "The handler's answer: its status, headers and body", headers(
            ("x-ignis-invocation-id" = String, description = "The invocation's id"),
            ("x-ignis-cold-start" = String, description = "`true` when the call waited for a new instance, else `false`"),
            ("x-ignis-init-ms" = String, description = "On a cold start: how long the instance took to start, in ms"),
            ("x-ignis-duration-ms" = String, description = "How long the handler ran, in ms"),
            ("x-ignis-version" = String, description = "The function's version that answered"),
            ("x-ignis-idempotent-replay" = String, description = "`true` when the answer is the first call's, for a repeated idempotency key"),
        )),
        (status = 202, description = "Queued (asynchronous)", body = Accepted, links(
            ("get" = (operation_id = "get_invocation", parameters(("id" = "$response.body#/invocation_id")))),
        ), headers(
            ("x-ignis-invocation-id" = String, description = "The invocation's id"),
            ("x-ignis-idempotent-replay" = String, description = "`true` when the invocation is the first call's, for a repeated idempotency key"),
        )),
        errors::BadQuery, errors::Unauthorized, errors::NotFound, errors::TooLarge, errors::Busy,
        (status = 500, description = "The handler raised an error (`function_error`, with `type` and `stack`)", body = ErrorBody),
        (status = 502, description = "The instance failed (`instance_crashed`, `out_of_memory`, `response_too_large`, `invalid_response`, `instance_start_failed`)", body = ErrorBody),
        (status = 503, description = "The function is not deployed yet or its deploy failed (`not_ready`)", body = ErrorBody),
        (status = 504, description = "The handler did not finish in time (`timeout`)", body = ErrorBody),
        errors::DiskFull,
        (status = "default", description = "Any other status the handler answers with"),
    ))]
pub(crate) async fn invoke(
    State(s): State<AppState>,
    Path(name): Path<String>,
    _: Query<NoParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let name = path_name(&name)?;
    let kind = invocation_type(&headers)?;
    let key = idempotency_key(&headers)?;
    let (limit, what) = match kind {
        InvocationType::Sync | InvocationType::Stream => (MAX_PAYLOAD_BYTES, "invocation payload"),
        InvocationType::Async => (MAX_ASYNC_PAYLOAD_BYTES, "asynchronous invocation payload"),
    };

    let body = read_body(body, limit, what).await?;
    let text = std::str::from_utf8(&body).map_err(|_| invalid_json("the payload is not UTF-8"))?;
    let event: Box<RawValue> = if text.trim().is_empty() {
        RawValue::from_string("{}".to_owned()).map_err(|e| internal(&e))?
    } else {
        serde_json::from_str(text).map_err(|e| invalid_json(&e.to_string()))?
    };
    check_event_depth(event.get().as_bytes(), "the payload")?;
    match kind {
        InvocationType::Async => {
            return async_invocations::invoke_async(&s, name.as_str(), event.get().to_owned(), key).await
        }
        // With an idempotency key the answer is kept to replay: it is gathered whole.
        InvocationType::Stream if key.is_none() => {
            return Ok(invoke_streaming(&s, name.as_str(), event).await)
        }
        InvocationType::Stream | InvocationType::Sync => {}
    }
    let run = async {
        let inv = s
            .platform
            .invoke(name.as_str(), event)
            .await
            .map_err(invoke_error)?;
        answer(inv)
    };
    match key {
        None => run.await,
        Some(key) => idempotency::invoke_sync_once(&s, name.as_str(), key, run).await,
    }
}

/// Runs a call whose answer may be streamed (function URLs, `x-ignis-invocation-type:
/// stream`): a handler that streams answers as it writes (its head at once, then each
/// chunk); any other answers as usual. The call is recorded when it ends, as any.
pub(crate) async fn invoke_streaming(s: &AppState, name: &str, event: Box<RawValue>) -> Response {
    let (sink, mut stream) = tokio::sync::mpsc::unbounded_channel();
    let invocation = s.platform.invoke_streaming(name, event, sink);
    tokio::pin!(invocation);
    let ended = tokio::select! {
        biased;
        Some(first) = stream.recv() => Err(first),
        ended = &mut invocation => Ok(ended),
    };
    match ended {
        Ok(Ok(inv)) => answer(inv).unwrap_or_else(IntoResponse::into_response),
        Ok(Err(e)) => invoke_error(e).into_response(),
        Err(first) => streamed(first, stream),
    }
}

/// The response of a streamed answer: its head, then a body that yields each chunk as the
/// handler writes it and fails (the connection is cut) if the call fails before its end.
fn streamed(first: StreamEvent, rest: tokio::sync::mpsc::UnboundedReceiver<StreamEvent>) -> Response {
    let StreamEvent::Head(head, id) = first else {
        // The instance sends its head before anything else.
        return internal(&"a streamed answer began without its head").into_response();
    };
    let body = futures::stream::unfold(Some(rest), |rest| async move {
        let mut rest = rest?;
        let why = match rest.recv().await {
            Some(StreamEvent::Chunk(bytes)) => return Some((Ok(bytes::Bytes::from(bytes)), Some(rest))),
            Some(StreamEvent::End) => return None,
            Some(StreamEvent::Abort(why)) => why,
            Some(StreamEvent::Head(..)) => "a second head".to_owned(),
            None => "the function ended before its answer did".to_owned(),
        };
        // The connection is cut at the error, and what hyper has not written yet (the head,
        // the last chunks) would be lost with it: one turn first lets it flush them.
        tokio::task::yield_now().await;
        Some((Err(std::io::Error::other(why)), None))
    });
    let mut resp = Response::new(axum::body::Body::from_stream(body));
    *resp.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::OK);
    for (name, value) in head.headers {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            resp.headers_mut().append(n, v);
        }
    }
    // The call's id (its timings are known only at its end: the record has them).
    if let Ok(id) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-ignis-invocation-id", id);
    }
    resp
}

/// How a caller asked for an invocation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InvocationType {
    Sync,
    Async,
    /// Sync, with a streamed answer sent as the handler writes it (Lambda's
    /// InvokeWithResponseStream).
    Stream,
}

pub(crate) fn invocation_type(headers: &HeaderMap) -> Result<InvocationType, ApiError> {
    let Some(v) = single_header(headers, "x-ignis-invocation-type", "invalid_header")? else {
        return Ok(InvocationType::Sync);
    };
    let given = String::from_utf8_lossy(v.as_bytes());
    match given.to_ascii_lowercase().as_str() {
        "sync" | "requestresponse" => Ok(InvocationType::Sync),
        "async" | "event" => Ok(InvocationType::Async),
        "stream" | "responsestream" => Ok(InvocationType::Stream),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_header",
            format!(
                "x-ignis-invocation-type must be sync (or RequestResponse), async (or Event) or stream (or ResponseStream), got {given:?}"
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

/// Refuses an event (a JSON text) nested deeper than [`MAX_EVENT_DEPTH`]: every runtime
/// reads events with a reader that recurses, so one limit at the edge keeps them all safe.
pub(crate) fn check_event_depth(json: &[u8], what: &str) -> Result<(), ApiError> {
    let depth = json_depth(json);
    if depth > MAX_EVENT_DEPTH {
        return Err(event_too_deep(what, depth));
    }
    Ok(())
}

/// 400 `event_too_deep`: `what` nests `depth` levels, more than [`MAX_EVENT_DEPTH`].
pub(crate) fn event_too_deep(what: &str, depth: usize) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "event_too_deep",
        format!("{what} nests arrays and objects {depth} levels deep; the limit is {MAX_EVENT_DEPTH}"),
    )
}

/// The API error for an invocation that did not reach a handler.
pub(crate) fn invoke_error(e: InvokeError) -> ApiError {
    ApiError::from(e.error())
}

/// The HTTP answer of a finished invocation: the mapped response or the error, with the
/// `x-ignis-*` headers.
pub(crate) fn answer(inv: Invocation) -> Result<Response, ApiError> {
    let mut resp = match inv.result.answer() {
        Ok(r) => {
            let mut resp = Response::new(Body::from(r.body));
            *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
            // `core::response` already dropped the headers a handler may not set (framing,
            // `x-ignis-*`): that mapping is the one place they are filtered.
            for (name, value) in r.headers {
                // Names and values were checked by the mapping; a failure here drops only
                // that header.
                if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                    resp.headers_mut().append(n, v);
                }
            }
            resp
        }
        Err(e) => ApiError::from(e).into_response(),
    };
    let h = resp.headers_mut();
    let id = HeaderValue::from_str(&inv.id).map_err(|e| internal(&e))?;
    h.insert("x-ignis-invocation-id", id);
    h.insert(
        "x-ignis-cold-start",
        HeaderValue::from_static(if inv.cold.is_some() { "true" } else { "false" }),
    );
    if let Some(cold) = inv.cold {
        let ms = format!("{:.3}", cold.timings.total().as_secs_f64() * 1000.0);
        h.insert(
            "x-ignis-init-ms",
            HeaderValue::from_str(&ms).map_err(|e| internal(&e))?,
        );
    }
    let ms = format!("{:.3}", inv.duration.as_secs_f64() * 1000.0);
    h.insert(
        "x-ignis-duration-ms",
        HeaderValue::from_str(&ms).map_err(|e| internal(&e))?,
    );
    h.insert("x-ignis-version", HeaderValue::from(inv.version));
    Ok(resp)
}

fn invalid_json(detail: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        format!("the payload is not valid JSON: {detail}"),
    )
}

fn record_view(r: &InvocationRecord, with_logs: bool) -> InvocationView {
    InvocationView {
        id: r.id.clone(),
        function: r.function.clone(),
        version: r.version,
        status: r.status.clone(),
        cold_start: r.cold_start,
        started_at: ts(r.started_at),
        duration_ms: r.duration_ms,
        billed_ms: r.billed_ms,
        memory_mb: r.memory_mb,
        peak_memory_mb: r.peak_memory_mb,
        init: r.init.as_ref().map(|i| Init {
            reason: i.reason.clone(),
            init_ms: i.init_ms,
            sandbox_ms: i.sandbox_ms,
            runtime_ms: i.runtime_ms,
            load_ms: i.load_ms,
            boot_ms: i.boot_ms,
            restore_ms: i.restore_ms,
        }),
        error: stored_json(r.error_json.as_deref()),
        logs: with_logs.then(|| log_lines(&r.logs)),
    }
}

/// A function's newest invocation records (synchronous calls and attempts).
#[utoipa::path(get, operation_id = "list_invocations", path = "/v1/functions/{name}/invocations", tag = "invocations",
    params(("name" = String, Path, description = "The function's name", example = "hello"), Query<Limit<50, 1000>>),
    responses(
        (status = 200, body = InvocationList),
        errors::BadQuery, errors::Unauthorized, errors::NotFound,
    ))]
pub(crate) async fn list(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(Limit(limit)): Query<Limit<50, 1000>>,
) -> Result<Response, ApiError> {
    let name = path_name(&name)?;
    exists(&s, name.as_str())?;
    let store = s.platform.store().clone();
    let records = blocking(move || store.list_invocations(name.as_str(), limit)).await?;
    let invocations = records.iter().map(|r| record_view(r, false)).collect();
    Ok(Json(InvocationList { invocations }).into_response())
}

/// One invocation, with its logs: a synchronous call's record, or an asynchronous
/// invocation with its attempts.
#[utoipa::path(get, operation_id = "get_invocation", path = "/v1/invocations/{id}", tag = "invocations",
    params(("id" = String, Path, description = "The invocation's id (a UUID)",
        example = "0190c5a4-6b1e-7c3d-8e2f-1a2b3c4d5e6f")),
    responses(
        (status = 200, body = InvocationAnswer),
        errors::BadQuery, errors::Unauthorized, errors::NotFound,
    ))]
pub(crate) async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
    _: Query<NoParams>,
) -> Result<Response, ApiError> {
    let id = invocation_id(&id)?;
    let store = s.platform.store().clone();
    let lookup = id.clone();
    let record = blocking(move || store.get_invocation(&lookup)).await?;
    if let Some(record) = record {
        return Ok(Json(InvocationAnswer::Sync(record_view(&record, true))).into_response());
    }
    match async_invocations::get_async(&s, &id).await? {
        Some(v) => Ok(Json(InvocationAnswer::Async(v)).into_response()),
        None => Err(ApiError::not_found(format!("invocation {id:?} does not exist"))),
    }
}

/// A function's newest log lines, oldest first; with `follow`, a Server-Sent Events stream
/// of them and then of each new invocation's lines (`event: log`, and `event: missed` with
/// how many invocations' lines a slow reader lost).
#[utoipa::path(get, operation_id = "function_logs", path = "/v1/functions/{name}/logs", tag = "invocations",
    params(("name" = String, Path, description = "The function's name", example = "hello"), Query<LogParams>),
    responses(
        (status = 200, content((Logs = "application/json"), (LogEvent = "text/event-stream"))),
        errors::BadQuery, errors::Unauthorized, errors::NotFound,
    ))]
pub(crate) async fn logs(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(LogParams { limit, follow }): Query<LogParams>,
) -> Result<Response, ApiError> {
    let name = path_name(&name)?;
    exists(&s, name.as_str())?;
    // Subscribed before the backlog is read, so that no invocation falls between the two;
    // one in both is sent once.
    let follower = follow.then(|| s.platform.follow_logs(name.as_str()));
    let store = s.platform.store().clone();
    let function = name.as_str().to_owned();
    let lines: Vec<StoredLogLine> = blocking(move || store.recent_logs(&function, limit)).await?;
    match follower {
        None => {
            let logs = lines.iter().map(stored_line).collect();
            Ok(Json(Logs { logs }).into_response())
        }
        Some(follower) => Ok(follow_stream(lines, follower)),
    }
}

/// `?limit=` (1 to 10,000 lines, 100 by default) and `?follow=true` (stream new lines).
pub(crate) struct LogParams {
    limit: usize,
    follow: bool,
}

impl Params for LogParams {
    const NAMES: &'static [&'static str] = &["limit", "follow"];

    fn read(q: &Pairs) -> Result<LogParams, ApiError> {
        Ok(LogParams {
            limit: q.int("limit", 100, 10_000)?,
            follow: q.flag("follow")?,
        })
    }
}

impl crate::params::Described for LogParams {
    fn describe() -> Vec<utoipa::openapi::path::Parameter> {
        let limit = crate::params::query_param(
            "limit",
            "How many of the newest lines to answer (1 to 10000, 100 by default)",
            crate::params::int_schema(1, 10_000, 100),
            false,
        );
        vec![limit, crate::params::follow_param()]
    }
}

fn stored_line(l: &StoredLogLine) -> FunctionLogLine {
    FunctionLogLine {
        invocation_id: l.invocation_id.clone(),
        ts: ts(l.ts),
        stream: l.stream.clone(),
        line: l.line.clone(),
    }
}

/// A Server-Sent Events stream: the backlog, then each new invocation's lines as it ends.
/// `event: log` carries one line; `event: missed` says how many invocations' lines a
/// follower too slow to keep up lost.
fn follow_stream(backlog: Vec<StoredLogLine>, follower: Follower) -> Response {
    use axum::response::sse::Event;
    let seen: HashSet<String> = backlog.iter().map(|l| l.invocation_id.clone()).collect();
    let first = futures::stream::iter(
        backlog
            .iter()
            .map(|l| Event::default().event("log").json_data(stored_line(l)))
            .collect::<Vec<_>>(),
    );
    let live = futures::stream::unfold((follower, seen), |(mut follower, seen)| async move {
        loop {
            let events: Vec<Result<Event, axum::Error>> = match follower.next().await {
                Followed::Logs(logs) if seen.contains(&logs.invocation_id) => continue,
                Followed::Logs(logs) => logs
                    .lines
                    .iter()
                    .map(|l| {
                        Event::default().event("log").json_data(FunctionLogLine {
                            invocation_id: logs.invocation_id.clone(),
                            ts: ts(l.ts),
                            stream: l.stream.clone(),
                            line: l.line.clone(),
                        })
                    })
                    .collect(),
                Followed::Missed(n) => vec![Event::default()
                    .event("missed")
                    .json_data(json!({ "invocations": n }))],
                Followed::Closed => return None,
            };
            return Some((futures::stream::iter(events), (follower, seen)));
        }
    })
    .flatten();
    crate::event_stream(first.chain(live))
}
