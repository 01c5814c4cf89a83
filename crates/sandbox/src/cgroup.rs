//! Per-instance cgroups on cgroup v2 or v1/hybrid hosts: memory without swap, CPU quota,
//! a pids limit, and whether the kernel's OOM killer struck.

use std::path::{Path, PathBuf};

/// Limits of one instance's cgroup.
#[derive(Debug, Clone, Copy)]
pub struct CgroupLimits {
    pub memory_mb: u32,
    pub vcpus: u32,
    pub pids: u32,
}

/// Where Ignis makes its cgroups.
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
    pub fn detect() -> Result<Cgroups, String> {
        let root = Path::new("/sys/fs/cgroup");
        if root.join("cgroup.controllers").exists() {
            return Cgroups::setup_v2(root);
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
        for base in [&memory, &cpu, &pids] {
            sweep(base);
        }
        Ok(Cgroups::V1 { memory, cpu, pids })
    }

    fn setup_v2(root: &Path) -> Result<Cgroups, String> {
        Cgroups::setup_v2_at(root, &own_path("").unwrap_or_default())
    }

    /// v2 setup under `root` for a server whose cgroup is `own` (as /proc/self/cgroup says).
    fn setup_v2_at(root: &Path, own: &str) -> Result<Cgroups, String> {
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
        let base = own.join("ignis");
        mkdir(&base)?;
        sweep(&base);
        write(&base.join("cgroup.subtree_control"), "+memory +cpu +pids")?;
        Ok(Cgroups::V2 { base })
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

/// Removes the instance cgroups that servers no longer running left behind (killed before
/// they could). Names are `i-<server pid>-<n>`: other live servers' cgroups, even empty
/// ones about to be joined, are left alone.
fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("i-").and_then(|rest| rest.split('-').next()) else {
            continue;
        };
        let owner_alive = pid != std::process::id().to_string() && Path::new("/proc").join(pid).exists();
        if !owner_alive {
            let _ = std::fs::remove_dir(entry.path());
        }
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
        let cg = Cgroups::setup_v2_at(root.path(), "/user.slice/ignis.service").expect("set up");
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
        assert_eq!(base, own.join("ignis"));
    }

    #[test]
    fn v2_refuses_when_a_controller_is_not_delegated() {
        let root = delegated("cpu memory\n");
        let err = Cgroups::setup_v2_at(root.path(), "/user.slice/ignis.service").expect_err("no pids");
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
