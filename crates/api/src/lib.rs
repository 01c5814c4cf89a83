//! The HTTP API of Ignis: routes, authentication and request limits.

#![warn(clippy::wildcard_enum_match_arm)]

mod answers;
mod async_invocations;
mod builds;
mod console;
mod error;
mod function_urls;
mod functions;
mod idempotency;
mod invocations;
mod layers;
mod openapi;
mod params;
mod playground;
mod schedules;
mod stats;
mod test_events;
mod usage;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use ignis_control::Platform;
use subtle::ConstantTimeEq;

pub use console::ConsoleConfig;
pub use error::ApiError;
pub(crate) use params::{NoParams, Path, Query};

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
}

/// Builds the router of the whole API.
pub fn router(platform: Arc<Platform>, config: ApiConfig) -> Router {
    let state = AppState {
        platform,
        config: Arc::new(config),
    };
    let v1 = Router::new()
        .route("/functions", get(functions::list).post(functions::create))
        .route(
            "/functions/{name}",
            get(functions::get)
                .put(functions::update)
                .delete(functions::delete),
        )
        .route("/functions/{name}/code", get(functions::code))
        .route("/functions/{name}/versions/{version}/build", get(builds::get))
        .route("/layers", get(layers::list).post(layers::create))
        .route(
            "/layers/{name}/versions/{version}",
            get(layers::get).delete(layers::delete),
        )
        .route("/functions/{name}/invoke", post(invocations::invoke))
        .route("/functions/{name}/invocations", get(invocations::list))
        .route("/functions/{name}/logs", get(invocations::logs))
        .route("/invocations/{id}", get(invocations::get))
        .route(
            "/functions/{name}/dead-letters",
            get(async_invocations::dead_letters),
        )
        .route(
            "/functions/{name}/dead-letters/{id}",
            get(async_invocations::dead_letter).delete(async_invocations::delete_dead_letter),
        )
        .route(
            "/functions/{name}/dead-letters/{id}/redrive",
            post(async_invocations::redrive),
        )
        .route("/schedules", get(schedules::schedules))
        .route("/clock", get(schedules::get_clock).put(schedules::set_clock))
        .route("/runtimes", get(runtimes))
        .route("/openapi.json", get(openapi::document))
        .route("/usage", get(usage::usage))
        .route("/stats", get(stats::all_stats))
        .route("/playground/run", post(playground::run))
        .route("/functions/{name}/test-events", get(test_events::list))
        .route(
            "/functions/{name}/test-events/{event}",
            axum::routing::put(test_events::put).delete(test_events::delete),
        )
        .route("/functions/{name}/stats", get(stats::function_stats))
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    // Metrics name every function: behind the token like the API.
    let metrics = Router::new()
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(healthz))
        // Function URLs check the token themselves: a function may be public.
        .route("/fn/{name}", any(function_urls::root))
        .route("/fn/{name}/", any(function_urls::root))
        .route("/fn/{name}/{*path}", any(function_urls::nested))
        .merge(metrics)
        .merge(console::routes())
        .nest("/v1", v1)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(|| async { ApiError::not_found("no such route") })
        // Bodies are read with explicit limits by each handler, which answer 413 with the
        // API's error shape rather than axum's plain-text one.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// 405 with the API's error shape; axum adds the `Allow` header.
async fn method_not_allowed(method: axum::http::Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not a method of {}", uri.path()),
    )
}

/// `GET /metrics`: OpenMetrics for a scraper that accepts it (Prometheus does), the
/// Prometheus text format for everyone else (curl, promtool), as the Go client does.
#[utoipa::path(get, operation_id = "metrics", path = "/metrics", tag = "server",
    responses(
        (status = 200, description = "The server's metrics: OpenMetrics when the `Accept` header names \
            `application/openmetrics-text`, else the Prometheus text format",
            content((String = "text/plain"), (String = "application/openmetrics-text"))),
        error::errors::BadQuery, error::errors::Unauthorized,
    ))]
