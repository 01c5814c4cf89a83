//! What an invocation came to. A failing user function is data, not a Rust `Err`.

use serde::{Deserialize, Serialize};

/// The error a handler raised, as the runtime described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionError {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub stack: String,
}

/// The end of one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The handler returned this value.
    Ok(serde_json::Value),
    /// The handler raised.
    FunctionError(FunctionError),
    /// The deadline passed; the instance was killed.
    Timeout,
    /// The instance died while running the invocation.
    Crashed { detail: String },
    /// The instance went past its memory limit and the kernel killed it.
    OutOfMemory,
    /// The handler's encoded return value was larger than the limit.
    ResponseTooLarge { size: u64 },
    /// The instance answered with a return value the server does not read (nested too
    /// deeply, a number out of range): this call fails, the instance serves on.
    InvalidResponse { message: String },
}
