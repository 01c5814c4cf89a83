//! The system calls made in the child between fork and exec. The only `unsafe` in Ignis.
#![allow(unsafe_code)]

use std::os::fd::RawFd;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use tokio::process::Command;

/// Arranges for the child to get `control` as fd 3 and to lead a new session (so a kill of
/// its process group reaches every process it starts).
pub(crate) fn prepare_child(cmd: &mut Command, control: RawFd) {
    // SAFETY: the closure runs in the forked child before exec and only calls setsid, dup2
    // and fcntl, which are async-signal-safe; it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid()?;
            if control == super::CONTROL_FD {
                // dup2 onto itself would leave FD_CLOEXEC set: clear it explicitly.
                fcntl(control, FcntlArg::F_SETFD(FdFlag::empty()))?;
            } else {
                nix::unistd::dup2(control, super::CONTROL_FD)?;
            }
            Ok(())
        });
    }
}

/// Arranges for the child to find each `(host fd, child fd)` pair at the child fd number.
pub(crate) fn pass_fds(cmd: &mut Command, fds: Vec<(RawFd, RawFd)>) {
    // SAFETY: the closure runs in the forked child before exec and only calls dup2, which
    // is async-signal-safe; it allocates nothing (the vector was built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            for &(from, to) in &fds {
                nix::unistd::dup2(from, to)?;
            }
            Ok(())
        });
    }
}

/// Forks the single-threaded sandbox init.
pub(crate) fn fork() -> nix::Result<nix::unistd::ForkResult> {
    // SAFETY: the sandbox init runs this before it has started any thread (it is a fresh
    // exec of the binary that runs no async runtime in this mode), so the child inherits
    // a consistent process and may use any function, not only async-signal-safe ones.
    unsafe { nix::unistd::fork() }
}

/// Brings up `lo` in the instance's new network namespace, its only interface.
pub(crate) fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket/ioctl/close calls on a zeroed `ifreq` that names "lo"; the
    // kernel reads and writes only within the struct, and the fd is closed on every path.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut result = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if result == 0 {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            result = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if result == 0 {
            Ok(())
        } else {
            Err(err)
        }
    }
}
