//! One instance: a runtime process with the user's module loaded, driven by its own task.
//!
//! An instance is first *generic*: its sandbox is made and its interpreter has said hello,
//! but it has no code (pre-warmed instances wait in this state). [`Generic::load`] gives it
//! one function version's code, limits and network; from then on it serves only that
//! version. The task owns the process and its three channels (control socket, stdout,
//! stderr) and runs up to `concurrency` invocations at once: for each, send `invoke`, then
//! gather the answer frame, the output lines and both end markers, unless the deadline or
//! the death of the process comes first.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ignis_core::{limits, logs::cap_logs, FunctionError, LogLine, LogStream, Network, Outcome, Runtime};
use ignis_protocol::{
    read_message, write_message, FunctionInfo, HostMessage, InstanceMessage, LoadError, ProtocolError,
    WireLog,
};
use ignis_sandbox::{Bind, CgroupLimits, Process, Sandbox, SpawnRequest};
use serde_json::value::RawValue;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use futures::future::BoxFuture;

use crate::output::{now_ms, pump, OutputEvent};
use crate::prewarm::Prewarm;
use crate::runtimes::Runtimes;

/// How long an instance may take to start, and then to import the user's module.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the end markers may lag behind an answer (they were written before it).
const MARKER_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for a dead process's last output.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the bootstraps and the function's code appear inside a sandbox.
const SANDBOX_BOOTSTRAP_DIR: &str = "/ignis";
const SANDBOX_CODE_DIR: &str = "/code";
/// Where a sandboxed instance finds Bun.
const SANDBOX_BUN: &str = "/usr/local/bin/bun";
/// Processes (and threads) one instance may have: enough for any runtime, not a fork bomb.
const PIDS_LIMIT: u32 = 256;
/// Size of an instance's private `/tmp`.
const TMP_SIZE_MB: u32 = 64;
/// The limits of a generic instance until it is given a function (the smallest allowed).
const GENERIC_LIMITS: CgroupLimits = CgroupLimits {
    memory_mb: 128,
    vcpus: 1,
    pids: PIDS_LIMIT,
};

/// Everything needed to start instances of one function version.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub runtime: Runtime,
    /// The source, sent in the load message: no instance reads code from disk.
    pub code: Arc<str>,
    pub handler: String,
    pub env: BTreeMap<String, String>,
    pub function: String,
    pub version: u32,
    pub memory_mb: u32,
    pub vcpus: u32,
    pub network: Network,
    pub timeout: Duration,
    pub log_limit: usize,
    /// Invocations one instance runs at once.
    pub concurrency: u32,
}

/// What starts instances: the interpreters found on this host, the sandbox they run in,
/// and the pre-warmed instances waiting for code.
pub struct Launcher {
    pub runtimes: Runtimes,
    pub sandbox: Sandbox,
    pub(crate) prewarm: Prewarm,
    /// Interpreter starts in flight at once. Starting an interpreter is CPU-bound: fifty
    /// at once on two cores would all finish late, so a burst is better served by a few
    /// that come up fast (and then serve the queue) than by many that come up together.
    starts: tokio::sync::Semaphore,
}

/// Starts instances of a function version. The pool depends on this, not on [`Launcher`],
/// so that its scaling rules can be tested with instances that are not processes.
pub trait Starter: Send + Sync + 'static {
    fn start(self: Arc<Self>, spec: Arc<LaunchSpec>) -> BoxFuture<'static, Result<Started, StartError>>;
}

impl Starter for Launcher {
    /// A pre-warmed instance when one is waiting (functions without network), else a
    /// fresh one.
    fn start(self: Arc<Self>, spec: Arc<LaunchSpec>) -> BoxFuture<'static, Result<Started, StartError>> {
        Box::pin(async move {
            if spec.network == Network::None && self.prewarm.target() > 0 {
                if let Some(generic) = self.prewarm.take(spec.runtime) {
                    // Refilled after the load, not during it: starting a sandbox and an
                    // interpreter next to a loading instance slowed its load by ~1.4×
                    // (2 cores; namespace and cgroup creation contend with it). A guard,
                    // so that a start abandoned mid-load still refills.
                    let refill = RefillOnDrop(self.clone());
                    let loaded = generic.load(&self.sandbox, &spec).await;
                    drop(refill);
                    match loaded {
                        Err(e @ StartError::Load(_)) => return Err(e),
                        Err(e) => {
                            tracing::debug!(error = %e, "a pre-warmed instance failed; starting afresh")
                        }
                        Ok(started) => return Ok(started),
                    }
                } else {
                    self.refill();
                }
            }
            self.start_fresh(&spec).await
        })
    }
}

