//! API errors: a stable code, a safe message, the HTTP status they map to, and how the
//! OpenAPI document describes them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ignis_control::{ControlError, ErrorCode, OutcomeError};
use ignis_core::{SpecError, SpecErrorKind};
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// An error answer: `{"error": {"code", "message", ...}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra members of the error object (`field`, `type`, `stack`).
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".to_owned(), json!(self.code));
        error.insert("message".to_owned(), json!(self.message));
        error.extend(self.extra.clone());
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<SpecError> for ApiError {
    fn from(e: SpecError) -> ApiError {
        let status = match e.kind {
            SpecErrorKind::Malformed => StatusCode::BAD_REQUEST,
            SpecErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let err = ApiError::new(status, e.code, e.message);
        match e.field {
            Some(field) => err.with("field", field),
            None => err,
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        match e {
            ControlError::AlreadyExists(_) => {
                ApiError::new(StatusCode::CONFLICT, "already_exists", e.to_string())
            }
            ControlError::NotFound(_) => ApiError::not_found(e.to_string()),
            ControlError::VersionNotFound(..) => {
                ApiError::new(StatusCode::NOT_FOUND, "version_not_found", e.to_string())
            }
            ControlError::LayerNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "layer_not_found", e.to_string())
            }
            ControlError::UnknownLayer(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "layer_not_found", e.to_string())
                    .with("field", "layers")
            }
            ControlError::LayerInUse { ref functions, .. } => {
                let functions = functions.clone();
                ApiError::new(StatusCode::CONFLICT, "layer_in_use", e.to_string())
                    .with("functions", functions)
            }
            ControlError::LayerRuntime { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "layer_runtime_mismatch",
                e.to_string(),
            )
            .with("field", "layers"),
            ControlError::LayersUnavailable(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "layers_unavailable", m)
                    .with("field", "layers")
            }
            ControlError::LayerBuild(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "layer_build_failed", m)
            }
            ControlError::RuntimeUnavailable(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "runtime_unavailable", m)
                    .with("field", "runtime")
            }
            ControlError::DestinationCycle { field, ref cycle, .. } => {
                let cycle = cycle.clone();
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "destination_cycle",
                    e.to_string(),
                )
                .with("field", field)
                .with("cycle", cycle)
            }
            ControlError::NetworkUnavailable(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "network_unavailable", m)
                    .with("field", "network")
            }
            ControlError::IsolationUnavailable { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "isolation_unavailable",
                e.to_string(),
            )
            .with("field", "isolation"),
            ControlError::Spec(spec) => ApiError::from(spec),
            ControlError::Store(ref s) if s.is_disk_full() => disk_full(&e),
            ControlError::Store(_) | ControlError::Io(_) | ControlError::Join(_) => internal(&e),
        }
    }
}

/// The HTTP status of each error an invocation can end with (its code and message are
/// control's).
pub fn outcome_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::FunctionError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::InstanceCrashed
        | ErrorCode::OutOfMemory
        | ErrorCode::ResponseTooLarge
        | ErrorCode::InvalidResponse
        | ErrorCode::InstanceStartFailed => StatusCode::BAD_GATEWAY,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::NotReady => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Throttled | ErrorCode::CapacityExhausted => StatusCode::TOO_MANY_REQUESTS,
    }
}

impl From<OutcomeError> for ApiError {
    fn from(e: OutcomeError) -> ApiError {
        let err = ApiError::new(outcome_status(e.code), e.code.as_str(), e.message);
        match e.raised {
            Some(r) => err.with("type", r.kind).with("stack", r.stack),
            None => err,
        }
    }
}

/// A store failure: 507 when the disk is full (the caller can retry once space is freed),
/// else an internal error.
pub fn store_error(e: &ignis_store::StoreError) -> ApiError {
    if e.is_disk_full() {
        disk_full(e)
    } else {
        internal(e)
    }
}

/// The server's disk is full: nothing was saved. Said to the client (an operator must free
/// space), with the detail in the log.
pub fn disk_full(e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!("disk full: {e}");
    ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        "insufficient_storage",
        "the server's disk is full, so nothing was saved; try again once space is freed on the \
         server (its data directory)",
    )
}

