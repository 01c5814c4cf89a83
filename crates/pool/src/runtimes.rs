//! Finding the interpreters (CPython, Bun) and the bootstraps that run inside instances.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ignis_core::Runtime;
use serde::Serialize;
use tokio::process::Command;

/// Where to look for interpreters, read once from the server's configuration.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// `IGNIS_PYTHON`: an explicit CPython.
    pub python: Option<PathBuf>,
    /// `IGNIS_BUN`: an explicit Bun.
    pub bun: Option<PathBuf>,
    /// `IGNIS_UV`: an explicit uv (installs Python functions' `requirements.txt`).
    pub uv: Option<PathBuf>,
    /// Project-local tools folders, searched in order (`<dir>/node_modules/.bin/bun`,
    /// `<dir>/uv/bin/uv`).
    pub tools_dirs: Vec<PathBuf>,
}

/// One interpreter as found at start-up.
#[derive(Debug, Clone, Serialize)]
pub struct Interpreter {
    pub available: bool,
    pub version: Option<String>,
    /// The real executable (symlinks and shims such as pyenv's resolved away).
    pub path: Option<PathBuf>,
    pub error: Option<String>,
    /// Host paths a sandbox must show (read-only, at the same place) for it to run.
    #[serde(skip)]
    pub mounts: Vec<PathBuf>,
    /// CPython's site-packages directories: instances run without the `site` module
    /// (`-S`), whose `.pth` hooks can cost more than the interpreter's own start, and the
    /// bootstrap puts these on `sys.path` itself.
    #[serde(skip)]
    pub site_packages: Vec<PathBuf>,
}

/// The interpreters of this host.
#[derive(Debug, Clone)]
pub struct Runtimes {
    pub python: Interpreter,
    pub bun: Interpreter,
    /// uv, the installer of Python dependencies (Bun installs JavaScript ones itself).
    pub uv: Interpreter,
    /// The folder holding the bootstrap files written at start-up.
    pub bootstrap_dir: PathBuf,
}

const PYTHON_BOOTSTRAP: &str = include_str!("../../../runtimes/python/bootstrap.py");
const BUN_BOOTSTRAP: &str = include_str!("../../../runtimes/bun/bootstrap.ts");

/// The bootstrap of `runtime`, built into the binary: its file name and its text.
pub fn bootstrap(runtime: Runtime) -> (&'static str, &'static str) {
    match runtime {
        Runtime::Python => ("bootstrap.py", PYTHON_BOOTSTRAP),
        Runtime::Javascript | Runtime::Typescript => ("bootstrap.ts", BUN_BOOTSTRAP),
    }
}

/// The interpreter's arguments that start `runtime`'s bootstrap, found at `bootstrap_dir`
/// as the process sees it, speaking the protocol on fd 3 with end marker `marker`; Python
/// also gets `site_dirs` (it runs with `-S`). One list for process instances and guests.
pub fn bootstrap_args(
    runtime: Runtime,
    bootstrap_dir: &Path,
    marker: &str,
    site_dirs: &[PathBuf],
) -> Vec<String> {
    let file = bootstrap_dir.join(bootstrap(runtime).0).display().to_string();
    let mut args: Vec<String> = match runtime {
        Runtime::Python => ["-I", "-S", "-u", "-X", "utf8"]
            .iter()
            .map(|a| (*a).to_owned())
            .chain(std::iter::once(file))
            .chain(
                site_dirs
                    .iter()
                    .flat_map(|d| ["--path".to_owned(), d.display().to_string()]),
            )
            .collect(),
        // No auto-install: a package the function does not ship (or install at deploy) is
        // an import error, never a download at run time.
        Runtime::Javascript | Runtime::Typescript => vec!["--no-install".to_owned(), file],
    };
    args.extend([
        "--fd".to_owned(),
        ignis_sandbox::CONTROL_FD.to_string(),
        "--marker".to_owned(),
        marker.to_owned(),
    ]);
    args
}

impl Runtimes {
    /// Finds the interpreters and writes the bootstraps into `<data_dir>/runtime`.
    pub async fn discover(config: &RuntimeConfig, data_dir: &Path) -> std::io::Result<Runtimes> {
        let bootstrap_dir = data_dir.join("runtime");
        std::fs::create_dir_all(&bootstrap_dir)?;
        for runtime in [Runtime::Python, Runtime::Javascript] {
            let (name, text) = bootstrap(runtime);
            std::fs::write(bootstrap_dir.join(name), text)?;
        }
        let (python, bun, uv) = tokio::join!(find_python(config), find_bun(config), find_uv(config));
        Ok(Runtimes {
            python,
            bun,
            uv,
            bootstrap_dir,
        })
    }

    pub fn interpreter(&self, runtime: Runtime) -> &Interpreter {
        match runtime {
            Runtime::Python => &self.python,
            Runtime::Javascript | Runtime::Typescript => &self.bun,
        }
    }

    /// How to start the bootstrap of `runtime` with the given marker nonce, the bootstraps
    /// being in `bootstrap_dir` as the process sees it.
    pub fn command(
        &self,
        runtime: Runtime,
        marker: &str,
        bootstrap_dir: &Path,
    ) -> Option<(PathBuf, Vec<String>)> {
        let program = self.interpreter(runtime).path.clone()?;
        let args = bootstrap_args(runtime, bootstrap_dir, marker, &self.python.site_packages);
        Some((program, args))
    }

