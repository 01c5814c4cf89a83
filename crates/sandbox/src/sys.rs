//! The system calls made in the child between fork and exec. The only `unsafe` in Ignis.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use tokio::process::Command;

/// Arranges for the child to get `control` as fd 3 and to lead a new session (so a kill of
/// its process group reaches every process it starts). Every descriptor above 3 is closed
/// at exec: the child starts with stdin, stdout, stderr and its control socket only, never
/// with a descriptor of the server's (its store) or of whatever started the server.
///
/// With `die_with`, the server's pid, the child gets SIGKILL when the thread that forks it
/// ends (the kernel's parent-death signal, which follows the forking *thread*: call this
/// only on a thread that lives as long as the server), and does not start at all if that
/// server is already gone.
pub(crate) fn prepare_child(cmd: &mut Command, control: RawFd, die_with: Option<u32>) {
    // SAFETY: the closure runs in the forked child before exec and only calls setsid, dup2,
    // fcntl, prctl, getppid, close_range, and open, getdents64 and close on /proc/self/fd,
    // which are async-signal-safe system calls; it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(server) = die_with {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                // The server may have died between the fork and the prctl: then no signal
                // will ever come, and this child now has another parent.
                if u32::try_from(nix::unistd::getppid().as_raw()).ok() != Some(server) {
                    return Err(std::io::Error::other("the server is gone"));
                }
            }
            nix::unistd::setsid()?;
            if control == super::CONTROL_FD {
                // dup2 onto itself would leave FD_CLOEXEC set: clear it explicitly.
                fcntl(control, FcntlArg::F_SETFD(FdFlag::empty()))?;
            } else {
                nix::unistd::dup2(control, super::CONTROL_FD)?;
            }
            cloexec_from(super::CONTROL_FD + 1)
        });
    }
}

/// Arranges for the child to find each `(host fd, child fd)` pair at the child fd number,
/// and no other descriptor above 2.
pub(crate) fn pass_fds(cmd: &mut Command, fds: Vec<(RawFd, RawFd)>) {
    let first_closed = fds.iter().map(|&(_, to)| to + 1).max().unwrap_or(3).max(3);
    // SAFETY: the closure runs in the forked child before exec and only calls dup2,
    // close_range and fcntl (and open, getdents64 and close on /proc/self/fd on kernels
    // without CLOSE_RANGE_CLOEXEC), which are async-signal-safe; it allocates nothing (the
    // vector was built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            for &(from, to) in &fds {
                nix::unistd::dup2(from, to)?;
            }
            cloexec_from(first_closed)
        });
    }
}

/// Marks every descriptor from `first` up close-on-exec. Marking rather than closing keeps
/// the pipe on which the standard library reports a failed exec working until the exec.
/// Async-signal-safe: called between fork and exec.
fn cloexec_from(first: RawFd) -> std::io::Result<()> {
    let first = libc::c_uint::try_from(first).unwrap_or(0);
    // SAFETY: close_range only changes flags of this process's descriptors; it reads and
    // writes no memory of ours.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if done == 0 {
        return Ok(());
    }
    // Kernels before 5.11 lack CLOSE_RANGE_CLOEXEC: mark each open descriptor.
    cloexec_open_from(first as RawFd)
}

/// Marks every descriptor from `first` up close-on-exec by listing `/proc/self/fd` with raw
/// `getdents64` into a buffer on the stack: only the descriptors that are open, however high
/// the open-files limit (the server raises it to its hard limit, often a million, and a walk
/// up to it would cost each instance start a million system calls). Async-signal-safe: no
/// allocation, no lock, only system calls.
fn cloexec_open_from(first: RawFd) -> std::io::Result<()> {
    const PROC_FD: &[u8] = b"/proc/self/fd\0";
    // SAFETY: PROC_FD is a NUL-terminated string that lives for the whole call; open reads
    // only it.
    let dir = unsafe {
        libc::open(
            PROC_FD.as_ptr().cast(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buf = [0u8; 4096];
    let result = loop {
        // SAFETY: getdents64 writes at most buf.len() bytes into buf, which lives on this
        // stack for the whole call.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len()) };
        if n < 0 {
            break Err(std::io::Error::last_os_error());
        }
        if n == 0 {
            break Ok(());
        }
        let filled = usize::try_from(n).unwrap_or(0).min(buf.len());
        for fd in dirent_fds(&buf[..filled]) {
            if fd >= first && fd != dir {
                // A descriptor closed since it was listed fails with EBADF: nothing to mark.
                let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
            }
        }
    };
    let _ = nix::unistd::close(dir);
    result
}

/// The descriptor numbers named by the `linux_dirent64` records in `records` (`.` and `..`
/// and anything else that is not a number are skipped). Each record is: inode (8 bytes),
/// offset (8), record length (2), type (1), then the NUL-terminated name.
fn dirent_fds(records: &[u8]) -> impl Iterator<Item = RawFd> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || loop {
        let head = records.get(at..at + 19)?;
        let len = usize::from(u16::from_ne_bytes([head[16], head[17]]));
        if len < 19 {
            return None;
        }
        let name = records.get(at + 19..(at + len).min(records.len()))?;
        at += len;
        let name = name.split(|&b| b == 0).next().unwrap_or(&[]);
        if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
            continue;
        }
        let fd = name
            .iter()
            .try_fold(0i32, |n, &d| n.checked_mul(10)?.checked_add(i32::from(d - b'0')));
        if let Some(fd) = fd {
            return Some(fd);
        }
    })
}

