//! Function URLs: `ANY /fn/{name}` and `ANY /fn/{name}/{*path}` invoke the function with a
//! Lambda function URL (payload 2.0) event; the answer is mapped as for invoke. Each
//! function's `http` settings say whether the server's token is needed and which CORS
//! requests are allowed (preflights are answered here, without running the function).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use ignis_core::http::routes::match_route;
use ignis_core::http::{http_event, http_event_v1, HttpAuth, HttpRequest, PayloadFormat};
use ignis_core::limits::{MAX_EVENT_DEPTH, MAX_PAYLOAD_BYTES};
use ignis_core::nesting::json_depth;
use serde_json::value::RawValue;

use crate::error::internal;
use crate::functions::path_name;
use crate::invocations::{event_too_deep, invoke_streaming};
use crate::{read_body, token_matches, unauthorized, ApiError, AppState, Path};

/// `ANY /fn/{name}`.
pub(crate) async fn root(state: State<AppState>, Path(name): Path<String>, req: Request) -> Response {
    call(state, name, "/".to_owned(), req).await
}

/// `ANY /fn/{name}/{*path}`.
pub(crate) async fn nested(
    state: State<AppState>,
    Path((name, path)): Path<(String, String)>,
    req: Request,
) -> Response {
    call(state, name, format!("/{path}"), req).await
}

async fn call(State(s): State<AppState>, name: String, path: String, req: Request) -> Response {
    match run(&s, &name, &path, req).await {
        Ok(resp) | Err(resp) => resp,
    }
}

async fn run(s: &AppState, name: &str, path: &str, req: Request) -> Result<Response, Response> {
    let name = path_name(name).map_err(IntoResponse::into_response)?;
    let settings = s.platform.http_settings(name.as_str()).ok_or_else(|| {
        ApiError::not_found(format!("function {:?} does not exist", name.as_str())).into_response()
    })?;
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    // A CORS preflight carries no credentials: answered from the settings alone.
    if req.method() == Method::OPTIONS {
        if let (Some(cors), Some(origin), Some(method)) = (
            &settings.cors,
            &origin,
            req.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD),
        ) {
            let asked = req
                .headers()
                .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let method = method.to_str().unwrap_or("");
            let mut resp = StatusCode::NO_CONTENT.into_response();
            for (k, v) in cors.preflight(origin, method, asked).unwrap_or_default() {
                append(resp.headers_mut(), &k, &v);
            }
            return Ok(resp);
        }
    }

    if settings.auth == HttpAuth::Token && !token_matches(&s.config, req.headers()) {
        return Err(with_cors(
            unauthorized(req.headers()),
            &settings,
            origin.as_deref(),
        ));
    }

    // Declared routes: a request matching none is API Gateway's 404, before any body is read.
    let route = if settings.routes.is_empty() {
        None
    } else {
        match match_route(&settings.routes, req.method().as_str(), path) {
            Some(m) => Some(m),
            None => {
                let err = ApiError::new(
                    StatusCode::NOT_FOUND,
                    "route_not_found",
                    format!(
                        "no route of function {:?} matches {} {path}",
                        name.as_str(),
                        req.method()
                    ),
                );
                return Err(with_cors(err.into_response(), &settings, origin.as_deref()));
            }
        }
    };
    let (parts, body) = req.into_parts();
    let body = read_body(body, MAX_PAYLOAD_BYTES, "request body")
        .await
        .map_err(|e| with_cors(e.into_response(), &settings, origin.as_deref()))?;
    // The body reaches the handler as a string, but a JSON body is the event a handler
    // reads: it is held to the same depth limit as an invoke's payload. A body that is not
    // JSON (a form, a file) has no depth.
    let depth = json_depth(&body);
    if depth > MAX_EVENT_DEPTH && serde_json::from_slice::<Box<RawValue>>(&body).is_ok() {
        let err = event_too_deep("the request body", depth).into_response();
        return Err(with_cors(err, &settings, origin.as_deref()));
    }
    let source_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let request_id = uuid::Uuid::now_v7().to_string();
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter(|(k, _)| *k != "x-forwarded-for")
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    // As AWS does: the client's address appended to any X-Forwarded-For it sent, and the
    // scheme it used (kept when a proxy in front said it).
    let forwarded: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .chain((!source_ip.is_empty()).then_some(source_ip.as_str()))
        .collect();
    if !forwarded.is_empty() {
        headers.push(("x-forwarded-for".to_owned(), forwarded.join(", ")));
    }
    if !parts.headers.contains_key("x-forwarded-proto") {
        headers.push(("x-forwarded-proto".to_owned(), "http".to_owned()));
    }
    let time_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(0);
    let request = HttpRequest {
        method: parts.method.as_str(),
        path,
        raw_query: parts.uri.query().unwrap_or(""),
        headers,
        body: &body,
        source_ip,
        request_id: &request_id,
        function: name.as_str(),
        time_ms,
        route,
    };
    let event = match settings.payload_format_version {
        PayloadFormat::V2 => http_event(&request),
        PayloadFormat::V1 => http_event_v1(&request),
    };
    let event = RawValue::from_string(event.to_string()).map_err(|e| internal(&e).into_response())?;
    let result = invoke_streaming(s, name.as_str(), event).await;
    Ok(with_cors(result, &settings, origin.as_deref()))
}

/// Adds the CORS headers an allowed origin gets on an actual response.
fn with_cors(
    mut resp: Response,
    settings: &ignis_core::http::HttpSettings,
    origin: Option<&str>,
) -> Response {
    if let (Some(cors), Some(origin)) = (&settings.cors, origin) {
        for (k, v) in cors.response_headers(origin) {
            append(resp.headers_mut(), &k, &v);
        }
    }
    resp
}

fn append(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
        headers.append(n, v);
    }
}
