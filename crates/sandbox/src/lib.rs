//! Starting and stopping instance processes, sandboxed by default. The only crate with
//! `unsafe` (in `sys`).

mod cgroup;
pub mod init;
pub mod mount;
mod parked;
pub use ignis_seccomp as seccomp;
mod slot;
mod sys;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use parked::{Parked, PARKED};

pub use cgroup::{CgroupLimits, Cgroups, InstanceCgroup};
pub use init::{Bind, InitConfig, INIT_ARG};
pub use mount::MOUNT_ARG;

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::net::UnixStream;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

/// The file descriptor on which an instance finds its control socket.
pub const CONTROL_FD: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("could not create the control socket: {0}")]
    Socket(std::io::Error),
    #[error("could not give the instance a network: {0}")]
    Network(String),
    #[error("could not show the function's package to the instance: {0}")]
    Package(String),
    #[error("could not set up the instance's cgroup: {0}")]
    Cgroup(String),
    #[error("could not start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The whole environment of the process: nothing of the host's leaks in.
    pub env: BTreeMap<String, String>,
    /// The working directory, as the process sees it.
    pub cwd: PathBuf,
    /// What the sandbox makes visible (read-only); ignored without a sandbox.
    pub binds: Vec<Bind>,
    pub limits: CgroupLimits,
    pub tmp_size_mb: u32,
    /// Outbound networking (see [`Sandbox::connect_outbound`]); without it, only loopback.
    pub outbound: bool,
    /// Empty, read-only directories made at these paths inside (see [`InitConfig::empty_dirs`]).
    pub empty_dirs: Vec<PathBuf>,
    /// A host folder shown read-write inside (see [`InitConfig::writable`]).
    pub writable: Option<Bind>,
    /// The program starts only once the host writes one byte on the control channel
    /// (see [`InitConfig::wait_for_go`]).
    pub wait_for_go: bool,
    /// The host's `/dev/kvm`, usable inside (see [`InitConfig::kvm`]).
    pub kvm: bool,
}

/// The argument that makes the `ignis` binary check, inside a sandbox, that it can run.
pub const PROBE_ARG: &str = "__sandbox-probe";

/// Ids inside the sandbox start here; each instance gets its own uid and gid, from the
/// range of its server's slot, which no other live server on the host holds.
const FIRST_UID: u64 = 200_000;
const UID_RANGE: u64 = 100_000;

/// The uid (and gid) of a server's `n`th instance.
fn instance_uid(slot: u32, n: u64) -> u32 {
    u32::try_from(FIRST_UID + u64::from(slot) * UID_RANGE + n % UID_RANGE)
        .expect("slots * UID_RANGE fits in a uid")
}

type Job = Box<dyn FnOnce() + Send>;

/// The one thread every sandbox init is forked from. An init's parent-death signal fires
/// when the *thread* that forked it ends; the async runtime's threads come and go, this one
/// lives as long as the sandbox (that is, the server), so the inits die with the server and
/// only then.
struct Spawner {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Spawner {
    fn start() -> Result<Spawner, String> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| format!("no async runtime: {e}"))?;
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ignis-sandbox-spawner".to_owned())
            .spawn(move || {
                // Child pipes register with the runtime's reactor.
                let _runtime = runtime.enter();
                while let Ok(job) = queue.recv() {
                    job();
                }
            })
            .map_err(|e| format!("cannot start the spawner thread: {e}"))?;
        Ok(Spawner { jobs })
    }

    /// Starts a process (a sandbox init, or without the sandbox the runtime itself) on the
    /// spawner thread; it dies with the server.
    fn spawn(
        &self,
        req: SpawnRequest,
        cgroup: Option<InstanceCgroup>,
        stdin: Stdio,
    ) -> Result<Spawned, SpawnError> {
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        let server = std::process::id();
        let gone = SpawnError::Spawn {
            program: req.program.display().to_string(),
            source: std::io::Error::other("the sandbox spawner thread is gone"),
        };
        let job: Job = Box::new(move || {
            let _ = answer.send(spawn_plain(&req, cgroup, stdin, Some(server)));
        });
        if self.jobs.send(job).is_err() {
            return Err(gone);
        }
        answered.recv().unwrap_or(Err(gone))
    }
}

