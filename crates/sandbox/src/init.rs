//! The sandbox init: `ignis __sandbox-init <config>` runs as root, joins the instance's
//! cgroups, enters new namespaces, builds a minimal read-only root, drops every privilege
//! and execs the runtime. It is single-threaded, which is what makes `fork` here sound.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, pivot_root, setgid, setgroups, sethostname, setuid, ForkResult, Gid, Uid};
use serde::{Deserialize, Serialize};

use crate::sys;

/// The argument that makes the `ignis` binary run as the sandbox init.
pub const INIT_ARG: &str = "__sandbox-init";

/// A host path made visible, read-only, at a path inside the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
}

/// Everything the init needs, passed as JSON in its argument list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitConfig {
    /// An empty host directory: the mount point of the new root (in the private mount
    /// namespace only, so every instance can use the same one).
    pub root: PathBuf,
    pub binds: Vec<Bind>,
    pub tmp_size_mb: u32,
    pub cgroup_procs: Vec<PathBuf>,
    pub uid: u32,
    pub gid: u32,
    pub nofile: u64,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Working directory inside the sandbox.
    pub cwd: PathBuf,
    /// Whether the host will give the instance outbound networking (so it needs a
    /// resolver configuration).
    #[serde(default)]
    pub outbound: bool,
    /// Empty directories made at these paths inside the sandbox, read-only like the rest
    /// of the root: where a package or layers are shown after the start (a generic
    /// instance may start before its function exists, so nothing can be bound there), such
    /// as a generic instance's working directory, whose code arrives in memory.
    #[serde(default)]
    pub empty_dirs: Vec<PathBuf>,
    /// A host folder shown read-write (nosuid, nodev) at a path inside: a build's work
    /// folder, the one place it may write besides `/tmp`.
    #[serde(default)]
    pub writable: Option<Bind>,
    /// Before the program is executed, the namespace says ready (one byte on the control
    /// channel) and waits for one byte back: the host attaches what it needs in between (a
    /// build's network, which needs the namespace to exist), so nothing runs without it.
    #[serde(default)]
    pub wait_for_go: bool,
    /// The host's `/dev/kvm` shown at `/dev/kvm`, usable through the device's group (kept
    /// as the one supplementary group): a microvm instance's QEMU with KVM. Root only.
    #[serde(default)]
    pub kvm: bool,
}

/// The argument that makes the init park: join the cgroups named next, then wait for its
/// config on stdin.
pub const PARK_ARG: &str = "--parked";

/// Runs the init and never returns: it execs the runtime or exits with status 127 after
/// printing why on stderr (which the host shows as the reason the instance died).
///
/// `args` is either the config (JSON), or [`PARK_ARG`] and the JSON list of `cgroup.procs`
/// files to join at once; the config then comes on stdin. Joining a cgroup costs a
/// kernel-wide wait (~10 ms); a parked init pays it before it is needed.
pub fn run(args: &[String]) -> ! {
    let config_json = match args {
        [park, procs] if park == PARK_ARG => {
            let procs: Vec<PathBuf> = match serde_json::from_str(procs) {
                Ok(p) => p,
                Err(e) => fail(&format!("bad cgroup list: {e}")),
            };
            if let Err(e) = join_cgroups(&procs) {
                fail(&e);
            }
            let mut text = String::new();
            if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                fail(&format!("reading the config: {e}"));
            }
            if text.is_empty() {
                // The server let go of this parked init (it stopped): nothing to do.
                std::process::exit(0);
            }
            text
        }
        [config] => config.clone(),
        _ => fail("usage: __sandbox-init CONFIG | __sandbox-init --parked CGROUPS"),
    };
    let config: InitConfig = match serde_json::from_str(&config_json) {
        Ok(c) => c,
        Err(e) => fail(&format!("bad sandbox config: {e}")),
    };
    if let Err(e) = enter(&config) {
        fail(&e);
    }
    fail("unreachable: enter returns only on error")
}

