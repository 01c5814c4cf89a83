//! The playground: runs code against one event in a fresh instance, in the same sandbox
//! and limits as any function, then stops the instance. Nothing is stored.

use std::sync::Arc;
use std::time::Duration;

use ignis_core::FunctionSpec;
use ignis_pool::{ColdReason, ColdStart, LaunchSpec, StartError, Starter};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::invoke::{stored_lines, Invocation, InvokeResult};
use crate::ControlError;
use crate::Platform;

/// Playground runs at once; more are refused rather than queued.
pub const MAX_PLAYGROUND_RUNS: usize = 4;

/// What a playground run came to.
#[derive(Debug)]
pub enum PlaygroundRun {
    /// The code ran: the invocation (always a cold start) and its log lines.
    Ran {
        invocation: Invocation,
        logs: Vec<ignis_store::LogLine>,
    },
    /// The code did not load: a syntax error, an import error, no handler.
    LoadFailed {
        kind: String,
        message: String,
        line: Option<u32>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PlaygroundError {
    /// The host cannot run it (a missing runtime), as for a function.
    #[error(transparent)]
    Host(#[from] ControlError),
    #[error("{MAX_PLAYGROUND_RUNS} playground runs are already running; try again when one ends")]
    Busy,
    #[error(
        "the host's memory capacity is taken: no room for a {0} MB playground instance (--memory-capacity)"
    )]
    CapacityExhausted(u32),
    #[error("{0}")]
    StartFailed(String),
}

impl Platform {
    /// Runs `spec`'s code once with `event`. The instance is stopped before this returns.
    /// A streamed answer goes to `sink` as it is written, when one is given.
    pub async fn playground(
        self: &Arc<Self>,
        spec: FunctionSpec,
        event: Box<RawValue>,
        sink: Option<ignis_pool::StreamSink>,
    ) -> Result<PlaygroundRun, PlaygroundError> {
        self.check_host_can_run(&spec)?;
        let _permit = self
            .playground_runs
            .try_acquire()
            .map_err(|_| PlaygroundError::Busy)?;
        // Held until the instance is gone, like any instance's reservation.
        let reservation = self
            .capacity
            .try_reserve(u64::from(spec.memory_mb))
            .ok_or(PlaygroundError::CapacityExhausted(spec.memory_mb))?;
        let timeout = Duration::from_secs(u64::from(spec.timeout_secs));
        let launch = Arc::new(LaunchSpec {
            package: None,
            layers: Vec::new(),
            handler_style: ignis_core::HandlerStyle::Lambda,
            rest_answers: false,
            runtime: spec.runtime,
            code: Arc::from(spec.code.as_str()),
            handler: spec.handler.clone(),
            env: spec.env.clone(),
            function: spec.name.as_str().to_owned(),
            version: 0,
            memory_mb: spec.memory_mb,
            vcpus: spec.vcpus,
            network: spec.network,
            isolation: spec.isolation,
            timeout,
            log_limit: self.config.log_limit_bytes,
            concurrency: 1,
        });
        let started_at = OffsetDateTime::now_utc();
        let starter: Arc<dyn Starter> = self.launcher.clone();
        let started = match starter.start(launch).await {
            Ok(started) => started,
            Err(StartError::Load(e)) => {
                return Ok(PlaygroundRun::LoadFailed {
                    kind: e.kind,
                    message: e.message,
                    line: e.line,
                })
            }
            Err(e) => return Err(PlaygroundError::StartFailed(e.to_string())),
        };
        let id = uuid::Uuid::now_v7().to_string();
        let begun = Instant::now();
        let ran = started
            .instance
            .run(id.clone(), Arc::from(event), timeout, sink)
            .await;
        let duration = begun.elapsed();
        // The last handle: the instance's process is killed and its sandbox removed.
        drop(started.instance);
        drop(reservation);
        Ok(PlaygroundRun::Ran {
            invocation: Invocation {
                id,
                started_at,
                version: 0,
                cold: Some(ColdStart {
                    reason: ColdReason::FirstCall,
                    timings: started.timings,
                }),
                duration,
                result: InvokeResult::of(ran.outcome, spec.timeout_secs, spec.memory_mb, false),
            },
            logs: stored_lines(&ran.logs, started_at),
        })
    }
}
