//! The vocabulary of invocation outcomes, in one place: what a finished invocation came to
//! (the record's status and the metrics' label), and every error an invocation can end
//! with (its stable code and its message), whether the handler ran or not.
//!
//! The API maps each [`ErrorCode`] to an HTTP status with a `match` that names every code,
//! so a new outcome does not compile until each place that shows one handles it.

use serde_json::{json, Value};

/// What a finished invocation came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    Succeeded,
    FunctionError,
    Timeout,
    Crashed,
    OutOfMemory,
    ResponseTooLarge,
    InvalidResponse,
}

impl OutcomeKind {
    /// Every kind, each at the index of its discriminant (the metrics keep one counter
    /// per kind).
    pub const ALL: [OutcomeKind; 7] = [
        OutcomeKind::Succeeded,
        OutcomeKind::FunctionError,
        OutcomeKind::Timeout,
        OutcomeKind::Crashed,
        OutcomeKind::OutOfMemory,
        OutcomeKind::ResponseTooLarge,
        OutcomeKind::InvalidResponse,
    ];

    /// The record's `status` and the metrics' `outcome` label.
    pub fn status(self) -> &'static str {
        match self {
            OutcomeKind::Succeeded => "succeeded",
            OutcomeKind::FunctionError => "function_error",
            OutcomeKind::Timeout => "timeout",
            OutcomeKind::Crashed => "crashed",
            OutcomeKind::OutOfMemory => "out_of_memory",
            OutcomeKind::ResponseTooLarge => "response_too_large",
            OutcomeKind::InvalidResponse => "invalid_response",
        }
    }
}

/// The stable code of an error an invocation ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The handler raised.
    FunctionError,
    /// The handler did not finish within the function's timeout.
    Timeout,
    /// The instance died during the invocation.
    InstanceCrashed,
    /// The instance went past its memory limit.
    OutOfMemory,
    /// The handler's answer was larger than the limit.
    ResponseTooLarge,
    /// The handler's answer cannot be read as one.
    InvalidResponse,
    /// Not run: the function does not exist.
    NotFound,
    /// Not run: no version of the function serves (yet).
    NotReady,
    /// Not run: the function is at its `max_instances` and none became free in time.
    Throttled,
    /// Not run: the server's memory for instances is used up.
    CapacityExhausted,
    /// Not run: an instance could not start.
    InstanceStartFailed,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::FunctionError,
        ErrorCode::Timeout,
        ErrorCode::InstanceCrashed,
        ErrorCode::OutOfMemory,
        ErrorCode::ResponseTooLarge,
        ErrorCode::InvalidResponse,
        ErrorCode::NotFound,
        ErrorCode::NotReady,
        ErrorCode::Throttled,
        ErrorCode::CapacityExhausted,
        ErrorCode::InstanceStartFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FunctionError => "function_error",
            ErrorCode::Timeout => "timeout",
            ErrorCode::InstanceCrashed => "instance_crashed",
            ErrorCode::OutOfMemory => "out_of_memory",
            ErrorCode::ResponseTooLarge => "response_too_large",
            ErrorCode::InvalidResponse => "invalid_response",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::Throttled => "throttled",
            ErrorCode::CapacityExhausted => "capacity_exhausted",
            ErrorCode::InstanceStartFailed => "instance_start_failed",
        }
    }
}

/// An error an invocation ended with: its code and message, the same in the answer to the
/// caller, the stored record and a failure destination's event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeError {
    pub code: ErrorCode,
    pub message: String,
    /// For [`ErrorCode::FunctionError`]: what the handler raised.
    pub raised: Option<Raised>,
}

/// The type and stack of the error a handler raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    pub kind: String,
    pub stack: String,
}

impl OutcomeError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> OutcomeError {
        OutcomeError {
            code,
            message: message.into(),
            raised: None,
        }
    }

    /// The error as records keep it: `{"type", "message", "stack"}` for a handler's own
    /// error, `{"code", "message"}` for the others.
    pub fn to_json(&self) -> Value {
        match &self.raised {
            Some(r) => json!({"type": r.kind, "message": self.message, "stack": r.stack}),
            None => json!({"code": self.code.as_str(), "message": self.message}),
        }
    }
}

pub(crate) fn timeout_message(secs: u32) -> String {
    format!("the function did not finish within its timeout of {secs} s; its instance was stopped")
}

pub(crate) fn crashed_message(detail: &str) -> String {
    format!("the function's instance died during the invocation: {detail}")
}

pub(crate) fn out_of_memory_message(memory_mb: u32) -> String {
    format!("the function used more than its memory_mb of {memory_mb} MB; its instance was killed and is replaced")
}

pub(crate) fn too_large_message(size: u64) -> String {
    format!("the function's response is {size} bytes; the limit is 6 MiB")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn each_kind_sits_at_its_index_and_every_name_is_distinct() {
        for (i, k) in OutcomeKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{k:?}");
        }
        let statuses: HashSet<_> = OutcomeKind::ALL.iter().map(|k| k.status()).collect();
        assert_eq!(statuses.len(), OutcomeKind::ALL.len());
        let codes: HashSet<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn a_handler_error_is_kept_with_its_type_and_stack_and_the_others_with_their_code() {
        let mut e = OutcomeError::new(ErrorCode::FunctionError, "no");
        e.raised = Some(Raised {
            kind: "ValueError".to_owned(),
            stack: "line 1".to_owned(),
        });
        assert_eq!(
            e.to_json(),
            json!({"type": "ValueError", "message": "no", "stack": "line 1"})
        );
        assert_eq!(
            OutcomeError::new(ErrorCode::Timeout, timeout_message(3)).to_json(),
            json!({"code": "timeout", "message": "the function did not finish within its timeout of 3 s; its instance was stopped"})
        );
    }
}