/// Forks the single-threaded sandbox init.
pub(crate) fn fork() -> nix::Result<nix::unistd::ForkResult> {
    // SAFETY: the sandbox init runs this before it has started any thread (it is a fresh
    // exec of the binary that runs no async runtime in this mode), so the child inherits
    // a consistent process and may use any function, not only async-signal-safe ones.
    unsafe { nix::unistd::fork() }
}

/// Blocks until one byte arrives on `fd` (the control channel): the host's go.
pub(crate) fn wait_for_go(fd: RawFd) -> std::io::Result<()> {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most one byte into a local the pointer is valid for; `fd` is
        // the inherited control channel, open for this whole process.
        let n = unsafe { libc::read(fd, std::ptr::from_mut(&mut byte).cast(), 1) };
        match n {
            1 => return Ok(()),
            0 => return Err(std::io::Error::other("the host closed the channel before its go")),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
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

// The new mount API's constants (linux/mount.h), which the libc crate does not all carry.
const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// A file descriptor returned by a system call, or its error.
fn owned_fd(ret: libc::c_long) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = RawFd::try_from(ret).map_err(|_| std::io::Error::other("descriptor out of range"))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// A read-only overlay mount (nosuid, nodev) of the `:`-separated `lowerdir` layers, not
/// attached anywhere yet: `fsopen`, `fsconfig`, `fsmount`.
pub(crate) fn detached_overlay(lowerdir: &str) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::ffi::CString;
    let fstype = CString::new("overlay").map_err(std::io::Error::other)?;
    let key = CString::new("lowerdir").map_err(std::io::Error::other)?;
    let value = CString::new(lowerdir).map_err(std::io::Error::other)?;
    // SAFETY: fsopen reads the NUL-terminated name, which lives until the call returns.
    let fs = owned_fd(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: fsconfig reads the NUL-terminated key and value, alive for the call, and uses
    // the descriptor we own.
    let set = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    };
    if set < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: no pointers are passed; the descriptor is ours.
    let created = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if created < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    // SAFETY: no pointers are passed; the descriptor is ours.
    owned_fd(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
}

/// Attaches the detached mount `tree` at `target` in this process's mount namespace.
pub(crate) fn attach(tree: &std::os::fd::OwnedFd, target: &str) -> std::io::Result<()> {
    use std::ffi::CString;
    let empty = CString::new("").map_err(std::io::Error::other)?;
    let target = CString::new(target).map_err(std::io::Error::other)?;
    // SAFETY: move_mount reads the two NUL-terminated paths, alive for the call; the
    // descriptor is ours.
    let moved = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if moved < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn cloexec(fd: RawFd) -> bool {
        let flags = fcntl(fd, FcntlArg::F_GETFD).expect("F_GETFD");
        FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC)
    }

    /// The fallback for kernels without CLOSE_RANGE_CLOEXEC marks exactly the open
    /// descriptors from `first` up, however high they are, and leaves lower ones alone.
    #[test]
    fn the_fallback_marks_every_open_descriptor_from_first_up() {
        let low = std::fs::File::open("/dev/null").expect("open");
        let high_target = 900;
        nix::unistd::dup2(low.as_raw_fd(), high_target).expect("dup2 high");
        for fd in [low.as_raw_fd(), high_target] {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).expect("clear");
        }
        cloexec_open_from(low.as_raw_fd() + 1).expect("mark");
        assert!(!cloexec(low.as_raw_fd()), "below `first`: untouched");
        assert!(cloexec(high_target), "fd 900 is marked");
        let _ = nix::unistd::close(high_target);
    }

    #[test]
    fn dirent_records_are_read_as_descriptor_numbers() {
        fn record(name: &str) -> Vec<u8> {
            let len = (19 + name.len() + 1).next_multiple_of(8);
            let mut r = vec![0u8; len];
            r[16..18].copy_from_slice(&u16::try_from(len).expect("small").to_ne_bytes());
            r[19..19 + name.len()].copy_from_slice(name.as_bytes());
            r
        }
        let records: Vec<u8> = [".", "..", "0", "17", "123456", "x"]
            .iter()
            .flat_map(|n| record(n))
            .collect();
        assert_eq!(dirent_fds(&records).collect::<Vec<_>>(), vec![0, 17, 123456]);
    }
}