/// Refills the pre-warmed pool when dropped.
struct RefillOnDrop(Arc<Launcher>);

impl Drop for RefillOnDrop {
    fn drop(&mut self) {
        self.0.refill();
    }
}

impl Launcher {
    /// A launcher keeping `prewarm` generic instances of each interpreter (call
    /// [`Launcher::refill`] to start them).
    pub fn new(runtimes: Runtimes, sandbox: Sandbox, prewarm: usize) -> Arc<Launcher> {
        Arc::new(Launcher {
            runtimes,
            sandbox,
            prewarm: Prewarm::new(prewarm),
            starts: tokio::sync::Semaphore::new(
                2 * std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            ),
        })
    }

    /// The process to start for a generic instance of `runtime`.
    fn request(
        &self,
        runtime: Runtime,
        outbound: bool,
        prewarm: bool,
        marker: &str,
    ) -> Result<SpawnRequest, StartError> {
        let sandboxed = self.sandbox.enabled();
        let bootstrap_dir = if sandboxed {
            PathBuf::from(SANDBOX_BOOTSTRAP_DIR)
        } else {
            self.runtimes.bootstrap_dir.clone()
        };
        let (mut program, mut args) = self
            .runtimes
            .command(runtime, marker, &bootstrap_dir)
            .ok_or_else(|| StartError::RuntimeMissing(self.runtimes.missing_message(runtime)))?;
        if prewarm {
            args.push("--prewarm".to_owned());
        }
        let mut binds: Vec<Bind> = Vec::new();
        let mut shown: Vec<PathBuf> = ignis_sandbox::library_dirs();
        match runtime {
            Runtime::Javascript | Runtime::Typescript if sandboxed => {
                // Bun is one file, often in a checkout's tools folder: shown at a fixed
                // path, so that nothing inside tells where this server is installed.
                binds.push(Bind {
                    source: program,
                    target: PathBuf::from(SANDBOX_BUN),
                });
                program = PathBuf::from(SANDBOX_BUN);
            }
            Runtime::Python | Runtime::Javascript | Runtime::Typescript => {
                shown.extend(self.runtimes.interpreter(runtime).mounts.iter().cloned());
            }
        }
        for path in shown {
            // A path inside one already shown needs no mount of its own.
            if !binds.iter().any(|b| path.starts_with(&b.source)) && !path.as_os_str().is_empty() {
                binds.push(Bind {
                    source: path.clone(),
                    target: path,
                });
            }
        }
        let certs = PathBuf::from("/etc/ssl/certs");
        if outbound && certs.is_dir() {
            // TLS clients need the host's CA certificates.
            binds.push(Bind {
                source: certs.clone(),
                target: certs,
            });
        }
        binds.push(Bind {
            source: self.runtimes.bootstrap_dir.clone(),
            target: bootstrap_dir.clone(),
        });
        let env = BTreeMap::from([
            ("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned()),
            ("HOME".to_owned(), "/tmp".to_owned()),
            ("TMPDIR".to_owned(), "/tmp".to_owned()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ("PYTHONDONTWRITEBYTECODE".to_owned(), "1".to_owned()),
            ("NO_COLOR".to_owned(), "1".to_owned()),
        ]);
        Ok(SpawnRequest {
            program,
            args,
            env,
            // Also the directory the code runs as if it were in (it is never on disk).
            cwd: if sandboxed {
                PathBuf::from(SANDBOX_CODE_DIR)
            } else {
                bootstrap_dir
            },
            binds,
            limits: GENERIC_LIMITS,
            tmp_size_mb: TMP_SIZE_MB,
            outbound,
            empty_dir: sandboxed.then(|| PathBuf::from(SANDBOX_CODE_DIR)),
        })
    }

    /// Starts a generic instance of `runtime`: sandbox made, interpreter up, no code yet.
    /// `outbound` instances get what outbound networking needs inside (a resolver);
    /// `prewarm` ones are told they will wait for code, so they may warm their load path.
    pub async fn start_generic(
        &self,
        runtime: Runtime,
        outbound: bool,
        prewarm: bool,
    ) -> Result<Generic, StartError> {
        let started = Instant::now();
        // Held until the hello: the CPU-bound part. Waiting for it counts as sandbox time.
        let _permit = self.starts.acquire().await;
        let nonce = hex::encode(rand::random::<[u8; 12]>());
        let request = self.request(runtime, outbound, prewarm, &nonce)?;
        let spawned = self
            .sandbox
            .spawn(&request)
            .map_err(|e| StartError::Spawn(e.to_string()))?;
        let sandbox_time = started.elapsed();

        let (out_tx, out_rx) = mpsc::channel(256);
        tokio::spawn(pump(
            spawned.stdout,
            LogStream::Stdout,
            nonce.clone(),
            out_tx.clone(),
        ));
        tokio::spawn(pump(spawned.stderr, LogStream::Stderr, nonce, out_tx));
        let (read_half, write_half) = spawned.control.into_split();
        let (frame_tx, frame_rx) = mpsc::channel(64);
        tokio::spawn(read_frames(read_half, frame_tx));

        let mut task = InstanceTask {
            code_dir: request.cwd.display().to_string(),
            process: spawned.process,
            control: write_half,
            frames: frame_rx,
            output: out_rx,
            pending: Vec::new(),
            log_limit: limits::DEFAULT_LOG_LIMIT_BYTES,
            eof: [false, false],
            inflight: Vec::new(),
        };
        match tokio::time::timeout(INIT_TIMEOUT, task.next_frame()).await {
            Ok(Ok(InstanceMessage::Hello { .. })) => {}
            Ok(Ok(other)) => return Err(StartError::Died(format!("unexpected first message {other:?}"))),
            Ok(Err(detail)) => return Err(StartError::Died(detail)),
            Err(_) => return Err(StartError::Timeout),
        }
        Ok(Generic {
            task,
            runtime,
            outbound,
            sandbox_time,
            runtime_time: started.elapsed().saturating_sub(sandbox_time),
        })
    }

    /// Starts an instance of `spec` from scratch: a generic instance, then its code.
    pub async fn start_fresh(&self, spec: &LaunchSpec) -> Result<Started, StartError> {
        let generic = self
            .start_generic(spec.runtime, spec.network == Network::Outbound, false)
            .await?;
        generic.load(&self.sandbox, spec).await
    }
}

/// How long each part of an instance's start took.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StartTimings {
    /// Making the sandbox and spawning the process (zero for a pre-warmed instance).
    pub sandbox: Duration,
    /// From the spawn to the interpreter's hello (zero for a pre-warmed instance).
    pub runtime: Duration,
    /// Giving the instance its limits, network and code, up to `loaded`.
    pub load: Duration,
}

impl StartTimings {
    pub fn total(&self) -> Duration {
        self.sandbox + self.runtime + self.load
    }
}

/// A started instance with the time its start took.
#[derive(Debug)]
pub struct Started {
    pub instance: Instance,
    pub timings: StartTimings,
}

/// An instance whose interpreter is up but has no code yet.
pub struct Generic {
    task: InstanceTask,
    pub runtime: Runtime,
    /// Whether it was made with what outbound networking needs.
    pub outbound: bool,
    sandbox_time: Duration,
    runtime_time: Duration,
}

impl Generic {
    /// Gives the instance `spec`'s limits, network and code. The instance serves only this
    /// version from now on.
    pub async fn load(mut self, sandbox: &Sandbox, spec: &LaunchSpec) -> Result<Started, StartError> {
        let began = Instant::now();
        self.task
            .process
            .set_limits(CgroupLimits {
                memory_mb: spec.memory_mb,
                vcpus: spec.vcpus,
                pids: PIDS_LIMIT,
            })
            .map_err(|e| StartError::Spawn(e.to_string()))?;
        match tokio::time::timeout(INIT_TIMEOUT, self.task.load(sandbox, spec)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(StartError::Timeout),
        }
        let timings = StartTimings {
            sandbox: self.sandbox_time,
            runtime: self.runtime_time,
            load: began.elapsed(),
        };
        tracing::debug!(function = %spec.function, ?timings, "instance started");
        let memory = self.task.process.memory_probe();
        self.task.log_limit = spec.log_limit;
        let concurrency = spec.concurrency.max(1) as usize;
        let (jobs, job_rx) = mpsc::channel(concurrency);
        tokio::spawn(self.task.serve(job_rx, concurrency));
        Ok(Started {
            instance: Instance {
                jobs,
                id: next_instance_id(),
                memory: memory.map(Arc::new),
            },
            timings,
        })
    }

