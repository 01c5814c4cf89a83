//! The microvm tier: each instance in its own virtual machine — QEMU's `microvm` machine,
//! a small guest kernel, a read-only root filesystem with CPython and Bun, and the guest
//! agent as its init (`crates/guest`) — with QEMU itself inside the process sandbox. The
//! runtime in the guest speaks the same protocol as a process instance, over virtio-serial
//! ports, so the instance task, limits, logs and timeouts are the process tier's.
//!
//! Cold starts restore a snapshot: per runtime, size and network, a generic guest is booted
//! once to its runtime's hello and saved with its RAM in a file; a restore maps that file
//! privately and gives the guest the host's clock and fresh entropy (see `docs/microvm.md`).
//! Guests of the kinds started lately are restored ahead of time and wait in a pool.

mod agent;
mod pool;
mod qemu;
mod qmp;
mod snapshot;
mod vm;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ignis_core::{Network, Runtime};
use ignis_sandbox::Sandbox;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

pub use qemu::Accel;
pub(crate) use vm::Vm;

use crate::host::Host;
use crate::instance::{Channels, Generic, StartError};
use crate::launcher::{runtime_env, LaunchSpec};
use crate::runtimes;
use pool::Pool;
pub(crate) use snapshot::SnapshotKey;
use snapshot::Snapshots;

/// How long a guest may take from QEMU's start to its agent's `ready`.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the KVM probe's guest may take to boot.
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The guest kernel's and agent's memory, given on top of the function's `memory_mb`.
const GUEST_KERNEL_MB: u32 = 32;
/// Size of the guest's `/tmp`.
const GUEST_TMP_MB: u32 = 64;
/// Where the agent writes the bootstrap in a guest.
const GUEST_BOOTSTRAP_DIR: &str = "/ignis";
/// The runtime's ids in the guest.
const GUEST_UID: u32 = 1000;

/// The guest as `make microvm` built it.
#[derive(Debug, Clone)]
pub struct Guest {
    /// `vmlinux`, `rootfs.ext4`, `guest.json` (canonical path).
    pub dir: PathBuf,
    /// The content hash of the guest (snapshots are kept per guest).
    pub hash: String,
    /// The guest kernel's release, as `make microvm` recorded it.
    pub kernel: String,
}

/// What this host's microvm tier is.
#[derive(Debug, Clone)]
pub struct MicrovmInfo {
    pub accel: Accel,
    /// The guest kernel's release, as the guest says it.
    pub guest_kernel: String,
    /// Whether cold starts restore snapshots.
    pub snapshots: bool,
    /// Guests kept restored ahead of cold starts per kind (0: none).
    pub pool: usize,
}

pub struct Microvm {
    qemu: PathBuf,
    guest: Guest,
    /// KVM (QEMU is then given the host's `/dev/kvm`) or TCG.
    accel: Accel,
    /// The guest kernel's release: as a KVM probe's guest said, else as `make microvm` wrote.
    guest_kernel: String,
    /// `<data>/microvm`: `run/` (one folder per live guest), `snapshots/`.
    dir: PathBuf,
    snapshots: Snapshots,
    use_snapshots: bool,
    /// Guests restored ahead of cold starts, per kind.
    pool: Pool<Generic>,
}

