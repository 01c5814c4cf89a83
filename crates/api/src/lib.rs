//! The HTTP API of Ignis: routes, authentication and request limits.

mod console;
mod error;
mod events;
mod function_urls;
mod functions;
mod invocations;
mod playground;
mod stats;
mod test_events;
mod usage;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use ignis_control::Platform;
use serde_json::json;
use subtle::ConstantTimeEq;

pub use console::ConsoleConfig;
pub use error::ApiError;

/// Settings the API needs from the server.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// When set, every `/v1` request needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    pub version: &'static str,
    pub console: ConsoleConfig,
}

#[derive(Clone)]
pub(crate) struct AppState {
    platform: Arc<Platform>,
    config: Arc<ApiConfig>,
    /// Synchronous calls with an idempotency key that are running.
    inflight: events::InFlight,
}

/// Builds the router of the whole API.
pub fn router(platform: Arc<Platform>, config: ApiConfig) -> Router {
    let state = AppState {
        platform,
        config: Arc::new(config),
        inflight: events::InFlight::default(),
    };
    let v1 = Router::new()
        .route("/functions", get(functions::list).post(functions::create))
        .route(
            "/functions/{name}",
            get(functions::get)
                .put(functions::update)
                .delete(functions::delete),
        )
        .route("/functions/{name}/invoke", post(invocations::invoke))
        .route("/functions/{name}/invocations", get(invocations::list))
        .route("/functions/{name}/logs", get(invocations::logs))
        .route("/invocations/{id}", get(invocations::get))
        .route("/functions/{name}/dead-letters", get(events::dead_letters))
        .route(
            "/functions/{name}/dead-letters/{id}",
            get(events::dead_letter).delete(events::delete_dead_letter),
        )
        .route(
            "/functions/{name}/dead-letters/{id}/redrive",
            post(events::redrive),
        )
        .route("/schedules", get(events::schedules))
        .route("/clock", get(events::get_clock).put(events::set_clock))
        .route("/runtimes", get(runtimes))
        .route("/usage", get(usage::usage))
        .route("/stats", get(stats::all_stats))
        .route("/playground/run", post(playground::run))
        .route("/functions/{name}/test-events", get(test_events::list))
        .route(
            "/functions/{name}/test-events/{event}",
            axum::routing::put(test_events::put).delete(test_events::delete),
        )
        .route("/functions/{name}/stats", get(stats::function_stats))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    // Metrics name every function: behind the token like the API.
    let metrics = Router::new()
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(healthz))
        // Function URLs check the token themselves: a function may be public.
        .route("/fn/{name}", any(function_urls::root))
        .route("/fn/{name}/{*path}", any(function_urls::nested))
        .merge(metrics)
        .merge(console::routes())
        .nest("/v1", v1)
        .fallback(|| async { ApiError::not_found("no such route") })
        // Bodies are read with explicit limits by each handler, which answer 413 with the
        // API's error shape rather than axum's plain-text one.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// `GET /metrics`: Prometheus (OpenMetrics text) exposition.
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = ignis_control::metrics::render(&state.platform).map_err(|e| error::internal(&e))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if token_matches(&state.config, req.headers()) {
        next.run(req).await
    } else {
        unauthorized(req.headers())
    }
}

/// Whether the request may pass: the server has no token, or the request carries it.
pub(crate) fn token_matches(config: &ApiConfig, headers: &header::HeaderMap) -> bool {
    let Some(token) = &config.token else {
        return true;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compared in constant time so the token cannot be guessed byte by byte from timings.
    bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

/// 401 with the API's error shape and `WWW-Authenticate: Bearer`; the message says
/// whether a token was missing or wrong.
pub(crate) fn unauthorized(headers: &header::HeaderMap) -> Response {
    let message = if headers.contains_key(header::AUTHORIZATION) {
        "the token sent is not this server's token"
    } else {
        "this server needs a token: send `Authorization: Bearer <token>`"
    };
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    resp
}

/// What the API says about isolation, on `/healthz` and `/v1/runtimes`.
fn sandbox_json(state: &AppState) -> serde_json::Value {
    if state.platform.sandboxed() {
        json!({"enabled": true})
    } else {
        json!({"enabled": false, "warning": INSECURE_WARNING})
    }
}

/// Shown wherever the server reports on itself when it runs without the sandbox.
pub const INSECURE_WARNING: &str =
    "started with --insecure-no-sandbox: functions run as plain processes of the server's user, with no isolation";

async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "version": state.config.version, "sandbox": sandbox_json(&state) }))
}

async fn runtimes(State(state): State<AppState>) -> Json<serde_json::Value> {
    let r = state.platform.runtimes();
    let list: Vec<_> = ignis_core::Runtime::ALL
        .iter()
        .map(|&rt| {
            let i = r.interpreter(rt);
            json!({
                "name": rt.as_str(),
                "available": i.available,
                "version": i.version,
                "path": i.path,
                "error": i.error,
            })
        })
        .collect();
    Json(json!({ "runtimes": list, "sandbox": sandbox_json(&state) }))
}

/// Reads a whole body, answering 413 past `limit` bytes and 408 when it arrives too slowly
/// (the server's body timeout).
pub(crate) async fn read_body(body: Body, limit: usize, what: &str) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let cause = e.into_inner();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(cause.as_ref());
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the {what} is larger than the limit of {limit} bytes"),
                );
            }
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::TimedOut {
                    return ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "request_timeout",
                        format!("{io}; send the {what} faster"),
                    );
                }
            }
            source = err.source();
        }
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            format!("the {what} could not be read: {cause}"),
        )
    })
}

/// Query parameters, checked by name so a typo is an error, not silently ignored.
pub(crate) struct Query(HashMap<String, String>);

impl Query {
    pub(crate) fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Query, ApiError> {
        let mut map = HashMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !allowed.contains(&k) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_parameter",
                    format!("unknown query parameter {k:?}; allowed: {}", allowed.join(", ")),
                )
                .with("field", k));
            }
            map.insert(k.to_owned(), v.to_owned());
        }
        Ok(Query(map))
    }

    /// A parameter's raw value, if given.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    pub(crate) fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.0.get(name).map(String::as_str) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") | Some("") => Ok(true),
            Some(other) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                format!("{name} must be true or false, got {other:?}"),
            )
            .with("field", name)),
        }
    }

    pub(crate) fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        self.int("limit", default, max)
    }

    /// The whole number `name`, from 1 to `max`; `default` when absent.
    pub(crate) fn int(&self, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_parameter",
                    format!("{name} must be an integer between 1 and {max}, got {v:?}"),
                )
                .with("field", name)),
            },
        }
    }
}
