//! A function's specification: parsed once from an API body, validated, then trusted.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::events::{
    default_async_concurrency, parse_destination, parse_retry, RetrySettings, MAX_ASYNC_CONCURRENCY,
};
use crate::http::{parse_http_settings, HttpSettings};
use crate::json::BodyError;
use crate::lambda_env::{LogFormat, LogLevel};
use crate::limits;
use crate::package::{resolve_handler, Package, PackageError};

mod isolation;
mod keep;
mod layer;
mod source;
mod style;
use crate::schedule::{parse_schedules, Schedule};
pub use isolation::Isolation;
pub use keep::{KeepCode, SpecUpdate};
pub use layer::{parse_layer, LayerName, LayerRef, NewLayer, MAX_FUNCTION_LAYERS};
use source::parse_source;
pub use style::HandlerStyle;

/// A validated function name: `^[a-z][a-z0-9-]{0,62}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FunctionName(String);

impl FunctionName {
    pub fn parse(s: &str) -> Result<FunctionName, String> {
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if first_ok && rest_ok && s.len() <= 63 {
            Ok(FunctionName(s.to_owned()))
        } else {
            Err(format!(
                "name {s:?} must start with a lower-case letter and hold only lower-case \
                 letters, digits and '-', 63 characters at most"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FunctionName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        FunctionName::parse(&s)
    }
}

impl From<FunctionName> for String {
    fn from(n: FunctionName) -> String {
        n.0
    }
}

impl std::fmt::Display for FunctionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The languages a function can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    Python,
    Javascript,
    Typescript,
}

impl Runtime {
    pub const ALL: [Runtime; 3] = [Runtime::Python, Runtime::Javascript, Runtime::Typescript];

    pub fn parse(s: &str) -> Option<Runtime> {
        match s {
            "python" => Some(Runtime::Python),
            "javascript" => Some(Runtime::Javascript),
            "typescript" => Some(Runtime::Typescript),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Python => "python",
            Runtime::Javascript => "javascript",
            Runtime::Typescript => "typescript",
        }
    }

    /// The file name the code is written to inside the function's code directory.
    pub fn source_file(self) -> &'static str {
        match self {
            Runtime::Python => "main.py",
            Runtime::Javascript => "index.js",
            Runtime::Typescript => "index.ts",
        }
    }
}

/// What network an instance gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// Only its own loopback.
    #[default]
    None,
    /// Internet egress through user-mode NAT, still with no route to the host's loopback.
    Outbound,
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Network::None => "none",
            Network::Outbound => "outbound",
        }
    }
}

/// A validated function specification: everything a version of a function is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSpec {
    pub name: FunctionName,
    pub runtime: Runtime,
    /// Stored beside the spec, not inside its JSON, so it is kept once.
    #[serde(skip_serializing, default)]
    pub code: String,
    /// The hash of the function's package, when it is several files (`files` or `zip`;
    /// then `code` is empty). The package's files are stored apart, once per hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_sha256: Option<String>,
    /// The package's files, from parsing to storing only (read back from the store).
    #[serde(skip)]
    pub package: Option<Arc<Package>>,
    /// For one file, the function's name in it (an identifier); for a package, Lambda's
    /// `path/module.function`.
    pub handler: String,
    pub timeout_secs: u32,
    pub memory_mb: u32,
    pub vcpus: u32,
    pub max_instances: u32,
    /// Instances kept warm at all times (absent in versions stored before it existed).
    #[serde(default)]
    pub min_instances: u32,
    /// Invocations one instance runs at once.
    #[serde(default = "one")]
    pub concurrency: u32,
    pub idle_timeout_secs: u32,
    pub env: BTreeMap<String, String>,
    /// Absent in versions stored before the field existed: those had no network.
    #[serde(default)]
    pub network: Network,
    /// Absent in versions stored before the field existed: those ran as processes.
    #[serde(default)]
    pub isolation: Isolation,
    /// The function URL's settings (absent in versions stored before: token auth).
    #[serde(default)]
    pub http: HttpSettings,
    /// How failed asynchronous attempts are retried.
    #[serde(default)]
    pub retry: RetrySettings,
    /// Receives the outcome of a successful asynchronous invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<FunctionName>,
    /// Receives the outcome of an asynchronous invocation that became a dead letter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<FunctionName>,
    /// Asynchronous invocations run at once; `None`: half of `max_instances × concurrency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_async_concurrency: Option<u32>,
    /// Cron schedules, each firing an asynchronous invocation.
    #[serde(default)]
    pub schedules: Vec<Schedule>,
    /// Layers shown under `/opt`, in Lambda's order (a later layer's files win).
    #[serde(default)]
    pub layers: Vec<LayerRef>,
    /// How the runtime writes log records (`text`, Lambda's default, or `json`).
    #[serde(default)]
    pub log_format: LogFormat,
    /// With `json`: the lowest level of application log records kept (`INFO` if not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,
    /// The handler's calling convention (Lambda's unless `openfaas`).
    #[serde(default, skip_serializing_if = "HandlerStyle::is_default")]
    pub handler_style: HandlerStyle,
}

