//! One guest: its QEMU started inside the process sandbox (namespaces, seccomp, cgroup
//! limits, an unprivileged id — Firecracker's jailer plays this part for Firecracker), its
//! channels accepted on unix sockets the host listens on (QEMU connects to them as it
//! starts), and its agent.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ignis_sandbox::mount::{GUEST_SHARE_CODE, GUEST_SHARE_OPT};
use ignis_sandbox::{Bind, CgroupLimits, MemoryProbe, Process, Sandbox, SpawnRequest};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::agent::{Agent, AgentState};
use super::qemu::{self, VmConfig, PORTS, RUN_DIR};
use crate::host::ShowAt;
use crate::launcher::{sandbox_env, show_host_paths, PIDS_LIMIT};

/// How long QEMU may take to connect its channels.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of QEMU's own output (its errors, the guest's console) kept for error messages.
const CONSOLE_LINES: usize = 20;

/// What a guest is started with, besides its command line.
pub(crate) struct Launch<'a> {
    pub sandbox: &'a Sandbox,
    pub qemu: &'a Path,
    /// The guest's kernel and root filesystem on the host.
    pub guest_dir: &'a Path,
    /// A folder of its own on the host (its sockets; a snapshot's files), made here and
    /// removed with the guest unless `keep_dir`.
    pub run_dir: PathBuf,
    pub config: VmConfig,
    /// A snapshot's folder on the host, shown read-only to QEMU.
    pub snapshot: Option<&'a Path>,
    /// QEMU gets the host's `/dev/kvm` (KVM only).
    pub kvm: bool,
}

/// A running guest.
pub(crate) struct Vm {
    /// Dropped first: the guest dies before its folder goes.
    qemu: Process,
    pub(crate) agent: Agent,
    state: watch::Receiver<AgentState>,
    console: Console,
    run_dir: RunDir,
}

/// The channels of a guest just started, before they are handed out.
pub(crate) struct Connected {
    pub vm: Vm,
    pub control: UnixStream,
    pub stdout: UnixStream,
    pub stderr: UnixStream,
    pub qmp: Option<UnixStream>,
}

impl Vm {
    /// Starts QEMU in the sandbox and accepts its channels.
    pub(crate) async fn start(launch: Launch<'_>) -> Result<Connected, String> {
        let run_dir = RunDir::make(launch.run_dir.clone())?;
        let mut names: Vec<&str> = PORTS.to_vec();
        if launch.config.qmp {
            names.push("qmp");
        }
        let mut listeners = Vec::new();
        for name in &names {
            let path = run_dir.0.join(format!("{name}.sock"));
            let listener =
                UnixListener::bind(&path).map_err(|e| format!("listening on {}: {e}", path.display()))?;
            // QEMU runs as the sandbox's own id; the folder is inside the server's 0700 data
            // folder, so no other host user reaches the socket.
            set_mode(&path, 0o777)?;
            listeners.push(listener);
        }
        let request = spawn_request(&launch, &run_dir.0)?;
        let spawned = launch
            .sandbox
            .spawn(&request)
            .map_err(|e| format!("starting QEMU: {e}"))?;
        let console = Console::default();
        console.pump(spawned.stdout);
        console.pump(spawned.stderr);
        let mut qemu_process = spawned.process;
        let accept = async {
            let mut streams = Vec::new();
            for l in &listeners {
                let (s, _) = l
                    .accept()
                    .await
                    .map_err(|e| format!("accepting QEMU's channel: {e}"))?;
                streams.push(s);
            }
            Ok::<_, String>(streams)
        };
        let streams = tokio::select! {
            s = tokio::time::timeout(CONNECT_TIMEOUT, accept) => match s {
                Ok(s) => s?,
                Err(_) => return Err(format!("QEMU did not connect its channels within {CONNECT_TIMEOUT:?}{}", console.tail())),
            },
            status = qemu_process.wait() => {
                // Its last words may still be in the pipe.
                console.settle().await;
                return Err(format!("QEMU ended as it started ({status}){}", console.tail()));
            }
        };
        drop(listeners);
        if launch.config.network {
            // QEMU's user-mode network reaches out through the sandbox's network namespace,
            // which gets its outbound NAT now that QEMU runs inside it.
            launch
                .sandbox
                .connect_outbound(&mut qemu_process)
                .await
                .map_err(|e| format!("outbound networking for the guest: {e}"))?;
        }
        for name in &names {
            let _ = std::fs::remove_file(run_dir.0.join(format!("{name}.sock")));
        }
        let mut streams = streams.into_iter();
        let mut next = || streams.next().expect("one stream per listener");
        let (agent, state) = Agent::new(next());
        let control = next();
        let stdout = next();
        let stderr = next();
        let qmp = launch.config.qmp.then(&mut next);
        Ok(Connected {
            vm: Vm {
                qemu: qemu_process,
                agent,
                state,
                console,
                run_dir,
            },
            control,
            stdout,
            stderr,
            qmp,
        })
    }

    pub(crate) fn kill(&mut self) {
        self.qemu.kill();
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.qemu.is_running()
    }

    /// Waits for QEMU to end, and for the agent's channel to close (after its last word,
    /// the runtime's exit), and says how the guest ended.
    pub(crate) async fn wait(&mut self) -> String {
        let status = self.qemu.wait().await;
        let _ = self.state.wait_for(|s| s.closed).await;
        let exit = self.state.borrow().exit;
        match exit {
            Some(e) if e.oom => "the guest kernel's OOM killer killed the runtime".to_owned(),
            Some(e) => match (e.code, e.signal) {
                (Some(code), _) => {
                    format!("the runtime exited with status {code} (its virtual machine then stopped)")
                }
                (None, Some(sig)) => {
                    format!("the runtime was killed by signal {sig} (its virtual machine then stopped)")
                }
                (None, None) => "the runtime ended (its virtual machine then stopped)".to_owned(),
            },
            None => format!(
                "its virtual machine stopped: QEMU {}",
                status.trim_start_matches("the instance ")
            ),
        }
    }

