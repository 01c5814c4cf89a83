//! Per-instance cgroups on cgroup v2 or v1/hybrid hosts: memory without swap, CPU quota,
//! a pids limit, and whether the kernel's OOM killer struck. Each server's instances sit in
//! one parent cgroup of their own (`ignis/s-<slot>`), with a pids limit for them all; at
//! start a server kills whatever dead servers left in theirs and removes them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::slot::{self, Slot};

/// Limits of one instance's cgroup.
#[derive(Debug, Clone, Copy)]
pub struct CgroupLimits {
    pub memory_mb: u32,
    pub vcpus: u32,
    pub pids: u32,
}

/// Where this server makes its instances' cgroups: the server's own parent cgroup.
#[derive(Debug, Clone)]
pub enum Cgroups {
    /// One unified hierarchy: `<base>/i-<id>`.
    V2 { base: PathBuf },
    /// Separate hierarchies per controller (cgroup v1 or hybrid).
    V1 {
        memory: PathBuf,
        cpu: PathBuf,
        pids: PathBuf,
    },
}

/// One instance's cgroup (one directory per hierarchy). Removed on drop, once empty.
#[derive(Debug)]
pub struct InstanceCgroup {
    dirs: Vec<PathBuf>,
    /// The `cgroup.procs` files the instance joins.
    pub procs: Vec<PathBuf>,
    /// `memory.events` (v2) or `memory.oom_control` (v1): has an `oom_kill N` line.
    oom_file: PathBuf,
    /// v2: one directory; v1: memory, cpu, pids.
    v2: bool,
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("cannot write {value:?} to {}: {e}", path.display()))
}

/// This process's cgroup path in hierarchy `key` ("" for v2, else a controller name).
fn own_path(key: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if key.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == key)
        };
        matches.then(|| path.to_owned())
    })
}

fn mkdir(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("cannot create cgroup {}: {e}", path.display()))
}

impl Cgroups {
    /// Finds a writable place for Ignis's cgroups, preferring v2 when it has the memory,
    /// cpu and pids controllers, else v1 hierarchies for them.
    pub fn detect(slot: &Slot) -> Result<Cgroups, String> {
        let root = Path::new("/sys/fs/cgroup");
        let locks = slot::lock_dir();
        if root.join("cgroup.controllers").exists() {
            return Cgroups::setup_v2_at(root, &own_path("").unwrap_or_default(), slot, &locks);
        }
        let v1 = |controller: &str| -> Result<PathBuf, String> {
            let mount = root.join(controller);
            if !mount.join("cgroup.procs").exists() {
                return Err(format!(
                    "no cgroup v1 {controller} hierarchy at {}",
                    mount.display()
                ));
            }
            let own = own_path(controller).unwrap_or_default();
            // v1 hierarchies are shared by every user: a server that is not root uses the
            // subtree root delegated to it (created and chowned to its uid by root).
            let uid = nix::unistd::geteuid();
            let name = if uid.is_root() {
                "ignis".to_owned()
            } else {
                format!("ignis-{uid}")
            };
            let dir = mount.join(own.trim_start_matches('/')).join(name);
            mkdir(&dir).map_err(|e| {
                if uid.is_root() {
                    e
                } else {
                    format!(
                        "{e}; a non-root server needs a delegated cgroup: as root, run \
                         `mkdir -p {d} && chown -R {uid} {d}`",
                        d = dir.display()
                    )
                }
            })?;
            Ok(dir)
        };
        let (memory, cpu, pids) = (v1("memory")?, v1("cpu")?, v1("pids")?);
        sweep(&[&memory, &cpu, &pids], slot, &locks);
        let name = slot_name(slot.index);
        let (memory, cpu, pids) = (memory.join(&name), cpu.join(&name), pids.join(&name));
        for dir in [&memory, &cpu, &pids] {
            mkdir(dir)?;
        }
        if memory.join("memory.use_hierarchy").exists() {
            // Already 1 on every kernel since 5.x; older ones need it for the parent to
            // count its children.
            write(&memory.join("memory.use_hierarchy"), "1").ok();
        }
        write(&pids.join("pids.max"), &server_pids_max().to_string())?;
        Ok(Cgroups::V1 { memory, cpu, pids })
    }

