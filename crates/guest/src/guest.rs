//! What the agent does to the guest: its mounts at boot, the one program (its files, its
//! start, its exit), the 9p mounts, the clock and entropy after a restore, the power-off.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::{mount, MsFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serde_json::json;

use crate::request::{self, Exec, Mount, Resume};
use crate::{boot, sys, Channel};

/// Where the 9p share is mounted before its folders are shown at `/code` or `/opt`.
const SHARE_ROOT: &str = "/run/ignis/share";

/// The program's output ports, opened at boot.
pub struct Streams {
    pub control: File,
    pub stdout: File,
    pub stderr: File,
}

/// What the guest has done so far: its program (one at most) and its mounts.
pub struct State {
    streams: Streams,
    channel: Channel,
    program: Option<u32>,
    mounted_at: BTreeSet<PathBuf>,
    share_mounted: bool,
}

fn mount_fs(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    mount(Some(source), target, Some(fstype), flags, data)
        .map_err(|e| format!("mount {fstype} at {target}: {e}"))
}

fn mkdir(path: &Path, mode: u32) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| format!("create {}: {e}", path.display()))
}

/// `/proc`, `/sys` and `/dev` (the kernel may already have mounted devtmpfs there).
pub fn mount_basics() -> Result<(), String> {
    let hidden = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fs("proc", "/proc", "proc", hidden, None)?;
    mount_fs("sysfs", "/sys", "sysfs", hidden, None)?;
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").map_err(|e| format!("read /proc/self/mounts: {e}"))?;
    if !mounts
        .lines()
        .any(|l| l.split_ascii_whitespace().nth(1) == Some("/dev"))
    {
        mount_fs(
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        )?;
    }
    Ok(())
}

/// Sets a kernel setting by its `sysctl` name (`vm.overcommit_memory`).
pub fn sysctl(name: &str, value: &str) -> Result<(), String> {
    let path = Path::new("/proc/sys").join(name.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| format!("{name}={value}: {e}"))
}

/// The tmpfs mounts: `/tmp` (`tmp_mb` MiB, mode 1777), `/dev/shm`, `/run`, `/ignis`.
pub fn mount_scratch(tmp_mb: u64) -> Result<(), String> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount_fs(
        "tmpfs",
        "/tmp",
        "tmpfs",
        flags,
        Some(&format!("size={tmp_mb}m,mode=1777")),
    )?;
    mkdir(Path::new("/dev/shm"), 0o1777)?;
    mount_fs("tmpfs", "/dev/shm", "tmpfs", flags, Some("size=16m,mode=1777"))?;
    mount_fs("tmpfs", "/run", "tmpfs", flags, Some("size=1m,mode=0755"))?;
    mount_fs(
        "tmpfs",
        request::FILES_ROOT,
        "tmpfs",
        flags,
        Some("size=16m,mode=0755"),
    )?;
    Ok(())
}

/// Syncs and stops the guest: a restart, which QEMU started with `-no-reboot` turns into its
/// own exit (without ACPI, the kernel cannot power the machine off; it would only halt).
pub fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    // Only reached if the kernel refused: nothing is left to do but wait.
    loop {
        std::thread::park();
    }
}

/// `resume`: the host's clock, fresh entropy credited and a reseed of the generator.
pub fn resume(resume: &Resume) -> Result<(), String> {
    let secs = resume.time_ns.div_euclid(1_000_000_000);
    let nanos = resume.time_ns.rem_euclid(1_000_000_000);
    let time = nix::sys::time::TimeSpec::new(secs, nanos);
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, time)
        .map_err(|e| format!("set the clock: {e}"))?;
    let random = OpenOptions::new()
        .write(true)
        .open("/dev/random")
        .map_err(|e| format!("open /dev/random: {e}"))?;
    sys::add_entropy(&random, &resume.entropy).map_err(|e| format!("add entropy (RNDADDENTROPY): {e}"))?;
    sys::reseed_crng(&random).map_err(|e| format!("reseed (RNDRESEEDCRNG): {e}"))?;
    Ok(())
}

fn oom_kills() -> u64 {
    match std::fs::read_to_string("/proc/vmstat").map(|t| boot::parse_oom_kills(&t)) {
        Ok(Some(n)) => n,
        Ok(None) => {
            eprintln!("ignis-agent: /proc/vmstat has no oom_kill counter");
            0
        }
        Err(e) => {
            eprintln!("ignis-agent: read /proc/vmstat: {e}");
            0
        }
    }
}

impl State {
    pub fn new(streams: Streams, channel: Channel) -> Self {
        Self {
            streams,
            channel,
            program: None,
            mounted_at: BTreeSet::new(),
            share_mounted: false,
        }
    }