impl Microvm {
    /// Finds QEMU and the guest, and picks the accelerator: KVM where this (root) server can
    /// give it to QEMU and a guest boots with it within a deadline (probed once per host
    /// boot), else QEMU's software emulation, which needs no probe. The error says why the
    /// tier is unavailable.
    pub async fn detect(
        sandbox: &Sandbox,
        tools_dirs: &[PathBuf],
        data_dir: &Path,
        use_snapshots: bool,
        pool_size: usize,
    ) -> Result<Microvm, String> {
        if !sandbox.enabled() {
            return Err(
                "the microvm tier runs its virtual machines inside the sandbox, which is off".to_owned(),
            );
        }
        let qemu = find_qemu()?;
        let guest = find_guest(tools_dirs)?;
        let dir = data_dir.join("microvm");
        // Guests of a previous run are gone (they died with it); their folders go too.
        let _ = std::fs::remove_dir_all(dir.join("run"));
        std::fs::create_dir_all(dir.join("run")).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let snapshots = Snapshots::new(dir.join("snapshots"), &guest.hash)?;
        let mut m = Microvm {
            qemu,
            guest,
            accel: Accel::Tcg,
            guest_kernel: String::new(),
            dir,
            snapshots,
            use_snapshots,
            pool: Pool::new(if use_snapshots { pool_size } else { 0 }),
        };
        let kvm = match kvm_usable() {
            Ok(()) => m.probe_kvm_once(sandbox).await,
            Err(e) => Err(e),
        };
        match kvm {
            Ok(kernel) => m.guest_kernel = kernel,
            Err(why) => {
                // Software emulation runs any guest: no boot at start (it costs about a
                // second of CPU); the first cold start shows whether the guest boots.
                tracing::info!("the microvm tier uses software emulation (TCG): {why}");
                m.accel = Accel::Tcg;
                m.guest_kernel = m.guest.kernel.clone();
            }
        }
        Ok(m)
    }

    pub fn info(&self) -> MicrovmInfo {
        MicrovmInfo {
            accel: self.accel,
            guest_kernel: self.guest_kernel.clone(),
            snapshots: self.use_snapshots,
            pool: self.pool.size(),
        }
    }