    /// v2 setup under `root` for a server whose cgroup is `own` (as /proc/self/cgroup says)
    /// and holds `slot`; `locks` is where other servers' slots are locked.
    fn setup_v2_at(root: &Path, own: &str, slot: &Slot, locks: &Path) -> Result<Cgroups, String> {
        let own = root.join(own.trim_start_matches('/'));
        let available = std::fs::read_to_string(own.join("cgroup.controllers")).unwrap_or_default();
        for needed in ["memory", "cpu", "pids"] {
            if !available.split_whitespace().any(|c| c == needed) {
                return Err(format!(
                    "the {needed} controller is not delegated to {}",
                    own.display()
                ));
            }
        }
        // cgroup v2 forbids controllers in a group's children while the group itself
        // holds processes: move this server into a leaf of its own first.
        let server = own.join("ignis-server");
        mkdir(&server)?;
        write(&server.join("cgroup.procs"), &std::process::id().to_string())?;
        write(&own.join("cgroup.subtree_control"), "+memory +cpu +pids")?;
        let ignis = own.join("ignis");
        mkdir(&ignis)?;
        sweep(&[&ignis], slot, locks);
        write(&ignis.join("cgroup.subtree_control"), "+memory +cpu +pids")?;
        let base = ignis.join(slot_name(slot.index));
        mkdir(&base)?;
        write(&base.join("cgroup.subtree_control"), "+memory +cpu +pids")?;
        write(&base.join("pids.max"), &server_pids_max().to_string())?;
        Ok(Cgroups::V2 { base })
    }

    /// At a server's stop: kills whatever is left in this server's parent cgroup and its
    /// instances' cgroups (parked inits, instances still exiting) and removes them all, so
    /// that a stopped server leaves no cgroup behind. Blocks until they are gone, or for
    /// [`SWEEP_DEADLINE`] at most per cgroup.
    pub fn remove_own(&self) {
        match self {
            Cgroups::V2 { base } => remove_tree(base, Left::AtStop),
            Cgroups::V1 { memory, cpu, pids } => {
                for dir in [memory, cpu, pids] {
                    remove_tree(dir, Left::AtStop);
                }
            }
        }
    }

    /// Creates the cgroup of one instance with its limits.
    pub fn create(&self, id: &str, limits: CgroupLimits) -> Result<InstanceCgroup, String> {
        let cg = self.create_empty(id)?;
        cg.set_limits(limits)?;
        Ok(cg)
    }

    /// Creates the cgroup of one instance with no limits yet (for a parked init).
    pub fn create_empty(&self, id: &str) -> Result<InstanceCgroup, String> {
        let name = format!("i-{id}");
        match self {
            Cgroups::V2 { base } => {
                let dir = base.join(name);
                mkdir(&dir)?;
                Ok(InstanceCgroup {
                    procs: vec![dir.join("cgroup.procs")],
                    oom_file: dir.join("memory.events"),
                    dirs: vec![dir],
                    v2: true,
                })
            }
            Cgroups::V1 { memory, cpu, pids } => {
                let dirs = vec![memory.join(&name), cpu.join(&name), pids.join(&name)];
                for d in &dirs {
                    mkdir(d)?;
                }
                Ok(InstanceCgroup {
                    procs: dirs.iter().map(|d| d.join("cgroup.procs")).collect(),
                    oom_file: dirs[0].join("memory.oom_control"),
                    dirs,
                    v2: false,
                })
            }
        }
    }
}

impl InstanceCgroup {
    /// Sets memory (no swap), CPU and process limits.
    pub fn set_limits(&self, limits: CgroupLimits) -> Result<(), String> {
        let memory = (u64::from(limits.memory_mb) * 1024 * 1024).to_string();
        let quota = u64::from(limits.vcpus) * 100_000;
        if self.v2 {
            let dir = &self.dirs[0];
            write(&dir.join("memory.max"), &memory)?;
            if dir.join("memory.swap.max").exists() {
                write(&dir.join("memory.swap.max"), "0")?;
            }
            write(&dir.join("cpu.max"), &format!("{quota} 100000"))?;
            write(&dir.join("pids.max"), &limits.pids.to_string())
        } else {
            let (m, c, p) = (&self.dirs[0], &self.dirs[1], &self.dirs[2]);
            // Without swap accounting there is no swap limit to set; with it, memory plus
            // swap gets the same limit, so no swap at all. The kernel keeps memory <=
            // memory+swap at every step: raising writes memsw first, lowering memory first.
            let memsw = m.join("memory.memsw.limit_in_bytes");
            if write(&m.join("memory.limit_in_bytes"), &memory).is_err() && memsw.exists() {
                write(&memsw, &memory)?;
                write(&m.join("memory.limit_in_bytes"), &memory)?;
            }
            if memsw.exists() {
                write(&memsw, &memory)?;
            }
            write(&m.join("memory.swappiness"), "0").ok();
            write(&c.join("cpu.cfs_period_us"), "100000")?;
            write(&c.join("cpu.cfs_quota_us"), &quota.to_string())?;
            write(&p.join("pids.max"), &limits.pids.to_string())
        }
    }