impl FunctionSpec {
    /// How many asynchronous invocations of this function run at once.
    pub fn async_concurrency(&self) -> u32 {
        self.max_async_concurrency
            .unwrap_or_else(|| default_async_concurrency(self.max_instances, self.concurrency))
    }

    /// The hash of the code: of the one file, or the package's.
    pub fn code_sha256(&self) -> String {
        match &self.package_sha256 {
            Some(sha) => sha.clone(),
            None => hex::encode(Sha256::digest(self.code.as_bytes())),
        }
    }
}

/// Whether a rejected body was malformed (400) or held an invalid value (422).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecErrorKind {
    Malformed,
    Invalid,
}

/// Why a function body was rejected, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SpecError {
    pub kind: SpecErrorKind,
    /// Stable error code: `invalid_json`, `duplicate_field`, `unknown_field`, `invalid_type`,
    /// `missing_field`, `invalid_value`, `invalid_env`.
    pub code: &'static str,
    pub field: Option<String>,
    pub message: String,
}

impl SpecError {
    pub(crate) fn malformed(code: &'static str, field: &str, message: String) -> SpecError {
        SpecError {
            kind: SpecErrorKind::Malformed,
            code,
            field: Some(field.to_owned()),
            message,
        }
    }

    /// An environment variable the OS cannot hold or the platform does not take.
    pub(crate) fn invalid_env(field: &str, message: String) -> SpecError {
        SpecError {
            code: "invalid_env",
            ..SpecError::invalid(field, message)
        }
    }

    /// A package refused for its paths, size or archive.
    pub(crate) fn package(field: &str, e: PackageError) -> SpecError {
        SpecError {
            kind: SpecErrorKind::Invalid,
            code: e.code,
            field: Some(field.to_owned()),
            message: e.message,
        }
    }

    pub(crate) fn invalid(field: &str, message: String) -> SpecError {
        SpecError {
            kind: SpecErrorKind::Invalid,
            code: "invalid_value",
            field: Some(field.to_owned()),
            message,
        }
    }
}

const FIELDS: [&str; 26] = [
    "name",
    "runtime",
    "code",
    "files",
    "zip",
    "handler",
    "timeout_secs",
    "memory_mb",
    "vcpus",
    "max_instances",
    "min_instances",
    "concurrency",
    "idle_timeout_secs",
    "env",
    "network",
    "isolation",
    "http",
    "retry",
    "on_success",
    "on_failure",
    "max_async_concurrency",
    "schedules",
    "layers",
    "log_format",
    "log_level",
    "handler_style",
];

/// Parses and validates a create body, or an update body that gives its code: exactly one
/// of `code`, `files` and `zip` is needed. `path_name` is the name from the URL of an
/// update; the body's `name`, if present, must match it.
pub fn parse_spec(body: &[u8], path_name: Option<&FunctionName>) -> Result<FunctionSpec, SpecError> {
    match parse_body(body, path_name)? {
        SpecUpdate::Replace(spec) => Ok(spec),
        SpecUpdate::KeepCode(_) => Err(SpecError::malformed(
            "missing_field",
            "code",
            "one of code, files or zip is required".to_owned(),
        )),
    }
}

/// Parses and validates an update body of the function `path_name`: with none of `code`,
/// `files` and `zip`, it keeps the code of the function's newest version
/// ([`SpecUpdate::KeepCode`]).
pub fn parse_update(body: &[u8], path_name: &FunctionName) -> Result<SpecUpdate, SpecError> {
    parse_body(body, Some(path_name))
}