fn join_cgroups(procs: &[PathBuf]) -> Result<(), String> {
    let pid = std::process::id().to_string();
    for file in procs {
        ctx(
            std::fs::write(file, &pid),
            &format!("joining cgroup {}", file.display()),
        )?;
    }
    Ok(())
}

fn fail(message: &str) -> ! {
    eprintln!("ignis sandbox: {message}");
    std::process::exit(127)
}

fn ctx<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn enter(c: &InitConfig) -> Result<(), String> {
    join_cgroups(&c.cgroup_procs)?;
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWCGROUP;
    // Without root, a user namespace gives the capabilities the setup needs, over the new
    // namespaces only; the instance's ids map to the server's user, the only ids it has.
    let rootless = !nix::unistd::geteuid().is_root();
    let (outer_uid, outer_gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    if rootless {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    ctx(unshare(flags), "unshare")?;
    if rootless {
        ctx(std::fs::write("/proc/self/setgroups", "deny"), "deny setgroups")?;
        ctx(
            std::fs::write("/proc/self/uid_map", format!("{} {outer_uid} 1", c.uid)),
            "uid_map",
        )?;
        ctx(
            std::fs::write("/proc/self/gid_map", format!("{} {outer_gid} 1", c.gid)),
            "gid_map",
        )?;
    }
    // Its write end stays open in this process, which never closes it: the namespace's
    // init sees it hang up only once this process is gone.
    let (alive_r, alive_w) = ctx(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC), "pipe")?;
    // A new PID namespace applies to children only: fork so the runtime is its PID 1.
    match ctx(sys::fork(), "fork")? {
        ForkResult::Parent { child } => {
            // This process stays outside as the instance's root process: it ends with
            // its child, with the same status, so the host sees how the runtime ended.
            // It dies with the server (its parent-death signal, set before its exec), and
            // the namespace's init dies with it (below), which ends the whole namespace.
            let _alive = alive_w;
            drop(alive_r);
            let_go_of_channels();
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) if code > 128 && code < 128 + 32 => {
                        // PID 1 reports a signal death as 128 + signal; die of the same
                        // signal so the host sees how the runtime ended.
                        if let Ok(sig) = nix::sys::signal::Signal::try_from(code - 128) {
                            let _ = nix::sys::signal::raise(sig);
                        }
                        std::process::exit(code)
                    }
                    Ok(WaitStatus::Exited(_, code)) => std::process::exit(code),
                    Ok(WaitStatus::Signaled(_, sig, _)) => {
                        // The init installs no handlers, so the signal's default action
                        // ends it the same way.
                        let _ = nix::sys::signal::raise(sig);
                        std::process::exit(128 + sig as i32);
                    }
                    Ok(_) => continue,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => fail(&format!("waiting for the runtime: {e}")),
                }
            }
        }
        ForkResult::Child => drop(alive_w),
    }
    build_root(c)?;
    ctx(sethostname("ignis"), "sethostname")?;
    ctx(sys::loopback_up(), "bringing up the loopback interface")?;
    ctx(
        setrlimit(Resource::RLIMIT_NOFILE, c.nofile, c.nofile),
        "RLIMIT_NOFILE",
    )?;
    ctx(setrlimit(Resource::RLIMIT_CORE, 0, 0), "RLIMIT_CORE")?;
    ctx(chdir(&c.cwd), &format!("chdir {}", c.cwd.display()))?;
    drop_privileges(c)?;
    // After the id change, which clears a parent-death signal.
    die_with_parent(alive_r)?;
    crate::seccomp::install(c.outbound)?;
    // This process is PID 1 of the namespace. The runtime must not be: the kernel drops
    // signals to PID 1 that it has no handler for, and PID 1 must reap orphans. So it
    // stays as a minimal reaper, unprivileged and filtered like the runtime, and the
    // runtime runs as PID 2.
    match ctx(sys::fork(), "fork the runtime")? {
        ForkResult::Child => {
            if c.wait_for_go {
                ctx(
                    sys::ready_then_wait_for_go(crate::CONTROL_FD),
                    "wait for the host's go",
                )?;
            }
            exec(c)
        }
        ForkResult::Parent { child } => {
            let_go_of_channels();
            reap_until(child)
        }
    }
}