    /// The file holding the memory high-water mark of the instance (v1 `memory.max_usage_in_bytes`, v2
    /// `memory.peak`, which kernels before 5.19 lack).
    pub fn peak_memory_file(&self) -> PathBuf {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        self.dirs[0].join(file)
    }

    /// Whether the OOM killer killed a process of this instance.
    pub fn oom_killed(&self) -> bool {
        let text = std::fs::read_to_string(&self.oom_file).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
    }
}

impl Drop for InstanceCgroup {
    fn drop(&mut self) {
        let mut dirs = std::mem::take(&mut self.dirs);
        if remove_empty(&mut dirs) {
            return;
        }
        // The instance was killed but has not finished exiting, so its cgroup is still
        // busy: retry in the background for a while; what is left then goes in the sweep
        // of the next start.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for _ in 0..200 {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    if remove_empty(&mut dirs) {
                        return;
                    }
                }
                tracing::warn!("cgroups still busy after 10 s: {dirs:?}");
            });
        }
    }
}

/// Removes the directories that can be removed; true when none is left.
fn remove_empty(dirs: &mut Vec<PathBuf>) -> bool {
    dirs.retain(|d| match std::fs::remove_dir(d) {
        Ok(()) => false,
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    });
    dirs.is_empty()
}

/// The parent cgroup of the instances of the server holding slot `index`.
fn slot_name(index: u32) -> String {
    format!("s-{index}")
}

/// How many processes all instances of one server may have together: half of what the
/// kernel allows on the host, so they can never use up the host's pids, and at most 32768.
fn server_pids_max() -> u64 {
    let read = |path: &str| -> u64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(32768)
    };
    (read("/proc/sys/kernel/pid_max").min(read("/proc/sys/kernel/threads-max")) / 2).clamp(64, 32768)
}

/// How long the start-up sweep waits for killed processes to leave their cgroups.
const SWEEP_DEADLINE: Duration = Duration::from_secs(10);

/// At start: kills every process left in this server's parent cgroup and in those of
/// servers no longer running (their slot's lock is free), and removes their cgroups. An
/// older server's `i-<pid>-<n>` cgroups directly under `ignis` are swept when that pid is
/// gone. A live server's cgroups, even empty ones about to be joined, are left alone.
fn sweep(bases: &[&Path], own: &Slot, locks: &Path) {
    let mut slots = std::collections::BTreeSet::new();
    for base in bases {
        let Ok(entries) = std::fs::read_dir(base) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(index) = name.strip_prefix("s-").and_then(|i| i.parse::<u32>().ok()) {
                slots.insert(index);
            } else if let Some(pid) = name.strip_prefix("i-").and_then(|rest| rest.split('-').next()) {
                let owner_alive =
                    pid != std::process::id().to_string() && Path::new("/proc").join(pid).exists();
                if !owner_alive {
                    remove_tree(&entry.path(), Left::ByDeadServer);
                }
            }
        }
    }
    for index in slots {
        let dirs: Vec<PathBuf> = bases.iter().map(|b| b.join(slot_name(index))).collect();
        if index == own.index {
            // Ours now: what is in it was left by the dead server that held the slot.
            for dir in &dirs {
                empty_out(dir, Left::ByDeadServer);
            }
            continue;
        }
        // Held while sweeping, so that no server starting meanwhile takes the slot.
        if let Ok(Some(_held)) = slot::try_lock(locks, index) {
            for dir in &dirs {
                remove_tree(dir, Left::ByDeadServer);
            }
        }
    }
}