/// A body's JSON object, read strictly (a member given twice is an error), with only the
/// `allowed` members.
fn parse_object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, SpecError> {
    let value: Value = crate::json::parse_strict(body).map_err(|e| match e {
        BodyError::Syntax(e) => SpecError {
            kind: SpecErrorKind::Malformed,
            code: "invalid_json",
            field: None,
            message: format!("request body is not valid JSON: {e}"),
        },
        BodyError::Duplicate { ref member, .. } => SpecError {
            kind: SpecErrorKind::Malformed,
            code: "duplicate_field",
            field: Some(member.clone()),
            message: e.to_string(),
        },
    })?;
    let Value::Object(map) = value else {
        return Err(SpecError {
            kind: SpecErrorKind::Malformed,
            code: "invalid_json",
            field: None,
            message: "request body must be a JSON object".to_owned(),
        });
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(SpecError::malformed(
            "unknown_field",
            unknown,
            format!(
                "unknown field {unknown:?}; known fields are {}",
                allowed.join(", ")
            ),
        ));
    }
    Ok(map)
}

fn parse_body(body: &[u8], path_name: Option<&FunctionName>) -> Result<SpecUpdate, SpecError> {
    let map = parse_object(body, &FIELDS)?;
    let fields = Fields(&map);

    let name = match (fields.string("name")?, path_name) {
        (Some(body_name), Some(path)) if body_name != path.as_str() => {
            return Err(SpecError::invalid(
                "name",
                format!("name {body_name:?} in the body does not match {path:?} in the path"),
            ))
        }
        (_, Some(path)) => path.clone(),
        (Some(body_name), None) => {
            FunctionName::parse(body_name).map_err(|m| SpecError::invalid("name", m))?
        }
        (None, None) => return Err(missing("name")),
    };

    let runtime_str = fields.string("runtime")?.ok_or_else(|| missing("runtime"))?;
    let runtime = Runtime::parse(runtime_str).ok_or_else(|| {
        SpecError::invalid(
            "runtime",
            format!("runtime {runtime_str:?} is not one of python, javascript, typescript"),
        )
    })?;

    let source = parse_source(&fields)?;
    let given_handler = fields.string("handler")?;
    // With no code given, the handler is checked against the code kept, later.
    let handler = match &source {
        None => "",
        Some((_, None)) => one_file_handler(given_handler)?,
        Some((_, Some(package))) => package_handler(runtime, given_handler, "with files or zip", |p| {
            package.contains(p)
        })?,
    };

    let env = parse_env(&fields)?;
    let network = match fields.string("network")? {
        None | Some("none") => Network::None,
        Some("outbound") => Network::Outbound,
        Some(other) => {
            return Err(SpecError::invalid(
                "network",
                format!("network {other:?} is not one of none, outbound"),
            ))
        }
    };

    let isolation = isolation::parse_isolation(&fields)?;
    let http = match fields.0.get("http") {
        None | Some(Value::Null) => HttpSettings::default(),
        Some(v) => parse_http_settings(v)?,
    };
    let max_instances = fields.bounded("max_instances", limits::MAX_INSTANCES)?;
    let min_instances = fields.bounded("min_instances", limits::MIN_INSTANCES)?;
    if min_instances > max_instances {
        return Err(SpecError::invalid(
            "min_instances",
            format!("min_instances ({min_instances}) must not exceed max_instances ({max_instances})"),
        ));
    }
    let retry = parse_retry(fields.0.get("retry"))?;
    let on_success = parse_destination("on_success", fields.0.get("on_success"), &name)?;
    let on_failure = parse_destination("on_failure", fields.0.get("on_failure"), &name)?;
    let max_async_concurrency = match fields.0.get("max_async_concurrency") {
        None | Some(Value::Null) => None,
        Some(_) => {
            let (min, max) = MAX_ASYNC_CONCURRENCY;
            Some(fields.bounded("max_async_concurrency", (min, max, min))?)
        }
    };
    let schedules = match fields.0.get("schedules") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => parse_schedules(v)?,
    };
    let layers = layer::parse_layers(fields.0.get("layers"))?;
    let (log_format, log_level) = parse_log_settings(&fields)?;
    let handler_style = style::parse_handler_style(&fields, runtime)?;
    let keeps_code = source.is_none();
    let (code, package) = source.unwrap_or_default();
    let spec = FunctionSpec {
        name,
        runtime,
        code,
        package_sha256: package.as_ref().map(|p| p.sha256().to_owned()),
        package,
        handler: handler.to_owned(),
        timeout_secs: fields.bounded("timeout_secs", limits::TIMEOUT_SECS)?,
        memory_mb: fields.bounded("memory_mb", limits::MEMORY_MB)?,
        vcpus: fields.bounded("vcpus", limits::VCPUS)?,
        max_instances,
        min_instances,
        concurrency: fields.bounded("concurrency", limits::CONCURRENCY)?,
        idle_timeout_secs: fields.bounded("idle_timeout_secs", limits::IDLE_TIMEOUT_SECS)?,
        env,
        network,
        isolation,
        http,
        retry,
        on_success,
        on_failure,
        max_async_concurrency,
        schedules,
        layers,
        log_format,
        log_level,
        handler_style,
    };
    Ok(if keeps_code {
        SpecUpdate::KeepCode(KeepCode {
            spec,
            handler: given_handler.map(str::to_owned),
        })
    } else {
        SpecUpdate::Replace(spec)
    })
}

