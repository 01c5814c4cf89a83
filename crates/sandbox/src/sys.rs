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
