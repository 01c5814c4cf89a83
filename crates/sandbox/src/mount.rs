//! `ignis __sandbox-mount PID EMPTY TARGET LAYER...`: shows the host folders `LAYER…`
//! merged (the first on top) read-only at `TARGET` (`/code`, `/opt`, or a guest's share
//! folders) inside the running instance whose outer init is `PID`; `EMPTY` is an empty
//! folder, the bottom layer. A short-lived process of its own (entering another mount
//! namespace needs a single-threaded caller): it makes a read-only overlay of the package
//! whose layers are named by descriptor (`/proc/self/fd/N`, so the instance's mount table
//! names no host path), detached, then enters the instance's mount namespace and attaches
//! it there. Without root, it first enters the instance's user namespace, whose owner it
//! is, and a mount namespace of its own (a detached mount can only be made where the
//! caller may mount).
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::sched::{setns, unshare, CloneFlags};

use crate::sys;

/// The argument that makes the `ignis` binary mount a package into an instance.
pub const MOUNT_ARG: &str = "__sandbox-mount";

/// Where a package appears inside an instance.
pub const CODE_ROOT: &str = "/code";
/// Where a function's layers appear inside an instance.
pub const OPT_ROOT: &str = "/opt";
/// Where a virtual machine's QEMU finds a function's package and layers: the folders
/// `code` and `opt` of the 9p share it gives its guest (the microvm tier), shown there
/// after QEMU started, as a process instance's are at [`CODE_ROOT`] and [`OPT_ROOT`].
pub const GUEST_SHARE_CODE: &str = "/share/code";
pub const GUEST_SHARE_OPT: &str = "/share/opt";
/// The places a package or layers may be shown at.
const TARGETS: [&str; 4] = [CODE_ROOT, OPT_ROOT, GUEST_SHARE_CODE, GUEST_SHARE_OPT];
/// Most folders merged at one place: at `/code` the package and its dependencies; at
/// `/opt` up to five layers, each with its dependencies.
const MAX_LAYERS: usize = 16;

/// Runs the mount; exits 0 when the package is in place, else 1 with why on stderr.
pub fn run(args: &[String]) -> ! {
    match show(args) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}

fn show(args: &[String]) -> Result<(), String> {
    let [pid, empty, target, layers @ ..] = args else {
        return Err(format!("usage: {MOUNT_ARG} PID EMPTY TARGET LAYER..."));
    };
    let target = TARGETS
        .into_iter()
        .find(|t| t == target)
        .ok_or_else(|| format!("{target:?} is not one of {}", TARGETS.join(", ")))?;
    if layers.is_empty() || layers.len() > MAX_LAYERS {
        return Err(format!("between 1 and {MAX_LAYERS} layers, not {}", layers.len()));
    }
    let pid: u32 = pid.parse().map_err(|_| format!("{pid:?} is not a process id"))?;
    let ns = |kind: &str| {
        File::open(format!("/proc/{pid}/ns/{kind}"))
            .map_err(|e| format!("the instance's {kind} namespace: {e}"))
    };
    let mnt = ns("mnt")?;
    let rootless = !nix::unistd::geteuid().is_root();
    let user = if rootless { Some(ns("user")?) } else { None };
    if let Some(user) = &user {
        setns(user.as_fd(), CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("enter the instance's user namespace: {e}"))?;
        unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("a mount namespace to build in: {e}"))?;
    }
    // O_PATH handles on the layers, opened in the mount namespace the overlay is made in
    // (the kernel clones each layer's mount from the caller's namespace).
    let dir = |p: &str| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(p)
            .map_err(|e| format!("open {p}: {e}"))
    };
    let lower = layers.iter().map(|l| dir(l)).collect::<Result<Vec<_>, _>>()?;
    let blank = dir(empty)?;
    // An overlay without an upper layer needs two lower ones: the layers over an empty one.
    let options = lower
        .iter()
        .chain(std::iter::once(&blank))
        .map(|f| format!("/proc/self/fd/{}", f.as_raw_fd()))
        .collect::<Vec<_>>()
        .join(":");
    let tree = sys::detached_overlay(&options).map_err(|e| format!("a read-only overlay: {e}"))?;
    setns(mnt.as_fd(), CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("enter the instance's mount namespace: {e}"))?;
    sys::attach(&tree, target).map_err(|e| format!("attach the overlay at {target}: {e}"))
}