async fn metrics(
    State(state): State<AppState>,
    _: Query<NoParams>,
    headers: header::HeaderMap,
) -> Result<Response, ApiError> {
    use ignis_control::metrics::Format;
    let open_metrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let format = if open_metrics {
        Format::OpenMetrics
    } else {
        Format::Text
    };
    let text = ignis_control::metrics::render(&state.platform, format).map_err(|e| error::internal(&e))?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], text).into_response())
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
fn sandbox(state: &AppState) -> answers::Sandbox {
    let enabled = state.platform.sandboxed();
    answers::Sandbox {
        enabled,
        warning: (!enabled).then_some(INSECURE_WARNING),
    }
}

/// The isolation tiers on this host, on `/healthz` and `/v1/runtimes`.
fn isolation(state: &AppState) -> answers::IsolationTiers {
    let microvm = match state.platform.microvm() {
        Ok(vm) => answers::MicrovmTier {
            available: true,
            reason: None,
            accelerator: Some(vm.accelerator.clone()),
            guest_kernel: Some(vm.guest_kernel.clone()),
            snapshots: Some(vm.snapshots),
            pool: Some(vm.pool),
        },
        Err(why) => answers::MicrovmTier {
            available: false,
            reason: Some(why),
            accelerator: None,
            guest_kernel: None,
            snapshots: None,
            pool: None,
        },
    };
    answers::IsolationTiers {
        process: answers::ProcessTier { available: true },
        microvm,
    }
}

/// Shown wherever the server reports on itself when it runs without the sandbox.
pub const INSECURE_WARNING: &str =
    "started with --insecure-no-sandbox: functions run as plain processes of the server's user, with no isolation";

/// Whether the server is up, its version and whether functions run isolated.
#[utoipa::path(get, operation_id = "health", path = "/healthz", tag = "server", security(()),
    responses((status = 200, body = answers::Health), error::errors::BadQuery))]
async fn healthz(State(state): State<AppState>, _: Query<NoParams>) -> Json<answers::Health> {
    Json(answers::Health {
        status: "ok",
        version: state.config.version,
        sandbox: sandbox(&state),
        isolation: isolation(&state),
    })
}

/// The runtimes and the interpreters found for them on this host.
#[utoipa::path(get, operation_id = "list_runtimes", path = "/v1/runtimes", tag = "server",
    responses((status = 200, body = answers::Runtimes), error::errors::BadQuery, error::errors::Unauthorized))]
async fn runtimes(State(state): State<AppState>, _: Query<NoParams>) -> Json<answers::Runtimes> {
    let r = state.platform.runtimes();
    let runtimes = ignis_core::Runtime::ALL
        .iter()
        .map(|&rt| answers::RuntimeInfo::of(rt.as_str(), None, r.interpreter(rt)))
        .collect();
    let installers = vec![
        answers::RuntimeInfo::of("uv", Some("requirements.txt"), &r.uv),
        answers::RuntimeInfo::of("bun", Some("package.json"), &r.bun),
    ];
    Json(answers::Runtimes {
        runtimes,
        installers,
        sandbox: sandbox(&state),
        isolation: isolation(&state),
    })
}

/// A request body's JSON: 400 `invalid_json` when it is not JSON, 400 `duplicate_field`
/// when an object names a member twice (rather than keeping the last silently).
pub(crate) fn json_body(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    ignis_core::json::parse_strict(body).map_err(|e| match e {
        ignis_core::json::BodyError::Syntax(detail) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("request body is not valid JSON: {detail}"),
        ),
        ignis_core::json::BodyError::Duplicate { ref member, .. } => {
            let field = member.clone();
            ApiError::new(StatusCode::BAD_REQUEST, "duplicate_field", e.to_string()).with("field", field)
        }
    })
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

/// Runs store work off the async threads; a store failure is the API's error.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ignis_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| error::internal(&e))?
        .map_err(|e| error::store_error(&e))
}

/// 404 unless function `name` exists.
pub(crate) fn exists(s: &AppState, name: &str) -> Result<(), ApiError> {
    if s.platform.exists(name) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("function {name:?} does not exist")))
    }
}

/// A Server-Sent Events answer: keep-alive comments every 15 s, and a header that keeps
/// proxies such as nginx from holding the events back.
pub(crate) fn event_stream(
    events: impl futures::Stream<Item = Result<axum::response::sse::Event, axum::Error>> + Send + 'static,
) -> Response {
    use axum::response::sse::{KeepAlive, Sse};
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", axum::http::HeaderValue::from_static("no"));
    resp
}