/// Makes the kernel SIGKILL this process (the namespace's init, whose death ends every
/// process of the namespace) when the instance's root process outside dies. `alive` is the
/// read end of a pipe whose write end only that process holds: if it hangs up already,
/// the parent died before the signal was armed, and no signal would ever come.
fn die_with_parent(alive: std::os::fd::OwnedFd) -> Result<(), String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    ctx(
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL),
        "parent-death signal",
    )?;
    let mut fds = [PollFd::new(alive.as_fd(), PollFlags::POLLIN)];
    ctx(poll(&mut fds, PollTimeout::ZERO), "poll")?;
    let gone = fds[0]
        .revents()
        .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLIN));
    if gone {
        return Err("the instance's root process is gone".to_owned());
    }
    Ok(())
}

/// The host's channels belong to the runtime alone: holding copies here would keep the
/// host from seeing them close when the runtime closes them or dies.
fn let_go_of_channels() {
    if let Ok(null) = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    ) {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null, fd);
        }
        let _ = nix::unistd::close(null);
    }
    let _ = nix::unistd::close(crate::CONTROL_FD);
}

/// Reaps every process of the namespace until `runtime` ends, then ends the same way (as
/// PID 1 it cannot die by its own signal, so a signal death becomes 128 + the signal).
fn reap_until(runtime: nix::unistd::Pid) -> ! {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == runtime => std::process::exit(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == runtime => std::process::exit(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => fail(&format!("waiting for the runtime: {e}")),
        }
    }
}

/// A read-write bind that no set-uid file or device node works through.
fn bind_writable(source: &Path, target: &Path) -> Result<(), String> {
    let what = format!("bind {} read-write at {}", source.display(), target.display());
    ctx(
        mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>),
        &what,
    )?;
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    ctx(
        mount(None::<&str>, target, None::<&str>, flags, None::<&str>),
        &what,
    )
}

fn bind_ro(source: &Path, target: &Path) -> Result<(), String> {
    let what = format!("bind {} at {}", source.display(), target.display());
    ctx(
        mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ),
        &what,
    )?;
    // Inside a user namespace the source mount's flags are locked: a remount must keep
    // them (adding read-only and nosuid is always allowed).
    let mut ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID;
    if let Ok(st) = nix::sys::statvfs::statvfs(source) {
        use nix::sys::statvfs::FsFlags;
        for (fs, ms) in [
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if st.flags().contains(fs) {
                ro |= ms;
            }
        }
    }
    ctx(
        mount(None::<&str>, target, None::<&str>, ro, None::<&str>),
        &format!("read-only {what}"),
    )
}

/// Shows the host directory or file `source`, read-only, at `target`, through an overlay
/// whose layers are named by descriptor: its mount table entry has `/` for a root and
/// `/proc/self/fd/N` for layers, nothing of the host's paths. `stage` is a private tmpfs
/// holding an empty directory (an overlay without an upper layer needs two lower ones)
/// and, for a file, the overlay of its directory that the file is bound from.
fn mount_anonymous(source: &Path, target: &Path, stage: &Path, n: usize) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let (dir, file) = if source.is_dir() {
        (source, None)
    } else {
        let parent = source
            .parent()
            .ok_or_else(|| format!("{} has no directory", source.display()))?;
        (parent, source.file_name())
    };
    // O_PATH: a handle on the directory only (the access mode is ignored); close-on-exec.
    let path_fd = |p: &Path| -> Result<std::fs::File, String> {
        ctx(
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                .open(p),
            &format!("open {}", p.display()),
        )
    };
    let lower = path_fd(dir)?;
    let empty = path_fd(&stage.join("empty"))?;
    let options = format!(
        "lowerdir=/proc/self/fd/{}:/proc/self/fd/{}",
        lower.as_raw_fd(),
        empty.as_raw_fd()
    );
    let at = match file {
        None => target.to_path_buf(),
        Some(_) => {
            let at = stage.join(format!("o{n}"));
            ctx(std::fs::create_dir(&at), &format!("mkdir {}", at.display()))?;
            at
        }
    };
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let what = format!("overlay of {} at {}", source.display(), target.display());
    match mount(
        Some("overlay"),
        &at,
        Some("overlay"),
        flags,
        Some(options.as_str()),
    ) {
        Ok(()) => {}
        // A kernel without overlayfs: the plain bind still isolates, it only names its source.
        Err(nix::errno::Errno::ENODEV) => return bind_ro(source, target),
        Err(e) => return Err(format!("{what}: {e}")),
    }
    drop((lower, empty));
    if let Some(name) = file {
        bind_ro(&at.join(name), target)?;
    }
    Ok(())
}

