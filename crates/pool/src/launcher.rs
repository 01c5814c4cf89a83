//! The launcher: what starts instances as processes. It builds the spawn request of a
//! generic instance (interpreter, mounts, environment), starts it in the sandbox, hands
//! out pre-warmed instances and refills them. The pool reaches it only through the
//! [`Starter`] trait.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use ignis_core::{Isolation, Network, Runtime};
use ignis_sandbox::{Bind, CgroupLimits, Sandbox, SpawnRequest};
use tokio::time::Instant;

use crate::build::{BuildError, BuildJob};
use crate::instance::{Generic, StartError, Started};
use crate::microvm::{Microvm, SnapshotKey};
use crate::prewarm::{Prewarm, PREWARMED};
use crate::runtimes::Runtimes;

/// Where the bootstraps and the function's code appear inside a sandbox.
const SANDBOX_BOOTSTRAP_DIR: &str = "/ignis";
const SANDBOX_CODE_DIR: &str = "/code";
/// Where Bun resolves packages of layers (Lambda's layout).
const SANDBOX_NODE_PATH: &str = "/opt/nodejs/node_modules";
/// Where a sandboxed instance finds Bun.
pub(crate) const SANDBOX_BUN: &str = "/usr/local/bin/bun";
/// Processes (and threads) one instance may have: enough for any runtime, not a fork bomb.
pub(crate) const PIDS_LIMIT: u32 = 256;
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
    /// The source of a one-file function, sent in the load message (empty for a package).
    pub code: Arc<str>,
    /// A package of several files: shown read-only at the code root before the load.
    pub package: Option<CodePackage>,
    /// The function's layers on the host, merged read-only at `/opt` before the load: the
    /// first on top (Lambda's last-listed layer wins), each layer's files over its installed
    /// dependencies.
    pub layers: Vec<PathBuf>,
    /// The function's name in its file (for a package, in its entry file).
    pub handler: String,
    /// The handler's calling convention.
    pub handler_style: ignis_core::HandlerStyle,
    /// The version's answers are API Gateway REST's (payload 1.0: `multiValueHeaders` read).
    pub rest_answers: bool,
    pub env: BTreeMap<String, String>,
    pub function: String,
    pub version: u32,
    pub memory_mb: u32,
    pub vcpus: u32,
    pub network: Network,
    /// A process in the sandbox, or a virtual machine (the microvm tier).
    pub isolation: Isolation,
    pub timeout: Duration,
    pub log_limit: usize,
    /// Invocations one instance runs at once.
    pub concurrency: u32,
}

/// A function made of several files, unpacked on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodePackage {
    /// The unpacked package on the host (never shown inside: the sandbox mounts it at the
    /// code root through an overlay named by descriptor).
    pub dir: PathBuf,
    /// Its installed dependencies on the host, shown merged under the package (whose
    /// files win).
    pub deps: Option<PathBuf>,
    /// The entry file, relative to the package root (the handler's file).
    pub file: String,
}

/// Whom a generic instance is started for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A cold start waiting for it: it is given code at once.
    ColdStart,
    /// The pre-warmed pool: it is told it will wait for code, so it may warm its load path.
    Prewarm,
}

/// Starts instances of a function version. The pool and the control plane depend on this,
/// not on [`Launcher`], so that their rules can be tested with instances that are not
/// processes (see the `testing` feature).
pub trait Starter: Send + Sync + 'static {
    fn start(self: Arc<Self>, spec: Arc<LaunchSpec>) -> BoxFuture<'static, Result<Started, StartError>>;

    /// How many pre-warmed instances of `runtime` are waiting (none unless the starter
    /// keeps any).
    fn prewarmed(&self, runtime: Runtime) -> usize {
        let _ = runtime;
        0
    }

    /// How many microvm guests running `runtime` are restored ahead of time and waiting
    /// (none unless the starter keeps any).
    fn pre_restored(&self, runtime: Runtime) -> usize {
        let _ = runtime;
        0
    }

    /// Installs a function's dependencies (see [`crate::build`]); a starter that cannot
    /// says so.
    fn build(self: Arc<Self>, job: BuildJob) -> BoxFuture<'static, Result<(), BuildError>> {
        drop(job);
        Box::pin(async {
            Err(BuildError::Unavailable(
                "this host cannot install dependencies".to_owned(),
            ))
        })
    }
}

/// What starts instances: the interpreters found on this host, the sandbox they run in,
/// and the pre-warmed instances waiting for code.
pub struct Launcher {
    pub runtimes: Runtimes,
    pub sandbox: Sandbox,
    prewarm: Prewarm,
    /// Interpreter starts in flight at once. Starting an interpreter is CPU-bound: fifty
    /// at once on two cores would all finish late, so a burst is better served by a few
    /// that come up fast (and then serve the queue) than by many that come up together.
    starts: tokio::sync::Semaphore,
    /// The microvm tier, once detected: or why this host has none.
    microvm: std::sync::OnceLock<Result<Arc<Microvm>, String>>,
}

