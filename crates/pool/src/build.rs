//! Builds: a function's dependencies installed by their installer (uv for a
//! `requirements.txt`, Bun for a `package.json`) in a sandbox like an instance's, with
//! outbound networking to reach the package registries, a time limit, and one folder it
//! may write. The caller (the control plane's dependency cache) prepares the work folder
//! and takes the output; this module only runs the installer and streams what it prints.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ignis_sandbox::{Bind, CgroupLimits, SpawnRequest};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::launcher::{sandbox_env, show_host_paths, Launcher, SANDBOX_BUN};

/// Where the work folder appears inside a build's sandbox.
const SANDBOX_WORK: &str = "/build";
/// Where a sandboxed build finds uv.
const SANDBOX_UV: &str = "/usr/local/bin/uv";
/// How long a build's sandbox may take to make its namespaces.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Processes and threads of one build (installers run a thread per download).
const BUILD_PIDS: u32 = 512;
/// The build's private `/tmp` (the installers' own scratch space; their caches go to the
/// work folder, on disk).
const BUILD_TMP_MB: u32 = 512;
/// Debian's bundle of the host's CA certificates (under `/etc/ssl/certs`, shown inside).
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The longest line of installer output kept; longer ones are cut.
const MAX_LINE: usize = 8 * 1024;

/// Which installer a build runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installer {
    /// `uv pip install --target out -r src/requirements.txt`, for Python.
    Uv,
    /// `bun install --production` in `out/` (which holds `package.json` and any lockfile).
    Bun,
}

impl Installer {
    pub fn as_str(self) -> &'static str {
        match self {
            Installer::Uv => "uv",
            Installer::Bun => "bun",
        }
    }
}

/// One build to run. The work folder holds `src/` (the manifest, for uv), `out/` (empty for
/// uv; the manifest and lockfile for Bun) and `cache/` (the installer's download cache).
#[derive(Debug)]
pub struct BuildJob {
    pub installer: Installer,
    pub work: PathBuf,
    /// Bun: install exactly what the lockfile says, failing if `package.json` disagrees.
    pub frozen_lockfile: bool,
    /// The folder of `out/` the set goes into (a layer's `python` or `nodejs`).
    pub subdir: Option<&'static str>,
    pub timeout: Duration,
    pub memory_mb: u32,
    /// Each line the installer prints (stdout and stderr), as it prints it.
    pub log: mpsc::UnboundedSender<String>,
}

/// Why a build did not produce its output.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BuildError {
    /// The installer ran and failed (its output, in the log, says why).
    #[error("{installer} failed: {how}")]
    Failed { installer: &'static str, how: String },
    #[error("the build ran past its time limit of {0:?} and was stopped")]
    Timeout(Duration),
    #[error("the build ran out of memory ({0} MB) and was stopped")]
    OutOfMemory(u32),
    /// It could not be started: no installer, no network, a sandbox failure.
    #[error("{0}")]
    Unavailable(String),
}

impl Launcher {
    /// Runs one build (the control plane reaches it through [`crate::Starter::build`]).
    pub(crate) async fn run_build(&self, job: BuildJob) -> Result<(), BuildError> {
        let unavailable = BuildError::Unavailable;
        let sandboxed = self.sandbox.enabled();
        if sandboxed {
            if let Some(why) = self.sandbox.outbound_unavailable() {
                return Err(unavailable(format!(
                    "installing dependencies needs outbound networking to reach the package registries, which this host lacks: {why}"
                )));
            }
        }
        // The sandboxed installer runs as an unprivileged id of its own: the work folder
        // (inside the server's 0700 data folder, so no other host user reaches it) must be
        // writable by it.
        let subdir = job.subdir.map(|d| format!("out/{d}"));
        for dir in ["", "out", "cache"].into_iter().chain(subdir.as_deref()) {
            let dir = job.work.join(dir);
            if dir.is_dir() {
                set_mode(&dir, 0o777).map_err(|e| unavailable(format!("preparing the build folder: {e}")))?;
            }
        }
        let work = if sandboxed {
            PathBuf::from(SANDBOX_WORK)
        } else {
            job.work.clone()
        };
        let request = self.build_request(&job, &work)?;
        let mut spawned = self
            .sandbox
            .spawn(&request)
            .map_err(|e| unavailable(format!("starting the build's sandbox: {e}")))?;
        if sandboxed {
            // The namespace says it exists before the network is attached to it (the
            // init of a parked sandbox makes its namespaces only once it has its config).
            let mut ready = [0u8; 1];
            tokio::time::timeout(READY_TIMEOUT, spawned.control.read_exact(&mut ready))
                .await
                .map_err(|_| {
                    unavailable(format!(
                        "the build's sandbox was not ready within {READY_TIMEOUT:?}"
                    ))
                })?
                .map_err(|e| unavailable(format!("the build's sandbox did not start: {e}")))?;
            self.sandbox
                .connect_outbound(&mut spawned.process)
                .await
                .map_err(|e| unavailable(format!("the build's network: {e}")))?;
        }
        // Go: the installer starts only now, with its network in place.
        spawned
            .control
            .write_all(b"g")
            .await
            .map_err(|e| unavailable(format!("the build's sandbox did not start: {e}")))?;
        let out = forward(spawned.stdout, job.log.clone());
        let err = forward(spawned.stderr, job.log.clone());
        let process = &mut spawned.process;
        let ended = tokio::time::timeout(job.timeout, async {
            let (_, _, exit) = tokio::join!(out, err, process.wait_exit());
            exit
        })
        .await;
        match ended {
            Err(_) => {
                spawned.process.kill();
                Err(BuildError::Timeout(job.timeout))
            }
            Ok(_) if spawned.process.oom_killed() => Err(BuildError::OutOfMemory(job.memory_mb)),
            Ok((true, _)) => Ok(()),
            Ok((false, how)) => Err(BuildError::Failed {
                installer: job.installer.as_str(),
                how: how.replace("the instance", "it"),
            }),
        }
    }

