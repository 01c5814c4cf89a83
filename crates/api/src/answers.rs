//! The API's answers as types: each handler answers one of these, and the OpenAPI
//! document describes them from the same definitions, so the two cannot drift apart.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ignis_control::{FunctionView, ScheduleEntry};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

/// Whether functions run isolated.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Sandbox {
    pub enabled: bool,
    /// Present only without the sandbox: what that means.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub warning: Option<&'static str>,
}

/// The isolation tiers a function may ask for (`isolation`) on this host.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IsolationTiers {
    pub process: ProcessTier,
    pub microvm: MicrovmTier,
}

/// The `process` tier: a process in the sandbox (always there; without the sandbox a
/// plain process, see `sandbox`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProcessTier {
    pub available: bool,
}

/// The `microvm` tier: each instance in its own virtual machine, inside the sandbox.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MicrovmTier {
    pub available: bool,
    /// Why functions cannot use it on this host, when they cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub reason: Option<String>,
    /// When available: `kvm` (hardware virtualization) or `tcg` (QEMU's software emulation).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false, value_type = Option<AcceleratorName>)]
    pub accelerator: Option<String>,
    /// When available: the guest kernel's release.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub guest_kernel: Option<String>,
    /// When available: whether cold starts restore a guest saved after its boot.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub snapshots: Option<bool>,
    /// When available: guests kept restored (and warmed up) ahead of cold starts per kind
    /// of guest (runtime, size, network); 0 when cold starts restore their own
    /// (`--microvm-pool`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub pool: Option<usize>,
}

/// What runs the microvm tier's virtual machines.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum AcceleratorName {
    Kvm,
    Tcg,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok` when the server answers.
    pub status: &'static str,
    pub version: &'static str,
    pub sandbox: Sandbox,
    pub isolation: IsolationTiers,
}

/// One runtime and its interpreter on this host, or an installer of functions'
/// dependencies.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RuntimeInfo {
    /// `python`, `javascript` or `typescript`; for an installer, `uv` or `bun`.
    pub name: &'static str,
    /// For an installer: the manifest it installs (`requirements.txt`, `package.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installs: Option<&'static str>,
    pub available: bool,
    pub version: Option<String>,
    pub path: Option<String>,
    /// Why it is not available.
    pub error: Option<String>,
}

impl RuntimeInfo {
    pub(crate) fn of(
        name: &'static str,
        installs: Option<&'static str>,
        i: &ignis_control::Interpreter,
    ) -> RuntimeInfo {
        RuntimeInfo {
            name,
            installs,
            available: i.available,
            version: i.version.clone(),
            path: i.path.as_ref().map(|p| p.display().to_string()),
            error: i.error.clone(),
        }
    }
}

/// `GET /v1/runtimes`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Runtimes {
    pub runtimes: Vec<RuntimeInfo>,
    /// What installs functions' dependencies at deploy.
    pub installers: Vec<RuntimeInfo>,
    pub sandbox: Sandbox,
    pub isolation: IsolationTiers,
}

/// `GET /v1/functions`: every function, by name (without their code).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FunctionList {
    #[schema(value_type = Vec<ignis_control::FunctionView>)]
    pub functions: Vec<FunctionView>,
}

/// An asynchronous invocation accepted (or, for a repeated idempotency key, the first one).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Accepted {
    pub invocation_id: String,
    /// `queued`, or where the first invocation of a repeated key is now.
    pub status: String,
    /// A redrive: the dead letter it runs again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub redrive_of: Option<String>,
}

impl Accepted {
    /// The 202 answer, with the `x-ignis-invocation-id` header (and
    /// `x-ignis-idempotent-replay` when `replayed`).
    pub(crate) fn response(self, replayed: bool) -> Response {
        let id = HeaderValue::from_str(&self.invocation_id);
        let mut resp = (StatusCode::ACCEPTED, Json(self)).into_response();
        if let Ok(v) = id {
            resp.headers_mut().insert("x-ignis-invocation-id", v);
        }
        if replayed {
            resp.headers_mut()
                .insert("x-ignis-idempotent-replay", HeaderValue::from_static("true"));
        }
        resp
    }
}

