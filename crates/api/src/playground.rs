//! `POST /v1/playground/run`: code against an event, without creating a function.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use ignis_control::{PlaygroundError, PlaygroundRun};
use ignis_core::limits::{MAX_PAYLOAD_BYTES, MAX_RESPONSE_BYTES};
use ignis_core::spec::parse_spec;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::error::internal;
use crate::functions::MAX_FUNCTION_BODY;
use crate::invocations::{answer, logs_json};
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

pub(crate) async fn run(
    State(s): State<AppState>,
    _: Query<NoParams>,
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
    let outcome = s.platform.playground(spec, event).await.map_err(|e| match e {
        PlaygroundError::Host(e) => ApiError::from(e),
        PlaygroundError::Busy => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "playground_busy", e.to_string())
        }
        PlaygroundError::CapacityExhausted(_) => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "capacity_exhausted", e.to_string())
        }
        PlaygroundError::StartFailed(m) => ApiError::new(StatusCode::BAD_GATEWAY, "instance_start_failed", m),
    })?;
    match outcome {
        PlaygroundRun::LoadFailed { kind, message, line } => Ok(Json(json!({
            "response": null,
            "load_error": {"type": kind, "message": message, "line": line},
            "duration_ms": null,
            "init_ms": null,
            "cold_start": true,
            "logs": [],
        }))
        .into_response()),
        PlaygroundRun::Ran { invocation, logs } => {
            let duration_ms = invocation.duration.as_secs_f64() * 1000.0;
            let init_ms = invocation.cold.map(|c| c.timings.total().as_secs_f64() * 1000.0);
            // Exactly what invoke would have answered, as JSON.
            let resp = answer(invocation)?;
            let status = resp.status().as_u16();
            let mut headers = Map::new();
            for (name, value) in resp.headers() {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                match headers.get_mut(name.as_str()) {
                    // Repeated headers are joined as HTTP allows (except cookies, joined
                    // by the same rule for display).
                    Some(Value::String(v)) => {
                        v.push_str(", ");
                        v.push_str(&value);
                    }
                    _ => {
                        headers.insert(name.as_str().to_owned(), Value::String(value));
                    }
                }
            }
            let bytes = axum::body::to_bytes(resp.into_body(), MAX_RESPONSE_BYTES + 1024)
                .await
                .map_err(|e| internal(&e))?;
            let (body, encoding) = match std::str::from_utf8(&bytes) {
                Ok(text) => (text.to_owned(), "utf8"),
                Err(_) => (base64::engine::general_purpose::STANDARD.encode(&bytes), "base64"),
            };
            Ok(Json(json!({
                "response": {"status": status, "headers": headers, "body": body, "body_encoding": encoding},
                "load_error": null,
                "duration_ms": duration_ms,
                "init_ms": init_ms,
                "cold_start": true,
                "logs": logs_json(&logs),
            }))
            .into_response())
        }
    }
}
