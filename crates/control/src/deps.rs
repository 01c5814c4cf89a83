//! Dependencies: what a package asks to install (a `requirements.txt`, a `package.json`
//! with its lockfile), the cache of installed dependency sets, one folder per key under
//! `<deps>/<key>`, and the builds that fill it. The key covers everything a build reads:
//! the installer and interpreter versions and the manifest files' bytes, so two
//! functions (or versions) with the same dependencies share one folder and the second
//! deploys without installing. A folder appears only complete (built in `.tmp-…`, then
//! renamed); its files are made readable by every instance and owned by the server.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use ignis_core::Runtime;
use ignis_pool::{Installer, Runtimes};
use sha2::{Digest, Sha256};

/// The prefix of build folders in progress.
const TEMPORARY: &str = ".tmp-";

/// What a package asks to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DepsPlan {
    pub installer: Installer,
    pub key: String,
    /// The manifest files (name, bytes) the build reads.
    pub files: Vec<(String, Vec<u8>)>,
    /// Bun: a `bun.lock` is followed exactly.
    pub frozen: bool,
    /// For a layer: the folder of Lambda's layout the set goes into (`python`, `nodejs`).
    pub prefix: Option<&'static str>,
}

/// Settings of the cache and its builds, from the server's configuration.
#[derive(Debug, Clone)]
pub struct DepsConfig {
    /// `<data>/deps` unless set (tests share one across servers).
    pub dir: PathBuf,
    /// Past this size, entries no function's newest or ready version uses are removed,
    /// least recently used first.
    pub max_cache_bytes: u64,
    /// The largest one set of installed dependencies may be.
    pub max_build_bytes: u64,
    pub build_timeout: Duration,
    pub build_memory_mb: u32,
}

/// Lockfiles Bun reads, in the order it prefers them.
const LOCKFILES: [&str; 4] = ["bun.lock", "bun.lockb", "package-lock.json", "yarn.lock"];

/// Reads what the unpacked package at `dir` asks to install, if anything: Python, a
/// `requirements.txt` at the root naming at least one requirement; JavaScript and
/// TypeScript, a `package.json` with dependencies, unless the upload carries its own
/// `node_modules` (vendored, as on Lambda).
pub(crate) fn plan(runtime: Runtime, dir: &Path, runtimes: &Runtimes) -> Result<Option<DepsPlan>, String> {
    plan_into(runtime, dir, runtimes, None)
}

/// What a layer asks to install: a `requirements.txt` (for a layer Python may use) goes
/// into `python/`, a `package.json` (JavaScript, TypeScript) into `nodejs/`, as Lambda's
/// layers lay them out; a layer installs one of them.
pub(crate) fn plan_layer(
    layer_runtimes: &[Runtime],
    dir: &Path,
    runtimes: &Runtimes,
) -> Result<Option<DepsPlan>, String> {
    let python = if layer_runtimes.contains(&Runtime::Python) {
        plan_into(Runtime::Python, dir, runtimes, Some("python"))?
    } else {
        None
    };
    let js = match layer_runtimes.iter().find(|r| **r != Runtime::Python) {
        Some(r) if !dir.join("nodejs/node_modules").is_dir() => plan_into(*r, dir, runtimes, Some("nodejs"))?,
        Some(_) | None => None,
    };
    match (python, js) {
        (Some(_), Some(_)) => {
            Err("a layer installs either a requirements.txt or a package.json, not both".to_owned())
        }
        (p, j) => Ok(p.or(j)),
    }
}