/// How instances are started: inside the sandbox, or (only when asked) without it.
pub struct Sandbox {
    mode: Mode,
}

enum Mode {
    On(Arc<On>),
    /// Without the sandbox; the spawner when there is an async runtime to run it with.
    Off(Option<Spawner>),
}

struct On {
    /// The `ignis` binary, re-executed as the sandbox init.
    exe: PathBuf,
    /// An empty directory, the mount point of every instance's private root.
    root: PathBuf,
    /// An empty directory: the lower layer under each package's read-only overlay.
    empty: PathBuf,
    cgroups: Cgroups,
    /// This server's slot on the host: its uid range and parent cgroup.
    slot: slot::Slot,
    spawner: Spawner,
    next_id: AtomicU64,
    /// slirp4netns, which gives instances outbound networking; None if not installed.
    slirp: Option<PathBuf>,
    /// Whether this server's user may open /dev/net/tun (root always can), which a
    /// rootless slirp4netns needs.
    tun_usable: bool,
    /// Inits waiting in their cgroups. Locked only to push or pop, never across a wait.
    parked: Mutex<Vec<Parked>>,
}

impl On {
    fn next_id(&self) -> (String, u64) {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        (format!("{}-{n}", std::process::id()), n)
    }

    fn lot(&self) -> std::sync::MutexGuard<'_, Vec<Parked>> {
        // Nothing panics while holding the lock; a poisoned one still holds valid inits.
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Parks inits until there are enough. Runs on a blocking thread.
    fn refill(&self) {
        while self.lot().len() < PARKED {
            let (id, _) = self.next_id();
            let parked = self
                .cgroups
                .create_empty(&id)
                .map_err(SpawnError::Cgroup)
                .and_then(|cg| Parked::start(&self.spawner, &self.exe, cg));
            match parked {
                Ok(p) => self.lot().push(p),
                Err(e) => {
                    // Starts then take the direct path, which pays the cgroup join itself.
                    tracing::warn!("could not park a sandbox init: {e}");
                    return;
                }
            }
        }
    }

    fn take(&self) -> Option<Parked> {
        let mut lot = self.lot();
        while let Some(mut p) = lot.pop() {
            if p.alive() {
                return Some(p);
            }
        }
        None
    }
}