/// Creates `target` (a directory, or an empty file for a file source) inside the root.
fn mount_point(root: &Path, inside: &Path, is_dir: bool) -> Result<PathBuf, String> {
    let target = root.join(inside.strip_prefix("/").unwrap_or(inside));
    if is_dir {
        ctx(
            std::fs::create_dir_all(&target),
            &format!("mkdir {}", target.display()),
        )?;
    } else {
        if let Some(parent) = target.parent() {
            ctx(
                std::fs::create_dir_all(parent),
                &format!("mkdir {}", parent.display()),
            )?;
        }
        ctx(
            std::fs::write(&target, b""),
            &format!("create {}", target.display()),
        )?;
    }
    Ok(target)
}

fn build_root(c: &InitConfig) -> Result<(), String> {
    let none = None::<&str>;
    // Nothing mounted from here on may propagate back to the host.
    ctx(
        mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none),
        "make / private",
    )?;
    let root = &c.root;
    ctx(
        mount(
            Some("tmpfs"),
            root,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("size=4m,mode=0755"),
        ),
        "root tmpfs",
    )?;
    // /tmp first: binds of host paths under /tmp (a checkout or tools folder there) go
    // on top of it rather than being hidden by it.
    let tmp = mount_point(root, Path::new("/tmp"), true)?;
    let tmp_opts = format!("size={}m,mode=1777", c.tmp_size_mb);
    ctx(
        mount(
            Some("tmpfs"),
            &tmp,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(tmp_opts.as_str()),
        ),
        "/tmp",
    )?;
    for path in &c.empty_dirs {
        mount_point(root, path, true)?;
    }
    // A path shown where it is on the host tells nothing new (the runtime knows where it
    // runs); one shown elsewhere must not tell where it comes from, which a bind mount's
    // entry in /proc/self/mountinfo does (its root field is the host path).
    let relocated = c.binds.iter().any(|b| b.source != b.target);
    let stage = root.join(".stage");
    if relocated {
        std::fs::create_dir_all(&stage).map_err(|e| format!("mkdir {}: {e}", stage.display()))?;
        ctx(
            mount(
                Some("tmpfs"),
                &stage,
                Some("tmpfs"),
                MsFlags::empty(),
                Some("size=4k,mode=0700"),
            ),
            "staging tmpfs",
        )?;
        ctx(std::fs::create_dir(stage.join("empty")), "mkdir the empty layer")?;
    }
    for (n, b) in c.binds.iter().enumerate() {
        let target = mount_point(root, &b.target, b.source.is_dir())?;
        if b.source == b.target {
            bind_ro(&b.source, &target)?;
        } else {
            mount_anonymous(&b.source, &target, &stage, n)?;
        }
    }
    if let Some(w) = &c.writable {
        let target = mount_point(root, &w.target, true)?;
        bind_writable(&w.source, &target)?;
    }
    if relocated {
        // What was mounted from the stage stays; the stage itself goes.
        ctx(umount2(&stage, MntFlags::MNT_DETACH), "detach the staging tmpfs")?;
        ctx(std::fs::remove_dir(&stage), "rmdir the stage")?;
    }
    let kvm = c.kvm.then_some("kvm");
    for dev in ["null", "zero", "random", "urandom"].into_iter().chain(kvm) {
        let target = mount_point(root, &Path::new("/dev").join(dev), false)?;
        let source = Path::new("/dev").join(dev);
        ctx(
            mount(Some(&source), &target, none, MsFlags::MS_BIND, none),
            &format!("bind /dev/{dev}"),
        )?;
    }
    // /proc is mounted while the host's is still visible: inside a user namespace the
    // kernel allows a new proc mount only then. It shows this PID namespace only.
    let proc_dir = mount_point(root, Path::new("/proc"), true)?;
    let proc_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    ctx(
        mount(Some("proc"), &proc_dir, Some("proc"), proc_flags, none),
        "mount /proc",
    )?;
    if c.outbound {
        // slirp4netns answers DNS on 10.0.2.3.
        let etc = mount_point(root, Path::new("/etc"), true)?;
        ctx(
            std::fs::write(etc.join("resolv.conf"), "nameserver 10.0.2.3\n"),
            "write /etc/resolv.conf",
        )?;
        ctx(
            std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n::1 localhost\n"),
            "write /etc/hosts",
        )?;
    }

    ctx(chdir(root), "chdir to the new root")?;
    ctx(std::fs::create_dir_all(".old"), "mkdir .old")?;
    ctx(pivot_root(".", ".old"), "pivot_root")?;
    ctx(chdir("/"), "chdir /")?;
    ctx(umount2("/.old", MntFlags::MNT_DETACH), "detach the old root")?;
    ctx(std::fs::remove_dir("/.old"), "rmdir /.old")?;
    // The root itself becomes read-only; only /tmp stays writable.
    let ro_root = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    ctx(mount(none, "/", none, ro_root, none), "read-only root")
}

