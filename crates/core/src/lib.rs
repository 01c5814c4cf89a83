//! Ignis domain types and pure rules. No IO, no async, no SQL, no HTTP.

#![warn(clippy::wildcard_enum_match_arm)]

pub mod events;
pub mod http;
pub mod json;
pub mod lambda_env;
pub mod limits;
pub mod logs;
pub mod nesting;
pub mod outcome;
pub mod package;
pub mod response;
pub mod schedule;
pub mod spec;
pub mod state;

pub use logs::{LogLine, LogStream};
pub use outcome::{FunctionError, Outcome};
pub use spec::{
    parse_layer, parse_spec, parse_update, FunctionName, FunctionSpec, HandlerStyle, Isolation, KeepCode,
    LayerName, LayerRef, Network, NewLayer, Runtime, SpecError, SpecErrorKind, SpecUpdate,
    MAX_FUNCTION_LAYERS,
};
pub use state::{FunctionState, StateEvent};
