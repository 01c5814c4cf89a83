//! `POST /v1/playground/run`: code against an event, without creating a function.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use ignis_control::{PlaygroundError, PlaygroundRun, StreamEvent};
use ignis_core::limits::{MAX_PAYLOAD_BYTES, MAX_RESPONSE_BYTES};
use ignis_core::spec::parse_spec;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::answers::log_lines;
use crate::answers::{LoadError, PlaygroundAnswer, PlaygroundResponse};
use crate::error::errors;
use crate::error::internal;
use crate::functions::MAX_FUNCTION_BODY;
use crate::invocations::answer;
use crate::{json_body, read_body, ApiError, AppState, NoParams, Query};

/// The fields a playground run takes; the spec fields mean what they mean for a function.
const FIELDS: &[&str] = &[
    "runtime",
    "code",
    "handler",
    "event",
    "memory_mb",
    "timeout_secs",
    "env",
];

/// The name the run's instance goes by (in its context and the server's log).
const PLAYGROUND_NAME: &str = "playground";

/// The body of a playground run: a function's `runtime`, `code`, `handler`, limits and
/// `env`, as in a spec, and the `event` to call it with.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct PlaygroundBody {
    #[schema(value_type = crate::functions::RuntimeName)]
    runtime: String,
    /// The handler's source, at most 5 MiB, not only white space.
    #[schema(
        max_length = 5242880,
        example = "def handler(event, context):\n    return event\n"
    )]
    code: String,
    #[schema(pattern = "^[A-Za-z_$][A-Za-z0-9_$]{0,127}$")]
    handler: Option<String>,
    /// Any JSON, 64 levels deep at most (`{}` when left out).
    #[schema(required = false, value_type = Value)]
    event: (),
    #[schema(minimum = 128, maximum = 3072)]
    memory_mb: Option<u32>,
    #[schema(minimum = 1, maximum = 300)]
    timeout_secs: Option<u32>,
    /// Names match `[A-Za-z_][A-Za-z0-9_]*`; values hold no NUL.
    env: Option<std::collections::BTreeMap<String, String>>,
}

/// Runs code against an event in a fresh instance, without creating a function.
/// One Server-Sent Event of a streamed playground run, for the document.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct PlaygroundEvent {
    /// `head` (`{"status", "headers"}`), `chunk` (bytes in base64), `end` (the run's
    /// answer) or `error` (`{"error"}`).
    pub event: String,
    pub data: String,
}

/// With `x-ignis-invocation-type: stream` the answer is Server-Sent Events: `head` and
/// `chunk` (base64) as a streaming handler writes, then `end` (the answer below) or `error`.
#[utoipa::path(post, operation_id = "playground_run", path = "/v1/playground/run", tag = "console",
    params(("x-ignis-invocation-type" = Option<String>, Header, nullable = false,
        description = "`stream` answers with Server-Sent Events as a streaming handler writes; anything else (or nothing) with the run's answer at its end")),
    request_body = PlaygroundBody,
    responses(
        (status = 200, description = "The run's answer, or why the code did not load", content(
            (PlaygroundAnswer = "application/json"),
            (PlaygroundEvent = "text/event-stream"),
        )),
        errors::BadQuery, errors::Unauthorized, errors::TooLarge, errors::Invalid, errors::Busy,
        (status = 502, description = "The instance could not start (`instance_start_failed`)", body = crate::error::ErrorBody),
    ))]
pub(crate) async fn run(
    State(s): State<AppState>,
    _: Query<NoParams>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, MAX_FUNCTION_BODY, "playground body").await?;
    let value = json_body(&body)?;
    let Value::Object(mut map) = value else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "request body must be a JSON object",
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_field",
            format!(
                "unknown field {unknown:?}; known fields are {}",
                FIELDS.join(", ")
            ),
        )
        .with("field", unknown.clone()));
    }
    let event = map.remove("event").unwrap_or_else(|| json!({}));
    let event_text = event.to_string();
    if event_text.len() > MAX_PAYLOAD_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the event is {} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes",
                event_text.len()
            ),
        )
        .with("field", "event"));
    }
    crate::invocations::check_event_depth(event_text.as_bytes(), "the event")
        .map_err(|e| e.with("field", "event"))?;
    let event = RawValue::from_string(event_text).map_err(|e| internal(&e))?;
    // Validated exactly as a function's spec (runtime, code, handler, limits, env).
    map.insert("name".to_owned(), json!(PLAYGROUND_NAME));
    let spec_body = serde_json::to_vec(&Value::Object(map)).map_err(|e| internal(&e))?;
    let spec = parse_spec(&spec_body, None)?;
    if crate::invocations::invocation_type(&headers)? == crate::invocations::InvocationType::Stream {
        return Ok(streamed_run(s, spec, event));
    }
    let outcome = s
        .platform
        .playground(spec, event, None)
        .await
        .map_err(playground_error)?;
    Ok(Json(playground_answer(outcome).await?).into_response())
}