    /// Whether this host's KVM boots the guest: probed once per boot of the host, guest and
    /// QEMU build (the answer is kept in `/run/ignis`, under a lock, so that servers started
    /// together probe once): a KVM that does not run the guest may take the whole deadline
    /// to say so.
    async fn probe_kvm_once(&mut self, sandbox: &Sandbox) -> Result<String, String> {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let mut h = Sha256::new();
        h.update(format!(
            "{}\n{}\n{}",
            self.guest.hash,
            self.fingerprint_of_qemu(),
            boot_id.trim()
        ));
        let path =
            PathBuf::from("/run/ignis").join(format!("microvm-kvm-{}", &hex::encode(h.finalize())[..16]));
        let lock = std::fs::create_dir_all("/run/ignis")
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(path.with_extension("lock"))
            })
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("locking {}: {e}", path.display()))?;
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                if v["kvm"] == true {
                    self.accel = Accel::Kvm;
                    return Ok(v["kernel"].as_str().unwrap_or("").to_owned());
                }
                return Err(format!(
                    "{} (probed earlier since this host booted)",
                    v["reason"].as_str().unwrap_or("KVM did not boot the guest")
                ));
            }
        }
        self.accel = Accel::Kvm;
        let result = match tokio::time::timeout(KVM_PROBE_TIMEOUT, self.probe(sandbox)).await {
            Ok(Ok(kernel)) => Ok(kernel),
            Ok(Err(e)) => Err(format!("a guest did not boot with KVM: {e}")),
            Err(_) => Err(format!(
                "a guest did not boot with KVM within {KVM_PROBE_TIMEOUT:?}"
            )),
        };
        let record = match &result {
            Ok(kernel) => json!({"kvm": true, "kernel": kernel}),
            Err(reason) => json!({"kvm": false, "reason": reason}),
        };
        if let Err(e) = std::fs::write(&path, record.to_string()) {
            tracing::warn!("could not keep the KVM probe's answer in {}: {e}", path.display());
        }
        drop(lock);
        result
    }

    /// Boots a guest with no runtime and pings its agent: its kernel's release.
    async fn probe(&self, sandbox: &Sandbox) -> Result<String, String> {
        let mut c = self
            .boot(sandbox, &self.run_dir(), self.config(128, 1, false))
            .await?;
        c.vm.agent.ping().await?;
        let kernel = c.kernel.clone();
        c.vm.kill();
        Ok(kernel)
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.join("run").join(hex::encode(rand::random::<[u8; 8]>()))
    }

    fn config(&self, memory_mb: u32, vcpus: u32, network: bool) -> qemu::VmConfig {
        qemu::VmConfig {
            accel: self.accel,
            memory_mb: memory_mb + GUEST_KERNEL_MB,
            vcpus,
            tmp_mb: GUEST_TMP_MB,
            memory: qemu::Memory::Anonymous,
            network,
            qmp: false,
            incoming: false,
        }
    }

    /// A snapshot template's: its RAM in a file shared with the host, a monitor to save it.
    fn template_config(&self, kind: SnapshotKey) -> qemu::VmConfig {
        qemu::VmConfig {
            memory: qemu::Memory::SharedFile(format!("{}/ram", qemu::RUN_DIR)),
            qmp: true,
            ..self.config(kind.memory_mb, kind.vcpus, kind.outbound)
        }
    }

    /// Starts a guest and waits for its agent's `ready`.
    async fn boot(
        &self,
        sandbox: &Sandbox,
        run_dir: &Path,
        config: qemu::VmConfig,
    ) -> Result<Booted, String> {
        let began = Instant::now();
        let mut c = vm::Vm::start(vm::Launch {
            sandbox,
            qemu: &self.qemu,
            guest_dir: &self.guest.dir,
            run_dir: run_dir.to_path_buf(),
            config,
            snapshot: None,
            kvm: self.accel == Accel::Kvm,
        })
        .await?;
        let kernel = match tokio::time::timeout(BOOT_TIMEOUT, c.vm.agent.ready()).await {
            Ok(Ok(k)) => k,
            Ok(Err(e)) => return Err(format!("{e}{}", c.vm.console_tail())),
            Err(_) => {
                return Err(format!(
                    "the guest did not boot within {BOOT_TIMEOUT:?}{}",
                    c.vm.console_tail()
                ))
            }
        };
        Ok(Booted {
            vm: c.vm,
            control: c.control,
            stdout: c.stdout,
            stderr: c.stderr,
            qmp: c.qmp,
            kernel,
            boot: began.elapsed(),
        })
    }

    /// The request that starts `runtime`'s bootstrap in a guest.
    fn exec_request(&self, runtime: Runtime, marker: &str, snapshot: bool, outbound: bool) -> Value {
        let (name, text) = runtimes::bootstrap(runtime);
        let program = match guest_runtime(runtime) {
            Runtime::Python => "/usr/bin/python3",
            Runtime::Javascript | Runtime::Typescript => "/usr/local/bin/bun",
        };
        let mut args = runtimes::bootstrap_args(runtime, Path::new(GUEST_BOOTSTRAP_DIR), marker, &[]);
        if snapshot {
            args.push("--snapshot".to_owned());
        }
        json!({
            "op": "exec",
            "program": program,
            "args": args,
            "env": runtime_env(runtime, true),
            "cwd": "/code",
            "uid": GUEST_UID,
            "gid": GUEST_UID,
            "files": { format!("{GUEST_BOOTSTRAP_DIR}/{name}"): text },
            "outbound": outbound,
        })
    }

    /// The kind of guest `spec`'s instances restore from a snapshot, when they do (they
    /// boot with `--no-microvm-snapshots`).
    pub(crate) fn kind_of(&self, spec: &LaunchSpec) -> Option<SnapshotKey> {
        self.use_snapshots.then(|| SnapshotKey {
            runtime: guest_runtime(spec.runtime),
            memory_mb: spec.memory_mb,
            vcpus: spec.vcpus,
            outbound: spec.network == Network::Outbound,
        })
    }

    /// A guest of `kind` restored ahead of time and waiting for code, if one is. The kind
    /// becomes the pool's most recently used (see [`pool`]).
    pub(crate) fn take_restored(&self, kind: SnapshotKey) -> Option<Generic> {
        let mut g = self.pool.take(kind, Generic::is_alive)?;
        g.taken();
        Some(g)
    }

    /// Marks a restore ahead of time for `kind` as begun, when its pool wants one.
    pub(crate) fn begin_pre_restore(&self, kind: SnapshotKey) -> bool {
        self.pool.begin_fill(kind)
    }

    /// Restores a guest of `kind` and warms it up: it waits in the pool for a cold start.
    /// Follows [`Microvm::begin_pre_restore`]; it or its failure is given to the pool.
    pub(crate) async fn pre_restore(&self, sandbox: &Sandbox, kind: SnapshotKey) -> Result<(), String> {
        let restored = async {
            let snap = self.snapshot(sandbox, kind).await?.0;
            self.restore(sandbox, &snap, kind.runtime, Duration::ZERO, None, true)
                .await
        }
        .await;
        match restored {
            Ok(g) => {
                self.pool.filled(kind, Some(g));
                Ok(())
            }
            Err(e) => {
                self.pool.filled(kind, None);
                Err(e)
            }
        }
    }

    /// Guests of `runtime` restored ahead of time and waiting.
    pub fn pre_restored(&self, runtime: Runtime) -> usize {
        self.pool.ready(guest_runtime(runtime))
    }

    /// The snapshot of `kind`, made first if there is none, and how long making it took
    /// when this call made it.
    async fn snapshot(
        &self,
        sandbox: &Sandbox,
        kind: SnapshotKey,
    ) -> Result<(std::sync::Arc<snapshot::Snapshot>, Option<Duration>), String> {
        self.snapshots
            .get(kind, &self.fingerprint(kind), || {
                self.make_snapshot(sandbox, kind)
            })
            .await
    }

    /// A generic instance of `spec`'s runtime in a guest of `spec`'s size: restored from a
    /// snapshot when it can be, booted otherwise.
    pub(crate) async fn start(&self, sandbox: &Sandbox, spec: &LaunchSpec) -> Result<Generic, StartError> {
        let began = Instant::now();
        if let Some(kind) = self.kind_of(spec) {
            let (snap, made) = self.snapshot(sandbox, kind).await.map_err(StartError::Spawn)?;
            // Waiting for a snapshot another start is making is part of this one's runtime.
            let waited = began.elapsed();
            return self
                .restore(sandbox, &snap, spec.runtime, waited, made, false)
                .await
                .map_err(StartError::Spawn);
        }
        let marker = hex::encode(rand::random::<[u8; 12]>());
        let mut b = self
            .boot(
                sandbox,
                &self.run_dir(),
                self.config(spec.memory_mb, spec.vcpus, spec.network == Network::Outbound),
            )
            .await
            .map_err(StartError::Spawn)?;
        let boot = b.boot;
        b.vm.agent
            .request(self.exec_request(spec.runtime, &marker, false, spec.network == Network::Outbound))
            .await
            .map_err(StartError::Spawn)?;
        let channels = Channels {
            control: b.control,
            stdout: Box::new(b.stdout),
            stderr: Box::new(b.stderr),
        };
        let generic = Generic::greeted(
            Host::Vm(Box::new(b.vm)),
            channels,
            marker,
            "/code".to_owned(),
            spec.runtime,
            spec.network,
            Duration::ZERO,
        )
        .await?;
        Ok(generic.with_boot(boot))
    }
}