fn plan_into(
    runtime: Runtime,
    dir: &Path,
    runtimes: &Runtimes,
    prefix: Option<&'static str>,
) -> Result<Option<DepsPlan>, String> {
    let read = |name: &str| -> Result<Option<Vec<u8>>, String> {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("reading {name}: {e}")),
        }
    };
    let (installer, files, frozen, versions) = match runtime {
        Runtime::Python => {
            let Some(reqs) = read("requirements.txt")? else {
                return Ok(None);
            };
            let text = String::from_utf8_lossy(&reqs);
            let any = text
                .lines()
                .map(str::trim)
                .any(|l| !l.is_empty() && !l.starts_with('#'));
            if !any {
                return Ok(None);
            }
            let versions = format!(
                "uv {} python {}",
                runtimes.uv.version.as_deref().unwrap_or("?"),
                runtimes.python.version.as_deref().unwrap_or("?")
            );
            (
                Installer::Uv,
                vec![("requirements.txt".to_owned(), reqs)],
                false,
                versions,
            )
        }
        Runtime::Javascript | Runtime::Typescript => {
            let Some(manifest) = read("package.json")? else {
                return Ok(None);
            };
            if dir.join("node_modules").is_dir() {
                return Ok(None);
            }
            let parsed: serde_json::Value = serde_json::from_slice(&manifest)
                .map_err(|e| format!("package.json is not valid JSON: {e}"))?;
            let any = ["dependencies", "optionalDependencies"].iter().any(|k| {
                parsed
                    .get(k)
                    .and_then(serde_json::Value::as_object)
                    .is_some_and(|m| !m.is_empty())
            });
            if !any {
                return Ok(None);
            }
            let mut files = vec![("package.json".to_owned(), manifest)];
            let mut frozen = false;
            for name in LOCKFILES {
                if let Some(bytes) = read(name)? {
                    frozen |= name.starts_with("bun.");
                    files.push((name.to_owned(), bytes));
                }
            }
            let versions = format!("bun {}", runtimes.bun.version.as_deref().unwrap_or("?"));
            (Installer::Bun, files, frozen, versions)
        }
    };
    let mut hash = Sha256::new();
    hash.update(b"ignis-deps-1\0");
    if let Some(prefix) = prefix {
        hash.update(b"layer ");
        hash.update(prefix.as_bytes());
        hash.update(b"\0");
    }
    hash.update(installer.as_str().as_bytes());
    hash.update(b"\0");
    hash.update(versions.as_bytes());
    for (name, bytes) in &files {
        hash.update(b"\0");
        hash.update(name.as_bytes());
        hash.update(b"\0");
        hash.update(bytes.len().to_le_bytes());
        hash.update(bytes);
    }
    Ok(Some(DepsPlan {
        installer,
        key: hex::encode(hash.finalize()),
        files,
        frozen,
        prefix,
    }))
}

