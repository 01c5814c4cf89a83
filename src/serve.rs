//! `ignis serve`: the composition root. Reads the configuration once, opens the store,
//! finds the runtimes, restores the functions and serves the API until told to stop.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use ignis_api::ApiConfig;
use ignis_cli::ServeArgs;
use ignis_control::{Clock, ControlConfig, HostFacts, Platform, QueueConfig};
use ignis_pool::{Capacity, Launcher, RuntimeConfig, Runtimes};
use ignis_sandbox::Sandbox;
use ignis_store::Store;

/// The configuration of a server, read once at start.
struct Config {
    listen: SocketAddr,
    data_dir: PathBuf,
    token: Option<String>,
    retention: usize,
    log_limit_bytes: usize,
    insecure_no_sandbox: bool,
    runtimes: RuntimeConfig,
    prewarm: usize,
    /// Whether microvm cold starts restore snapshots (`--no-microvm-snapshots`: they boot).
    microvm_snapshots: bool,
    /// Guests restored ahead of cold starts per kind (`--microvm-pool`).
    microvm_pool: usize,
    memory_capacity_mb: u64,
    max_queued_async: usize,
    retry_base_ms: u64,
    manual_clock: Option<time::OffsetDateTime>,
    console: ignis_api::ConsoleConfig,
    connections: crate::http_server::Limits,
    deps: ignis_control::DepsConfig,
    region: String,
    /// Said once logging is set up.
    warnings: Vec<String>,
}

impl Config {
    fn from_args(args: &ServeArgs) -> anyhow::Result<Config> {
        let listen: SocketAddr = args.listen.parse().with_context(|| {
            format!(
                "--listen {:?} is not an address such as 127.0.0.1:8080",
                args.listen
            )
        })?;
        let mut warnings = Vec::new();
        let token = read_token(args, &mut warnings)?;
        if !listen.ip().is_loopback() && token.is_none() {
            bail!(
                "refusing to listen on {listen} without a token: anyone who can reach it could run \
                 code. Set one with --token-file <PATH> or the IGNIS_TOKEN environment variable, or \
                 listen on 127.0.0.1"
            );
        }
        let mut tools_dirs = Vec::new();
        if let Some(dir) = &args.tools_dir {
            tools_dirs.push(dir.clone());
        }
        tools_dirs.push(PathBuf::from(".tools"));
        // target/<profile>/ignis → the repository's .tools, so the binary finds the Bun
        // that `make` installed whatever directory it is started from.
        if let Some(repo) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent()?.parent()?.parent().map(|p| p.to_path_buf()))
        {
            tools_dirs.push(repo.join(".tools"));
        }
        let manual_clock = match &args.manual_clock {
            None => None,
            Some(t) => Some(
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .with_context(|| format!("--manual-clock {t:?} is not an RFC 3339 time"))?,
            ),
        };
        // The console's editor: the monaco-editor package `make tools` installed.
        let monaco_dir = tools_dirs
            .iter()
            .map(|d| d.join("node_modules/monaco-editor/min"))
            .find(|d| d.join("vs/loader.js").is_file())
            .and_then(|d| std::fs::canonicalize(d).ok());
        let console = ignis_api::ConsoleConfig {
            monaco_dir,
            files_dir: std::env::var_os("IGNIS_CONSOLE_DIR").map(PathBuf::from),
        };
        const MIB: u64 = 1024 * 1024;
        let deps = ignis_control::DepsConfig {
            dir: args.deps_cache.clone().unwrap_or_else(|| args.data.join("deps")),
            max_cache_bytes: args.deps_cache_mb.saturating_mul(MIB),
            max_build_bytes: args.build_max_mb.saturating_mul(MIB),
            build_timeout: Duration::from_secs(args.build_timeout_secs),
            build_memory_mb: args.build_memory_mb,
        };
        if !ignis_core::lambda_env::valid_region(&args.region) {
            bail!(
                "--region {:?} is not a region name such as us-east-1 (lowercase letters, digits and -)",
                args.region
            );
        }
        Ok(Config {
            region: args.region.clone(),
            deps,
            console,
            connections: crate::http_server::Limits {
                header_timeout: Duration::from_secs(args.header_timeout_secs),
                body_timeout: Duration::from_secs(args.body_timeout_secs),
                idle_timeout: Duration::from_secs(args.idle_timeout_secs),
                max_connections: args.max_connections as usize,
            },
            warnings,
            max_queued_async: args.max_queued_async as usize,
            retry_base_ms: args.retry_base_ms,
            manual_clock,
            listen,
            data_dir: args.data.clone(),
            token,
            retention: args.retention as usize,
            log_limit_bytes: args.log_limit_bytes as usize,
            insecure_no_sandbox: args.insecure_no_sandbox,
            prewarm: args.prewarm as usize,
            microvm_snapshots: !args.no_microvm_snapshots,
            microvm_pool: args.microvm_pool as usize,
            memory_capacity_mb: match args.memory_capacity {
                Some(mb) => mb,
                None => host_memory_mb()? * 3 / 4,
            },
            runtimes: RuntimeConfig {
                python: std::env::var_os("IGNIS_PYTHON").map(PathBuf::from),
                bun: std::env::var_os("IGNIS_BUN").map(PathBuf::from),
                uv: std::env::var_os("IGNIS_UV").map(PathBuf::from),
                tools_dirs,
            },
        })
    }
}