/// Internal failures are logged in full and answered with a generic message.
pub fn internal(e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!("internal error: {e}");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; see the server log",
    )
}

/// An error answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable `code`, a message for people, and, when one is to blame, the
/// `field` (or parameter, or header). Some codes add members (`type` and `stack` for a
/// function's error, `cycle` for `destination_cycle`).
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[schema(required = false, nullable = false)]
    pub field: Option<String>,
}

/// The error answers routes share, one type per status so that each route lists the ones
/// it can give.
pub(crate) mod errors {
    use utoipa::IntoResponses;

    use super::ErrorBody;

    /// A query parameter, path segment, header or body the route does not take
    /// (`unknown_parameter`, `invalid_parameter`, `invalid_path`, `invalid_json`, ...).
    #[derive(IntoResponses)]
    #[response(status = 400)]
    #[allow(dead_code)]
    pub(crate) struct BadQuery(ErrorBody);

    /// The server's token is missing or wrong (`unauthorized`).
    #[derive(IntoResponses)]
    #[response(status = 401)]
    #[allow(dead_code)]
    pub(crate) struct Unauthorized(ErrorBody);

    /// No such function or record, or a name or id that cannot be one (`not_found`).
    #[derive(IntoResponses)]
    #[response(status = 404)]
    #[allow(dead_code)]
    pub(crate) struct NotFound(ErrorBody);

    /// The state does not allow it (`already_exists`, `clock_not_manual`, ...).
    #[derive(IntoResponses)]
    #[response(status = 409)]
    #[allow(dead_code)]
    pub(crate) struct Conflict(ErrorBody);

    /// The body is larger than the route's limit (`payload_too_large`).
    #[derive(IntoResponses)]
    #[response(status = 413)]
    #[allow(dead_code)]
    pub(crate) struct TooLarge(ErrorBody);

    /// The body is well formed but a value is not allowed (the code and `field` say which).
    #[derive(IntoResponses)]
    #[response(status = 422)]
    #[allow(dead_code)]
    pub(crate) struct Invalid(ErrorBody);

    /// Too much at once (`throttled`, `capacity_exhausted`, `queue_full`, `playground_busy`).
    #[derive(IntoResponses)]
    #[response(status = 429)]
    #[allow(dead_code)]
    pub(crate) struct Busy(ErrorBody);

    /// The server's disk is full (`insufficient_storage`).
    #[derive(IntoResponses)]
    #[response(status = 507)]
    #[allow(dead_code)]
    pub(crate) struct DiskFull(ErrorBody);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ignis_store::StoreError;

    #[test]
    fn every_invocation_error_answers_with_its_code_its_message_and_a_failure_status() {
        for code in ErrorCode::ALL {
            let status = outcome_status(code);
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code:?}: {status}"
            );
        }
        let e = ApiError::from(OutcomeError {
            code: ErrorCode::FunctionError,
            message: "boom".to_owned(),
            raised: Some(ignis_control::Raised {
                kind: "ValueError".to_owned(),
                stack: "line 2".to_owned(),
            }),
        });
        assert_eq!(
            (e.status, e.code, e.message.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, "function_error", "boom")
        );
        assert_eq!(e.body()["error"]["type"], "ValueError");
        assert_eq!(e.body()["error"]["stack"], "line 2");
        assert_eq!(outcome_status(ErrorCode::Timeout), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            outcome_status(ErrorCode::Throttled),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            outcome_status(ErrorCode::NotReady),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn a_full_disk_is_507_insufficient_storage_and_other_store_failures_stay_internal() {
        let full = ApiError::from(ControlError::Store(StoreError::DiskFull("no space".to_owned())));
        assert_eq!(full.status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(full.code, "insufficient_storage");
        assert!(full.message.contains("disk is full"), "{}", full.message);
        assert!(!full.message.contains("no space"), "detail stays in the log");
        let other = ApiError::from(ControlError::Store(StoreError::Corrupt("x".to_owned())));
        assert_eq!(other.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            store_error(&StoreError::DiskFull(String::new())).status,
            StatusCode::INSUFFICIENT_STORAGE
        );
    }
}