    /// Whether the process is still there to be given code.
    pub fn is_alive(&mut self) -> bool {
        self.task.process.is_running()
    }

    /// Marks the pre-warmed instance as taken from its pool: its parked time is not part
    /// of anyone's start.
    pub fn taken(&mut self) {
        self.sandbox_time = Duration::ZERO;
        self.runtime_time = Duration::ZERO;
    }
}

fn next_instance_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Why an instance could not be started.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    RuntimeMissing(String),
    #[error("could not start the instance: {0}")]
    Spawn(String),
    /// The user's module failed to load: a syntax error, an import error, no handler.
    #[error("{}", describe_load_error(.0))]
    Load(LoadError),
    #[error("the instance died while starting: {0}")]
    Died(String),
    #[error("the instance did not start within {INIT_TIMEOUT:?}")]
    Timeout,
}

fn describe_load_error(e: &LoadError) -> String {
    match e.line {
        // CPython's SyntaxError text already names the line.
        Some(line) if !e.message.contains(&format!("line {line}")) => {
            format!("{}: {} (line {line})", e.kind, e.message)
        }
        Some(_) | None => format!("{}: {}", e.kind, e.message),
    }
}

/// What one invocation came to, with its logs.
#[derive(Debug)]
pub struct RunResult {
    pub outcome: Outcome,
    pub logs: Vec<LogLine>,
    /// False when the instance was killed, died or broke its output: it must not serve again.
    pub reusable: bool,
}

