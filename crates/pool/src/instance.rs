//! One instance: a runtime process with the user's module loaded, driven by its own task.
//!
//! The task owns the process and its three channels (control socket, stdout, stderr). It
//! runs one invocation at a time: send `invoke`, then gather the answer frame, the output
//! lines and both end markers, unless the deadline or the death of the process comes first.

use std::collections::BTreeMap;
use std::path::PathBuf;
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

use crate::output::{now_ms, pump, OutputEvent};
use crate::runtimes::Runtimes;

/// How long an instance may take to start and import the user's module.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the end markers may lag behind an answer (they were written before it).
const MARKER_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for a dead process's last output.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the bootstraps and the function's code appear inside a sandbox.
const SANDBOX_BOOTSTRAP_DIR: &str = "/ignis";
const SANDBOX_CODE_DIR: &str = "/code";
/// Processes (and threads) one instance may have: enough for any runtime, not a fork bomb.
const PIDS_LIMIT: u32 = 256;
/// Size of an instance's private `/tmp`.
const TMP_SIZE_MB: u32 = 64;

/// Everything needed to start instances of one function version.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub runtime: Runtime,
    pub code_dir: PathBuf,
    pub handler: String,
    pub env: BTreeMap<String, String>,
    pub function: String,
    pub version: u32,
    pub memory_mb: u32,
    pub vcpus: u32,
    pub network: Network,
    pub timeout: Duration,
    pub log_limit: usize,
}

/// What starts instances: the interpreters found on this host and the sandbox they run in.
pub struct Launcher {
    pub runtimes: Runtimes,
    pub sandbox: Sandbox,
}

impl Launcher {
    /// The process to start for `spec`, and the code directory as that process sees it.
    fn request(&self, spec: &LaunchSpec, marker: &str) -> Result<(SpawnRequest, PathBuf), StartError> {
        let sandboxed = self.sandbox.enabled();
        let (bootstrap_dir, code_dir) = if sandboxed {
            (
                PathBuf::from(SANDBOX_BOOTSTRAP_DIR),
                PathBuf::from(SANDBOX_CODE_DIR),
            )
        } else {
            (self.runtimes.bootstrap_dir.clone(), spec.code_dir.clone())
        };
        let (program, args) = self
            .runtimes
            .command(spec.runtime, marker, &bootstrap_dir)
            .ok_or_else(|| StartError::RuntimeMissing(self.runtimes.missing_message(spec.runtime)))?;
        let mut binds: Vec<Bind> = Vec::new();
        let mut shown: Vec<PathBuf> = ignis_sandbox::library_dirs();
        shown.extend(self.runtimes.interpreter(spec.runtime).mounts.iter().cloned());
        for path in shown {
            // A path inside one already shown needs no mount of its own.
            if !binds.iter().any(|b| path.starts_with(&b.source)) && !path.as_os_str().is_empty() {
                binds.push(Bind {
                    source: path.clone(),
                    target: path,
                });
            }
        }
        let outbound = spec.network == Network::Outbound;
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
            target: bootstrap_dir,
        });
        binds.push(Bind {
            source: spec.code_dir.clone(),
            target: code_dir.clone(),
        });
        let env = BTreeMap::from([
            ("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned()),
            ("HOME".to_owned(), "/tmp".to_owned()),
            ("TMPDIR".to_owned(), "/tmp".to_owned()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ("PYTHONDONTWRITEBYTECODE".to_owned(), "1".to_owned()),
            ("NO_COLOR".to_owned(), "1".to_owned()),
        ]);
        let request = SpawnRequest {
            program,
            args,
            env,
            cwd: code_dir.clone(),
            binds,
            limits: CgroupLimits {
                memory_mb: spec.memory_mb,
                vcpus: spec.vcpus,
                pids: PIDS_LIMIT,
            },
            tmp_size_mb: TMP_SIZE_MB,
            outbound,
        };
        Ok((request, code_dir))
    }
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
    /// False when the instance was killed or died: it must not serve again.
    pub reusable: bool,
}

struct Job {
    id: String,
    event: Arc<RawValue>,
    timeout: Duration,
    reply: oneshot::Sender<RunResult>,
}

/// A handle to a running, loaded instance. Dropping the last handle stops the instance.
#[derive(Debug)]
pub struct Instance {
    jobs: mpsc::Sender<Job>,
}