    /// The installer's command line, environment and mounts.
    fn build_request(&self, job: &BuildJob, work: &Path) -> Result<SpawnRequest, BuildError> {
        let sandboxed = self.sandbox.enabled();
        let python = &self.runtimes.python;
        let bun = &self.runtimes.bun;
        let mut binds: Vec<Bind> = Vec::new();
        let mut shown: Vec<PathBuf> = ignis_sandbox::library_dirs();
        let mut env = sandbox_env();
        let cache = work.join("cache").display().to_string();
        let (program, args, cwd) = match job.installer {
            Installer::Uv => {
                let (Some(uv), Some(interpreter)) = (self.runtimes.uv.path.clone(), python.path.clone())
                else {
                    return Err(BuildError::Unavailable(format!(
                        "installing a requirements.txt needs uv and CPython: {}; run `make tools` (installs uv into ./.tools) or set IGNIS_UV",
                        self.runtimes.uv.error.clone().or_else(|| python.error.clone()).unwrap_or_default()
                    )));
                };
                shown.extend(python.mounts.iter().cloned());
                let program = if sandboxed {
                    binds.push(Bind {
                        source: uv,
                        target: PathBuf::from(SANDBOX_UV),
                    });
                    PathBuf::from(SANDBOX_UV)
                } else {
                    uv
                };
                env.extend([
                    ("UV_CACHE_DIR".to_owned(), cache),
                    ("UV_LINK_MODE".to_owned(), "copy".to_owned()),
                    ("UV_NO_PROGRESS".to_owned(), "1".to_owned()),
                    ("UV_PYTHON_DOWNLOADS".to_owned(), "never".to_owned()),
                    ("UV_NO_CONFIG".to_owned(), "1".to_owned()),
                    // The host's CA certificates (shown read-only): a registry behind a
                    // proxy with its own CA works as it does for pip on the host.
                    ("UV_SYSTEM_CERTS".to_owned(), "1".to_owned()),
                ]);
                let args = vec![
                    "pip".to_owned(),
                    "install".to_owned(),
                    "--target".to_owned(),
                    work.join("out")
                        .join(job.subdir.unwrap_or(""))
                        .display()
                        .to_string(),
                    "--python".to_owned(),
                    interpreter.display().to_string(),
                    // Instances cannot write next to the modules: compiled now, imported
                    // fast at every cold start.
                    "--compile-bytecode".to_owned(),
                    "--requirement".to_owned(),
                    work.join("src/requirements.txt").display().to_string(),
                ];
                (program, args, work.join("src"))
            }
            Installer::Bun => {
                let Some(path) = bun.path.clone() else {
                    return Err(BuildError::Unavailable(
                        self.runtimes.missing_message(ignis_core::Runtime::Javascript),
                    ));
                };
                let program = if sandboxed {
                    binds.push(Bind {
                        source: path,
                        target: PathBuf::from(SANDBOX_BUN),
                    });
                    PathBuf::from(SANDBOX_BUN)
                } else {
                    path
                };
                env.insert("BUN_INSTALL_CACHE_DIR".to_owned(), cache);
                if Path::new(HOST_CA_BUNDLE).is_file() {
                    env.insert("NODE_EXTRA_CA_CERTS".to_owned(), HOST_CA_BUNDLE.to_owned());
                }
                let mut args = vec![
                    "install".to_owned(),
                    "--production".to_owned(),
                    "--no-progress".to_owned(),
                    "--no-save".to_owned(),
                ];
                if job.frozen_lockfile {
                    args.push("--frozen-lockfile".to_owned());
                }
                (program, args, work.join("out").join(job.subdir.unwrap_or("")))
            }
        };
        show_host_paths(&mut binds, shown, true);
        Ok(SpawnRequest {
            program,
            args,
            env,
            cwd,
            binds,
            limits: CgroupLimits {
                memory_mb: job.memory_mb,
                vcpus: 2,
                pids: BUILD_PIDS,
            },
            tmp_size_mb: BUILD_TMP_MB,
            outbound: true,
            empty_dirs: Vec::new(),
            writable: sandboxed.then(|| Bind {
                source: job.work.clone(),
                target: PathBuf::from(SANDBOX_WORK),
            }),
            wait_for_go: true,
            kvm: false,
        })
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Sends each line of `stream` to `log` (invalid UTF-8 replaced; a line is cut at
/// `MAX_LINE` bytes, so output without newlines cannot grow the server's memory).
async fn forward(stream: impl AsyncRead + Unpin, log: mpsc::UnboundedSender<String>) {
    let mut reader = BufReader::new(stream);
    let mut line: Vec<u8> = Vec::new();
    let send = |line: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        // Progress redraws (`\r`) keep only their last state.
        let text = text.rsplit('\r').next().unwrap_or(text);
        let _ = log.send(text.to_owned());
        line.clear();
    };
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let (part, newline) = match chunk.iter().position(|&b| b == b'\n') {
            Some(at) => (&chunk[..at], Some(at)),
            None => (chunk, None),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(&part[..part.len().min(room)]);
        let used = newline.map_or(chunk.len(), |at| at + 1);
        reader.consume(used);
        if newline.is_some() {
            send(&mut line);
        }
    }
    if !line.is_empty() {
        send(&mut line);
    }
}