impl RunResult {
    fn crashed(detail: String) -> RunResult {
        RunResult {
            outcome: Outcome::Crashed { detail },
            logs: Vec::new(),
            reusable: false,
        }
    }
}

pub(crate) struct Job {
    pub(crate) id: String,
    pub(crate) event: Arc<RawValue>,
    pub(crate) timeout: Duration,
    pub(crate) reply: oneshot::Sender<RunResult>,
}

/// A handle to a running, loaded instance. Clones share the instance; dropping the last
/// one stops it once its invocations in flight are done.
#[derive(Debug, Clone)]
pub struct Instance {
    jobs: mpsc::Sender<Job>,
    id: u64,
    memory: Option<Arc<ignis_sandbox::MemoryProbe>>,
}

impl Instance {
    /// An instance driven by whatever consumes `jobs` (the pool's tests use this).
    #[cfg(test)]
    pub(crate) fn from_channel(jobs: mpsc::Sender<Job>) -> Instance {
        Instance {
            jobs,
            id: next_instance_id(),
            memory: None,
        }
    }

    /// Unique for the life of the server.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// False once the instance's task has ended (its process died while idle).
    pub fn is_alive(&self) -> bool {
        !self.jobs.is_closed()
    }

    /// The instance's peak memory use so far, in MiB (a file read: keep it off the
    /// response path).
    pub fn peak_memory_mb(&self) -> Option<u32> {
        self.memory.as_ref().and_then(|m| m.read_mb())
    }

    /// Runs one invocation. The pool keeps at most `concurrency` in flight per instance.
    pub async fn run(&self, id: String, event: Arc<RawValue>, timeout: Duration) -> RunResult {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            id,
            event,
            timeout,
            reply,
        };
        if self.jobs.send(job).await.is_err() {
            return RunResult::crashed("the instance had already ended".to_owned());
        }
        rx.await
            .unwrap_or_else(|_| RunResult::crashed("the instance task ended".to_owned()))
    }
}

async fn read_frames(mut r: OwnedReadHalf, tx: mpsc::Sender<Result<InstanceMessage, ProtocolError>>) {
    loop {
        let msg = read_message(&mut r).await;
        let stop = msg.is_err();
        if tx.send(msg).await.is_err() || stop {
            return;
        }
    }
}

/// One invocation in flight on an instance.
struct InFlight {
    id: String,
    deadline: Instant,
    reply: oneshot::Sender<RunResult>,
    logs: Vec<LogLine>,
    answer: Option<(Outcome, Vec<WireLog>)>,
    /// Whether the end marker came on stdout and on stderr.
    markers: [bool; 2],
    /// Set when the answer came: how long its end markers may still take.
    marker_deadline: Option<Instant>,
}