impl Instance {
    /// Starts a process, waits for its hello and loads the user's module into it.
    pub async fn start(launcher: &Launcher, spec: &LaunchSpec) -> Result<Instance, StartError> {
        let started = Instant::now();
        let nonce = hex::encode(rand::random::<[u8; 12]>());
        let (request, code_dir) = launcher.request(spec, &nonce)?;
        let spawned = launcher
            .sandbox
            .spawn(&request)
            .map_err(|e| StartError::Spawn(e.to_string()))?;
        let spawned_at = started.elapsed();

        let (out_tx, out_rx) = mpsc::channel(256);
        tokio::spawn(pump(
            spawned.stdout,
            LogStream::Stdout,
            nonce.clone(),
            out_tx.clone(),
        ));
        tokio::spawn(pump(spawned.stderr, LogStream::Stderr, nonce, out_tx));
        let (read_half, write_half) = spawned.control.into_split();
        let (frame_tx, frame_rx) = mpsc::channel(4);
        tokio::spawn(read_frames(read_half, frame_tx));

        let mut task = InstanceTask {
            process: spawned.process,
            control: write_half,
            frames: frame_rx,
            output: out_rx,
            pending: Vec::new(),
            log_limit: spec.log_limit,
            eof: [false, false],
        };
        match tokio::time::timeout(INIT_TIMEOUT, task.handshake(&launcher.sandbox, spec, &code_dir)).await {
            Ok(Ok(hello_at)) => tracing::debug!(
                function = %spec.function,
                spawn_ms = spawned_at.as_secs_f64() * 1e3,
                hello_ms = hello_at.duration_since(started).as_secs_f64() * 1e3,
                loaded_ms = started.elapsed().as_secs_f64() * 1e3,
                "instance started"
            ),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(StartError::Timeout),
        }
        let (jobs, job_rx) = mpsc::channel(1);
        tokio::spawn(task.serve(job_rx));
        Ok(Instance { jobs })
    }

    /// False once the instance's task has ended (its process died while idle).
    pub fn is_alive(&self) -> bool {
        !self.jobs.is_closed()
    }

