//! The seccomp filters every instance runs under: system calls no function needs fail with
//! EPERM (so runtimes keep running); `clone3` fails with ENOSYS so that libc falls back to
//! `clone`, whose flags the filter can inspect, and `io_uring_*` with ENOSYS so that
//! runtimes fall back to epoll; sockets of a family the instance's network does not need
//! fail with EAFNOSUPPORT. `docs/security.md` compares the whole list with Docker's.
//!
//! Its own crate so that the guest agent of the microvm tier (`crates/guest`, a static
//! binary) puts the same filters on the runtime inside a guest without the sandbox.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

/// System calls denied outright.
const DENIED: &[libc::c_long] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_setns,
    libc::SYS_unshare,
    libc::SYS_userfaultfd,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_settimeofday,
    libc::SYS_adjtimex,
    libc::SYS_quotactl,
    libc::SYS_acct,
    libc::SYS_lookup_dcookie,
    libc::SYS_vhangup,
    // The new mount API, like `mount` itself.
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_quotactl_fd,
    // The kernel log is the host's, not the namespace's.
    libc::SYS_syslog,
    // Other processes' descriptors and memory, like ptrace (Docker's profile allows these
    // only with CAP_SYS_PTRACE, which instances never have).
    libc::SYS_kcmp,
    libc::SYS_pidfd_getfd,
    libc::SYS_process_madvise,
    // Obsolete calls no runtime makes.
    libc::SYS_uselib,
    libc::SYS_ustat,
    libc::SYS_sysfs,
];

/// System calls that fail as if the kernel lacked them. io_uring performs reads, writes,
/// connects and opens asynchronously, beyond what a filter on the system call can see,
/// and has been a steady source of kernel bugs.
const UNSUPPORTED: &[libc::c_long] = &[
    libc::SYS_clone3,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

/// The socket families an instance may open: local sockets always; IPv4 and IPv6 only
/// with outbound networking (without it the network namespace has nothing but `lo`, and
/// nothing of its own to talk to). Every other family is refused, notably `AF_VSOCK`,
/// which ignores network namespaces and reaches the host or its hypervisor, `AF_NETLINK`,
/// `AF_PACKET` and the kernel's crypto sockets (`AF_ALG`).
pub fn socket_families(outbound: bool) -> &'static [libc::c_int] {
    if outbound {
        &[libc::AF_UNIX, libc::AF_INET, libc::AF_INET6]
    } else {
        &[libc::AF_UNIX]
    }
}

/// `clone` flags that create namespaces.
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
];

fn arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| format!("seccomp: unsupported architecture: {e:?}"))
}

fn errno(e: libc::c_int) -> SeccompAction {
    SeccompAction::Errno(u32::try_from(e).expect("errno values are positive"))
}

/// A filter that answers `errno` to every call `rules` match and lets all others through.
fn filter(rules: BTreeMap<i64, Vec<SeccompRule>>, e: libc::c_int) -> Result<SeccompFilter, String> {
    SeccompFilter::new(rules, SeccompAction::Allow, errno(e), arch()?)
        .map_err(|e| format!("seccomp filter: {e}"))
}

/// Rules matching `socket` and `socketpair` calls whose family (argument 0) is not one of
/// `allowed`: a rule is the conjunction of its conditions.
fn socket_rules(allowed: &[libc::c_int]) -> Result<BTreeMap<i64, Vec<SeccompRule>>, String> {
    let conditions = allowed
        .iter()
        .map(|&family| {
            let family = u64::try_from(family).expect("socket families are positive");
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, family)
                .map_err(|e| format!("seccomp condition: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let rule = SeccompRule::new(conditions).map_err(|e| format!("seccomp rule: {e}"))?;
    Ok(BTreeMap::from([
        (libc::SYS_socket, vec![rule.clone()]),
        (libc::SYS_socketpair, vec![rule]),
    ]))
}

/// Builds the BPF programs for an instance with or without outbound networking, in the
/// order they are to be installed.
pub fn programs(outbound: bool) -> Result<Vec<BpfProgram>, String> {
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|&nr| (nr, vec![])).collect();
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let flag = u64::try_from(flag).expect("clone flags are positive");
            let cond = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)
                .map_err(|e| format!("seccomp condition: {e}"))?;
            SeccompRule::new(vec![cond]).map_err(|e| format!("seccomp rule: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    deny.insert(libc::SYS_clone, clone_rules);
    let deny = filter(deny, libc::EPERM)?;
    let unsupported = filter(UNSUPPORTED.iter().map(|&nr| (nr, vec![])).collect(), libc::ENOSYS)?;
    let sockets = filter(socket_rules(socket_families(outbound))?, libc::EAFNOSUPPORT)?;
    [deny, unsupported, sockets]
        .into_iter()
        .map(|f| BpfProgram::try_from(f).map_err(|e| format!("seccomp compile: {e}")))
        .collect()
}

/// Installs the filters on the calling thread. Needs `no_new_privs` (or CAP_SYS_ADMIN).
pub fn install(outbound: bool) -> Result<(), String> {
    apply(&programs(outbound)?)
}

/// Installs filters built earlier (by [`programs`]). It allocates nothing, so it may run in
/// a forked child before exec.
pub fn apply(programs: &[BpfProgram]) -> Result<(), String> {
    for program in programs {
        seccompiler::apply_filter(program).map_err(|_| "seccomp install failed".to_owned())?;
    }
    Ok(())
}

pub use seccompiler::BpfProgram as Program;

#[cfg(test)]
mod tests {
    #[test]
    fn filters_compile() {
        for outbound in [false, true] {
            let programs = super::programs(outbound).expect("compiles");
            assert_eq!(programs.len(), 3);
            assert!(programs.iter().all(|p| !p.is_empty()));
        }
    }

    #[test]
    fn only_outbound_instances_may_open_internet_sockets() {
        assert_eq!(super::socket_families(false), &[libc::AF_UNIX]);
        assert_eq!(
            super::socket_families(true),
            &[libc::AF_UNIX, libc::AF_INET, libc::AF_INET6]
        );
        for outbound in [false, true] {
            for refused in [libc::AF_VSOCK, libc::AF_NETLINK, libc::AF_PACKET, libc::AF_ALG] {
                assert!(!super::socket_families(outbound).contains(&refused));
            }
        }
    }
}