/// The cache of installed dependency sets.
#[derive(Debug)]
pub(crate) struct DepsCache {
    pub config: DepsConfig,
    /// One build per key at a time in this server; a second deploy with the same
    /// dependencies waits and then finds the folder.
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl DepsCache {
    /// The cache, without build folders left by builds that can no longer be running
    /// (older than the build time limit: another server may share the folder).
    pub fn open(config: DepsConfig) -> DepsCache {
        if let Ok(entries) = std::fs::read_dir(&config.dir) {
            let stale = config.build_timeout + Duration::from_secs(60);
            for entry in entries.flatten() {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > stale);
                if entry.file_name().to_string_lossy().starts_with(TEMPORARY) && old {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        DepsCache {
            config,
            locks: Mutex::default(),
        }
    }

    /// The lock of `key`'s builds.
    pub fn lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, l| l.strong_count() > 0);
        if let Some(l) = locks.get(key).and_then(Weak::upgrade) {
            return l;
        }
        let l = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(key.to_owned(), Arc::downgrade(&l));
        l
    }

    /// The folder of `key`, if built (its use time is refreshed for the collection).
    pub fn find(&self, key: &str) -> Option<PathBuf> {
        let dir = self.config.dir.join(key);
        if dir.is_dir() {
            let _ = std::fs::File::open(&dir).and_then(|f| f.set_modified(SystemTime::now()));
            Some(dir)
        } else {
            None
        }
    }

    /// A fresh work folder for a build of `plan`: `src/` holding the manifest for uv,
    /// `out/` holding it for Bun (which installs where its `package.json` is), `cache/`.
    pub fn prepare(&self, plan: &DepsPlan) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.config.dir)?;
        // Work folders are writable by the build's own id (0777): only the server may
        // reach them, also when the cache is outside the (0700) data folder.
        std::fs::set_permissions(&self.config.dir, std::fs::Permissions::from_mode(0o700))?;
        let work = self.config.dir.join(format!(
            "{TEMPORARY}{}-{:016x}",
            &plan.key[..16],
            rand::random::<u64>()
        ));
        for sub in ["src", "out", "cache"] {
            std::fs::create_dir_all(work.join(sub))?;
        }
        let into = match plan.installer {
            Installer::Uv => work.join("src"),
            Installer::Bun => work.join("out").join(plan.prefix.unwrap_or("")),
        };
        std::fs::create_dir_all(&into)?;
        for (name, bytes) in &plan.files {
            std::fs::write(into.join(name), bytes)?;
        }
        Ok(work)
    }

    /// Turns a finished build's output into the cache entry of `plan`: only what
    /// instances need is kept, every file made readable and owned by the server,
    /// anything that is not a file, folder or link removed, and the size checked. The
    /// work folder is removed in every case.
    pub fn commit(&self, plan: &DepsPlan, work: &Path) -> Result<PathBuf, String> {
        let result = self.commit_inner(plan, work);
        let _ = std::fs::remove_dir_all(work);
        result
    }

    fn commit_inner(&self, plan: &DepsPlan, work: &Path) -> Result<PathBuf, String> {
        let out = work.join("out");
        if plan.installer == Installer::Bun {
            // Bun's own files (the manifest, a lockfile it wrote) stay with the package.
            let root = out.join(plan.prefix.unwrap_or(""));
            for entry in std::fs::read_dir(&root).map_err(|e| format!("reading the build's output: {e}"))? {
                let entry = entry.map_err(|e| format!("reading the build's output: {e}"))?;
                if entry.file_name() != "node_modules" {
                    remove_any(&entry.path()).map_err(|e| format!("tidying the build's output: {e}"))?;
                }
            }
        }
        let mut size = 0u64;
        normalize(&out, &mut size, self.config.max_build_bytes)?;
        let target = self.config.dir.join(&plan.key);
        match std::fs::rename(&out, &target) {
            Ok(()) => {}
            // Another server sharing the cache built the same set first: its copy is as good.
            Err(_) if target.is_dir() => {}
            Err(e) => return Err(format!("storing the installed dependencies: {e}")),
        }
        Ok(target)
    }

    /// Removes entries that `in_use` does not name, least recently used first, while the
    /// cache is over its size. Blocking; returns how many were removed.
    pub fn collect(&self, in_use: &std::collections::HashSet<String>) -> std::io::Result<usize> {
        let Ok(entries) = std::fs::read_dir(&self.config.dir) else {
            return Ok(0);
        };
        let mut all = Vec::new();
        let mut total = 0u64;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let size = tree_size(&entry.path());
            total += size;
            let used = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            all.push((used, name, size));
        }
        all.sort();
        let mut removed = 0;
        for (_, name, size) in all {
            if total <= self.config.max_cache_bytes {
                break;
            }
            if in_use.contains(&name) {
                continue;
            }
            std::fs::remove_dir_all(self.config.dir.join(&name))?;
            total = total.saturating_sub(size);
            removed += 1;
        }
        Ok(removed)
    }
}

/// The package and its dependencies in one folder of hard links, for a server without
/// the sandbox (whose instances read host folders directly, with no overlay to merge
/// them): the package's files win over a dependency's of the same path.
pub(crate) fn merged(package: &Path, deps: &Path, under: &Path) -> std::io::Result<PathBuf> {
    let name = format!(
        "{}-{}",
        package.file_name().unwrap_or_default().to_string_lossy(),
        deps.file_name().unwrap_or_default().to_string_lossy()
    );
    let target = under.join(&name);
    if target.is_dir() {
        return Ok(target);
    }
    std::fs::create_dir_all(under)?;
    let temporary = under.join(format!("{TEMPORARY}{name}-{:016x}", rand::random::<u64>()));
    let linked = link_tree(deps, &temporary).and_then(|()| link_tree(package, &temporary));
    let done = linked.and_then(|()| match std::fs::rename(&temporary, &target) {
        Ok(()) => Ok(()),
        Err(_) if target.is_dir() => std::fs::remove_dir_all(&temporary),
        Err(e) => Err(e),
    });
    if let Err(e) = done {
        let _ = std::fs::remove_dir_all(&temporary);
        return Err(e);
    }
    Ok(target)
}

fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            link_tree(&src, &dst)?;
        } else {
            if dst.exists() || dst.is_symlink() {
                std::fs::remove_file(&dst)?;
            }
            if kind.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
            } else {
                std::fs::hard_link(&src, &dst)?;
            }
        }
    }
    Ok(())
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    if path.symlink_metadata()?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// Walks a build's output (never following links): folders 0755, files 0644 or 0755,
/// owned by the server, no set-id bits, nothing but files, folders and links, at most
/// `max` bytes in all.
fn normalize(dir: &Path, size: &mut u64, max: u64) -> Result<(), String> {
    let owner = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    let fail = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    std::os::unix::fs::lchown(dir, Some(owner.0), Some(owner.1)).map_err(|e| fail("chown", dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| fail("chmod", dir, e))?;
    for entry in std::fs::read_dir(dir).map_err(|e| fail("read", dir, e))? {
        let entry = entry.map_err(|e| fail("read", dir, e))?;
        let path = entry.path();
        let meta = path.symlink_metadata().map_err(|e| fail("stat", &path, e))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            normalize(&path, size, max)?;
        } else if kind.is_file() {
            *size += meta.len();
            if *size > max {
                return Err(format!(
                    "the installed dependencies are larger than the limit of {} MiB",
                    max / (1024 * 1024)
                ));
            }
            std::os::unix::fs::lchown(&path, Some(owner.0), Some(owner.1))
                .map_err(|e| fail("chown", &path, e))?;
            let mode = if meta.mode() & 0o111 != 0 { 0o755 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| fail("chmod", &path, e))?;
        } else if kind.is_symlink() {
            std::os::unix::fs::lchown(&path, Some(owner.0), Some(owner.1))
                .map_err(|e| fail("chown", &path, e))?;
        } else {
            // A fifo or socket an install script left: no instance needs it.
            std::fs::remove_file(&path).map_err(|e| fail("remove", &path, e))?;
        }
    }
    Ok(())
}

fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.path().symlink_metadata() {
            Ok(m) if m.is_dir() => tree_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtimes() -> Runtimes {
        let i = |v: &str| ignis_pool::Interpreter {
            available: true,
            version: Some(v.to_owned()),
            path: None,
            error: None,
            mounts: Vec::new(),
            site_packages: Vec::new(),
        };
        Runtimes {
            python: i("3.11.7"),
            bun: i("1.4.5"),
            uv: i("0.13.9"),
            bootstrap_dir: PathBuf::new(),
        }
    }

    #[test]
    fn what_a_package_asks_to_install() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let rt = runtimes();
        assert_eq!(plan(Runtime::Python, d, &rt).expect("plan"), None);
        std::fs::write(d.join("requirements.txt"), "# nothing\n\n").expect("write");
        assert_eq!(
            plan(Runtime::Python, d, &rt).expect("plan"),
            None,
            "comments only"
        );
        std::fs::write(d.join("requirements.txt"), "pyjwt==2.9.0\n").expect("write");
        let p = plan(Runtime::Python, d, &rt).expect("plan").expect("a plan");
        assert_eq!(p.installer, Installer::Uv);
        let mut other = runtimes();
        other.python.version = Some("3.12.1".to_owned());
        let q = plan(Runtime::Python, d, &other).expect("plan").expect("a plan");
        assert_ne!(p.key, q.key, "another interpreter version is another set");

        std::fs::write(
            d.join("package.json"),
            r#"{"name":"x","devDependencies":{"a":"1"}}"#,
        )
        .expect("write");
        assert_eq!(
            plan(Runtime::Typescript, d, &rt).expect("plan"),
            None,
            "dev dependencies only"
        );
        std::fs::write(d.join("package.json"), r#"{"dependencies":{"zod":"3.23.8"}}"#).expect("write");
        let js = plan(Runtime::Typescript, d, &rt).expect("plan").expect("a plan");
        assert!(!js.frozen);
        std::fs::write(d.join("bun.lock"), "{}").expect("write");
        let locked = plan(Runtime::Javascript, d, &rt).expect("plan").expect("a plan");
        assert!(locked.frozen);
        assert_ne!(js.key, locked.key, "the lockfile is part of the key");
        std::fs::create_dir(d.join("node_modules")).expect("mkdir");
        assert_eq!(plan(Runtime::Javascript, d, &rt).expect("plan"), None, "vendored");
        std::fs::write(d.join("package.json"), "{").expect("write");
        std::fs::remove_dir(d.join("node_modules")).expect("rmdir");
        let err = plan(Runtime::Javascript, d, &rt).expect_err("bad JSON");
        assert!(err.contains("package.json is not valid JSON"), "{err}");
    }

    #[test]
    fn a_commit_keeps_only_readable_files_within_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = |max| DepsConfig {
            dir: dir.path().join("deps"),
            max_cache_bytes: 1 << 30,
            max_build_bytes: max,
            build_timeout: Duration::from_secs(60),
            build_memory_mb: 512,
        };
        let cache = DepsCache::open(config(1024));
        let rt = runtimes();
        let pkg = tempfile::tempdir().expect("tempdir");
        std::fs::write(pkg.path().join("package.json"), r#"{"dependencies":{"a":"1"}}"#).expect("write");
        let plan = plan(Runtime::Javascript, pkg.path(), &rt)
            .expect("plan")
            .expect("a plan");
        let work = cache.prepare(&plan).expect("prepare");
        assert!(work.join("out/package.json").is_file());
        let mode = std::fs::metadata(dir.path().join("deps")).expect("stat").mode() & 0o777;
        assert_eq!(mode, 0o700, "only the server reaches the build folders");
        let m = work.join("out/node_modules/a");
        std::fs::create_dir_all(&m).expect("mkdir");
        std::fs::write(m.join("index.js"), "x").expect("write");
        std::fs::set_permissions(m.join("index.js"), std::fs::Permissions::from_mode(0o4700)).expect("chmod");
        nix::unistd::mkfifo(&m.join("fifo"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let entry = cache.commit(&plan, &work).expect("commit");
        assert!(!work.exists(), "the work folder is removed");
        assert_eq!(entry, dir.path().join("deps").join(&plan.key));
        assert!(!entry.join("package.json").exists(), "only node_modules is kept");
        let mode = std::fs::metadata(entry.join("node_modules/a/index.js"))
            .expect("stat")
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o755, "readable by every instance, no set-uid bit");
        assert!(!entry.join("node_modules/a/fifo").exists());
        assert_eq!(cache.find(&plan.key), Some(entry.clone()));

        let small = DepsCache::open(config(4));
        std::fs::remove_dir_all(&entry).expect("rm");
        let work = small.prepare(&plan).expect("prepare");
        std::fs::create_dir_all(work.join("out/node_modules")).expect("mkdir");
        std::fs::write(work.join("out/node_modules/big.js"), "12345").expect("write");
        let err = small.commit(&plan, &work).expect_err("over the limit");
        assert!(err.contains("larger than the limit"), "{err}");
        assert_eq!(small.find(&plan.key), None);
    }

    #[test]
    fn merged_folders_prefer_the_package() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (pkg, deps) = (dir.path().join("p"), dir.path().join("d"));
        std::fs::create_dir_all(pkg.join("lib")).expect("mkdir");
        std::fs::create_dir_all(deps.join("lib")).expect("mkdir");
        std::fs::write(pkg.join("lib/x.py"), "package").expect("write");
        std::fs::write(deps.join("lib/x.py"), "dependency").expect("write");
        std::fs::write(deps.join("lib/y.py"), "dependency").expect("write");
        let m = merged(&pkg, &deps, &dir.path().join("merged")).expect("merge");
        assert_eq!(
            std::fs::read_to_string(m.join("lib/x.py")).expect("read"),
            "package"
        );
        assert_eq!(
            std::fs::read_to_string(m.join("lib/y.py")).expect("read"),
            "dependency"
        );
    }
}