/// A log line of one invocation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LogLine {
    /// RFC 3339.
    pub ts: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub line: String,
}

/// A log line of a function, naming its invocation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FunctionLogLine {
    pub invocation_id: String,
    pub ts: String,
    pub stream: String,
    pub line: String,
}

/// `GET /v1/functions/{name}/logs`: the newest lines, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Logs {
    pub logs: Vec<FunctionLogLine>,
}

/// One Server-Sent Event of `GET /v1/functions/{name}/logs?follow=true`, for the document
/// (axum writes the events themselves).
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct LogEvent {
    /// `log` (one line) or `missed` (how many invocations' lines a slow reader lost).
    #[schema(value_type = LogEventKind)]
    pub event: String,
    /// JSON: a `FunctionLogLine` for `log`, `{"invocations": n}` for `missed`.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// The kinds of events a log stream sends.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogEventKind {
    Log,
    Missed,
}

/// What a cold start cost, part by part (milliseconds).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Init {
    /// `first_call`, `scale_out`, `after_idle` or `new_version`.
    pub reason: String,
    pub init_ms: f64,
    pub sandbox_ms: f64,
    pub runtime_ms: f64,
    pub load_ms: f64,
    /// A virtual machine booted from its kernel to its agent's readiness (part of
    /// `runtime_ms`); only for a microvm instance started without a snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub boot_ms: Option<f64>,
    /// A virtual machine restored from a snapshot to its first answer (part of
    /// `runtime_ms`); only for a microvm instance restored so.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub restore_ms: Option<f64>,
}

/// A synchronous invocation's record.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InvocationView {
    pub id: String,
    pub function: String,
    pub version: u32,
    /// `succeeded`, `function_error`, `timeout`, `crashed`, ...
    pub status: String,
    pub cold_start: bool,
    pub started_at: String,
    pub duration_ms: f64,
    pub billed_ms: u64,
    pub memory_mb: u32,
    pub peak_memory_mb: Option<u32>,
    pub init: Option<Init>,
    /// The error object of a failed invocation (`code`, `message`, ...).
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// Only when one invocation is asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub logs: Option<Vec<LogLine>>,
}

/// `GET /v1/functions/{name}/invocations`: the newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InvocationList {
    pub invocations: Vec<InvocationView>,
}

/// One attempt of an asynchronous invocation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Attempt {
    pub attempt: u32,
    /// The synchronous invocation the attempt ran as, when it reached an instance.
    pub execution_id: Option<String>,
    pub version: u32,
    pub started_at: String,
    pub duration_ms: f64,
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// Only when one invocation is asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub logs: Option<Vec<LogLine>>,
}

/// An asynchronous invocation: its attempts, result or dead letter.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AsyncView {
    pub id: String,
    /// Always `async`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: String,
    /// `queued`, `running`, `failed` (to be retried), `succeeded` or `dead`.
    pub status: String,
    /// `api`, `schedule`, a destination, ...
    pub source: String,
    pub request_id: String,
    pub created_at: String,
    pub next_attempt_at: Option<String>,
    pub finished_at: Option<String>,
    pub attempt_count: usize,
    pub attempts: Vec<Attempt>,
    /// What the handler returned, when it succeeded.
    #[schema(value_type = Option<Value>)]
    pub result: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    pub dead_reason: Option<String>,
    pub dead_letter: bool,
    pub redrive_of: Option<String>,
    pub redriven_as: Option<String>,
    /// How many destinations led to it.
    pub hops: u32,
    /// The event it was invoked with.
    #[schema(value_type = Value)]
    pub event: Value,
}

/// `GET /v1/invocations/{id}`: a synchronous invocation's record or an asynchronous one.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum InvocationAnswer {
    Sync(InvocationView),
    Async(AsyncView),
}