impl InFlight {
    fn done(&self) -> bool {
        self.answer.is_some() && self.markers[0] && self.markers[1]
    }

    /// The next moment something must happen to this invocation.
    fn wake_at(&self) -> Instant {
        self.marker_deadline.unwrap_or(self.deadline)
    }
}

struct InstanceTask {
    process: Process,
    control: OwnedWriteHalf,
    frames: mpsc::Receiver<Result<InstanceMessage, ProtocolError>>,
    output: mpsc::Receiver<OutputEvent>,
    /// Output written while no invocation ran (at import, or by leftover work): it goes
    /// into the next invocation's logs so that nothing is lost.
    pending: Vec<LogLine>,
    log_limit: usize,
    /// Whether stdout and stderr reached end of file.
    eof: [bool; 2],
    /// Oldest first. Raw output lines go to the oldest invocation in flight.
    inflight: Vec<InFlight>,
    /// Where the code runs as if it were: the working directory.
    code_dir: String,
}

fn stream_index(s: LogStream) -> usize {
    match s {
        LogStream::Stdout => 0,
        LogStream::Stderr => 1,
    }
}

/// What ended an instance's service.
enum End {
    /// The process died or broke the protocol: every invocation in flight fails.
    Died,
    /// The process was killed because `id` ran past its deadline.
    Timeout,
}

impl InstanceTask {
    /// Attaches the network and loads the module.
    async fn load(&mut self, sandbox: &Sandbox, spec: &LaunchSpec) -> Result<(), StartError> {
        // The hello proved the instance's namespaces exist; its network is attached before
        // any user code runs.
        if spec.network == Network::Outbound {
            sandbox
                .connect_outbound(&mut self.process)
                .await
                .map_err(|e| StartError::Spawn(e.to_string()))?;
        }
        let load = HostMessage::Load {
            dir: &self.code_dir,
            file: spec.runtime.source_file(),
            code: &spec.code,
            concurrency: spec.concurrency.max(1),
            handler: &spec.handler,
            env: &spec.env,
            function: FunctionInfo {
                name: &spec.function,
                version: spec.version,
                memory_mb: spec.memory_mb,
                timeout_ms: u64::try_from(spec.timeout.as_millis()).unwrap_or(u64::MAX),
            },
            log_limit_bytes: spec.log_limit,
            max_response_bytes: limits::MAX_RESPONSE_BYTES,
        };
        write_message(&mut self.control, &load)
            .await
            .map_err(|e| StartError::Died(e.to_string()))?;
        match self.next_frame().await {
            Ok(InstanceMessage::Loaded) => Ok(()),
            Ok(InstanceMessage::LoadError { error }) => Err(StartError::Load(error)),
            Ok(other) => Err(StartError::Died(format!("unexpected message {other:?}"))),
            Err(detail) => Err(StartError::Died(detail)),
        }
    }

    /// The next frame, keeping output read meanwhile. On death, the reason with the last
    /// lines the process wrote (a crashing interpreter says why on stderr).
    async fn next_frame(&mut self) -> Result<InstanceMessage, String> {
        loop {
            tokio::select! {
                frame = self.frames.recv() => {
                    return match frame {
                        Some(Ok(msg)) => Ok(msg),
                        Some(Err(ProtocolError::Closed)) | None => Err(self.death().await),
                        Some(Err(e)) => {
                            self.process.kill();
                            Err(e.to_string())
                        }
                    };
                }
                Some(ev) = self.output.recv() => self.keep(ev),
            }
        }
    }

    fn keep(&mut self, ev: OutputEvent) {
        match ev {
            OutputEvent::Line(line) => self.pending.push(line),
            OutputEvent::Marker { .. } => {}
            OutputEvent::Eof(s) => self.eof[stream_index(s)] = true,
        }
    }

    /// Describes how the process died, after collecting its last output.
    async fn death(&mut self) -> String {
        let status = tokio::time::timeout(DRAIN_TIMEOUT, self.process.wait())
            .await
            .unwrap_or_else(|_| "the instance closed its channel".to_owned());
        self.process.kill();
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !(self.eof[0] && self.eof[1]) {
            match tokio::time::timeout_at(deadline, self.output.recv()).await {
                Ok(Some(ev)) => self.keep(ev),
                Ok(None) | Err(_) => break,
            }
        }
        let tail: Vec<&str> = self
            .pending
            .iter()
            .rev()
            .filter(|l| l.stream == LogStream::Stderr)
            .take(5)
            .map(|l| l.line.as_str())
            .collect();
        if tail.is_empty() {
            status
        } else {
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("{status}: {}", tail.join(" | "))
        }
    }

