//! One instance: a runtime process with the user's module loaded, driven by its own task.
//!
//! An instance is first *generic*: its sandbox is made and its interpreter has said hello,
//! but it has no code (pre-warmed instances wait in this state). [`Generic::load`] gives it
//! one function version's code, limits and network; from then on it serves only that
//! version. The task owns the process and its three channels (control socket, stdout,
//! stderr) and runs up to `concurrency` invocations at once: for each, send `invoke`, then
//! gather the answer frame, the output lines and both end markers, unless the deadline or
//! the death of the process comes first. How instances are started (the process, the
//! pre-warmed ones) is the launcher's business.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ignis_core::{limits, logs::cap_logs, FunctionError, LogLine, LogStream, Network, Outcome, Runtime};
use ignis_protocol::{
    read_message, write_message, FunctionInfo, HostMessage, InstanceMessage, LoadError, ProtocolError,
    WireLog,
};
use ignis_sandbox::{CgroupLimits, Sandbox, Spawned};

use crate::host::{Host, ShowAt};
use serde_json::value::RawValue;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::launcher::{LaunchSpec, PIDS_LIMIT};
use crate::output::{now_ms, pump, OutputEvent};
use crate::stream::{StreamSink, Streamed};

/// How long an instance may take to start, and then to import the user's module.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the end markers may lag behind an answer (they were written before it).
const MARKER_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for a dead process's last output.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// How long each part of an instance's start took.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StartTimings {
    /// Making the sandbox and spawning the process (zero for a pre-warmed instance).
    pub sandbox: Duration,
    /// From the spawn to the interpreter's hello (zero for a pre-warmed instance).
    pub runtime: Duration,
    /// Giving the instance its limits, network and code, up to `loaded`.
    pub load: Duration,
    /// A virtual machine booted from its kernel up to its agent's readiness (microvm tier,
    /// started without a snapshot; part of `runtime`).
    pub boot: Option<Duration>,
    /// A virtual machine restored from a snapshot up to its first answer (microvm tier;
    /// part of `runtime`).
    pub restore: Option<Duration>,
}

impl StartTimings {
    pub fn total(&self) -> Duration {
        self.sandbox + self.runtime + self.load
    }
}

/// The parts of a start restored from a snapshot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RestoreTimes {
    /// Waiting for the snapshot: found at once, or being made.
    pub(crate) waited: Duration,
    /// Making it (a template's boot and save), when this start made it.
    pub(crate) made: Option<Duration>,
    /// QEMU's start to the restored guest's first answer.
    pub(crate) restore: Duration,
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
    /// The network it was made for (`Outbound`: with what outbound networking needs).
    pub network: Network,
    sandbox_time: Duration,
    runtime_time: Duration,
    boot: Option<Duration>,
    restore: Option<Duration>,
}

impl Generic {
    /// Takes charge of a process just spawned and waits for its interpreter's hello.
    /// `nonce` is the end marker it was started with, `code_dir` its working directory.
    pub(crate) async fn hello(
        spawned: Spawned,
        nonce: String,
        code_dir: String,
        runtime: Runtime,
        network: Network,
        sandbox_time: Duration,
    ) -> Result<Generic, StartError> {
        let channels = Channels {
            control: spawned.control,
            stdout: Box::new(spawned.stdout),
            stderr: Box::new(spawned.stderr),
        };
        Generic::greeted(
            Host::Process(spawned.process),
            channels,
            nonce,
            code_dir,
            runtime,
            network,
            sandbox_time,
        )
        .await
    }

    /// Takes charge of a started host (a process, or a virtual machine) whose runtime is to
    /// say hello on `channels`.
    pub(crate) async fn greeted(
        host: Host,
        channels: Channels,
        nonce: String,
        code_dir: String,
        runtime: Runtime,
        network: Network,
        sandbox_time: Duration,
    ) -> Result<Generic, StartError> {
        let began = Instant::now();
        let mut task = InstanceTask::new(host, channels, nonce, code_dir);
        match tokio::time::timeout(INIT_TIMEOUT, task.next_frame()).await {
            Ok(Ok(InstanceMessage::Hello { .. })) => {}
            Ok(Ok(other)) => return Err(StartError::Died(format!("unexpected first message {other:?}"))),
            Ok(Err(detail)) => return Err(StartError::Died(detail)),
            Err(_) => return Err(StartError::Timeout),
        }
        Ok(Generic {
            task,
            runtime,
            network,
            sandbox_time,
            runtime_time: began.elapsed(),
            boot: None,
            restore: None,
        })
    }