/// The API token: from `--token-file`, else `--token` or `IGNIS_TOKEN` (empty means none).
fn read_token(args: &ServeArgs, warnings: &mut Vec<String>) -> anyhow::Result<Option<String>> {
    let given = args.token.clone().filter(|t| !t.is_empty());
    if let Some(path) = &args.token_file {
        if given.is_some() {
            bail!(
                "both --token-file and a token (--token or IGNIS_TOKEN) are given; give the token \
                 one way only"
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.is_empty() {
            bail!(
                "the token file {} is empty: put the token on its first line",
                path.display()
            );
        }
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                warnings.push(format!(
                    "the token file {} can be read by other users (mode {:o}); chmod 600 it",
                    path.display(),
                    meta.permissions().mode() & 0o777
                ));
            }
        }
        return Ok(Some(token.to_owned()));
    }
    // A token that did not come from the environment came from the command line.
    if given.is_some() && std::env::var("IGNIS_TOKEN").ok().filter(|t| !t.is_empty()) != given {
        warnings.push(
            "--token on the command line can be read by every local user in the process list; \
             use --token-file <PATH> or the IGNIS_TOKEN environment variable"
                .to_owned(),
        );
    }
    Ok(given)
}

/// Creates the data directory `0700`, or tightens an existing one that others can enter:
/// it holds every function's code and environment.
fn secure_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the data directory {}", dir.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))
            .with_context(|| format!("cannot make the data directory {} private", dir.display()))?;
        tracing::warn!(
            "the data directory {} was mode {mode:o}; tightened to {:o} so that other users cannot \
             read the functions' code and environment",
            dir.display(),
            mode & 0o700
        );
    }
    Ok(())
}

/// Raises the soft limit on open files to the hard limit: every client connection and
/// instance holds descriptors, and the default soft limit (often 1024) is soon reached.
/// Returns the limit in force.
fn raise_open_files_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            // An unlimited hard limit still stops at the kernel's per-process maximum.
            let target = if hard == RLIM_INFINITY {
                std::fs::read_to_string("/proc/sys/fs/nr_open")
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(1 << 20)
            } else {
                hard
            };
            raise_to(soft, target, hard)
        }
        Ok((soft, _)) => Some(soft),
        Err(e) => {
            tracing::warn!("cannot read the open files limit: {e}");
            None
        }
    }
}

/// Sets the soft open files limit to `target`; returns the limit in force.
fn raise_to(soft: u64, target: u64, hard: u64) -> Option<u64> {
    use nix::sys::resource::{setrlimit, Resource};
    match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
        Ok(()) => {
            tracing::info!("open files limit raised from {soft} to {target}");
            Some(target)
        }
        Err(e) => {
            tracing::warn!("cannot raise the open files limit from {soft} to {target}: {e}");
            Some(soft)
        }
    }
}

/// Client connections may take at most half of the open files limit: the rest is for
/// instances (a socket and pipes each), the store and the runtimes. Beyond that, accepting
/// would fail with "too many open files" instead of closing an idle connection.
fn connection_cap(flag: usize, open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else { return flag };
    let room = usize::try_from(limit / 2).unwrap_or(usize::MAX).max(16);
    if flag > room {
        tracing::warn!("--max-connections {flag} lowered to {room}: half of the open files limit ({limit})");
    }
    flag.min(room)
}

