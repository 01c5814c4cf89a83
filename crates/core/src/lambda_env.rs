//! Lambda's environment: the variables every instance gets as on AWS Lambda (the function's
//! name, version, memory, log group and stream, region, handler, code root, time zone, log
//! format), the names a function's own `env` may therefore not set, and the per-function
//! log settings (`log_format`, `log_level`) that Lambda's runtimes read from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Names a function's `env` cannot set: Lambda reserves them (its runtimes and SDKs read
/// them), and Ignis sets the ones that have a meaning here.
pub const RESERVED_ENV: [&str; 18] = [
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// Also set by Ignis from the function's log settings (Lambda sets them from its
/// LoggingConfig): a function's `env` cannot set them either.
pub const LOG_ENV: [&str; 2] = ["AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL"];

/// Whether a function's `env` may not set `name`.
pub fn is_reserved(name: &str) -> bool {
    RESERVED_ENV.contains(&name) || LOG_ENV.contains(&name)
}

/// How the runtime writes a function's log records: Lambda's plain text, or one JSON
/// object per record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The lowest level of application log records kept (JSON format only, as on Lambda).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl LogLevel {
    pub fn parse(s: &str) -> Option<LogLevel> {
        match s.to_ascii_uppercase().as_str() {
            "TRACE" => Some(LogLevel::Trace),
            "DEBUG" => Some(LogLevel::Debug),
            "INFO" => Some(LogLevel::Info),
            "WARN" => Some(LogLevel::Warn),
            "ERROR" => Some(LogLevel::Error),
            "FATAL" => Some(LogLevel::Fatal),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
            LogLevel::Fatal => "FATAL",
        }
    }
}

/// What one function version's instances get, besides the function's own `env`.
#[derive(Debug, Clone)]
pub struct LambdaFacts<'a> {
    pub name: &'a str,
    pub version: u32,
    pub memory_mb: u32,
    pub region: &'a str,
    pub handler: &'a str,
    pub log_format: LogFormat,
    pub log_level: Option<LogLevel>,
}

/// The function's environment as its instances see it: its own `env`, with Lambda's
/// variables (which it cannot set) and `TZ` (`:UTC`, as on Lambda, unless the function
/// sets it). The per-instance ones (`AWS_LAMBDA_LOG_STREAM_NAME`, `LAMBDA_TASK_ROOT`) are
/// added when an instance loads.
pub fn function_env(own: &BTreeMap<String, String>, f: &LambdaFacts<'_>) -> BTreeMap<String, String> {
    let mut env = own.clone();
    env.entry("TZ".to_owned()).or_insert_with(|| ":UTC".to_owned());
    let mut set = |k: &str, v: String| {
        env.insert(k.to_owned(), v);
    };
    set("AWS_LAMBDA_FUNCTION_NAME", f.name.to_owned());
    set("AWS_LAMBDA_FUNCTION_VERSION", f.version.to_string());
    set("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", f.memory_mb.to_string());
    set("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", f.name));
    set("AWS_REGION", f.region.to_owned());
    set("AWS_DEFAULT_REGION", f.region.to_owned());
    set("_HANDLER", f.handler.to_owned());
    if f.log_format == LogFormat::Json {
        set("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned());
        set(
            "AWS_LAMBDA_LOG_LEVEL",
            f.log_level.unwrap_or(LogLevel::Info).as_str().to_owned(),
        );
    }
    env
}

/// The log stream of one instance, as Lambda names them: `YYYY/MM/DD/[version]<id>`.
pub fn log_stream_name(date: (i32, u8, u8), version: u32, instance_hex: &str) -> String {
    let (y, m, d) = date;
    format!("{y:04}/{m:02}/{d:02}/[{version}]{instance_hex}")
}

/// A region name as AWS spells them (`us-east-1`, `eu-central-1`, or a local one):
/// lowercase letters, digits and `-`, 1 to 32 characters.
pub fn valid_region(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_variables_win_and_tz_defaults_to_utc() {
        let own = BTreeMap::from([
            ("TZ".to_owned(), "Europe/Paris".to_owned()),
            ("A".to_owned(), "1".to_owned()),
        ]);
        let facts = LambdaFacts {
            name: "hello",
            version: 3,
            memory_mb: 256,
            region: "eu-west-1",
            handler: "app.lambda_handler",
            log_format: LogFormat::Json,
            log_level: Some(LogLevel::Warn),
        };
        let env = function_env(&own, &facts);
        assert_eq!(
            env["TZ"], "Europe/Paris",
            "TZ is not reserved: the function's wins"
        );
        assert_eq!(env["A"], "1");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "3");
        assert_eq!(env["AWS_LAMBDA_LOG_GROUP_NAME"], "/aws/lambda/hello");
        assert_eq!(env["AWS_DEFAULT_REGION"], "eu-west-1");
        assert_eq!(env["AWS_LAMBDA_LOG_LEVEL"], "WARN");
        let text = function_env(
            &BTreeMap::new(),
            &LambdaFacts {
                log_format: LogFormat::Text,
                ..facts
            },
        );
        assert_eq!(text["TZ"], ":UTC");
        assert!(!text.contains_key("AWS_LAMBDA_LOG_FORMAT"));
        assert_eq!(log_stream_name((2026, 1, 5), 3, "ab12"), "2026/01/05/[3]ab12");
        assert!(is_reserved("AWS_REGION") && is_reserved("AWS_LAMBDA_LOG_LEVEL") && !is_reserved("TZ"));
        assert!(valid_region("us-east-1") && !valid_region("US") && !valid_region("-x") && !valid_region(""));
    }
}