/// A one-file function's handler: an identifier, `handler` when not given.
fn one_file_handler(given: Option<&str>) -> Result<&str, SpecError> {
    let handler = given.unwrap_or("handler");
    if !is_identifier(handler) {
        return Err(SpecError::invalid(
            "handler",
            format!("handler {handler:?} must be an identifier (letters, digits, '_' or '$', not starting with a digit)"),
        ));
    }
    Ok(handler)
}

/// A package function's handler, needed (`when` says why: "with files or zip"), in Lambda's
/// form, naming a file `contains` holds.
fn package_handler<'a>(
    runtime: Runtime,
    given: Option<&'a str>,
    when: &str,
    contains: impl Fn(&str) -> bool,
) -> Result<&'a str, SpecError> {
    let handler = given.ok_or_else(|| {
        SpecError::malformed(
            "missing_field",
            "handler",
            format!(
                "handler is required {when}, in Lambda's form path/module.function \
                 (such as app.lambda_handler or src/lambda.handler)"
            ),
        )
    })?;
    resolve_handler(runtime, handler, contains).map_err(|m| SpecError::invalid("handler", m))?;
    Ok(handler)
}

fn one() -> u32 {
    1
}

fn missing(field: &str) -> SpecError {
    SpecError::malformed("missing_field", field, format!("field {field:?} is required"))
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && s.len() <= 128
}

/// What is wrong with an environment variable, if anything: said first for what the OS
/// cannot hold (an empty name, `=` in a name, a NUL byte), then for the portable form.
fn env_problem(key: &str, value: &str) -> Option<String> {
    if key.is_empty() {
        return Some("an environment variable has an empty name".to_owned());
    }
    if key.contains('\0') {
        return Some(format!(
            "environment variable name {key:?} holds a NUL byte, which the OS cannot hold in a name"
        ));
    }
    if key.contains('=') {
        return Some(format!(
            "environment variable name {key:?} holds '=', which the OS reads as the end of the name"
        ));
    }
    let mut chars = key.chars();
    let portable = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !portable {
        return Some(format!(
            "environment variable name {key:?} must match [A-Za-z_][A-Za-z0-9_]*"
        ));
    }
    if value.contains('\0') {
        return Some(format!(
            "the value of environment variable {key:?} holds a NUL byte, which the OS cannot hold in a value"
        ));
    }
    None
}

