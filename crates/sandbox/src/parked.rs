//! Parked inits: sandbox inits started ahead of need that have already joined a fresh
//! cgroup and wait for their config on stdin. Joining a cgroup makes the kernel wait for
//! an RCU grace period (~10 ms here); a parked init has paid it before an instance start
//! needs it. Limits are written when an init is taken, which costs no such wait.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;

use crate::cgroup::{CgroupLimits, InstanceCgroup};
use crate::init::{InitConfig, INIT_ARG, PARK_ARG};
use crate::{SpawnError, SpawnRequest, Spawned, Spawner};

/// How many inits wait parked.
pub(crate) const PARKED: usize = 2;

pub(crate) struct Parked {
    spawned: Spawned,
    /// The write end of the init's stdin: the config goes here.
    config_in: OwnedFd,
}

impl Parked {
    /// Starts an init that joins `cgroup` at once, then waits.
    pub(crate) fn start(spawner: &Spawner, exe: &Path, cgroup: InstanceCgroup) -> Result<Parked, SpawnError> {
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SpawnError::Socket(e.into()))?;
        let procs = serde_json::to_string(&cgroup.procs).map_err(|e| SpawnError::Cgroup(e.to_string()))?;
        let req = SpawnRequest {
            program: exe.to_path_buf(),
            args: vec![INIT_ARG.to_owned(), PARK_ARG.to_owned(), procs],
            env: Default::default(),
            cwd: "/".into(),
            binds: Vec::new(),
            limits: CgroupLimits {
                memory_mb: 0,
                vcpus: 0,
                pids: 0,
            },
            tmp_size_mb: 0,
            outbound: false,
            empty_dirs: Vec::new(),
            writable: None,
            wait_for_go: false,
            kvm: false,
        };
        let spawned = spawner.spawn(req, Some(cgroup), Stdio::from(read))?;
        Ok(Parked {
            spawned,
            config_in: write,
        })
    }

    /// Whether the init is still waiting (it could have been killed meanwhile).
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.spawned.process.child.try_wait(), Ok(None))
    }

    /// Sets the instance's limits and hands the init its config: it goes on at once.
    pub(crate) fn release(self, config: &InitConfig, limits: CgroupLimits) -> Result<Spawned, SpawnError> {
        if let Some(cgroup) = &self.spawned.process.cgroup {
            cgroup.set_limits(limits).map_err(SpawnError::Cgroup)?;
        }
        let json = serde_json::to_vec(config).map_err(|e| SpawnError::Cgroup(e.to_string()))?;
        // The init reads its stdin to the end right away, so this cannot block for long;
        // closing the pipe (on drop) is the end it waits for.
        std::fs::File::from(self.config_in)
            .write_all(&json)
            .map_err(SpawnError::Socket)?;
        Ok(self.spawned)
    }
}