/// `GET /v1/functions/{name}/dead-letters`: the newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetters {
    pub dead_letters: Vec<AsyncView>,
}

/// `GET /v1/schedules`: every function's schedules.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Schedules {
    #[schema(value_type = Vec<ignis_control::ScheduleEntry>)]
    pub schedules: Vec<ScheduleEntry>,
}

/// `GET` and `PUT /v1/clock`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ClockView {
    /// RFC 3339.
    pub now: String,
    /// Whether the server was started with `--manual-clock` (and the clock can be set).
    pub manual: bool,
}

/// What was used over a period.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct UsageTotals {
    pub invocations: u64,
    pub errors: u64,
    pub cold_starts: u64,
    pub billed_ms: u64,
    /// Memory in GiB times billed seconds, as Lambda bills it.
    pub gb_seconds: f64,
}

/// What one function used over a period.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FunctionUsage {
    pub function: String,
    #[serde(flatten)]
    pub usage: UsageTotals,
}

/// `GET /v1/usage`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Usage {
    /// The period's start, rounded down to a minute.
    pub since: String,
    /// The period's end, rounded up to a minute; null when open.
    pub until: Option<String>,
    pub functions: Vec<FunctionUsage>,
    pub total: UsageTotals,
}

/// One minute of a function's activity.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MinuteStats {
    pub at: String,
    pub invocations: u64,
    pub errors: u64,
    pub cold_starts: u64,
    /// Mean billed time; null in a minute without invocations.
    pub avg_ms: Option<f64>,
}

/// A function's totals over the period.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatsTotals {
    pub invocations: u64,
    pub errors: u64,
    pub cold_starts: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

/// `GET /v1/functions/{name}/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FunctionStats {
    pub since: String,
    pub until: String,
    pub minutes: i64,
    pub totals: StatsTotals,
    /// Every minute of the period, oldest first.
    pub series: Vec<MinuteStats>,
}

/// One function's activity in `GET /v1/stats`.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct FunctionSummary {
    pub invocations: u64,
    pub errors: u64,
    pub cold_starts: u64,
    pub p50_ms: Option<f64>,
}

/// `GET /v1/stats`: the functions with invocations in the period, by name.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AllStats {
    pub since: String,
    pub until: String,
    pub minutes: i64,
    pub functions: BTreeMap<String, FunctionSummary>,
}

/// A saved test event.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TestEventView {
    pub name: String,
    /// The event, as saved.
    #[schema(value_type = Value)]
    pub event: Box<RawValue>,
    pub updated_at: String,
}

/// `GET /v1/functions/{name}/test-events`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TestEvents {
    pub test_events: Vec<TestEventView>,
}

/// The answer a playground run got, as invoke would have answered it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlaygroundResponse {
    pub status: u16,
    /// Repeated headers are joined with `, `.
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// `utf8`, or `base64` for a body that is not UTF-8.
    pub body_encoding: &'static str,
}

/// Why the playground's code did not load.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LoadError {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub line: Option<u32>,
}

/// `POST /v1/playground/run`: either the response or why the code did not load.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlaygroundAnswer {
    pub response: Option<PlaygroundResponse>,
    pub load_error: Option<LoadError>,
    pub duration_ms: Option<f64>,
    pub init_ms: Option<f64>,
    /// Always true: every run starts its own instance.
    pub cold_start: bool,
    pub logs: Vec<LogLine>,
}

/// A time as the API shows it (RFC 3339).
pub(crate) fn ts(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A JSON text kept in the store, read back (none when absent or unreadable).
pub(crate) fn stored_json(text: Option<&str>) -> Option<Value> {
    text.and_then(|e| serde_json::from_str::<Value>(e).ok())
}

/// An invocation's log lines as the API shows them.
pub(crate) fn log_lines(lines: &[ignis_store::LogLine]) -> Vec<LogLine> {
    lines
        .iter()
        .map(|l| LogLine {
            ts: ts(l.ts),
            stream: l.stream.clone(),
            line: l.line.clone(),
        })
        .collect()
}
