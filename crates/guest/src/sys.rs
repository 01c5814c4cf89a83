//! The agent's system calls that neither std nor nix wrap safely: the child's set-up between
//! fork and exec, the random driver's ioctls, bringing the loopback interface up. The only
//! `unsafe` of this crate, each block with why it is sound.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// The program's control channel (fd 3), as in the process tier.
pub const CONTROL_FD: RawFd = 3;

/// `_IOW('R', 0x03, int[2])` and `_IO('R', 0x07)` of `<linux/random.h>`.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// Makes the child lead a new session, get `control` as fd 3, and install `filters` last
/// (std already sets stdio, drops supplementary groups, sets gid and uid and the working
/// directory before this runs).
pub fn prepare_child(cmd: &mut Command, control: RawFd, filters: Vec<ignis_seccomp::Program>) {
    // SAFETY: the closure runs in the forked child before exec and only calls setsid, dup2,
    // fcntl and the seccomp installation (prctl/seccomp with filters built before the fork),
    // which are async-signal-safe system calls; it allocates nothing on success and takes
    // no locks. The agent forks from its only thread.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid()?;
            if control == CONTROL_FD {
                // dup2 onto itself would leave FD_CLOEXEC set: clear it explicitly.
                fcntl(control, FcntlArg::F_SETFD(FdFlag::empty()))?;
            } else {
                nix::unistd::dup2(control, CONTROL_FD)?;
            }
            ignis_seccomp::apply(&filters).map_err(io::Error::other)?;
            Ok(())
        });
    }
}

/// Drops every capability from the calling process's bounding set (`PR_CAPBSET_DROP` up to
/// the first number the kernel does not know).
pub fn empty_bounding_set() -> io::Result<()> {
    for cap in 0..64 {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc == -1 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) && cap > 0 {
                return Ok(()); // past the last capability this kernel has
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Adds `bytes` to the kernel's entropy pool, crediting each byte with 8 bits.
pub fn add_entropy(random: &File, bytes: &[u8]) -> io::Result<()> {
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }, built in u32
    // words so the buffer is aligned for it.
    let words = bytes.len().div_ceil(4);
    let mut info = vec![0u32; 2 + words];
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("too much entropy"))?;
    info[0] = len * 8;
    info[1] = len;
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let mut word = [0u8; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        info[2 + i] = u32::from_ne_bytes(word);
    }
    // SAFETY: `info` is a live, aligned rand_pool_info whose buf_size (info[1]) bytes follow
    // its header inside the allocation; the kernel only reads it during the call.
    let rc = unsafe { libc::ioctl(random.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Forces the kernel's random generator to reseed from its pool now.
pub fn reseed_crng(random: &File) -> io::Result<()> {
    // SAFETY: RNDRESEEDCRNG takes no argument and touches no memory of ours.
    let rc = unsafe { libc::ioctl(random.as_raw_fd(), RNDRESEEDCRNG) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Brings the loopback interface `lo` up (SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP).
pub fn loopback_up() -> io::Result<()> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    // SAFETY: ifreq is a plain C struct (a name and a union of integers and addresses), for
    // which all zero bytes are a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `ifr` is a live ifreq naming `lo`; the kernel writes its flags into the union.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS just filled the union's flags member, the one read here.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    ifr.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: `ifr` is a live ifreq naming `lo` with the flags to set; the kernel only reads it.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