    /// The message a deploy fails with when the runtime is missing, naming the fix.
    pub fn missing_message(&self, runtime: Runtime) -> String {
        let why = self.interpreter(runtime).error.clone().unwrap_or_default();
        match runtime {
            Runtime::Python => format!(
                "the python runtime is not available ({why}); install CPython 3.11 or newer \
                 and put python3 on PATH, or set IGNIS_PYTHON to its path"
            ),
            Runtime::Javascript | Runtime::Typescript => format!(
                "the {} runtime needs Bun, which is not available ({why}); run `make tools` \
                 (installs the npm package `bun` into ./.tools) or set IGNIS_BUN to its path",
                runtime.as_str()
            ),
        }
    }
}

async fn find_python(config: &RuntimeConfig) -> Interpreter {
    let candidate = config.python.clone().unwrap_or_else(|| PathBuf::from("python3"));
    // Isolated (-I) as instances run, so the site-packages are the ones they would see.
    let probe = "import os, site, sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3]); \
                 print(sys.base_prefix); print(*[p for p in site.getsitepackages() if os.path.isdir(p)], sep='\\n')";
    match probe_interpreter(&candidate, &["-I", "-c", probe]).await {
        Ok((path, version, extra)) => {
            let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
            if parts.len() >= 2 && (parts[0], parts[1]) >= (3, 11) {
                // The standard library lives under the prefix; the executable may be a
                // symlink out of it, so both are shown.
                let mut extra = extra.into_iter();
                let mut i = found(path.clone(), version);
                i.mounts = vec![PathBuf::from(extra.next().unwrap_or_default()), path];
                i.site_packages = extra.map(PathBuf::from).collect();
                i
            } else {
                missing(format!(
                    "{} is Python {version}; 3.11 or newer is needed",
                    candidate.display()
                ))
            }
        }
        Err(e) => missing(e),
    }
}

async fn find_bun(config: &RuntimeConfig) -> Interpreter {
    let candidate = config.bun.clone().unwrap_or_else(|| {
        config
            .tools_dirs
            .iter()
            .map(|d| d.join("node_modules/.bin/bun"))
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("bun"))
    });
    match probe_interpreter(
        &candidate,
        &["-e", "console.log(process.execPath); console.log(Bun.version)"],
    )
    .await
    {
        Ok((path, version, _)) => {
            let mut i = found(path.clone(), version);
            i.mounts = vec![path];
            i
        }
        Err(e) => missing(e),
    }
}

async fn find_uv(config: &RuntimeConfig) -> Interpreter {
    let candidate = config.uv.clone().unwrap_or_else(|| {
        config
            .tools_dirs
            .iter()
            .map(|d| d.join("uv/bin/uv"))
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("uv"))
    });
    let run = Command::new(&candidate)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(Duration::from_secs(20), run).await {
        Ok(Ok(o)) if o.status.success() => o,
        Ok(Ok(o)) => {
            return missing(format!(
                "{} --version failed: {}",
                candidate.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Ok(Err(e)) => return missing(format!("{} could not be run: {e}", candidate.display())),
        Err(_) => return missing(format!("{} did not answer within 20 s", candidate.display())),
    };
    // `uv 0.13.9 (x86_64-unknown-linux-gnu)`
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(version) = text.split_whitespace().nth(1) else {
        return missing(format!("{} printed no version", candidate.display()));
    };
    let path = if candidate.components().count() > 1 {
        std::fs::canonicalize(&candidate).unwrap_or(candidate)
    } else {
        // Found on PATH: where, exactly, is what a sandbox must show.
        std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(&candidate))
                    .find(|p| p.is_file())
            })
            .and_then(|p| std::fs::canonicalize(p).ok())
            .unwrap_or(candidate)
    };
    let mut i = found(path.clone(), version.to_owned());
    i.mounts = vec![path];
    i
}

fn found(path: PathBuf, version: String) -> Interpreter {
    Interpreter {
        available: true,
        version: Some(version),
        path: Some(path),
        error: None,
        mounts: Vec::new(),
        site_packages: Vec::new(),
    }
}

fn missing(error: String) -> Interpreter {
    Interpreter {
        available: false,
        version: None,
        path: None,
        error: Some(error),
        mounts: Vec::new(),
        site_packages: Vec::new(),
    }
}

/// Runs the interpreter once so it prints its real executable and version (and, for
/// Python, its prefix and site-packages, one per line): a shim found on PATH costs a shell start on every instance, the
/// real binary does not.
async fn probe_interpreter(program: &Path, args: &[&str]) -> Result<(PathBuf, String, Vec<String>), String> {
    let run = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .map_err(|_| format!("{} did not answer within 20 s", program.display()))?
        .map_err(|e| format!("{} could not be run: {e}", program.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed: {}",
            program.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let (Some(path), Some(version)) = (lines.next(), lines.next()) else {
        return Err(format!("{} printed no version", program.display()));
    };
    let path = std::fs::canonicalize(path.trim()).unwrap_or_else(|_| PathBuf::from(path.trim()));
    let extra = lines
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    Ok((path, version.trim().to_owned(), extra))
}