fn playground_error(e: PlaygroundError) -> ApiError {
    match e {
        PlaygroundError::Host(e) => ApiError::from(e),
        PlaygroundError::Busy => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "playground_busy", e.to_string())
        }
        PlaygroundError::CapacityExhausted(_) => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "capacity_exhausted", e.to_string())
        }
        PlaygroundError::StartFailed(m) => ApiError::new(StatusCode::BAD_GATEWAY, "instance_start_failed", m),
    }
}

/// A run asked for as a stream: Server-Sent Events `head` (the status and headers, JSON) and
/// `chunk` (bytes in base64) as a streaming handler writes, then `end` (the run's answer as
/// without the stream; a streamed body is not repeated in it) or `error` (`{"error"}`).
fn streamed_run(s: AppState, spec: ignis_core::FunctionSpec, event: Box<RawValue>) -> Response {
    use axum::response::sse::Event;
    use futures::StreamExt;
    let (sink, rx) = tokio::sync::mpsc::unbounded_channel();
    let run = tokio::spawn(async move { s.platform.playground(spec, event, Some(sink)).await });
    let parts = futures::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        let event = match rx.recv().await? {
            StreamEvent::Head(head, _) => Event::default().event("head").json_data(json!({
                "status": head.status,
                "headers": head.headers,
            })),
            StreamEvent::Chunk(bytes) => Ok(Event::default()
                .event("chunk")
                .data(base64::engine::general_purpose::STANDARD.encode(bytes))),
            StreamEvent::End | StreamEvent::Abort(_) => return None,
        };
        Some((event, Some(rx)))
    });
    let end = futures::stream::once(async move {
        let answer = match run.await {
            Ok(Ok(outcome)) => playground_answer(outcome).await,
            Ok(Err(e)) => Err(playground_error(e)),
            Err(e) => Err(internal(&e)),
        };
        match answer {
            Ok(a) => Event::default().event("end").json_data(a),
            Err(e) => Event::default().event("error").json_data(e.body()),
        }
    });
    crate::event_stream(parts.chain(end))
}

/// The answer of a finished run.
async fn playground_answer(outcome: PlaygroundRun) -> Result<PlaygroundAnswer, ApiError> {
    match outcome {
        PlaygroundRun::LoadFailed { kind, message, line } => Ok(PlaygroundAnswer {
            response: None,
            load_error: Some(LoadError { kind, message, line }),
            duration_ms: None,
            init_ms: None,
            cold_start: true,
            logs: Vec::new(),
        }),
        PlaygroundRun::Ran { invocation, logs } => {
            let duration_ms = invocation.duration.as_secs_f64() * 1000.0;
            let init_ms = invocation.cold.map(|c| c.timings.total().as_secs_f64() * 1000.0);
            // Exactly what invoke would have answered, as JSON.
            let resp = answer(invocation)?;
            let status = resp.status().as_u16();
            let mut headers = std::collections::BTreeMap::<String, String>::new();
            for (name, value) in resp.headers() {
                let value = String::from_utf8_lossy(value.as_bytes());
                // Repeated headers are joined as HTTP allows (except cookies, joined by the
                // same rule for display).
                headers
                    .entry(name.as_str().to_owned())
                    .and_modify(|v| {
                        v.push_str(", ");
                        v.push_str(&value);
                    })
                    .or_insert_with(|| value.clone().into_owned());
            }
            let bytes = axum::body::to_bytes(resp.into_body(), MAX_RESPONSE_BYTES + 1024)
                .await
                .map_err(|e| internal(&e))?;
            let (body, encoding) = match std::str::from_utf8(&bytes) {
                Ok(text) => (text.to_owned(), "utf8"),
                Err(_) => (base64::engine::general_purpose::STANDARD.encode(&bytes), "base64"),
            };
            Ok(PlaygroundAnswer {
                response: Some(PlaygroundResponse {
                    status,
                    headers,
                    body,
                    body_encoding: encoding,
                }),
                load_error: None,
                duration_ms: Some(duration_ms),
                init_ms,
                cold_start: true,
                logs: log_lines(&logs),
            })
        }
    }
}
