//! The `ignis` command line: argument definitions and the client commands.

mod api;
mod client;
mod deploy;
mod follow;
mod manifest;
mod pack;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub use client::run_client;

#[derive(Debug, Parser)]
#[command(name = "ignis", version, about = "Self-hosted serverless functions")]
pub struct Cli {
    /// The Ignis server to talk to.
    #[arg(
        long,
        global = true,
        env = "IGNIS_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// The API token, if the server has one.
    #[arg(long, global = true, env = "IGNIS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Ignis server.
    Serve(ServeArgs),
    /// Manage and invoke functions.
    #[command(subcommand)]
    Fn(FnCommand),
    /// Create or update every function of a manifest (`ignis.yaml`), one after another;
    /// a function whose code and settings are unchanged gets no new version.
    Deploy(ManifestArgs),
    /// Show the runtimes the server found.
    Runtimes,
    /// Show what each function used: invocations, errors, cold starts, GB-seconds.
    Usage {
        /// Start of the period (RFC 3339, e.g. 2026-01-31T00:00:00Z); default 24 hours ago.
        #[arg(long)]
        since: Option<String>,
        /// End of the period (RFC 3339); default now.
        #[arg(long)]
        until: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// The manifest to read.
    #[arg(long, default_value = "ignis.yaml")]
    pub file: PathBuf,
    /// Print what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. A non-loopback address needs a token.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Data directory (SQLite database, code, bootstraps).
    #[arg(long, default_value = "./.ignis")]
    pub data: PathBuf,
    /// Require `Authorization: Bearer <TOKEN>` on every /v1 request. Prefer
    /// `--token-file` or `IGNIS_TOKEN`: other local users can read a command line.
    #[arg(long, env = "IGNIS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the API token from this file (its first line; keep the file `0600`).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Seconds a client has to send a whole request head once it has started one (or
    /// once it connected); slower clients are disconnected.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a whole request body once its head has arrived; a
    /// slower body is answered 408 request_timeout.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout_secs: u64,
    /// Seconds a keep-alive connection with no request in flight is kept open.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout_secs: u64,
    /// Open client connections at most. At the cap, a new connection closes the
    /// connection idle the longest (no request in flight, or a request head still
    /// arriving); if every connection is busy, the new one is closed.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(16..))]
    pub max_connections: u32,
    /// Invocation records kept per function (newest first).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub retention: u32,
    /// Asynchronous invocations queued or running (all functions) past which new ones are
    /// refused with 429 queue_full.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_queued_async: u32,
    /// Delay before the first retry of a failed asynchronous attempt, in ms; each next
    /// retry waits twice as long (with jitter), at most 5 minutes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub retry_base_ms: u64,
    /// For tests: schedules follow a manual clock starting at this RFC 3339 time, moved
    /// with `PUT /v1/clock`.
    #[arg(long)]
    pub manual_clock: Option<String>,
    /// Folder where `make tools` installed Bun (default: ./.tools).
    #[arg(long)]
    pub tools_dir: Option<PathBuf>,
    /// Run functions WITHOUT isolation, on a host that cannot sandbox. Unsafe: only for
    /// trusted code; the server warns at every start and in /healthz.
    #[arg(long)]
    pub insecure_no_sandbox: bool,
    /// Generic instances kept started per interpreter, waiting for code, so that cold
    /// starts only load code (0 turns the pre-warmed pool off).
    #[arg(long, env = "IGNIS_PREWARM", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub prewarm: u32,
    /// Boot every microvm instance from its kernel instead of restoring a snapshot of a
    /// booted guest (slower cold starts; for measuring and troubleshooting).
    #[arg(long)]
    pub no_microvm_snapshots: bool,
    /// Guests kept restored from a snapshot and warmed up, per kind of microvm guest
    /// (runtime and size) that had a cold start lately, so that cold starts only load code
    /// (0: each cold start restores its guest).
    #[arg(long, env = "IGNIS_MICROVM_POOL", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub microvm_pool: u32,
    /// Cap on the sum of `memory_mb` of live instances, in MiB (default: 75% of the
    /// host's memory).
    #[arg(long, value_parser = clap::value_parser!(u64).range(128..))]
    pub memory_capacity: Option<u64>,
    /// Cap on the log output kept per invocation, in bytes.
    #[arg(long, default_value_t = 262_144, value_parser = clap::value_parser!(u32).range(1024..))]
    pub log_limit_bytes: u32,
    /// Where installed dependencies are cached, one folder per set (default: <data>/deps).
    /// Servers may share one.
    #[arg(long, env = "IGNIS_DEPS_CACHE", value_name = "DIR")]
    pub deps_cache: Option<PathBuf>,
    /// Size of the dependency cache, in MiB, past which sets no function's newest or
    /// ready version uses are removed (least recently used first).
    #[arg(long, default_value_t = 10_240, value_parser = clap::value_parser!(u64).range(1..))]
    pub deps_cache_mb: u64,
    /// Seconds one build (installing a function's dependencies) may take.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(10..=7200))]
    pub build_timeout_secs: u64,
    /// Memory of one build's sandbox, in MiB.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(256..))]
    pub build_memory_mb: u32,
    /// The region functions are told they run in (`AWS_REGION`, `AWS_DEFAULT_REGION`, the
    /// context's function ARN), as on Lambda.
    #[arg(long, env = "IGNIS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Largest set of installed dependencies of one version, in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub build_max_mb: u64,
}

/// Where a function's code comes from: one file, or a folder packed into a zip.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct CodeArgs {
    /// Source file of the function (its one file).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// A folder packed as the function's package (leaving out `.git/`, `__pycache__/`,
    /// `node_modules/` beside a root `package.json`, and what a root `.ignisignore` lists).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Settings of a function that `fn create` and `fn update` take as flags.
#[derive(Debug, Args)]
pub struct SettingsArgs {
    /// The handler: a function name in a one-file function; `path/module.function` (Python)
    /// or `path/file.export` (JavaScript, TypeScript) in a package.
    #[arg(long)]
    pub handler: Option<String>,
    /// Timeout in seconds (1-300).
    #[arg(long)]
    pub timeout: Option<u32>,
    /// Memory in MB (128-3072).
    #[arg(long)]
    pub memory: Option<u32>,
    /// Most instances at once (1-1000).
    #[arg(long)]
    pub max_instances: Option<u32>,
    /// Seconds an idle instance is kept (0-86400; 0 stops it right after each call).
    #[arg(long)]
    pub idle_timeout: Option<u32>,
    /// Instances kept warm at all times, started at deploy (0-1000).
    #[arg(long)]
    pub min_instances: Option<u32>,
    /// Invocations one instance runs at once (1-1000; above 1 for async handlers).
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Network: none (default, loopback only) or outbound (internet egress).
    #[arg(long)]
    pub network: Option<String>,
    /// Isolation: process (default, a sandboxed process) or microvm (each instance in its
    /// own virtual machine, where `ignis runtimes` says the host has the tier).
    #[arg(long)]
    pub isolation: Option<String>,
    /// Environment variable for the function, KEY=VALUE (repeatable). On update, the
    /// variables given replace all of the function's.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Function name.
    pub name: String,
    /// python, javascript or typescript.
    #[arg(long)]
    pub runtime: String,
    #[command(flatten)]
    pub code: CodeArgs,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Function name.
    pub name: String,
    /// python, javascript or typescript (default: the function's).
    #[arg(long)]
    pub runtime: Option<String>,
    /// With neither `--file` nor `--dir`, the new version keeps the function's code.
    #[command(flatten)]
    pub code: CodeArgs,
    /// Settings not given keep the function's values.
    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(Debug, Subcommand)]
pub enum FnCommand {
    /// Create a function, stream its build and wait until it is ready.
    Create(CreateArgs),
    /// Deploy a new version of a function (its code, its settings or both), stream its
    /// build and wait until it is ready.
    Update(UpdateArgs),
    /// Invoke a function and print the response body.
    Invoke {
        name: String,
        /// The event: JSON text, or @FILE to read it from a file.
        #[arg(long, short)]
        data: Option<String>,
    },
    /// List functions.
    Ls,
    /// Show one function.
    Get { name: String },
    /// Delete a function.
    Rm { name: String },
    /// Show a function's recent log lines.
    Logs {
        name: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

/// Exit code of a command whose request the server refused.
pub(crate) fn failure() -> ExitCode {
    ExitCode::from(1)
}