    /// Takes charge of a virtual machine restored from a snapshot taken after its runtime's
    /// hello: the runtime waits for its code, and says nothing first.
    pub(crate) fn restored(
        host: Host,
        channels: Channels,
        nonce: String,
        code_dir: String,
        runtime: Runtime,
        network: Network,
        times: RestoreTimes,
    ) -> Generic {
        Generic {
            task: InstanceTask::new(host, channels, nonce, code_dir),
            runtime,
            network,
            sandbox_time: Duration::ZERO,
            // The wait for the snapshot (its making: a template's boot) and the restore.
            runtime_time: times.waited + times.restore,
            boot: times.made,
            restore: Some(times.restore),
        }
    }

    /// Notes that the runtime's start included booting its virtual machine.
    pub(crate) fn with_boot(mut self, boot: Duration) -> Generic {
        self.boot = Some(boot);
        self.runtime_time += boot;
        self
    }

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
            .map_err(StartError::Spawn)?;
        match tokio::time::timeout(INIT_TIMEOUT, self.task.load(sandbox, spec)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(StartError::Timeout),
        }
        let timings = StartTimings {
            sandbox: self.sandbox_time,
            runtime: self.runtime_time,
            load: began.elapsed(),
            boot: self.boot,
            restore: self.restore,
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
        self.boot = None;
        self.restore = None;
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
    /// Where a streamed answer goes as it comes (none: it is gathered into the result).
    pub(crate) sink: Option<StreamSink>,
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
    /// An instance driven by whatever consumes `jobs` (the fake starter of [`crate::testing`]).
    #[cfg(any(test, feature = "testing"))]
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

    /// The instance's peak memory use so far, in MiB (one `pread` of an open file: cheap
    /// enough to read before the caller is answered).
    pub fn peak_memory_mb(&self) -> Option<u32> {
        self.memory.as_ref().and_then(|m| m.read_mb())
    }

    /// Runs one invocation. The pool keeps at most `concurrency` in flight per instance.
    pub async fn run(
        &self,
        id: String,
        event: Arc<RawValue>,
        timeout: Duration,
        sink: Option<StreamSink>,
    ) -> RunResult {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            id,
            event,
            timeout,
            reply,
            sink,
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

/// One flag for each output stream of an instance.
#[derive(Debug, Clone, Copy, Default)]
struct Streams {
    stdout: bool,
    stderr: bool,
}

impl Streams {
    fn set(&mut self, stream: LogStream) {
        match stream {
            LogStream::Stdout => self.stdout = true,
            LogStream::Stderr => self.stderr = true,
        }
    }

    fn both(self) -> bool {
        self.stdout && self.stderr
    }

    fn either(self) -> bool {
        self.stdout || self.stderr
    }
}

/// Where an invocation in flight is.
enum Phase {
    /// Sent to the instance; its answer is due by the invocation's deadline.
    Sent,
    /// Answered; its end markers were written before the answer, so they are due by
    /// `markers_by` at the latest.
    Answered {
        outcome: Outcome,
        wire: Vec<WireLog>,
        markers_by: Instant,
    },
}

/// Whether an invocation's end markers came before it completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Markers {
    Came,
    /// Lost (the handler closed or broke its stdout or stderr): its instance is replaced.
    Missing,
}

/// One invocation in flight on an instance.
struct InFlight {
    id: String,
    deadline: Instant,
    reply: oneshot::Sender<RunResult>,
    logs: Vec<LogLine>,
    phase: Phase,
    /// The streams whose end marker for this invocation came (or that ended).
    markers: Streams,
    sink: Option<StreamSink>,
    streamed: Streamed,
}

impl InFlight {
    fn answered(&self) -> bool {
        match self.phase {
            Phase::Sent => false,
            Phase::Answered { .. } => true,
        }
    }

    fn done(&self) -> bool {
        self.answered() && self.markers.both()
    }

    /// The next moment something must happen to this invocation.
    fn wake_at(&self) -> Instant {
        match self.phase {
            Phase::Sent => self.deadline,
            Phase::Answered { markers_by, .. } => markers_by,
        }
    }

    /// Records the answer; the end markers get [`MARKER_GRACE`] from now.
    fn answer(&mut self, outcome: Outcome, wire: Vec<WireLog>) {
        let outcome = std::mem::take(&mut self.streamed).finish(self.sink.as_ref(), outcome);
        self.sink = None;
        self.phase = Phase::Answered {
            outcome,
            wire,
            markers_by: Instant::now() + MARKER_GRACE,
        };
    }
}

/// An instance's three channels: the protocol's control socket, its stdout and stderr.
pub(crate) struct Channels {
    pub(crate) control: tokio::net::UnixStream,
    pub(crate) stdout: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    pub(crate) stderr: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
}

struct InstanceTask {
    process: Host,
    control: OwnedWriteHalf,
    frames: mpsc::Receiver<Result<InstanceMessage, ProtocolError>>,
    output: mpsc::Receiver<OutputEvent>,
    /// Output written while no invocation ran (at import, or by leftover work): it goes
    /// into the next invocation's logs so that nothing is lost.
    pending: Vec<LogLine>,
    log_limit: usize,
    /// The output streams that reached end of file.
    ended: Streams,
    /// Oldest first. Raw output lines go to the oldest invocation in flight.
    inflight: Vec<InFlight>,
    /// Where the code runs as if it were: the working directory.
    code_dir: String,
}

/// What ended an instance's service.
enum End {
    /// The process died or broke the protocol: every invocation in flight fails.
    Died,
    /// An invocation ran past its deadline: the process is killed, and every invocation
    /// in flight on it ends.
    Timeout,
}

impl InstanceTask {
    /// Starts reading `channels` (output split into lines and end markers, frames decoded).
    fn new(host: Host, channels: Channels, nonce: String, code_dir: String) -> InstanceTask {
        let (out_tx, out_rx) = mpsc::channel(256);
        tokio::spawn(pump(
            channels.stdout,
            LogStream::Stdout,
            nonce.clone(),
            out_tx.clone(),
        ));
        tokio::spawn(pump(channels.stderr, LogStream::Stderr, nonce, out_tx));
        let (read_half, write_half) = channels.control.into_split();
        let (frame_tx, frame_rx) = mpsc::channel(64);
        tokio::spawn(read_frames(read_half, frame_tx));
        InstanceTask {
            code_dir,
            process: host,
            control: write_half,
            frames: frame_rx,
            output: out_rx,
            pending: Vec::new(),
            log_limit: limits::DEFAULT_LOG_LIMIT_BYTES,
            ended: Streams::default(),
            inflight: Vec::new(),
        }
    }

    /// Attaches the network and loads the module.
    async fn load(&mut self, sandbox: &Sandbox, spec: &LaunchSpec) -> Result<(), StartError> {
        // The hello proved the instance's namespaces exist; its network is attached before
        // any user code runs.
        if spec.network == Network::Outbound {
            self.process
                .connect_outbound(sandbox)
                .await
                .map_err(StartError::Spawn)?;
        }
        // A package is shown at the code root before the runtime is told to import it.
        let (dir, file, code) = match &spec.package {
            None => (
                self.code_dir.clone(),
                spec.runtime.source_file(),
                Some(&*spec.code),
            ),
            Some(package) => {
                let dirs: Vec<&Path> = std::iter::once(package.dir.as_path())
                    .chain(package.deps.as_deref())
                    .collect();
                self.process
                    .show(sandbox, ShowAt::Code, &dirs)
                    .await
                    .map_err(StartError::Spawn)?;
                let dir = if sandbox.enabled() {
                    self.code_dir.clone()
                } else {
                    package.dir.display().to_string()
                };
                (dir, package.file.as_str(), None)
            }
        };
        let opt = if spec.layers.is_empty() {
            None
        } else {
            let dirs: Vec<&Path> = spec.layers.iter().map(PathBuf::as_path).collect();
            self.process
                .show(sandbox, ShowAt::Opt, &dirs)
                .await
                .map_err(StartError::Spawn)?;
            Some(ignis_sandbox::mount::OPT_ROOT)
        };
        // Lambda's per-instance variables: its log stream, and where its code is.
        let mut env = spec.env.clone();
        let today = time::OffsetDateTime::now_utc().date();
        env.insert(
            "AWS_LAMBDA_LOG_STREAM_NAME".to_owned(),
            ignis_core::lambda_env::log_stream_name(
                (today.year(), u8::from(today.month()), today.day()),
                spec.version,
                &hex::encode(rand::random::<[u8; 16]>()),
            ),
        );
        env.insert("LAMBDA_TASK_ROOT".to_owned(), dir.clone());
        let load = HostMessage::Load {
            dir: &dir,
            file,
            code,
            opt,
            style: match spec.handler_style {
                ignis_core::HandlerStyle::Lambda => None,
                ignis_core::HandlerStyle::Openfaas => Some(spec.handler_style.as_str()),
            },
            concurrency: spec.concurrency.max(1),
            handler: &spec.handler,
            env: &env,
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
            OutputEvent::Eof(s) => self.ended.set(s),
        }
    }

    /// Describes how the process died, after collecting its last output.
    async fn death(&mut self) -> String {
        let status = tokio::time::timeout(DRAIN_TIMEOUT, self.process.wait())
            .await
            .unwrap_or_else(|_| "the instance closed its channel".to_owned());
        self.process.kill();
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !self.ended.both() {
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
            phase: Phase::Sent,
            markers: self.ended,
            sink: job.sink,
            streamed: Streamed::default(),
        });
        failed.map(|e| {
            tracing::debug!(error = %e, "could not send an invocation");
            End::Died
        })
    }

    async fn on_frame(&mut self, frame: Option<Result<InstanceMessage, ProtocolError>>) -> Option<End> {
        match frame {
            Some(Ok(InstanceMessage::Head {
                id,
                status,
                headers,
                cookies,
            })) => {
                let Some(f) = self.inflight.iter_mut().find(|f| f.id == id && !f.answered()) else {
                    return self.broken();
                };
                f.streamed.head(f.sink.as_ref(), &id, status, &headers, &cookies);
                None
            }
            Some(Ok(InstanceMessage::Chunk { id, data })) => {
                let Some(f) = self.inflight.iter_mut().find(|f| f.id == id && !f.answered()) else {
                    return self.broken();
                };
                if f.streamed.chunk(f.sink.as_ref(), &id, &data) {
                    None
                } else {
                    self.broken()
                }
            }
            Some(Ok(msg)) => {
                let found = answer_of(msg).and_then(|(id, answer)| {
                    let i = self.inflight.iter().position(|f| f.id == id && !f.answered())?;
                    Some((i, answer))
                });
                let Some((i, answer)) = found else {
                    // An answer to nothing in flight, or a message out of place: the
                    // instance is broken.
                    return self.broken();
                };
                let (outcome, wire) = answer;
                self.inflight[i].answer(outcome, wire);
                if self.inflight[i].done() {
                    self.finish(i, Markers::Came);
                }
                None
            }
            Some(Err(ProtocolError::FrameTooLarge(size))) => {
                self.process.kill();
                // Only an answer can be that large; with one call in flight it is its own.
                if self.inflight.len() == 1 {
                    let size = u64::try_from(size).unwrap_or(u64::MAX);
                    self.inflight[0].answer(Outcome::ResponseTooLarge { size }, Vec::new());
                    self.finish(0, Markers::Missing);
                }
                Some(End::Died)
            }
            Some(Err(_)) | None => Some(End::Died),
        }
    }

    fn broken(&mut self) -> Option<End> {
        tracing::debug!("the instance broke the protocol");
        self.process.kill();
        Some(End::Died)
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
                    self.inflight[i].markers.set(stream);
                    if self.inflight[i].done() {
                        self.finish(i, Markers::Came);
                    }
                }
            }
            OutputEvent::Eof(s) => {
                self.ended.set(s);
                for f in &mut self.inflight {
                    f.markers.set(s);
                }
                while let Some(i) = self.inflight.iter().position(InFlight::done) {
                    self.finish(i, Markers::Came);
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
            .position(|f| f.answered() && f.wake_at() <= now)
        {
            // The markers were written before the answer, so they were in the pipes; the
            // handler closed or broke its stdout/stderr. Every later call would wait for
            // them: the instance is replaced.
            tracing::debug!(markers = ?self.inflight[i].markers, "end markers missing after the answer");
            self.finish(i, Markers::Missing);
        }
        if self.inflight.iter().any(|f| !f.answered() && f.deadline <= now) {
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
            let outcome = match (&end, f.phase) {
                // Answered, only its markers were missing when the process went.
                (_, Phase::Answered { outcome, wire, .. }) => {
                    let logs = self.merge(f.logs, wire);
                    let _ = f.reply.send(RunResult {
                        outcome,
                        logs,
                        reusable: false,
                    });
                    continue;
                }
                (End::Timeout, Phase::Sent) if f.deadline <= now => Outcome::Timeout,
                (End::Timeout, Phase::Sent) => Outcome::Crashed {
                    detail: "the instance was stopped because another invocation on it ran past its timeout"
                        .to_owned(),
                },
                (End::Died, Phase::Sent) if oom => Outcome::OutOfMemory,
                (End::Died, Phase::Sent) => Outcome::Crashed {
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
    fn finish(&mut self, i: usize, markers: Markers) {
        let f = self.inflight.remove(i);
        let Phase::Answered { outcome, wire, .. } = f.phase else {
            unreachable!("only answered invocations are finished");
        };
        let logs = self.merge(f.logs, wire);
        // An instance whose output channels ended or lost their markers would make every
        // later call wait: it is replaced.
        let reusable = markers == Markers::Came && !self.ended.either();
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
        InstanceMessage::Hello { .. }
        | InstanceMessage::Loaded
        | InstanceMessage::Warmed
        | InstanceMessage::LoadError { .. }
        | InstanceMessage::Head { .. }
        | InstanceMessage::Chunk { .. } => None,
    }
}
