//! A starter whose instances are tasks, not processes: for the tests of the pool and of
//! the control plane (the `testing` feature), so that scaling, retries and deploys can be
//! checked on tokio's paused clock without starting interpreters.
//!
//! What a fake instance does is written in the function's code and in each event, as JSON:
//! - code `{"start_ms": 500}` takes 500 ms to start (else the starter's default delay);
//!   `{"boot_ms": 900}` or `{"restore_ms": 40}` report those parts of a virtual machine's
//!   start in the timings (they take no time);
//!   `{"load_error": "no handler"}` fails to load with that message; `{"fail": "boom"}`
//!   makes every call of that version a function error.
//! - event `{"work_ms": 20}` works 20 ms; `{"fail": "boom"}` makes the call a function
//!   error with that message.
//!
//! A call that succeeds answers with the id of the instance that ran it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use ignis_core::{FunctionError, Outcome};
use ignis_protocol::LoadError;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::instance::{Instance, Job, RunResult, StartError, StartTimings, Started};
use crate::launcher::{LaunchSpec, Starter};

/// Starts fake instances (see the module documentation).
pub struct FakeStarter {
    delay: Duration,
    starts: AtomicUsize,
    live: Arc<AtomicUsize>,
    calls: Arc<Mutex<Vec<Call>>>,
}

/// One call a fake instance ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub function: String,
    pub version: u32,
    /// The isolation tier the instance was asked for.
    pub isolation: ignis_core::Isolation,
    pub event: Value,
}

impl FakeStarter {
    /// A starter whose instances take `delay_ms` to start unless their code says otherwise.
    pub fn new(delay_ms: u64) -> Arc<FakeStarter> {
        Arc::new(FakeStarter {
            delay: Duration::from_millis(delay_ms),
            starts: AtomicUsize::new(0),
            live: Arc::default(),
            calls: Arc::default(),
        })
    }

    /// Starts begun so far (including those that failed).
    pub fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }

    /// Every call run so far, in the order they began.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Instances started and not yet stopped (an instance stops when its last handle is
    /// dropped and its calls are done).
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

/// Counts an instance as live while its task runs.
struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl Starter for FakeStarter {
    fn start(self: Arc<Self>, spec: Arc<LaunchSpec>) -> BoxFuture<'static, Result<Started, StartError>> {
        Box::pin(async move {
            self.starts.fetch_add(1, Ordering::SeqCst);
            let code: Value = serde_json::from_str(&spec.code).unwrap_or(Value::Null);
            let delay = code
                .get("start_ms")
                .and_then(Value::as_u64)
                .map_or(self.delay, Duration::from_millis);
            tokio::time::sleep(delay).await;
            if let Some(message) = text(&code, "load_error") {
                return Err(StartError::Load(LoadError {
                    kind: "ImportError".to_owned(),
                    message,
                    stack: String::new(),
                    line: None,
                }));
            }
            let version_fails = text(&code, "fail");
            let (tx, mut rx) = mpsc::channel::<Job>(1000);
            let instance = Instance::from_channel(tx);
            let id = instance.id();
            self.live.fetch_add(1, Ordering::SeqCst);
            let guard = LiveGuard(self.live.clone());
            let calls_run = self.calls.clone();
            tokio::spawn(async move {
                let _guard = guard;
                let mut calls = tokio::task::JoinSet::new();
                while let Some(job) = rx.recv().await {
                    let version_fails = version_fails.clone();
                    let event: Value = serde_json::from_str(job.event.get()).unwrap_or(Value::Null);
                    calls_run.lock().unwrap_or_else(|p| p.into_inner()).push(Call {
                        function: spec.function.clone(),
                        version: spec.version,
                        isolation: spec.isolation,
                        event: event.clone(),
                    });
                    calls.spawn(async move {
                        let work = event.get("work_ms").and_then(Value::as_u64).unwrap_or(0);
                        tokio::time::sleep(Duration::from_millis(work)).await;
                        let outcome = match text(&event, "fail").or(version_fails) {
                            Some(message) => Outcome::FunctionError(FunctionError {
                                kind: "Error".to_owned(),
                                message,
                                stack: String::new(),
                            }),
                            None => Outcome::Ok(serde_json::json!(id)),
                        };
                        let _ = job.reply.send(RunResult {
                            outcome,
                            logs: Vec::new(),
                            reusable: true,
                        });
                    });
                }
                // The instance stops once its calls in flight are done.
                while calls.join_next().await.is_some() {}
            });
            Ok(Started {
                instance,
                timings: StartTimings {
                    load: delay,
                    boot: code
                        .get("boot_ms")
                        .and_then(Value::as_u64)
                        .map(Duration::from_millis),
                    restore: code
                        .get("restore_ms")
                        .and_then(Value::as_u64)
                        .map(Duration::from_millis),
                    ..StartTimings::default()
                },
            })
        })
    }
}