    async fn serve(mut self, mut jobs: mpsc::Receiver<Job>, concurrency: usize) {
        let mut open = true;
        loop {
            if !open && self.inflight.is_empty() {
                return;
            }
            let wake = self.inflight.iter().map(InFlight::wake_at).min();
            let end = tokio::select! {
                job = jobs.recv(), if open && self.inflight.len() < concurrency => {
                    match job {
                        Some(job) => self.start(job).await,
                        None => {
                            open = false;
                            None
                        }
                    }
                }
                frame = self.frames.recv() => self.on_frame(frame).await,
                Some(ev) = self.output.recv() => {
                    self.on_output(ev);
                    None
                }
                () = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                    self.on_wake()
                }
            };
            if let Some(end) = end {
                self.end(end).await;
                return;
            }
        }
    }

    /// Sends an invocation to the process.
    async fn start(&mut self, job: Job) -> Option<End> {
        let deadline_ms = now_ms() + i64::try_from(job.timeout.as_millis()).unwrap_or(i64::MAX);
        let invoke = HostMessage::Invoke {
            id: &job.id,
            event: &job.event,
            deadline_ms: u64::try_from(deadline_ms).unwrap_or(0),
        };
        let logs = if self.inflight.is_empty() {
            std::mem::take(&mut self.pending)
        } else {
            Vec::new()
        };
        let failed = write_message(&mut self.control, &invoke).await.err();
        self.inflight.push(InFlight {
            id: job.id,
            deadline: Instant::now() + job.timeout,
            reply: job.reply,
            logs,
            answer: None,
            markers: self.eof,
            marker_deadline: None,
        });
        failed.map(|e| {
            tracing::debug!(error = %e, "could not send an invocation");
            End::Died
        })
    }

    async fn on_frame(&mut self, frame: Option<Result<InstanceMessage, ProtocolError>>) -> Option<End> {
        match frame {
            Some(Ok(msg)) => {
                let found = answer_of(msg).and_then(|(id, answer)| {
                    let i = self
                        .inflight
                        .iter()
                        .position(|f| f.id == id && f.answer.is_none())?;
                    Some((i, answer))
                });
                let Some((i, answer)) = found else {
                    // An answer to nothing in flight, or a message out of place: the
                    // instance is broken.
                    tracing::debug!("the instance broke the protocol");
                    self.process.kill();
                    return Some(End::Died);
                };
                self.inflight[i].answer = Some(answer);
                self.inflight[i].marker_deadline = Some(Instant::now() + MARKER_GRACE);
                if self.inflight[i].done() {
                    self.finish(i, true);
                }
                None
            }
            Some(Err(ProtocolError::FrameTooLarge(size))) => {
                self.process.kill();
                // Only an answer can be that large; with one call in flight it is its own.
                if self.inflight.len() == 1 {
                    let size = u64::try_from(size).unwrap_or(u64::MAX);
                    self.inflight[0].answer = Some((Outcome::ResponseTooLarge { size }, Vec::new()));
                    self.finish(0, false);
                }
                Some(End::Died)
            }
            Some(Err(_)) | None => Some(End::Died),
        }
    }

    fn on_output(&mut self, ev: OutputEvent) {
        match ev {
            OutputEvent::Line(line) => match self.inflight.first_mut() {
                Some(f) => f.logs.push(line),
                None => {
                    self.pending.push(line);
                    cap_logs(&mut self.pending, self.log_limit);
                }
            },
            OutputEvent::Marker { stream, id } => {
                if let Some(i) = self.inflight.iter().position(|f| f.id == id) {
                    self.inflight[i].markers[stream_index(stream)] = true;
                    if self.inflight[i].done() {
                        self.finish(i, true);
                    }
                }
            }
            OutputEvent::Eof(s) => {
                self.eof[stream_index(s)] = true;
                for f in &mut self.inflight {
                    f.markers[stream_index(s)] = true;
                }
                while let Some(i) = self.inflight.iter().position(InFlight::done) {
                    self.finish(i, true);
                }
            }
        }
    }

    /// A deadline passed: an answer whose markers never came, or an invocation past its
    /// timeout.
    fn on_wake(&mut self) -> Option<End> {
        let now = Instant::now();
        while let Some(i) = self
            .inflight
            .iter()
            .position(|f| f.answer.is_some() && f.marker_deadline.is_some_and(|d| d <= now))
        {
            // The markers were written before the answer, so they were in the pipes; the
            // handler closed or broke its stdout/stderr. Every later call would wait for
            // them: the instance is replaced.
            tracing::debug!(markers = ?self.inflight[i].markers, "end markers missing after the answer");
            self.finish(i, false);
        }
        if self
            .inflight
            .iter()
            .any(|f| f.answer.is_none() && f.deadline <= now)
        {
            self.process.kill();
            return Some(End::Timeout);
        }
        None
    }

    /// Fails everything in flight after the process died or was killed.
    async fn end(&mut self, end: End) {
        let now = Instant::now();
        let detail = match end {
            End::Died => self.death().await,
            End::Timeout => {
                self.process.kill();
                String::new()
            }
        };
        let oom = self.process.oom_killed();
        let late = std::mem::take(&mut self.pending);
        let mut late = Some(late);
        for mut f in std::mem::take(&mut self.inflight) {
            if let Some(mut lines) = late.take() {
                f.logs.append(&mut lines);
            }
            let outcome = match (&end, f.answer.take()) {
                // Answered, only its markers were missing when the process went.
                (_, Some((outcome, wire))) => {
                    let logs = self.merge(f.logs, wire);
                    let _ = f.reply.send(RunResult {
                        outcome,
                        logs,
                        reusable: false,
                    });
                    continue;
                }
                (End::Timeout, None) if f.deadline <= now => Outcome::Timeout,
                (End::Timeout, None) => Outcome::Crashed {
                    detail: "the instance was stopped because another invocation on it ran past its timeout"
                        .to_owned(),
                },
                (End::Died, None) if oom => Outcome::OutOfMemory,
                (End::Died, None) => Outcome::Crashed {
                    detail: detail.clone(),
                },
            };
            let logs = self.merge(f.logs, Vec::new());
            let _ = f.reply.send(RunResult {
                outcome,
                logs,
                reusable: false,
            });
        }
    }

    /// Completes invocation `i` (which has its answer).
    fn finish(&mut self, i: usize, markers_ok: bool) {
        let f = self.inflight.remove(i);
        let (outcome, wire) = f.answer.expect("finished invocations have their answer");
        let logs = self.merge(f.logs, wire);
        // An instance whose output channels ended or lost their markers would make every
        // later call wait: it is replaced.
        let reusable = markers_ok && !(self.eof[0] || self.eof[1]);
        // The caller may have gone; the result is then simply dropped.
        let _ = f.reply.send(RunResult {
            outcome,
            logs,
            reusable,
        });
    }

    fn merge(&self, mut logs: Vec<LogLine>, wire: Vec<WireLog>) -> Vec<LogLine> {
        logs.extend(wire.into_iter().map(|l| LogLine {
            ts_ms: l.ts,
            stream: LogStream::parse(&l.stream),
            line: l.line,
        }));
        // Raw lines and captured lines interleave by time; the sort is stable so lines of
        // one millisecond keep their order.
        logs.sort_by_key(|l| l.ts_ms);
        cap_logs(&mut logs, self.log_limit);
        logs
    }
}

/// The invocation an answer frame is for, and what it says.
fn answer_of(msg: InstanceMessage) -> Option<(String, (Outcome, Vec<WireLog>))> {
    match msg {
        InstanceMessage::Result { id, value, logs } => Some((id, (Outcome::Ok(value), logs))),
        InstanceMessage::Error { id, error, logs } => {
            Some((id, (Outcome::FunctionError(FunctionError { ..error }), logs)))
        }
        InstanceMessage::TooLarge { id, size, logs } => {
            Some((id, (Outcome::ResponseTooLarge { size }, logs)))
        }
        // The value is the handler's: only its call fails, and the instance serves on.
        InstanceMessage::Unreadable { id, reason, logs } => {
            Some((id, (Outcome::InvalidResponse { message: reason }, logs)))
        }
        InstanceMessage::Hello { .. } | InstanceMessage::Loaded | InstanceMessage::LoadError { .. } => None,
    }
}
