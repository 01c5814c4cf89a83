//! What runs an instance, as its task sees it: a process in the sandbox, or a virtual
//! machine (whose QEMU is itself a process in the sandbox). The task kills it, waits for it,
//! reads its memory and asks it to show a package or layers through this one type.

use std::path::Path;

use ignis_sandbox::{CgroupLimits, MemoryProbe, Process, Sandbox};

use crate::microvm::Vm;

// The process variant is the common one and lives in the instance's task, never moved
// around: boxing it would add an indirection to every call for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Host {
    Process(Process),
    Vm(Box<Vm>),
}

/// Where a package or layers are shown inside an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShowAt {
    Code,
    Opt,
}

impl Host {
    /// Kills it at once (SIGKILL to the process group; for a VM, to its QEMU).
    pub(crate) fn kill(&mut self) {
        match self {
            Host::Process(p) => p.kill(),
            Host::Vm(vm) => vm.kill(),
        }
    }

    pub(crate) fn is_running(&mut self) -> bool {
        match self {
            Host::Process(p) => p.is_running(),
            Host::Vm(vm) => vm.is_running(),
        }
    }

    /// Waits for it to end and describes how it ended.
    pub(crate) async fn wait(&mut self) -> String {
        match self {
            Host::Process(p) => p.wait().await,
            Host::Vm(vm) => vm.wait().await,
        }
    }

    /// Whether it ran out of memory: its cgroup's OOM killer, or a guest kernel's.
    pub(crate) fn oom_killed(&self) -> bool {
        match self {
            Host::Process(p) => p.oom_killed(),
            Host::Vm(vm) => vm.oom_killed(),
        }
    }

    /// Gives a generic process its function's limits. A VM's limits are set when it starts
    /// (its memory is the guest's RAM), so there is nothing to change.
    pub(crate) fn set_limits(&self, limits: CgroupLimits) -> Result<(), String> {
        match self {
            Host::Process(p) => p.set_limits(limits).map_err(|e| e.to_string()),
            Host::Vm(_) => Ok(()),
        }
    }

    /// Where its peak memory is read after each call (for a VM: its QEMU's cgroup, which
    /// holds the guest's RAM and the emulator's own memory).
    pub(crate) fn memory_probe(&self) -> Option<MemoryProbe> {
        match self {
            Host::Process(p) => p.memory_probe(),
            Host::Vm(vm) => vm.memory_probe(),
        }
    }

    /// Attaches outbound networking (a VM got its network when it started).
    pub(crate) async fn connect_outbound(&mut self, sandbox: &Sandbox) -> Result<(), String> {
        match self {
            Host::Process(p) => sandbox.connect_outbound(p).await.map_err(|e| e.to_string()),
            Host::Vm(_) => Ok(()),
        }
    }

    /// Shows `dirs` merged read-only at the code root or at `/opt` (the first on top).
    pub(crate) async fn show(&mut self, sandbox: &Sandbox, at: ShowAt, dirs: &[&Path]) -> Result<(), String> {
        match (self, at) {
            (Host::Process(p), ShowAt::Code) => {
                sandbox.show_package(p, dirs).await.map_err(|e| e.to_string())
            }
            (Host::Process(p), ShowAt::Opt) => sandbox.show_layers(p, dirs).await.map_err(|e| e.to_string()),
            (Host::Vm(vm), at) => vm.show(sandbox, at, dirs).await,
        }
    }
}