impl Microvm {
    /// What a snapshot of `kind` holds besides the guest: its bootstrap, QEMU's build (its
    /// device state format), and the template's command line (the accelerator, the
    /// kernel's arguments, the devices).
    fn fingerprint(&self, kind: SnapshotKey) -> String {
        format!(
            "{}\n{}\n{}",
            runtimes::bootstrap(kind.runtime).1,
            self.fingerprint_of_qemu(),
            qemu::args(&self.template_config(kind)).join(" ")
        )
    }

    /// QEMU's path and build (its size and time).
    fn fingerprint_of_qemu(&self) -> String {
        let build = std::fs::metadata(&self.qemu)
            .map(|m| format!("{}-{:?}", m.len(), m.modified().ok()))
            .unwrap_or_default();
        format!("{} {build}", self.qemu.display())
    }

    /// Boots a generic guest of `key`, starts its runtime, waits for its hello, and saves
    /// it: device state to `state`, RAM left in the file `ram` (`x-ignore-shared`).
    async fn make_snapshot(&self, sandbox: &Sandbox, key: SnapshotKey) -> Result<snapshot::Snapshot, String> {
        let dir = self.snapshots.tmp_dir();
        let began = Instant::now();
        let mut b = self.boot(sandbox, &dir, self.template_config(key)).await?;
        b.vm.keep_run_dir();
        let made = async {
            let marker = hex::encode(rand::random::<[u8; 12]>());
            b.vm.agent
                .request(self.exec_request(key.runtime, &marker, true, key.outbound))
                .await?;
            let hello = tokio::time::timeout(BOOT_TIMEOUT, ignis_protocol::read_message(&mut b.control))
                .await
                .map_err(|_| format!("the runtime did not start within {BOOT_TIMEOUT:?}"))?;
            match hello {
                Ok(ignis_protocol::InstanceMessage::Hello { .. }) => {}
                Ok(other) => return Err(format!("the runtime said {other:?} first")),
                Err(e) => return Err(format!("the runtime did not start: {e}{}", b.vm.console_tail())),
            }
            let monitor = b.qmp.take().ok_or("no monitor socket")?;
            qmp::save(monitor, &format!("{}/state", qemu::RUN_DIR)).await?;
            Ok(marker)
        }
        .await;
        b.vm.kill();
        let _ = b.vm.wait().await;
        drop(b);
        let marker = match made {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("making the {} snapshot: {e}", key.runtime.as_str()));
            }
        };
        tracing::info!(runtime = key.runtime.as_str(), memory_mb = key.memory_mb, took = ?began.elapsed(), "made a guest snapshot");
        Ok(snapshot::Snapshot { dir, marker, key })
    }

    /// Restores `snap`, then gives the guest the host's clock and fresh entropy: the guest's
    /// runtime waits for its code. `waited` is how long this start waited for the snapshot,
    /// `made` how long making it took when this start made it. With `warm`, the runtime
    /// then runs its load and call paths once on a throwaway module: a guest restored
    /// ahead of a cold start, whose emulator (TCG) translates them now rather than during
    /// the load (translations are not part of a snapshot).
    async fn restore(
        &self,
        sandbox: &Sandbox,
        snap: &snapshot::Snapshot,
        runtime: Runtime,
        waited: Duration,
        made: Option<Duration>,
        warm: bool,
    ) -> Result<Generic, String> {
        let began = Instant::now();
        let mut config = self.config(snap.key.memory_mb, snap.key.vcpus, snap.key.outbound);
        config.memory = qemu::Memory::PrivateFile(format!("{}/ram", qemu::SNAPSHOT_DIR));
        config.qmp = true;
        config.incoming = true;
        let mut c = vm::Vm::start(vm::Launch {
            sandbox,
            qemu: &self.qemu,
            guest_dir: &self.guest.dir,
            run_dir: self.run_dir(),
            config,
            snapshot: Some(&snap.dir),
            kvm: self.accel == Accel::Kvm,
        })
        .await?;
        let monitor = c.qmp.take().ok_or("no monitor socket")?;
        qmp::restore(monitor, &format!("{}/state", qemu::SNAPSHOT_DIR))
            .await
            .map_err(|e| format!("restoring the snapshot: {e}{}", c.vm.console_tail()))?;
        let entropy: [u8; 32] = rand::random();
        c.vm.agent
            .request(agent::resume_request(std::time::SystemTime::now(), &entropy))
            .await?;
        let restore = began.elapsed();
        if warm {
            warm_up(&mut c.control)
                .await
                .map_err(|e| format!("warming up a restored guest: {e}{}", c.vm.console_tail()))?;
        }
        let channels = Channels {
            control: c.control,
            stdout: Box::new(c.stdout),
            stderr: Box::new(c.stderr),
        };
        Ok(Generic::restored(
            Host::Vm(Box::new(c.vm)),
            channels,
            snap.marker.clone(),
            "/code".to_owned(),
            runtime,
            if snap.key.outbound {
                Network::Outbound
            } else {
                Network::None
            },
            crate::instance::RestoreTimes {
                waited,
                made,
                restore,
            },
        ))
    }
}

