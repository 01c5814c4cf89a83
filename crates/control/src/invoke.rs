//! The path of one invocation: find the serving version, run the event on one of its
//! instances, map the answer, and hand the record to the background writer.

use std::sync::Arc;
use std::time::Duration;

use ignis_core::response::{map_return_value, MapError, MappedResponse};
use ignis_core::{FunctionError, FunctionState, LogLine, Outcome};
use ignis_pool::{AcquireError, ColdStart};
use ignis_store::{ColdStart as StoredColdStart, InvocationRecord, LogLine as StoredLine};
use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::metrics::Throttle;
use crate::outcome::{
    crashed_message, out_of_memory_message, timeout_message, too_large_message, ErrorCode, OutcomeError,
    OutcomeKind, Raised,
};
use crate::Platform;

/// Why an invocation did not reach a handler.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("function {0:?} does not exist")]
    NotFound(String),
    #[error("function {name:?} is not ready: it is {state}{}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    NotReady {
        name: String,
        state: &'static str,
        reason: Option<String>,
    },
    #[error("{0}")]
    Throttled(String),
    #[error("{0}")]
    CapacityExhausted(String),
    #[error("could not start an instance: {0}")]
    StartFailed(String),
}

/// What the handler's run came to, ready for the API to answer with.
#[derive(Debug)]
pub enum InvokeResult {
    Response(MappedResponse),
    FunctionError(FunctionError),
    Timeout { secs: u32 },
    Crashed { detail: String },
    OutOfMemory { memory_mb: u32 },
    ResponseTooLarge { size: u64 },
    InvalidResponse(String),
}

/// One finished invocation.
#[derive(Debug)]
pub struct Invocation {
    pub id: String,
    pub started_at: OffsetDateTime,
    pub version: u32,
    /// Set when the call waited for its instance to start.
    pub cold: Option<ColdStart>,
    pub duration: Duration,
    pub result: InvokeResult,
}

impl Platform {
    /// Invokes the serving version of `name` with `event` (already checked to be JSON).
    pub async fn invoke(
        self: &Arc<Self>,
        name: &str,
        event: Box<RawValue>,
    ) -> Result<Invocation, InvokeError> {
        self.invoke_as(name, event, None, None).await
    }

    /// Same, with a streamed answer forwarded to `sink` as the handler writes it (function
    /// URLs): the head, the chunks, then the end; the returned invocation comes once the
    /// call has ended (its response then has no body: the body went to the sink). A
    /// handler that does not stream answers as usual and sends nothing to the sink.
    pub async fn invoke_streaming(
        self: &Arc<Self>,
        name: &str,
        event: Box<RawValue>,
        sink: ignis_pool::StreamSink,
    ) -> Result<Invocation, InvokeError> {
        self.invoke_as(name, event, None, Some(sink)).await
    }