/// How long slirp4netns may take to configure an instance's network.
const NETWORK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The host directories holding shared libraries, made visible to every instance.
pub fn library_dirs() -> Vec<PathBuf> {
    ["/lib", "/lib64", "/usr/lib", "/usr/lib64"]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

impl Sandbox {
    /// Sets up the sandbox and checks, by starting one sandboxed process, that this host
    /// can run it. The error says why not.
    pub async fn detect(data_dir: &Path) -> Result<Sandbox, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find the ignis binary: {e}"))?;
        let root = data_dir.join("sandbox-root");
        std::fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        // The empty layer under every package's overlay.
        let empty = data_dir.join("sandbox-empty");
        std::fs::create_dir_all(&empty).map_err(|e| format!("cannot create {}: {e}", empty.display()))?;
        let slot = slot::claim(&slot::lock_dir())?;
        // Also kills what instances of a previous run of this server left behind, waiting
        // for them to exit: off the async threads.
        let (slot, cgroups) = tokio::task::spawn_blocking(move || {
            let cgroups = Cgroups::detect(&slot);
            (slot, cgroups)
        })
        .await
        .map_err(|e| format!("setting up cgroups: {e}"))?;
        let cgroups = cgroups?;
        let on = Arc::new(On {
            exe: exe.clone(),
            root,
            empty,
            cgroups,
            slot,
            spawner: Spawner::start()?,
            next_id: AtomicU64::new(0),
            slirp: find_on_path("slirp4netns"),
            tun_usable: nix::unistd::geteuid().is_root()
                || std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/net/tun")
                    .is_ok(),
            parked: Mutex::new(Vec::new()),
        });
        let sandbox = Sandbox {
            mode: Mode::On(on.clone()),
        };
        let mut binds: Vec<Bind> = library_dirs()
            .into_iter()
            .map(|d| Bind {
                source: d.clone(),
                target: d,
            })
            .collect();
        binds.push(Bind {
            source: exe.clone(),
            target: exe.clone(),
        });
        let probe = SpawnRequest {
            program: exe,
            args: vec![PROBE_ARG.to_owned()],
            env: BTreeMap::new(),
            cwd: PathBuf::from("/"),
            binds,
            limits: CgroupLimits {
                memory_mb: 64,
                vcpus: 1,
                pids: 16,
            },
            tmp_size_mb: 1,
            outbound: false,
            empty_dirs: Vec::new(),
            writable: None,
            wait_for_go: false,
            kvm: false,
        };
        let mut spawned = sandbox.spawn(&probe).map_err(|e| e.to_string())?;
        let status = spawned
            .process
            .child
            .wait()
            .await
            .map_err(|e| format!("sandbox probe: {e}"))?;
        if !status.success() {
            use tokio::io::AsyncReadExt;
            let mut err = String::new();
            let _ = spawned.stderr.read_to_string(&mut err).await;
            return Err(format!(
                "a sandboxed test process failed ({status}): {}",
                err.trim()
            ));
        }
        tokio::task::spawn_blocking(move || on.refill())
            .await
            .map_err(|e| format!("parking sandbox inits: {e}"))?;
        Ok(sandbox)
    }

    /// No sandbox: instances run as plain processes of the server's user.
    pub fn insecure() -> Sandbox {
        // Even unsandboxed instances die with the server.
        Sandbox {
            mode: Mode::Off(Spawner::start().ok()),
        }
    }

    /// At the server's stop: ends the parked inits and removes this server's cgroups with
    /// whatever is left in them, so that a stopped server leaves none behind.
    pub async fn shutdown(&self) {
        if let Mode::On(on) = &self.mode {
            let on = on.clone();
            let removed = tokio::task::spawn_blocking(move || {
                drop(std::mem::take(&mut *on.lot()));
                on.cgroups.remove_own();
            })
            .await;
            if let Err(e) = removed {
                tracing::warn!("removing the sandbox's cgroups: {e}");
            }
        }
    }

    pub fn enabled(&self) -> bool {
        matches!(self.mode, Mode::On { .. })
    }

    /// Why functions with outbound networking cannot run here, if they cannot.
    pub fn outbound_unavailable(&self) -> Option<String> {
        match &self.mode {
            Mode::On(on) if on.slirp.is_none() => Some(
                "this host cannot give functions outbound networking: slirp4netns is not installed \
                 (apt-get install slirp4netns, or run `make tools` as root)"
                    .to_owned(),
            ),
            Mode::On(on) if !on.tun_usable => Some(
                "this host cannot give functions outbound networking: this server's user cannot \
                 open /dev/net/tun (it is usually mode 0666; here it is not)"
                    .to_owned(),
            ),
            Mode::On(_) | Mode::Off(_) => None,
        }
    }

    /// Gives a started instance outbound networking: slirp4netns attaches a NAT to its
    /// network namespace, with no route to the host's loopback. Call it once the instance
    /// has said hello (its namespace exists) and before user code runs.
    pub async fn connect_outbound(&self, process: &mut Process) -> Result<(), SpawnError> {
        let Some(slirp) = (match &self.mode {
            Mode::On(on) => on.slirp.as_ref(),
            Mode::Off(_) => None,
        }) else {
            // Without the sandbox the instance already shares the host's network.
            return Ok(());
        };
        let pid = process
            .id()
            .ok_or_else(|| SpawnError::Network("the instance has already exited".to_owned()))?;
        let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| SpawnError::Network(format!("pipe: {e}")))?;
        let (exit_r, exit_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| SpawnError::Network(format!("pipe: {e}")))?;
        let mut cmd = Command::new(slirp);
        cmd.args([
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--enable-seccomp",
        ])
        .args(["--ready-fd=3", "--exit-fd=4"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        if nix::unistd::geteuid().is_root() {
            // Its own mount-namespace sandbox; it needs to be root inside the namespace it
            // joins, which a rootless instance's (one mapped id) cannot offer.
            cmd.arg("--enable-sandbox");
        } else {
            // Without root, only the instance's own user namespace gives the rights to
            // make its tap device.
            cmd.arg(format!("--userns-path=/proc/{pid}/ns/user"));
        }
        cmd.args([pid.to_string().as_str(), "tap0"]);
        sys::pass_fds(&mut cmd, vec![(ready_w.as_raw_fd(), 3), (exit_r.as_raw_fd(), 4)]);
        let mut child = cmd
            .spawn()
            .map_err(|e| SpawnError::Network(format!("cannot start slirp4netns: {e}")))?;
        // slirp4netns exits when the write end of its exit pipe closes: when the instance
        // is dropped, or when this server dies.
        drop((ready_w, exit_r));
        let mut ready = tokio::fs::File::from_std(std::fs::File::from(ready_r));
        let mut byte = [0u8; 1];
        use tokio::io::AsyncReadExt;
        match tokio::time::timeout(NETWORK_TIMEOUT, ready.read(&mut byte)).await {
            Ok(Ok(1)) => {
                process.network = Some((child, exit_w));
                Ok(())
            }
            _ => {
                let _ = child.start_kill();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = tokio::time::timeout(NETWORK_TIMEOUT, e.read_to_string(&mut err)).await;
                }
                Err(SpawnError::Network(format!(
                    "slirp4netns did not configure the network: {}",
                    err.trim()
                )))
            }
        }
    }

    /// Shows the host folders `layers` merged, read-only, at the code root of a started
    /// instance (before its runtime imports anything from there), the first on top: the
    /// unpacked package, and later whatever must appear beside it (installed
    /// dependencies). Without the sandbox the instance reads the folder itself: nothing
    /// to do.
    pub async fn show_package(&self, process: &Process, layers: &[&Path]) -> Result<(), SpawnError> {
        self.show_at(process, mount::CODE_ROOT, layers).await
    }

    /// Shows a function's layers merged read-only at `/opt` (the first on top), as
    /// [`Sandbox::show_package`] shows its package.
    pub async fn show_layers(&self, process: &Process, layers: &[&Path]) -> Result<(), SpawnError> {
        self.show_at(process, mount::OPT_ROOT, layers).await
    }

    /// Shows the host folders `layers` merged read-only at `target` (one of
    /// [`mount::CODE_ROOT`], [`mount::OPT_ROOT`], [`mount::GUEST_SHARE_CODE`],
    /// [`mount::GUEST_SHARE_OPT`]; made empty at the spawn) inside a started process's
    /// sandbox, the first on top.
    pub async fn show_at(&self, process: &Process, target: &str, layers: &[&Path]) -> Result<(), SpawnError> {
        let on = match &self.mode {
            Mode::On(on) => on,
            Mode::Off(_) => return Ok(()),
        };
        let failed = |why: String| SpawnError::Package(why);
        let pid = process
            .id()
            .ok_or_else(|| failed("the instance has already exited".to_owned()))?;
        let mut cmd = Command::new(&on.exe);
        if layers.is_empty() {
            return Err(failed("no folder to show".to_owned()));
        }
        cmd.arg(MOUNT_ARG)
            .arg(pid.to_string())
            .arg(&on.empty)
            .arg(target)
            .args(layers)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(NETWORK_TIMEOUT, cmd.output())
            .await
            .map_err(|_| failed(format!("mounting the package took over {NETWORK_TIMEOUT:?}")))?
            .map_err(|e| failed(format!("cannot start the mount helper: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(failed(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
        }
    }

    /// Starts a process with a fresh control socket on fd 3 and pipes on stdout and
    /// stderr, inside the sandbox when it is on.
    pub fn spawn(&self, req: &SpawnRequest) -> Result<Spawned, SpawnError> {
        let on = match &self.mode {
            Mode::Off(Some(spawner)) => return spawner.spawn(req.clone(), None, Stdio::null()),
            Mode::Off(None) => return spawn_plain(req, None, Stdio::null(), None),
            Mode::On(on) => on,
        };
        let (id, n) = on.next_id();
        let uid = instance_uid(on.slot.index, n);
        let mut config = InitConfig {
            root: on.root.clone(),
            binds: req.binds.clone(),
            tmp_size_mb: req.tmp_size_mb,
            cgroup_procs: Vec::new(),
            uid,
            gid: uid,
            nofile: 1024,
            program: req.program.clone(),
            args: req.args.clone(),
            env: req.env.clone(),
            cwd: req.cwd.clone(),
            outbound: req.outbound,
            empty_dirs: req.empty_dirs.clone(),
            writable: req.writable.clone(),
            wait_for_go: req.wait_for_go,
            kvm: req.kvm,
        };
        if let Some(parked) = on.take() {
            // A parked init is already in its cgroup; a new one parks in the background.
            let refill = on.clone();
            tokio::task::spawn_blocking(move || refill.refill());
            return parked.release(&config, req.limits);
        }
        let cgroup = on.cgroups.create(&id, req.limits).map_err(SpawnError::Cgroup)?;
        config.cgroup_procs = cgroup.procs.clone();
        let json = serde_json::to_string(&config).map_err(|e| SpawnError::Cgroup(e.to_string()))?;
        let outer = SpawnRequest {
            program: on.exe.clone(),
            args: vec![INIT_ARG.to_owned(), json],
            env: BTreeMap::new(),
            cwd: PathBuf::from("/"),
            ..req.clone()
        };
        on.spawner.spawn(outer, Some(cgroup), Stdio::null())
    }
}

/// A started instance process and its channels.
pub struct Spawned {
    pub process: Process,
    pub control: UnixStream,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
}

/// An open file that tells an instance's peak memory use. Opened once per instance and
/// read from offset 0 each time (one `pread`, no path walk: it is read after every call).
#[derive(Debug)]
pub struct MemoryProbe {
    file: std::fs::File,
    kind: ProbeKind,
}

#[derive(Debug, Clone, Copy)]
enum ProbeKind {
    /// A cgroup file holding bytes.
    CgroupBytes,
    /// A `/proc/<pid>/status` file (its `VmHWM` line, in kB).
    StatusHwm,
}

impl MemoryProbe {
    fn open(path: &Path, kind: ProbeKind) -> Option<MemoryProbe> {
        match std::fs::File::open(path) {
            Ok(file) => Some(MemoryProbe { file, kind }),
            Err(e) => {
                tracing::debug!("no peak memory for this instance: {}: {e}", path.display());
                None
            }
        }
    }

    /// The peak in MiB (rounded up), or `None` once the instance is gone.
    pub fn read_mb(&self) -> Option<u32> {
        use std::os::unix::fs::FileExt;
        // A status file is about 1.5 KiB; a cgroup counter a few bytes.
        let mut buf = [0u8; 4096];
        let n = self.file.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        let bytes = match self.kind {
            ProbeKind::CgroupBytes => text.trim().parse::<u64>().ok()?,
            ProbeKind::StatusHwm => {
                let kb: u64 = text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()?;
                kb * 1024
            }
        };
        u32::try_from(bytes.div_ceil(1024 * 1024)).ok()
    }
}

/// A running instance process. Dropping it kills the process and its whole group.
pub struct Process {
    child: Child,
    pgid: Option<Pid>,
    /// The instance's slirp4netns and the pipe that keeps it alive, if it has a network.
    network: Option<(Child, OwnedFd)>,
    /// Dropped after the process (fields drop in order), when it can be removed.
    cgroup: Option<InstanceCgroup>,
}

impl Process {
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the kernel's OOM killer killed a process of this instance.
    pub fn oom_killed(&self) -> bool {
        self.cgroup.as_ref().is_some_and(InstanceCgroup::oom_killed)
    }

    /// Sets the instance's memory, CPU and process limits (a generic instance gets its
    /// function's limits when it is given the function). No-op without a sandbox.
    pub fn set_limits(&self, limits: CgroupLimits) -> Result<(), SpawnError> {
        match &self.cgroup {
            Some(cg) => cg.set_limits(limits).map_err(SpawnError::Cgroup),
            None => Ok(()),
        }
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Where the instance's peak memory use can be read later: its cgroup's high-water
    /// mark, or the process's own (VmHWM) without a sandbox.
    pub fn memory_probe(&self) -> Option<MemoryProbe> {
        match &self.cgroup {
            Some(cg) => MemoryProbe::open(&cg.peak_memory_file(), ProbeKind::CgroupBytes),
            None => MemoryProbe::open(
                Path::new(&format!("/proc/{}/status", self.child.id()?)),
                ProbeKind::StatusHwm,
            ),
        }
    }

    /// Kills the process group at once (SIGKILL): used for timeouts and stops.
    pub fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // The group may already be gone; that is the outcome we want anyway.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        let _ = self.child.start_kill();
    }

    /// Waits for the process to end: whether it exited with status 0, and how it ended.
    pub async fn wait_exit(&mut self) -> (bool, String) {
        match self.child.wait().await {
            Ok(status) => (status.success(), describe_exit(status)),
            Err(e) => (false, format!("could not wait for the instance: {e}")),
        }
    }

    /// Waits for the process to end and describes how it ended.
    pub async fn wait(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => describe_exit(status),
            Err(e) => format!("could not wait for the instance: {e}"),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("the instance exited with status {code}"),
        (None, Some(sig)) => {
            let name = Signal::try_from(sig)
                .map(|s| s.as_str())
                .unwrap_or("unknown signal");
            format!("the instance was killed by signal {sig} ({name})")
        }
        (None, None) => "the instance ended".to_owned(),
    }
}

fn spawn_plain(
    req: &SpawnRequest,
    cgroup: Option<InstanceCgroup>,
    stdin: Stdio,
    die_with: Option<u32>,
) -> Result<Spawned, SpawnError> {
    let (host_end, child_end) = std::os::unix::net::UnixStream::pair().map_err(SpawnError::Socket)?;
    host_end.set_nonblocking(true).map_err(SpawnError::Socket)?;
    let child_end: OwnedFd = child_end.into();

    let mut cmd = Command::new(&req.program);
    cmd.args(&req.args)
        .env_clear()
        .envs(&req.env)
        .current_dir(&req.cwd)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    sys::prepare_child(&mut cmd, child_end.as_raw_fd(), die_with);
    let mut child = cmd.spawn().map_err(|source| SpawnError::Spawn {
        program: req.program.display().to_string(),
        source,
    })?;
    // The child has its own copy now; the host must not keep the other end open, or it
    // would never see EOF when the instance dies.
    drop(child_end);

    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let stdout = child.stdout.take().expect("stdout was configured as piped");
    let stderr = child.stderr.take().expect("stderr was configured as piped");
    let control = UnixStream::from_std(host_end).map_err(SpawnError::Socket)?;
    Ok(Spawned {
        process: Process {
            child,
            pgid,
            network: None,
            cgroup,
        },
        control,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_in_different_slots_never_share_a_uid() {
        assert_eq!(instance_uid(0, 0), 200_000);
        assert_eq!(instance_uid(0, UID_RANGE - 1), 299_999);
        assert_eq!(
            instance_uid(0, UID_RANGE),
            200_000,
            "a server reuses its own range"
        );
        assert_eq!(instance_uid(1, 0), 300_000);
        assert_eq!(instance_uid(slot::SLOTS - 1, UID_RANGE - 1), 100_199_999);
    }

    #[test]
    fn a_memory_probe_rereads_its_open_file_each_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("memory.max_usage_in_bytes");
        std::fs::write(&path, "1048576\n").expect("write");
        let probe = MemoryProbe::open(&path, ProbeKind::CgroupBytes).expect("open");
        assert_eq!(probe.read_mb(), Some(1));
        // The kernel rewrites the value in place; the probe must see the new one.
        std::fs::write(&path, "3145729\n").expect("write");
        assert_eq!(probe.read_mb(), Some(4), "rounded up to the next MiB");
        std::fs::write(&path, "not a number\n").expect("write");
        assert_eq!(probe.read_mb(), None);
    }

    #[test]
    fn a_status_probe_reads_the_high_water_mark() {
        let probe = MemoryProbe::open(Path::new("/proc/self/status"), ProbeKind::StatusHwm).expect("open");
        let first = probe.read_mb().expect("VmHWM in /proc/self/status");
        assert!(first > 0);
        // Touch 64 MiB more than the peak so far: the same open file reports the new peak.
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        let second = probe.read_mb().expect("VmHWM again");
        assert!(second >= first + 60, "{first} MiB then {second} MiB");
    }

    #[test]
    fn no_probe_for_a_missing_file() {
        assert!(MemoryProbe::open(Path::new("/nonexistent/memory.peak"), ProbeKind::CgroupBytes).is_none());
    }
}