/// Whether the sandbox can give QEMU the host's KVM: `/dev/kvm` is a device this (root)
/// server opens; the sandbox shows it and keeps its group for QEMU's id.
fn kvm_usable() -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata("/dev/kvm").map_err(|e| format!("/dev/kvm: {e}"))?;
    if !meta.file_type().is_char_device() {
        return Err("/dev/kvm is not a device".to_owned());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("a server that is not root cannot give its sandboxed QEMU /dev/kvm".to_owned());
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| format!("/dev/kvm: {e}"))
}

/// A guest booted to its agent's `ready`.
pub(crate) struct Booted {
    pub vm: Vm,
    pub control: tokio::net::UnixStream,
    pub stdout: tokio::net::UnixStream,
    pub stderr: tokio::net::UnixStream,
    pub qmp: Option<tokio::net::UnixStream>,
    pub kernel: String,
    pub boot: Duration,
}

/// The interpreter a runtime runs on (TypeScript functions run on Bun, as JavaScript ones).
fn guest_runtime(runtime: Runtime) -> Runtime {
    match runtime {
        Runtime::Python => Runtime::Python,
        Runtime::Javascript | Runtime::Typescript => Runtime::Javascript,
    }
}

/// Asks a restored guest's runtime to run its load and call paths on a throwaway module,
/// and waits for it to say it did.
async fn warm_up(control: &mut tokio::net::UnixStream) -> Result<(), String> {
    ignis_protocol::write_message(control, &ignis_protocol::HostMessage::Warm)
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(BOOT_TIMEOUT, ignis_protocol::read_message(control)).await {
        Ok(Ok(ignis_protocol::InstanceMessage::Warmed)) => Ok(()),
        Ok(Ok(other)) => Err(format!("the runtime answered {other:?}")),
        Ok(Err(e)) => Err(format!("the runtime did not answer: {e}")),
        Err(_) => Err(format!("the runtime did not answer within {BOOT_TIMEOUT:?}")),
    }
}