    /// Same, with the request id the handler's context gets (by default the record's id):
    /// an asynchronous invocation keeps one request id across its attempts.
    pub(crate) async fn invoke_as(
        self: &Arc<Self>,
        name: &str,
        event: Box<RawValue>,
        request_id: Option<&str>,
        sink: Option<ignis_pool::StreamSink>,
    ) -> Result<Invocation, InvokeError> {
        let slot = self
            .slot(name)
            .ok_or_else(|| InvokeError::NotFound(name.to_owned()))?;
        let Some(active) = slot.active.load_full() else {
            let s = slot.status();
            let state = match s.state {
                // No version serves yet, so whatever the lifecycle says, calls cannot run.
                FunctionState::Ready => FunctionState::Deploying,
                state @ (FunctionState::Creating
                | FunctionState::Building
                | FunctionState::Deploying
                | FunctionState::Error) => state,
            };
            return Err(InvokeError::NotReady {
                name: name.to_owned(),
                state: state.as_str(),
                reason: s.reason,
            });
        };
        let id = uuid::Uuid::now_v7().to_string();
        let request_id = request_id.map_or_else(|| id.clone(), str::to_owned);
        let started_at = OffsetDateTime::now_utc();
        let platform = self.clone();
        let (task_id, function, version) = (id.clone(), name.to_owned(), active.version);
        // The run is its own task so that it ends, is recorded and gives its instance back
        // even if the caller goes away.
        let (reply, answer) = tokio::sync::oneshot::channel();
        let task_slot = slot.clone();
        tokio::spawn(async move {
            let ran = match active.pool.invoke(request_id, Arc::from(event), sink).await {
                Ok(ran) => ran,
                Err(e) => {
                    task_slot.metrics.throttled(Throttle::of(&e));
                    let _ = reply.send(Err(e));
                    return;
                }
            };
            let spec = &active.pool.spec;
            let timeout_secs = u32::try_from(spec.timeout.as_secs()).unwrap_or(u32::MAX);
            let result = InvokeResult::of(
                ran.result.outcome,
                timeout_secs,
                spec.memory_mb,
                spec.rest_answers,
            );
            let mut record = record_of(RecordRequest {
                id: &task_id,
                function: &function,
                version,
                cold: ran.cold,
                started_at,
                duration: ran.duration,
                result: &result,
                logs: &ran.result.logs,
                memory_mb: spec.memory_mb,
            });
            task_slot.metrics.invoked(result.kind(), ran.duration);
            if let Some(cold) = ran.cold {
                task_slot.metrics.cold_start(cold.reason, cold.timings.total());
            }
            // Recorded before the caller is answered (a pread of the peak, a channel send
            // and a short lock on the writer's pending map): whoever holds the answer can
            // read the invocation at once. The instance goes back first, so a caller's next
            // call finds it free.
            record.peak_memory_mb = ran.instance.peak_memory_mb();
            drop(ran.instance);
            platform.live.publish(&record);
            platform.writer.record(record);
            let _ = reply.send(Ok((ran.cold, ran.duration, result)));
        });
        let (cold, duration, result) = answer
            .await
            .map_err(|e| InvokeError::StartFailed(format!("the invocation task failed: {e}")))?
            .map_err(|e| match e {
                AcquireError::QueueFull | AcquireError::DeadlinePassed => InvokeError::Throttled(format!(
                    "function {name:?} is at its max_instances and no instance became free in time: {e}"
                )),
                AcquireError::CapacityExhausted => InvokeError::CapacityExhausted(format!(
                    "no instance of {name:?} could start: {e} (--memory-capacity)"
                )),
                AcquireError::StartFailed(e) => InvokeError::StartFailed(e.to_string()),
                AcquireError::Retired => InvokeError::NotReady {
                    name: name.to_owned(),
                    state: "deploying",
                    reason: None,
                },
            })?;
        Ok(Invocation {
            id,
            started_at,
            version,
            cold,
            duration,
            result,
        })
    }
}

/// The stored record of a finished invocation.
fn record_of(r: RecordRequest<'_>) -> InvocationRecord {
    let status = r.result.status();
    let error = r.result.error();
    InvocationRecord {
        id: r.id.to_owned(),
        function: r.function.to_owned(),
        version: r.version,
        status: status.to_owned(),
        cold_start: r.cold.is_some(),
        started_at: r.started_at,
        duration_ms: r.duration.as_secs_f64() * 1000.0,
        error_json: error.map(|e| e.to_json().to_string()),
        memory_mb: r.memory_mb,
        billed_ms: billed_ms(r.duration),
        peak_memory_mb: None,
        init: r.cold.map(|c| StoredColdStart {
            reason: c.reason.as_str().to_owned(),
            init_ms: ms(c.timings.total()),
            sandbox_ms: ms(c.timings.sandbox),
            runtime_ms: ms(c.timings.runtime),
            load_ms: ms(c.timings.load),
            boot_ms: c.timings.boot.map(ms),
            restore_ms: c.timings.restore.map(ms),
        }),
        logs: stored_lines(r.logs, r.started_at),
    }
}

/// An instance's log lines as they are stored and shown (`fallback` for a time out of
/// range).
pub(crate) fn stored_lines(logs: &[LogLine], fallback: OffsetDateTime) -> Vec<StoredLine> {
    logs.iter()
        .map(|l| StoredLine {
            ts: OffsetDateTime::from_unix_timestamp_nanos(i128::from(l.ts_ms) * 1_000_000)
                .unwrap_or(fallback),
            stream: l.stream.as_str().to_owned(),
            line: l.line.clone(),
        })
        .collect()
}

/// The facts of one finished invocation, for its record.
struct RecordRequest<'a> {
    id: &'a str,
    function: &'a str,
    version: u32,
    cold: Option<ColdStart>,
    started_at: OffsetDateTime,
    duration: Duration,
    result: &'a InvokeResult,
    logs: &'a [LogLine],
    memory_mb: u32,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Billed time: the duration rounded up to a whole millisecond (at least 1).
fn billed_ms(duration: Duration) -> u64 {
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    micros.div_ceil(1000).max(1)
}