    /// `exec`: writes the files, starts the program, and starts the thread that reports its
    /// exit. Returns its pid.
    pub fn exec(&mut self, exec: Exec) -> Result<u32, String> {
        if let Some(pid) = self.program {
            return Err(format!(
                "a program is already running (pid {pid}): a guest runs one program"
            ));
        }
        if !exec.cwd.is_dir() {
            return Err(format!(
                "cwd {} is not a directory in the guest",
                exec.cwd.display()
            ));
        }
        // Files first: the program may be one of them.
        for (path, text) in &exec.files {
            write_file(path, text)?;
        }
        if !exec.program.is_file() {
            return Err(format!(
                "program {} does not exist in the guest",
                exec.program.display()
            ));
        }
        let stream = |file: &File, name: &str| {
            file.try_clone()
                .map(Stdio::from)
                .map_err(|e| format!("dup {name}: {e}"))
        };
        let mut cmd = Command::new(&exec.program);
        cmd.args(&exec.args)
            .env_clear()
            .envs(&exec.env)
            .current_dir(&exec.cwd)
            .stdin(Stdio::null())
            .stdout(stream(&self.streams.stdout, "ignis.stdout")?)
            .stderr(stream(&self.streams.stderr, "ignis.stderr")?)
            // With a uid, std also drops every supplementary group (setgroups(0)) as root.
            .uid(exec.uid)
            .gid(exec.gid);
        // The filters are built here: the child only installs them (no allocation after fork).
        let filters = if exec.confine {
            ignis_seccomp::programs(exec.outbound)?
        } else {
            Vec::new()
        };
        sys::prepare_child(&mut cmd, self.streams.control.as_raw_fd(), filters);
        // no_new_privs is inherited: set on the agent (which execs nothing else), it holds
        // for the program and everything it starts.
        nix::sys::prctl::set_no_new_privs().map_err(|e| format!("set no_new_privs: {e}"))?;
        if exec.confine {
            // As the process tier's sandbox: no capability can ever be regained (the
            // bounding set only limits what an exec grants, so the agent keeps its own),
            // 1024 open files, no core dumps. Inherited by the program.
            sys::empty_bounding_set().map_err(|e| format!("empty the capability bounding set: {e}"))?;
            use nix::sys::resource::{setrlimit, Resource};
            setrlimit(Resource::RLIMIT_NOFILE, 1024, 1024).map_err(|e| format!("limit open files: {e}"))?;
            setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(|e| format!("forbid core dumps: {e}"))?;
        }
        let oom_before = oom_kills();
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exec.program.display()))?;
        let pid = child.id();
        // The reporter reaps with waitpid(-1), the child handle is not waited on.
        drop(child);
        self.program = Some(pid);
        let channel = self.channel.clone();
        std::thread::spawn(move || report_exit(pid, oom_before, &channel));
        Ok(pid)
    }

    /// `mount`: the 9p share read-only under /run/ignis/share (once), then the named
    /// folders of it shown at `at` read-only.
    pub fn mount(&mut self, req: &Mount) -> Result<(), String> {
        if self.mounted_at.contains(&req.at) {
            return Err(format!("{} is already mounted", req.at.display()));
        }
        if !self.share_mounted {
            mkdir(Path::new(SHARE_ROOT), 0o755)?;
            mount(
                Some(request::SHARE_TAG),
                SHARE_ROOT,
                Some("9p"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("trans=virtio,version=9p2000.L"),
            )
            .map_err(|e| {
                format!(
                    "mount the 9p share {} (does the VM have it?): {e}",
                    request::SHARE_TAG
                )
            })?;
            self.share_mounted = true;
        }
        let mut dirs = Vec::new();
        for name in &req.dirs {
            let dir = format!("{SHARE_ROOT}/{name}");
            if !Path::new(&dir).is_dir() {
                return Err(format!("the share has no folder {name:?}"));
            }
            dirs.push(dir);
        }
        let at = req.at.to_string_lossy();
        let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        if let [only] = dirs.as_slice() {
            mount(
                Some(only.as_str()),
                req.at.as_path(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| format!("bind {only} at {at}: {e}"))?;
            mount(
                None::<&str>,
                req.at.as_path(),
                None::<&str>,
                ro | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
                None::<&str>,
            )
            .map_err(|e| format!("make {at} read-only: {e}"))?;
        } else {
            let lower = format!("lowerdir={}", dirs.join(":"));
            mount_fs("overlay", &at, "overlay", ro, Some(&lower))?;
        }
        self.mounted_at.insert(req.at.clone());
        Ok(())
    }
}

/// Writes one file of an exec under /ignis, read-only for everyone.
fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if !request::file_under_root(path) {
        return Err(format!(
            "file {} is outside {}/",
            path.display(),
            request::FILES_ROOT
        ));
    }
    if let Some(parent) = path.parent() {
        mkdir(parent, 0o755)?;
    }
    // Replaced if an earlier exec that failed wrote it (root writes despite mode 0444).
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o444)
        .open(path)
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// Reaps every child (orphans are re-parented to PID 1) until the program exits, then says
/// how it exited and stops the guest.
fn report_exit(pid: u32, oom_before: u64, channel: &Channel) -> ! {
    let program = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    let (code, signal) = loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p == program => break (Some(code), None),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == program => break (None, Some(sig as i32)),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                eprintln!("ignis-agent: waitpid: {e}");
                break (None, None);
            }
        }
    };
    let oom = oom_kills() > oom_before;
    channel.send(&json!({"event": "exit", "code": code, "signal": signal, "oom": oom}));
    power_off()
}