/// QEMU: `IGNIS_QEMU`, else `qemu-system-x86_64` on the PATH.
fn find_qemu() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("IGNIS_QEMU") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| p.is_file())
        .ok_or_else(|| "qemu-system-x86_64 is not installed (`make microvm` installs it)".to_owned())
        .and_then(|p| p.canonicalize().map_err(|e| format!("{}: {e}", p.display())))
}

/// The guest `make microvm` built: `<tools>/microvm/current`, or `IGNIS_GUEST`.
fn find_guest(tools_dirs: &[PathBuf]) -> Result<Guest, String> {
    let candidates: Vec<PathBuf> = match std::env::var_os("IGNIS_GUEST") {
        Some(p) => vec![PathBuf::from(p)],
        None => tools_dirs
            .iter()
            .map(|t| t.join("microvm").join("current"))
            .collect(),
    };
    let dir = candidates
        .iter()
        .find(|d| d.join("guest.json").is_file())
        .ok_or_else(|| {
            format!(
                "no guest image (looked for guest.json in {}): run `make microvm`",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?
        .canonicalize()
        .map_err(|e| format!("the guest folder: {e}"))?;
    for file in ["vmlinux", "rootfs.ext4"] {
        if !dir.join(file).is_file() {
            return Err(format!(
                "the guest in {} has no {file}: run `make microvm`",
                dir.display()
            ));
        }
    }
    let meta: Value = serde_json::from_slice(
        &std::fs::read(dir.join("guest.json")).map_err(|e| format!("{}/guest.json: {e}", dir.display()))?,
    )
    .map_err(|e| format!("{}/guest.json: {e}", dir.display()))?;
    let hash = meta["hash"]
        .as_str()
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric()))
        .ok_or_else(|| format!("{}/guest.json has no hash", dir.display()))?
        .to_owned();
    let kernel = meta["kernel"]
        .as_str()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| format!("{}/guest.json names no kernel: run `make microvm`", dir.display()))?
        .to_owned();
    Ok(Guest { dir, hash, kernel })
}