impl InvokeError {
    /// The error's code and message, as the caller is answered.
    pub fn error(&self) -> OutcomeError {
        let code = match self {
            InvokeError::NotFound(_) => ErrorCode::NotFound,
            InvokeError::NotReady { .. } => ErrorCode::NotReady,
            InvokeError::Throttled(_) => ErrorCode::Throttled,
            InvokeError::CapacityExhausted(_) => ErrorCode::CapacityExhausted,
            InvokeError::StartFailed(_) => ErrorCode::InstanceStartFailed,
        };
        OutcomeError::new(code, self.to_string())
    }
}

impl InvokeResult {
    /// What the invocation came to: the record's status and the metrics' label.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            InvokeResult::Response(_) => OutcomeKind::Succeeded,
            InvokeResult::FunctionError(_) => OutcomeKind::FunctionError,
            InvokeResult::Timeout { .. } => OutcomeKind::Timeout,
            InvokeResult::Crashed { .. } => OutcomeKind::Crashed,
            InvokeResult::OutOfMemory { .. } => OutcomeKind::OutOfMemory,
            InvokeResult::ResponseTooLarge { .. } => OutcomeKind::ResponseTooLarge,
            InvokeResult::InvalidResponse(_) => OutcomeKind::InvalidResponse,
        }
    }

    /// The record's status: `succeeded`, `function_error`, `timeout`, ...
    pub fn status(&self) -> &'static str {
        self.kind().status()
    }

    /// The handler's mapped answer, or the error the invocation ended with.
    pub fn answer(self) -> Result<MappedResponse, OutcomeError> {
        if let InvokeResult::Response(r) = self {
            return Ok(r);
        }
        Err(self.error().expect("every result but a response is an error"))
    }

    /// The error the invocation ended with (None when it succeeded): one code and message
    /// for the caller's answer, the record and a failure destination.
    pub fn error(&self) -> Option<OutcomeError> {
        let (code, message) = match self {
            InvokeResult::Response(_) => return None,
            InvokeResult::FunctionError(e) => {
                return Some(OutcomeError {
                    code: ErrorCode::FunctionError,
                    message: e.message.clone(),
                    raised: Some(Raised {
                        kind: e.kind.clone(),
                        stack: e.stack.clone(),
                    }),
                })
            }
            InvokeResult::Timeout { secs } => (ErrorCode::Timeout, timeout_message(*secs)),
            InvokeResult::Crashed { detail } => (ErrorCode::InstanceCrashed, crashed_message(detail)),
            InvokeResult::OutOfMemory { memory_mb } => {
                (ErrorCode::OutOfMemory, out_of_memory_message(*memory_mb))
            }
            InvokeResult::ResponseTooLarge { size } => {
                (ErrorCode::ResponseTooLarge, too_large_message(*size))
            }
            InvokeResult::InvalidResponse(m) => (ErrorCode::InvalidResponse, m.clone()),
        };
        Some(OutcomeError::new(code, message))
    }

    /// What the handler returned, for an asynchronous invocation's result: the mapped
    /// body as JSON, or as text when it is not JSON.
    pub fn result_value(&self) -> Option<serde_json::Value> {
        match self {
            InvokeResult::Response(r) => Some(serde_json::from_slice(&r.body).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&r.body).into_owned())
            })),
            InvokeResult::FunctionError(_)
            | InvokeResult::Timeout { .. }
            | InvokeResult::Crashed { .. }
            | InvokeResult::OutOfMemory { .. }
            | InvokeResult::ResponseTooLarge { .. }
            | InvokeResult::InvalidResponse(_) => None,
        }
    }

    /// `rest`: the function answers as API Gateway REST handlers do (payload 1.0).
    pub(crate) fn of(outcome: Outcome, timeout_secs: u32, memory_mb: u32, rest: bool) -> InvokeResult {
        match outcome {
            Outcome::Ok(value) => match map_return_value(&value, rest) {
                Ok(response) => InvokeResult::Response(response),
                Err(MapError::TooLarge(size)) => InvokeResult::ResponseTooLarge { size: size as u64 },
                Err(e @ (MapError::BadStatus(_) | MapError::BadBase64 | MapError::BadHeader(_))) => {
                    InvokeResult::InvalidResponse(e.to_string())
                }
            },
            Outcome::FunctionError(e) => InvokeResult::FunctionError(e),
            Outcome::Timeout => InvokeResult::Timeout { secs: timeout_secs },
            Outcome::Crashed { detail } => InvokeResult::Crashed { detail },
            Outcome::OutOfMemory => InvokeResult::OutOfMemory { memory_mb },
            Outcome::ResponseTooLarge { size } => InvokeResult::ResponseTooLarge { size },
            Outcome::InvalidResponse { message } => InvokeResult::InvalidResponse(message),
        }
    }
}