impl Starter for Launcher {
    /// A pre-warmed instance when one is waiting (functions without network), else a
    /// fresh one.
    fn start(self: Arc<Self>, spec: Arc<LaunchSpec>) -> BoxFuture<'static, Result<Started, StartError>> {
        Box::pin(async move {
            if spec.isolation == Isolation::Microvm {
                return self.start_microvm(&spec).await;
            }
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

    fn prewarmed(&self, runtime: Runtime) -> usize {
        Launcher::prewarmed(self, runtime)
    }

    fn pre_restored(&self, runtime: Runtime) -> usize {
        match self.microvm.get() {
            Some(Ok(m)) => m.pre_restored(runtime),
            _ => 0,
        }
    }

    fn build(self: Arc<Self>, job: BuildJob) -> BoxFuture<'static, Result<(), BuildError>> {
        Box::pin(async move { self.run_build(job).await })
    }
}

/// Refills the pre-warmed pool when dropped.
struct RefillOnDrop(Arc<Launcher>);

/// Refills a kind's guests restored ahead of time when dropped.
struct RefillGuestsOnDrop(Arc<Launcher>, Arc<Microvm>, SnapshotKey);

impl Drop for RefillGuestsOnDrop {
    fn drop(&mut self) {
        self.0.refill_guests(self.1.clone(), self.2);
    }
}

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
            microvm: std::sync::OnceLock::new(),
        })
    }

    /// Gives the launcher its microvm tier (or why there is none); set once, at start.
    pub fn set_microvm(&self, microvm: Result<Arc<Microvm>, String>) {
        let _ = self.microvm.set(microvm);
    }

    /// A guest of `spec`'s kind restored ahead of time when one waits, else one restored
    /// (or booted) now; then given its code. The kind's pool is refilled after the load.
    async fn start_microvm(self: &Arc<Self>, spec: &LaunchSpec) -> Result<Started, StartError> {
        let microvm = match self.microvm.get() {
            Some(Ok(m)) => m.clone(),
            Some(Err(why)) => {
                return Err(StartError::Spawn(format!(
                    "the microvm tier is unavailable on this host: {why}"
                )))
            }
            None => return Err(StartError::Spawn("the microvm tier was not set up".to_owned())),
        };
        let kind = microvm.kind_of(spec);
        // Refilled after the load, not during it (as the pre-warmed pool of processes): a
        // guard, so that a start abandoned mid-load still refills.
        let _refill = kind.map(|kind| RefillGuestsOnDrop(self.clone(), microvm.clone(), kind));
        if let Some(generic) = kind.and_then(|kind| microvm.take_restored(kind)) {
            match generic.load(&self.sandbox, spec).await {
                Err(e @ StartError::Load(_)) => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "a guest restored ahead of time failed; starting afresh")
                }
                Ok(started) => return Ok(started),
            }
        }
        let generic = {
            // Held until the guest's runtime is up: booting or restoring is CPU-bound.
            let _permit = self.starts.acquire().await;
            microvm.start(&self.sandbox, spec).await?
        };
        generic.load(&self.sandbox, spec).await
    }

    /// Restores guests of `kind` ahead of time, one at a time, until its pool is full.
    fn refill_guests(self: &Arc<Self>, microvm: Arc<Microvm>, kind: SnapshotKey) {
        if !microvm.begin_pre_restore(kind) {
            return;
        }
        let launcher = self.clone();
        tokio::spawn(async move {
            let restored = {
                let _permit = launcher.starts.acquire().await;
                microvm.pre_restore(&launcher.sandbox, kind).await
            };
            match restored {
                Ok(()) => launcher.refill_guests(microvm, kind),
                // Cold starts still work without the pool; try again at the next one.
                Err(e) => tracing::warn!(error = %e, "could not restore a guest ahead of time"),
            }
        });
    }

    /// How many pre-warmed instances of `runtime` are waiting.
    pub fn prewarmed(&self, runtime: Runtime) -> usize {
        self.prewarm.ready(runtime)
    }

    /// How many pre-warmed instances each interpreter keeps (K).
    pub fn prewarm_target(&self) -> usize {
        self.prewarm.target()
    }

    /// Starts pre-warmed instances until each available interpreter has its K waiting.
    pub fn refill(self: &Arc<Self>) {
        for runtime in PREWARMED {
            if !self.runtimes.interpreter(runtime).available || !self.prewarm.begin_start(runtime) {
                continue;
            }
            let launcher = self.clone();
            tokio::spawn(async move {
                let started = launcher
                    .start_generic(runtime, Network::None, Purpose::Prewarm)
                    .await;
                match started {
                    Ok(generic) => launcher.prewarm.started(runtime, generic),
                    Err(e) => {
                        launcher.prewarm.start_failed(runtime);
                        // Cold starts still work without the pool; try again at the next
                        // cold start rather than in a tight loop.
                        tracing::warn!(runtime = runtime.as_str(), error = %e, "could not pre-warm an instance");
                        return;
                    }
                }
                launcher.refill();
            });
        }
    }

    /// The process to start for a generic instance of `runtime`.
    fn request(
        &self,
        runtime: Runtime,
        network: Network,
        purpose: Purpose,
        marker: &str,
    ) -> Result<SpawnRequest, StartError> {
        let sandboxed = self.sandbox.enabled();
        let outbound = network == Network::Outbound;
        let bootstrap_dir = if sandboxed {
            PathBuf::from(SANDBOX_BOOTSTRAP_DIR)
        } else {
            self.runtimes.bootstrap_dir.clone()
        };
        let (mut program, mut args) = self
            .runtimes
            .command(runtime, marker, &bootstrap_dir)
            .ok_or_else(|| StartError::RuntimeMissing(self.runtimes.missing_message(runtime)))?;
        match purpose {
            Purpose::Prewarm => args.push("--prewarm".to_owned()),
            Purpose::ColdStart => {}
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
        show_host_paths(&mut binds, shown, outbound);
        binds.push(Bind {
            source: self.runtimes.bootstrap_dir.clone(),
            target: bootstrap_dir.clone(),
        });
        let env = runtime_env(runtime, sandboxed);
        Ok(SpawnRequest {
            program,
            args,
            env,
            // The directory the code runs as if it were in; the code itself is sent in
            // the load message and never written there.
            cwd: if sandboxed {
                PathBuf::from(SANDBOX_CODE_DIR)
            } else {
                bootstrap_dir
            },
            binds,
            limits: GENERIC_LIMITS,
            tmp_size_mb: TMP_SIZE_MB,
            outbound,
            // Where the package and the layers are shown at the load (Lambda's places).
            empty_dirs: if sandboxed {
                vec![
                    PathBuf::from(SANDBOX_CODE_DIR),
                    PathBuf::from(ignis_sandbox::mount::OPT_ROOT),
                ]
            } else {
                Vec::new()
            },
            writable: None,
            wait_for_go: false,
            kvm: false,
        })
    }

    /// Starts a generic instance of `runtime`: sandbox made, interpreter up, no code yet.
    /// Instances with `Network::Outbound` get what outbound networking needs inside (a
    /// resolver, CA certificates); the network itself is attached at the load.
    pub async fn start_generic(
        &self,
        runtime: Runtime,
        network: Network,
        purpose: Purpose,
    ) -> Result<Generic, StartError> {
        let started = Instant::now();
        // Held until the hello: the CPU-bound part. Waiting for it counts as sandbox time.
        let _permit = self.starts.acquire().await;
        let nonce = hex::encode(rand::random::<[u8; 12]>());
        let request = self.request(runtime, network, purpose, &nonce)?;
        let spawned = self
            .sandbox
            .spawn(&request)
            .map_err(|e| StartError::Spawn(e.to_string()))?;
        let sandbox_time = started.elapsed();
        let code_dir = request.cwd.display().to_string();
        Generic::hello(spawned, nonce, code_dir, runtime, network, sandbox_time).await
    }

    /// Starts an instance of `spec` from scratch: a generic instance, then its code.
    pub async fn start_fresh(&self, spec: &LaunchSpec) -> Result<Started, StartError> {
        let generic = self
            .start_generic(spec.runtime, spec.network, Purpose::ColdStart)
            .await?;
        generic.load(&self.sandbox, spec).await
    }
}