/// Who left the processes a cleanup kills: what it logs.
#[derive(Debug, Clone, Copy)]
enum Left {
    /// A server that is gone (found at start): worth a warning.
    ByDeadServer,
    /// This server, stopping: its instances, expected.
    AtStop,
}

/// Kills every process in `dir` and its descendants and removes the descendants.
fn empty_out(dir: &Path, left: Left) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path(), left);
            }
        }
    }
    kill_all(dir, left);
}

/// Kills every process in the cgroup `dir` and below, then removes it.
fn remove_tree(dir: &Path, left: Left) {
    let deadline = Instant::now() + SWEEP_DEADLINE;
    loop {
        // Again on every try: a process may join (a starting init) or a child cgroup
        // appear (an instance starting) while the others are killed.
        empty_out(dir, left);
        // A killed process leaves its cgroup only once it has finished exiting.
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if Instant::now() > deadline => {
                tracing::warn!("cannot remove the leftover cgroup {}: {e}", dir.display());
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// SIGKILLs the processes of the cgroup `dir` (not its descendants) until none is left:
/// one may fork while the others are being killed.
fn kill_all(dir: &Path, left: Left) {
    let deadline = Instant::now() + SWEEP_DEADLINE;
    loop {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if pids.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            tracing::warn!(
                "processes left in {} after {SWEEP_DEADLINE:?}: {pids:?}",
                dir.display()
            );
            return;
        }
        match left {
            Left::ByDeadServer => tracing::warn!(
                "killing {} process(es) a previous run left in {}",
                pids.len(),
                dir.display()
            ),
            Left::AtStop => tracing::debug!(
                "stopping: killing {} process(es) of instances in {}",
                pids.len(),
                dir.display()
            ),
        }
        for pid in pids {
            // Gone already is as good as killed.
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    //! The cgroup v2 file layout, on a directory standing in for a delegated cgroup (the
    //! CI host is v1/hybrid; the v1 path runs for real in the end-to-end tests).

    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn delegated(controllers: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        let own = root.path().join("user.slice/ignis.service");
        std::fs::create_dir_all(&own).expect("mkdir");
        std::fs::write(own.join("cgroup.controllers"), controllers).expect("write");
        root
    }

    #[test]
    fn v2_moves_the_server_to_a_leaf_and_enables_the_controllers_below_it() {
        let root = delegated("cpuset cpu io memory hugetlb pids rdma\n");
        let locks = tempfile::tempdir().expect("tempdir");
        let slot = slot::claim(locks.path()).expect("slot");
        let cg = Cgroups::setup_v2_at(root.path(), "/user.slice/ignis.service", &slot, locks.path())
            .expect("set up");
        let own = root.path().join("user.slice/ignis.service");
        assert_eq!(
            read(&own.join("ignis-server/cgroup.procs")),
            std::process::id().to_string()
        );
        assert_eq!(read(&own.join("cgroup.subtree_control")), "+memory +cpu +pids");
        assert_eq!(
            read(&own.join("ignis/cgroup.subtree_control")),
            "+memory +cpu +pids"
        );
        let Cgroups::V2 { base } = cg else {
            panic!("v2 expected")
        };
        assert_eq!(base, own.join("ignis/s-0"), "the server's own parent cgroup");
        assert_eq!(read(&base.join("cgroup.subtree_control")), "+memory +cpu +pids");
        let pids: u64 = read(&base.join("pids.max")).parse().expect("a number");
        assert!((64..=32768).contains(&pids), "{pids}");
    }

    #[test]
    fn v2_sweeps_the_cgroups_of_dead_servers_and_leaves_live_ones() {
        let root = delegated("cpu memory pids\n");
        let locks = tempfile::tempdir().expect("tempdir");
        let ignis = root.path().join("user.slice/ignis.service/ignis");
        // Slot 0 belongs to a live server; 1 and 5 to dead ones; 2 is ours.
        let live = slot::claim(locks.path()).expect("slot 0");
        let dead = slot::claim(locks.path()).expect("slot 1");
        for dir in ["s-0/i-9-1", "s-1/i-8-1", "s-5/i-7-1", "s-2/i-6-1"] {
            std::fs::create_dir_all(ignis.join(dir)).expect("mkdir");
        }
        drop(dead);
        let ours = slot::claim(locks.path()).expect("slot 1 again");
        assert_eq!(ours.index, 1);
        let _stand_in = slot::try_lock(locks.path(), 2).expect("lock").expect("free");
        let cg = Cgroups::setup_v2_at(root.path(), "/user.slice/ignis.service", &ours, locks.path())
            .expect("set up");
        let Cgroups::V2 { base } = cg else {
            panic!("v2 expected")
        };
        assert_eq!(base, ignis.join("s-1"));
        assert!(ignis.join("s-0/i-9-1").is_dir(), "a live server's cgroups stay");
        assert!(
            !ignis.join("s-1/i-8-1").exists(),
            "our dead predecessor's are removed"
        );
        assert!(
            ignis.join("s-2/i-6-1").is_dir(),
            "slot 2 is held (by the stand-in)"
        );
        assert!(
            !ignis.join("s-5").exists(),
            "a dead server's parent cgroup is removed"
        );
        drop(live);
    }

    #[test]
    fn a_stopping_server_removes_its_parent_cgroup_and_every_instance_cgroup_left_in_it() {
        // Regression: a server stopped by SIGTERM left the cgroups of its parked inits
        // behind (seen on cgroup v2 in the guest test, crates/guest/tests/cgroup_v2.rs).
        let root = delegated("cpu memory pids\n");
        let locks = tempfile::tempdir().expect("tempdir");
        let slot = slot::claim(locks.path()).expect("slot");
        let cg = Cgroups::setup_v2_at(root.path(), "/user.slice/ignis.service", &slot, locks.path())
            .expect("set up");
        let Cgroups::V2 { base } = &cg else {
            panic!("v2 expected")
        };
        // The kernel makes the interface files; a stand-in directory cannot be removed with
        // them, so leave them out here.
        for f in ["cgroup.subtree_control", "pids.max"] {
            std::fs::remove_file(base.join(f)).expect("remove");
        }
        let parked = cg.create_empty("1-1").expect("create");
        std::fs::create_dir(base.join("i-1-2")).expect("mkdir");
        std::mem::forget(parked); // As a server that exits without dropping it.
        let other = root.path().join("user.slice/ignis.service/ignis/s-7/i-9-1");
        std::fs::create_dir_all(&other).expect("another server's");
        cg.remove_own();
        assert!(!base.exists(), "the server's parent cgroup is gone");
        assert!(other.is_dir(), "another server's cgroups stay");
    }

    #[test]
    fn v2_refuses_when_a_controller_is_not_delegated() {
        let root = delegated("cpu memory\n");
        let locks = tempfile::tempdir().expect("tempdir");
        let slot = slot::claim(locks.path()).expect("slot");
        let err = Cgroups::setup_v2_at(root.path(), "/user.slice/ignis.service", &slot, locks.path())
            .expect_err("no pids");
        assert!(err.contains("pids controller is not delegated"), "{err}");
    }

    #[test]
    fn v2_instance_limits_peak_and_oom_files() {
        let base = tempfile::tempdir().expect("tempdir");
        let cgroups = Cgroups::V2 {
            base: base.path().to_owned(),
        };
        let cg = cgroups.create_empty("1-7").expect("create");
        let dir = base.path().join("i-1-7");
        assert_eq!(cg.procs, vec![dir.join("cgroup.procs")]);
        // The kernel makes memory.swap.max where swap is accounted.
        std::fs::write(dir.join("memory.swap.max"), "max").expect("write");
        cg.set_limits(CgroupLimits {
            memory_mb: 256,
            vcpus: 2,
            pids: 64,
        })
        .expect("limits");
        assert_eq!(read(&dir.join("memory.max")), (256u64 << 20).to_string());
        assert_eq!(read(&dir.join("memory.swap.max")), "0", "no swap");
        assert_eq!(read(&dir.join("cpu.max")), "200000 100000");
        assert_eq!(read(&dir.join("pids.max")), "64");
        assert_eq!(cg.peak_memory_file(), dir.join("memory.peak"));
        assert!(!cg.oom_killed(), "no memory.events yet");
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n",
        )
        .expect("write");
        assert!(!cg.oom_killed());
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .expect("write");
        assert!(cg.oom_killed());
    }
}
