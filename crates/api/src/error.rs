//! API errors: a stable code, a safe message, and the HTTP status they map to.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ignis_control::ControlError;
use ignis_core::{SpecError, SpecErrorKind};
use serde_json::{json, Map, Value};

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
            ControlError::Spec(spec) => ApiError::from(spec),
            ControlError::Store(ref s) if s.is_disk_full() => disk_full(&e),
            ControlError::Store(_) | ControlError::Io(_) | ControlError::Join(_) => internal(&e),
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

#[cfg(test)]
mod tests {
    use super::*;
    use ignis_store::StoreError;

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