    /// Runs one invocation. The caller must not run two at once on one instance.
    pub async fn run(&self, id: String, event: Arc<RawValue>, timeout: Duration) -> RunResult {
        let (reply, rx) = oneshot::channel();
        let crashed = |detail: &str| RunResult {
            outcome: Outcome::Crashed {
                detail: detail.to_owned(),
            },
            logs: Vec::new(),
            reusable: false,
        };
        if self
            .jobs
            .send(Job {
                id,
                event,
                timeout,
                reply,
            })
            .await
            .is_err()
        {
            return crashed("the instance had already ended");
        }
        rx.await.unwrap_or_else(|_| crashed("the instance task ended"))
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
}

fn stream_index(s: LogStream) -> usize {
    match s {
        LogStream::Stdout => 0,
        LogStream::Stderr => 1,
    }
}

impl InstanceTask {
    /// Says hello and loads the module; returns when the hello came (for start timings).
    async fn handshake(
        &mut self,
        sandbox: &Sandbox,
        spec: &LaunchSpec,
        code_dir: &std::path::Path,
    ) -> Result<Instant, StartError> {
        match self.next_frame().await {
            Ok(InstanceMessage::Hello { .. }) => {}
            Ok(other) => return Err(StartError::Died(format!("unexpected first message {other:?}"))),
            Err(detail) => return Err(StartError::Died(detail)),
        }
        // The hello proves the instance's namespaces exist; its network is attached before
        // any user code runs.
        if spec.network == Network::Outbound {
            sandbox
                .connect_outbound(&mut self.process)
                .await
                .map_err(|e| StartError::Spawn(e.to_string()))?;
        }
        let dir = code_dir.display().to_string();
        let load = HostMessage::Load {
            dir: &dir,
            file: spec.runtime.source_file(),
            code: None,
            concurrency: 1,
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
        let hello_at = Instant::now();
        write_message(&mut self.control, &load)
            .await
            .map_err(|e| StartError::Died(e.to_string()))?;
        match self.next_frame().await {
            Ok(InstanceMessage::Loaded) => Ok(hello_at),
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

    async fn serve(mut self, mut jobs: mpsc::Receiver<Job>) {
        loop {
            tokio::select! {
                job = jobs.recv() => {
                    let Some(job) = job else { return };
                    let result = self.run(&job).await;
                    let reusable = result.reusable;
                    // The caller may have gone; the result is then simply dropped.
                    let _ = job.reply.send(result);
                    if !reusable {
                        return;
                    }
                }
                Some(ev) = self.output.recv() => {
                    self.keep(ev);
                    cap_logs(&mut self.pending, self.log_limit);
                }
                frame = self.frames.recv() => {
                    // Between invocations the instance has nothing to say: any frame, or the
                    // end of the channel, means it is broken or gone.
                    if !matches!(frame, Some(Ok(_))) {
                        tracing::debug!("instance ended while idle");
                    }
                    self.process.kill();
                    return;
                }
            }
        }
    }

    async fn run(&mut self, job: &Job) -> RunResult {
        let mut logs = std::mem::take(&mut self.pending);
        let deadline = Instant::now() + job.timeout;
        let deadline_ms = now_ms() + i64::try_from(job.timeout.as_millis()).unwrap_or(i64::MAX);
        let invoke = HostMessage::Invoke {
            id: &job.id,
            event: &job.event,
            deadline_ms: u64::try_from(deadline_ms).unwrap_or(0),
        };
        if let Err(e) = write_message(&mut self.control, &invoke).await {
            let detail = format!("{e}; {}", self.death().await);
            logs.append(&mut self.pending);
            return self.finish(Outcome::Crashed { detail }, logs, false);
        }
        let mut answer: Option<(Outcome, Vec<WireLog>)> = None;
        let mut markers = self.eof;
        // Set when the answer came: how long its end markers may still take.
        let mut marker_deadline: Option<Instant> = None;
        let mut markers_lost = false;
        while answer.is_none() || !(markers[0] && markers[1]) {
            tokio::select! {
                // The markers were written before the answer, so they are in the pipes by
                // now; if they do not come, the handler closed or broke its stdout/stderr.
                () = tokio::time::sleep_until(marker_deadline.unwrap_or(deadline)), if marker_deadline.is_some() => {
                    tracing::debug!(?markers, "end markers missing after the answer");
                    markers_lost = true;
                    break;
                }
                frame = self.frames.recv(), if answer.is_none() => match frame {
                    Some(Ok(msg)) => match answer_of(msg, &job.id) {
                        Some(a) => {
                            answer = Some(a);
                            marker_deadline = Some(Instant::now() + MARKER_GRACE);
                        }
                        None => {
                            self.process.kill();
                            let detail = "the instance broke the protocol".to_owned();
                            return self.finish(Outcome::Crashed { detail }, logs, false);
                        }
                    },
                    Some(Err(ProtocolError::FrameTooLarge(size))) => {
                        self.process.kill();
                        let size = u64::try_from(size).unwrap_or(u64::MAX);
                        return self.finish(Outcome::ResponseTooLarge { size }, logs, false);
                    }
                    Some(Err(_)) | None => {
                        let detail = self.death().await;
                        logs.append(&mut self.pending);
                        let outcome = if self.process.oom_killed() { Outcome::OutOfMemory } else { Outcome::Crashed { detail } };
                        return self.finish(outcome, logs, false);
                    }
                },
                Some(ev) = self.output.recv() => match ev {
                    OutputEvent::Line(line) => logs.push(line),
                    OutputEvent::Marker { stream, id } if id == job.id => markers[stream_index(stream)] = true,
                    OutputEvent::Marker { .. } => {}
                    OutputEvent::Eof(s) => {
                        self.eof[stream_index(s)] = true;
                        markers[stream_index(s)] = true;
                    }
                },
                () = tokio::time::sleep_until(deadline) => {
                    tracing::debug!(answered = answer.is_some(), ?markers, eof = ?self.eof, "invocation timed out");
                    self.process.kill();
                    return self.finish(Outcome::Timeout, logs, false);
                }
            }
        }
        let (outcome, wire_logs) = answer.expect("the loop ends only with an answer");
        logs.extend(wire_logs.into_iter().map(|l| LogLine {
            ts_ms: l.ts,
            stream: LogStream::parse(&l.stream),
            line: l.line,
        }));
        // An instance whose output channels ended or lost their markers would make every
        // later call wait: it is replaced.
        let reusable = !(self.eof[0] || self.eof[1] || markers_lost);
        self.finish(outcome, logs, reusable)
    }

    fn finish(&self, outcome: Outcome, mut logs: Vec<LogLine>, reusable: bool) -> RunResult {
        // Raw lines and captured lines interleave by time; the sort is stable so lines of
        // one millisecond keep their order.
        logs.sort_by_key(|l| l.ts_ms);
        cap_logs(&mut logs, self.log_limit);
        RunResult {
            outcome,
            logs,
            reusable,
        }
    }
}

fn answer_of(msg: InstanceMessage, id: &str) -> Option<(Outcome, Vec<WireLog>)> {
    match msg {
        InstanceMessage::Result { id: got, value, logs } if got == id => Some((Outcome::Ok(value), logs)),
        InstanceMessage::Error { id: got, error, logs } if got == id => {
            Some((Outcome::FunctionError(FunctionError { ..error }), logs))
        }
        InstanceMessage::TooLarge { id: got, size, logs } if got == id => {
            Some((Outcome::ResponseTooLarge { size }, logs))
        }
        InstanceMessage::Result { .. }
        | InstanceMessage::Error { .. }
        | InstanceMessage::TooLarge { .. }
        | InstanceMessage::Hello { .. }
        | InstanceMessage::Loaded
        | InstanceMessage::LoadError { .. } => None,
    }
}