fn parse_env(fields: &Fields<'_>) -> Result<BTreeMap<String, String>, SpecError> {
    let mut env = BTreeMap::new();
    let Some(value) = fields.0.get("env") else {
        return Ok(env);
    };
    if value.is_null() {
        return Ok(env);
    }
    let Value::Object(map) = value else {
        return Err(SpecError::malformed(
            "invalid_type",
            "env",
            "env must be an object mapping names to string values".to_owned(),
        ));
    };
    let mut total = 0;
    for (key, val) in map {
        let field = format!("env.{key}");
        let Value::String(val) = val else {
            return Err(SpecError::malformed(
                "invalid_type",
                &field,
                format!("environment variable {key:?} must be a string"),
            ));
        };
        if let Some(problem) = env_problem(key, val) {
            return Err(SpecError::invalid_env(&field, problem));
        }
        if crate::lambda_env::is_reserved(key) {
            return Err(SpecError {
                code: "reserved_env",
                ..SpecError::invalid(
                    &field,
                    format!(
                        "environment variable {key:?} is reserved: Ignis sets it for every instance, as Lambda does"
                    ),
                )
            });
        }
        total += key.len() + val.len();
        env.insert(key.clone(), val.clone());
    }
    if total > limits::MAX_ENV_BYTES {
        return Err(SpecError::invalid_env(
            "env",
            format!(
                "env holds {total} bytes of names and values; the limit is {} bytes",
                limits::MAX_ENV_BYTES
            ),
        ));
    }
    Ok(env)
}

/// `log_format` (`text` or `json`) and `log_level` (with `json` only, as on Lambda).
fn parse_log_settings(fields: &Fields<'_>) -> Result<(LogFormat, Option<LogLevel>), SpecError> {
    let format = match fields.string("log_format")? {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(SpecError::invalid(
                "log_format",
                format!("log_format {other:?} is not one of text, json"),
            ))
        }
    };
    let level = match fields.string("log_level")? {
        None => None,
        Some(l) => Some(LogLevel::parse(l).ok_or_else(|| {
            SpecError::invalid(
                "log_level",
                format!("log_level {l:?} is not one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL"),
            )
        })?),
    };
    if level.is_some() && format != LogFormat::Json {
        return Err(SpecError::invalid(
            "log_level",
            "log_level filters JSON logs only: set log_format to json too (as on Lambda)".to_owned(),
        ));
    }
    Ok((format, level))
}