/// The host's memory (MemTotal) in MiB.
fn host_memory_mb() -> anyhow::Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
    let kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no MemTotal in /proc/meminfo; set --memory-capacity")?;
    Ok(kb / 1024)
}

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::from_args(args)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IGNIS_LOG")
                .unwrap_or_else(|_| "ignis=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    config.connections.max_connections =
        connection_cap(config.connections.max_connections, raise_open_files_limit());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    secure_data_dir(&config.data_dir)?;
    let data_dir = std::fs::canonicalize(&config.data_dir)?;
    let store =
        Store::open(&data_dir).with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    let sandbox = if config.insecure_no_sandbox {
        Sandbox::insecure()
    } else {
        Sandbox::detect(&data_dir).await.map_err(|e| {
            anyhow::anyhow!(
                "this host cannot sandbox functions: {e}. Ignis refuses to run functions without \
                 isolation unless started with --insecure-no-sandbox (only for trusted code)"
            )
        })?
    };
    if !sandbox.enabled() {
        tracing::warn!("{}", ignis_api::INSECURE_WARNING);
        eprintln!("WARNING: {}", ignis_api::INSECURE_WARNING);
    }
    let runtimes = Runtimes::discover(&config.runtimes, &data_dir).await?;
    // Earlier versions kept a copy of every function's code here; the store is the only
    // copy now (instances get the code in their load message).
    let old_code = data_dir.join("code");
    if old_code.exists() {
        std::fs::remove_dir_all(&old_code)
            .with_context(|| format!("cannot remove the old code copies in {}", old_code.display()))?;
    }
    for (name, i) in [("python", &runtimes.python), ("bun", &runtimes.bun)] {
        match (&i.path, &i.version) {
            (Some(path), Some(version)) => tracing::info!("{name} {version} at {}", path.display()),
            _ => tracing::warn!(
                "{name} is not available: {}",
                i.error.as_deref().unwrap_or("unknown")
            ),
        }
    }
    let outbound_unavailable = sandbox.outbound_unavailable();
    let sandboxed = sandbox.enabled();
    let launcher = Launcher::new(runtimes, sandbox, config.prewarm);
    let microvm = ignis_pool::microvm::Microvm::detect(
        &launcher.sandbox,
        &config.runtimes.tools_dirs,
        &data_dir,
        config.microvm_snapshots,
        config.microvm_pool,
    )
    .await
    .map(std::sync::Arc::new);
    match &microvm {
        Ok(m) => tracing::info!(
            accelerator = m.info().accel.as_str(),
            guest_kernel = %m.info().guest_kernel,
            snapshots = m.info().snapshots,
            "the microvm tier is available"
        ),
        Err(why) => tracing::info!("the microvm tier is unavailable: {why}"),
    }
    let host = HostFacts {
        runtimes: launcher.runtimes.clone(),
        sandboxed,
        outbound_unavailable,
        microvm: microvm
            .as_ref()
            .map(|m| ignis_control::MicrovmFacts {
                accelerator: m.info().accel.as_str().to_owned(),
                guest_kernel: m.info().guest_kernel.clone(),
                snapshots: m.info().snapshots,
                pool: m.info().pool,
            })
            .map_err(Clone::clone),
    };
    launcher.set_microvm(microvm.clone());
    launcher.refill();
    tracing::info!(
        prewarm = config.prewarm,
        memory_capacity_mb = config.memory_capacity_mb,
        "capacity"
    );
    let platform = Platform::new(
        store,
        launcher.clone(),
        host,
        Capacity::new(config.memory_capacity_mb),
        ControlConfig {
            log_limit_bytes: config.log_limit_bytes,
            retention_per_function: config.retention,
            packages_dir: data_dir.join("packages"),
            deps: config.deps.clone(),
            region: config.region.clone(),
            queue: QueueConfig {
                max_queued: config.max_queued_async,
                retry_base: Duration::from_millis(config.retry_base_ms),
            },
        },
        match config.manual_clock {
            Some(t) => Clock::manual(t),
            None => Clock::System,
        },
    );
    let restored = platform.restore().await?;
    let requeued = platform.start_queue().await?;
    platform.start_scheduler();
    tracing::info!(requeued, "asynchronous invocations loaded");
    let app = ignis_api::router(
        platform.clone(),
        ApiConfig {
            token: config.token.clone(),
            version: env!("CARGO_PKG_VERSION"),
            console: config.console.clone(),
        },
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(restored, data = %data_dir.display(), auth = config.token.is_some(), "ignis started");
    // Tests and scripts wait for this exact line to know the server accepts connections.
    println!("ignis listening on http://{addr}");
    crate::http_server::serve(listener, app, config.connections.clone(), {
        let platform = platform.clone();
        async move {
            shutdown_signal().await;
            // Graceful shutdown waits for open connections: end the log tails' streams.
            platform.end_log_tails();
        }
    })
    .await;
    let unwritten = platform.flush(Duration::from_secs(10));
    if unwritten > 0 {
        tracing::error!(
            "{unwritten} invocation records could not be written before stopping (is the disk \
             full?); they are lost"
        );
    }
    launcher.sandbox.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