    /// The guest kernel's OOM killer struck, or QEMU's own cgroup ran out of memory.
    pub(crate) fn oom_killed(&self) -> bool {
        self.state.borrow().exit.is_some_and(|e| e.oom) || self.qemu.oom_killed()
    }

    pub(crate) fn memory_probe(&self) -> Option<MemoryProbe> {
        self.qemu.memory_probe()
    }

    /// Shows host folders merged read-only (the first on top) at `/code` or `/opt` in the
    /// guest: the sandbox shows them to QEMU in a folder of its 9p share (made empty at the
    /// start, so that a guest may start before its function is known), then the agent
    /// mounts that folder.
    pub(crate) async fn show(&mut self, sandbox: &Sandbox, at: ShowAt, dirs: &[&Path]) -> Result<(), String> {
        let (share, name, at) = match at {
            ShowAt::Code => (GUEST_SHARE_CODE, "code", "/code"),
            ShowAt::Opt => (GUEST_SHARE_OPT, "opt", "/opt"),
        };
        sandbox
            .show_at(&self.qemu, share, dirs)
            .await
            .map_err(|e| e.to_string())?;
        self.agent
            .request(json!({"op": "mount", "at": at, "dirs": [name]}))
            .await
            .map(drop)
    }

    /// The last lines QEMU and the guest's console wrote, for an error message.
    pub(crate) fn console_tail(&self) -> String {
        self.console.tail()
    }

    /// Keeps the folder when the guest goes (a snapshot's files were written there).
    pub(crate) fn keep_run_dir(&mut self) {
        self.run_dir.1 = false;
    }
}

fn spawn_request(launch: &Launch<'_>, run_dir: &Path) -> Result<SpawnRequest, String> {
    let mut binds = vec![
        Bind {
            source: launch.qemu.to_path_buf(),
            target: launch.qemu.to_path_buf(),
        },
        Bind {
            source: launch.guest_dir.to_path_buf(),
            target: PathBuf::from(qemu::GUEST_DIR),
        },
    ];
    if let Some(dir) = launch.snapshot {
        binds.push(Bind {
            source: dir.to_path_buf(),
            target: PathBuf::from(qemu::SNAPSHOT_DIR),
        });
    }
    // QEMU's firmware (the microvm machine's BIOS) and its libraries.
    let mut shown = ignis_sandbox::library_dirs();
    shown.extend(
        ["/usr/share/qemu", "/usr/share/seabios"]
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists()),
    );
    show_host_paths(&mut binds, shown, false);
    let c = &launch.config;
    Ok(SpawnRequest {
        program: launch.qemu.to_path_buf(),
        args: qemu::args(c),
        env: sandbox_env(),
        cwd: PathBuf::from("/"),
        binds,
        limits: CgroupLimits {
            memory_mb: c.memory_mb + qemu_overhead_mb(c.accel),
            vcpus: c.vcpus.max(1),
            pids: PIDS_LIMIT,
        },
        tmp_size_mb: 16,
        outbound: c.network,
        // The 9p share's folders: a function's package and layers are shown there later.
        empty_dirs: vec![PathBuf::from(GUEST_SHARE_CODE), PathBuf::from(GUEST_SHARE_OPT)],
        writable: Some(Bind {
            source: run_dir.to_path_buf(),
            target: PathBuf::from(RUN_DIR),
        }),
        wait_for_go: false,
        kvm: launch.kvm,
    })
}

/// QEMU's own memory on top of the guest's RAM: its code, its devices' buffers, and under
/// software emulation its translation cache (`tb-size`).
pub(crate) fn qemu_overhead_mb(accel: qemu::Accel) -> u32 {
    match accel {
        qemu::Accel::Kvm => 64,
        qemu::Accel::Tcg => 160,
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// A guest's folder on the host; removed when dropped unless kept.
struct RunDir(PathBuf, bool);

impl RunDir {
    fn make(path: PathBuf) -> Result<RunDir, String> {
        std::fs::create_dir_all(&path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
        // Writable by QEMU's unprivileged id; inside the server's 0700 data folder.
        set_mode(&path, 0o777)?;
        Ok(RunDir(path, true))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The last lines of QEMU's stdout (the guest's serial console) and stderr.
#[derive(Clone, Default)]
struct Console {
    lines: Arc<Mutex<VecDeque<String>>>,
    ended: Arc<tokio::sync::Notify>,
}

impl Console {
    fn pump(&self, pipe: impl AsyncRead + Unpin + Send + 'static) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(target: "ignis::microvm", "{line}");
                let mut kept = this.lines.lock().expect("console lock");
                if kept.len() == CONSOLE_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
            this.ended.notify_waiters();
        });
    }

    /// Waits briefly for the pipes' last lines after QEMU ended.
    async fn settle(&self) {
        let _ = tokio::time::timeout(Duration::from_millis(200), self.ended.notified()).await;
    }

    fn tail(&self) -> String {
        let kept = self.lines.lock().expect("console lock");
        if kept.is_empty() {
            String::new()
        } else {
            format!(": {}", kept.iter().cloned().collect::<Vec<_>>().join(" | "))
        }
    }
}