/// Typed access to the fields of a body, with errors that name the field.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn string(&self, field: &str) -> Result<Option<&str>, SpecError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(SpecError::malformed(
                "invalid_type",
                field,
                format!("{field} must be a string"),
            )),
        }
    }

    fn bounded(&self, field: &str, (min, max, default): (u32, u32, u32)) -> Result<u32, SpecError> {
        let value = match self.0.get(field) {
            None | Some(Value::Null) => return Ok(default),
            Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
                SpecError::malformed("invalid_type", field, format!("{field} must be an integer"))
            })?,
            Some(_) => {
                return Err(SpecError::malformed(
                    "invalid_type",
                    field,
                    format!("{field} must be an integer"),
                ))
            }
        };
        if value < i64::from(min) || value > i64::from(max) {
            return Err(SpecError::invalid(
                field,
                format!("{field} must be between {min} and {max}, got {value}"),
            ));
        }
        Ok(u32::try_from(value).expect("value is within u32 bounds checked above"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<FunctionSpec, SpecError> {
        parse_spec(v.to_string().as_bytes(), None)
    }

    fn ok_body() -> Value {
        json!({"name": "hello", "runtime": "python", "code": "def handler(e): return 1"})
    }

    fn with(field: &str, value: Value) -> Value {
        let mut body = ok_body();
        body[field] = value;
        body
    }

    /// The field list that unknown fields are checked against is the spec's own: every
    /// field a fully set spec serializes, plus `code` (stored beside the spec's JSON).
    #[test]
    fn reserved_environment_names_and_log_settings_are_checked() {
        let mut body = ok_body();
        body["env"] = json!({"AWS_REGION": "eu-west-1"});
        let e = parse(body).expect_err("reserved");
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("reserved_env", Some("env.AWS_REGION"))
        );
        assert!(e.message.contains("AWS_REGION"), "{}", e.message);
        let mut body = ok_body();
        body["env"] = json!({"TZ": "Europe/Paris"});
        assert!(parse(body).is_ok(), "TZ may be set, as on Lambda");
        let mut body = ok_body();
        body["log_level"] = json!("DEBUG");
        assert_eq!(parse(body).expect_err("text").field.as_deref(), Some("log_level"));
        let mut body = ok_body();
        body["log_format"] = json!("xml");
        assert_eq!(parse(body).expect_err("xml").field.as_deref(), Some("log_format"));
    }

    #[test]
    fn the_field_list_equals_the_keys_of_a_fully_serialized_spec() {
        let mut body = ok_body();
        body["on_success"] = json!("next");
        body["on_failure"] = json!("dead-end");
        body["max_async_concurrency"] = json!(2);
        body["log_format"] = json!("json");
        body["log_level"] = json!("WARN");
        body["handler_style"] = json!("openfaas");
        let spec = parse(body).expect("valid");
        let serialized = serde_json::to_value(&spec).expect("serialize");
        let mut keys: Vec<&str> = serialized
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .chain(["code", "files", "zip"])
            .collect();
        keys.sort_unstable();
        let mut fields = FIELDS.to_vec();
        fields.sort_unstable();
        assert_eq!(keys, fields);
    }

    #[test]
    fn defaults_apply() {
        let spec = parse(ok_body()).expect("valid");
        assert_eq!(spec.handler, "handler");
        assert_eq!(
            (
                spec.timeout_secs,
                spec.memory_mb,
                spec.vcpus,
                spec.max_instances,
                spec.idle_timeout_secs
            ),
            (30, 128, 1, 10, 300)
        );
        assert!(spec.env.is_empty());
    }

    #[test]
    fn names() {
        for good in ["a", "hello-world", "a1", &"a".repeat(63)] {
            assert!(FunctionName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "A", "1a", "-a", "a_b", "a.b", &"a".repeat(64), "héllo"] {
            let err = parse(with("name", json!(bad))).expect_err(bad);
            assert_eq!(err.field.as_deref(), Some("name"), "{bad}");
            assert_eq!(err.kind, SpecErrorKind::Invalid);
        }
    }

    #[test]
    fn bounds_are_inclusive() {
        for (field, (min, max, _)) in [
            ("timeout_secs", limits::TIMEOUT_SECS),
            ("memory_mb", limits::MEMORY_MB),
            ("vcpus", limits::VCPUS),
            ("max_instances", limits::MAX_INSTANCES),
            ("concurrency", limits::CONCURRENCY),
            ("idle_timeout_secs", limits::IDLE_TIMEOUT_SECS),
        ] {
            assert!(parse(with(field, json!(min))).is_ok());
            assert!(parse(with(field, json!(max))).is_ok());
            for bad in [i64::from(min) - 1, i64::from(max) + 1] {
                let err = parse(with(field, json!(bad))).expect_err(field);
                assert_eq!(err.field.as_deref(), Some(field));
                assert_eq!(err.code, "invalid_value");
            }
            let err = parse(with(field, json!("10"))).expect_err(field);
            assert_eq!((err.code, err.kind), ("invalid_type", SpecErrorKind::Malformed));
            let err = parse(with(field, json!(1.5))).expect_err(field);
            assert_eq!(err.code, "invalid_type");
        }
    }

    #[test]
    fn min_instances_within_bounds_and_max() {
        let mut body = with("min_instances", json!(1000));
        body["max_instances"] = json!(1000);
        assert_eq!(parse(body).expect("valid").min_instances, 1000);
        assert_eq!(parse(ok_body()).expect("valid").min_instances, 0);
        for bad in [-1, 1001] {
            let mut body = with("min_instances", json!(bad));
            body["max_instances"] = json!(1000);
            let err = parse(body).expect_err("out of bounds");
            assert_eq!(
                (err.field.as_deref(), err.code),
                (Some("min_instances"), "invalid_value")
            );
        }
        let mut body = with("min_instances", json!(3));
        body["max_instances"] = json!(2);
        let err = parse(body).expect_err("min above max");
        assert_eq!(err.field.as_deref(), Some("min_instances"));
        assert!(
            err.message.contains("must not exceed max_instances (2)"),
            "{}",
            err.message
        );
    }

    #[test]
    fn stored_specs_without_scaling_fields_read_back_with_defaults() {
        let mut stored = serde_json::to_value(parse(ok_body()).expect("valid")).expect("json");
        let obj = stored.as_object_mut().expect("object");
        obj.remove("min_instances");
        obj.remove("concurrency");
        let spec: FunctionSpec = serde_json::from_value(stored).expect("old spec");
        assert_eq!((spec.min_instances, spec.concurrency), (0, 1));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = parse(with("memory", json!(256))).expect_err("unknown");
        assert_eq!(err.code, "unknown_field");
        assert_eq!(err.field.as_deref(), Some("memory"));
    }

    #[test]
    fn code_rules() {
        assert_eq!(
            parse(with("code", json!("  \n")))
                .expect_err("empty")
                .field
                .as_deref(),
            Some("code")
        );
        let big = "x".repeat(limits::MAX_CODE_BYTES + 1);
        assert_eq!(
            parse(with("code", json!(big))).expect_err("big").field.as_deref(),
            Some("code")
        );
        let mut body = ok_body();
        body.as_object_mut().expect("object").remove("code");
        assert_eq!(parse(body).expect_err("missing").code, "missing_field");
    }

    #[test]
    fn handler_and_runtime() {
        assert!(parse(with("handler", json!("main_2"))).is_ok());
        for bad in ["", "1x", "a.b", "a b", "a-b"] {
            assert_eq!(
                parse(with("handler", json!(bad)))
                    .expect_err(bad)
                    .field
                    .as_deref(),
                Some("handler")
            );
        }
        assert_eq!(
            parse(with("runtime", json!("ruby")))
                .expect_err("ruby")
                .field
                .as_deref(),
            Some("runtime")
        );
    }

    #[test]
    fn env_rules() {
        assert!(parse(with("env", json!({"A_1": "x", "_b": ""}))).is_ok());
        let err = parse(with("env", json!({"1A": "x"}))).expect_err("key");
        assert_eq!(err.field.as_deref(), Some("env.1A"));
        let err = parse(with("env", json!({"A": 1}))).expect_err("type");
        assert_eq!(err.code, "invalid_type");
        let err = parse(with("env", json!({"A": "x".repeat(4096)}))).expect_err("size");
        assert_eq!(err.field.as_deref(), Some("env"));
        assert_eq!(err.code, "invalid_env");
    }

    #[test]
    fn env_the_os_cannot_hold_is_refused_naming_the_variable() {
        for (env, field, says) in [
            (json!({"": "x"}), "env.", "empty name"),
            (json!({"A=B": "x"}), "env.A=B", "'='"),
            (json!({"A\0B": "x"}), "env.A\0B", "NUL"),
            (
                json!({"GOOD": "x", "BAD": "a\0b"}),
                "env.BAD",
                "value of environment variable \"BAD\" holds a NUL",
            ),
            (json!({"1A": "x"}), "env.1A", "[A-Za-z_]"),
        ] {
            let err = parse(with("env", env.clone())).expect_err("refused");
            assert_eq!(
                (err.code, err.kind),
                ("invalid_env", SpecErrorKind::Invalid),
                "{env}"
            );
            assert_eq!(err.field.as_deref(), Some(field), "{env}");
            assert!(err.message.contains(says), "{env}: {}", err.message);
        }
    }

    #[test]
    fn network_rules() {
        assert_eq!(parse(ok_body()).expect("valid").network, Network::None);
        assert_eq!(
            parse(with("network", json!("outbound"))).expect("valid").network,
            Network::Outbound
        );
        let err = parse(with("network", json!("host"))).expect_err("host");
        assert_eq!(
            (err.code, err.field.as_deref()),
            ("invalid_value", Some("network"))
        );
    }

    #[test]
    fn path_name_must_match() {
        let path = FunctionName::parse("hello").expect("valid");
        assert!(parse_spec(ok_body().to_string().as_bytes(), Some(&path)).is_ok());
        let other = FunctionName::parse("other").expect("valid");
        let err = parse_spec(ok_body().to_string().as_bytes(), Some(&other)).expect_err("mismatch");
        assert_eq!(err.field.as_deref(), Some("name"));
        let mut body = ok_body();
        body.as_object_mut().expect("object").remove("name");
        assert_eq!(
            parse_spec(body.to_string().as_bytes(), Some(&other))
                .expect("ok")
                .name,
            other
        );
    }

    #[test]
    fn malformed_bodies() {
        assert_eq!(parse_spec(b"{", None).expect_err("json").code, "invalid_json");
        let twice = br#"{"name": "a", "runtime": "python", "code": "x", "name": "b"}"#;
        let err = parse_spec(twice, None).expect_err("duplicate");
        assert_eq!(
            (err.code, err.field.as_deref()),
            ("duplicate_field", Some("name"))
        );
        assert_eq!(parse_spec(b"[]", None).expect_err("array").code, "invalid_json");
    }
}