/// Shows host paths read-only at the same place inside (a path inside one already shown
/// needs no mount of its own), and the host's CA certificates to processes with outbound
/// networking (TLS clients need them).
pub(crate) fn show_host_paths(binds: &mut Vec<Bind>, shown: Vec<PathBuf>, outbound: bool) {
    for path in shown {
        if !binds.iter().any(|b| path.starts_with(&b.source)) && !path.as_os_str().is_empty() {
            binds.push(Bind {
                source: path.clone(),
                target: path,
            });
        }
    }
    let certs = PathBuf::from("/etc/ssl/certs");
    if outbound && certs.is_dir() {
        binds.push(Bind {
            source: certs.clone(),
            target: certs,
        });
    }
}

/// The environment a runtime starts with: the sandbox's, and, where layers appear at `/opt`
/// (`layers_at_opt`: a sandboxed process or a guest), Bun's `NODE_PATH` to them.
pub(crate) fn runtime_env(runtime: Runtime, layers_at_opt: bool) -> BTreeMap<String, String> {
    let mut env = sandbox_env();
    env.insert("PYTHONDONTWRITEBYTECODE".to_owned(), "1".to_owned());
    if layers_at_opt && matches!(runtime, Runtime::Javascript | Runtime::Typescript) {
        // Bun reads NODE_PATH once, at start: layers mounted at /opt later resolve.
        env.insert("NODE_PATH".to_owned(), SANDBOX_NODE_PATH.to_owned());
    }
    env
}

/// The environment every sandboxed process starts with: nothing of the host's.
pub(crate) fn sandbox_env() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ("HOME".to_owned(), "/tmp".to_owned()),
        ("TMPDIR".to_owned(), "/tmp".to_owned()),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ("NO_COLOR".to_owned(), "1".to_owned()),
        // Lambda's time zone, from the start: a function's load sets it only when its own
        // `env` names another (setting it makes Bun reload its time zone data).
        ("TZ".to_owned(), ":UTC".to_owned()),
    ])
}