fn drop_privileges(c: &InitConfig) -> Result<(), String> {
    // The bounding set first (that needs CAP_SETPCAP, which root still has), so nothing
    // can ever regain a capability; then the ids, which clear the rest.
    for cap in caps::all() {
        ctx(
            caps::drop(None, caps::CapSet::Bounding, cap),
            &format!("drop {cap} from the bounding set"),
        )?;
    }
    if nix::unistd::geteuid().is_root() {
        // In a rootless sandbox setgroups is denied (and there are no groups to drop).
        // With KVM, the device's group is the one kept, so that QEMU may open it.
        let groups = if c.kvm {
            use std::os::unix::fs::MetadataExt;
            let meta = ctx(std::fs::metadata("/dev/kvm"), "stat /dev/kvm")?;
            vec![Gid::from_raw(meta.gid())]
        } else {
            Vec::new()
        };
        ctx(setgroups(&groups), "setgroups")?;
    }
    ctx(setgid(Gid::from_raw(c.gid)), "setgid")?;
    ctx(setuid(Uid::from_raw(c.uid)), "setuid")?;
    for set in [
        caps::CapSet::Ambient,
        caps::CapSet::Inheritable,
        caps::CapSet::Effective,
        caps::CapSet::Permitted,
    ] {
        ctx(caps::clear(None, set), "clear capabilities")?;
    }
    ctx(nix::sys::prctl::set_no_new_privs(), "no_new_privs")
}

fn exec(c: &InitConfig) -> Result<(), String> {
    let cstr = |s: &[u8]| CString::new(s).map_err(|_| "a NUL byte in an argument".to_owned());
    let program = cstr(c.program.as_os_str().as_bytes())?;
    let mut argv = vec![program.clone()];
    for a in &c.args {
        argv.push(cstr(a.as_bytes())?);
    }
    let env = c
        .env
        .iter()
        .map(|(k, v)| cstr(format!("{k}={v}").as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let err = nix::unistd::execve(&program, &argv, &env).err();
    Err(format!(
        "exec {}: {}",
        c.program.display(),
        err.map(|e| e.to_string()).unwrap_or_default()
    ))
}
