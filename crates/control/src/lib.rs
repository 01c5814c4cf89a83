//! The control plane: the table of functions, their lifecycle, and invocation dispatch.
//!
//! Changes to functions (create, update, delete) are serialised by one async mutex and
//! written to the store; the table readers on the invocation path see them through an
//! `ArcSwap`, so a warm invocation takes no lock and touches no SQLite.

#![warn(clippy::wildcard_enum_match_arm)]

mod builds;
mod clock;
mod deps;
mod idempotency;
mod invoke;
mod layers;
mod lifecycle;
mod live;
pub mod metrics;
mod outcome;
mod packages;
mod playground;
mod queue;
mod scheduler;
mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use ignis_core::http::HttpSettings;
use ignis_core::{FunctionSpec, FunctionState};
use ignis_pool::{Capacity, Runtimes, Starter, VersionPool};
pub use ignis_pool::{Interpreter, StreamEvent, StreamSink};
use ignis_store::{InvocationWriter, Store};

pub use builds::{BuildFollow, BuildView, LiveBuild};
pub use clock::Clock;
pub use deps::DepsConfig;
pub use idempotency::{FirstCall, Replay, SyncOnce};
pub use invoke::{Invocation, InvokeError, InvokeResult};
pub use layers::LayerView;
pub use lifecycle::{now_ms, ControlError, DeployWait};
pub use live::{Followed, Follower, LiveLogs};
pub use outcome::{ErrorCode, OutcomeError, OutcomeKind, Raised};
pub use playground::{PlaygroundError, PlaygroundRun, MAX_PLAYGROUND_RUNS};
pub use queue::{AcceptError, Accepted, QueueConfig};
pub use scheduler::{ScheduleEntry, ScheduleView};
pub use view::{schema, DeployError, FunctionView};

/// Settings of the control plane, from the server's configuration.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub log_limit_bytes: usize,
    pub retention_per_function: usize,
    pub queue: QueueConfig,
    /// Where packages are kept unpacked, one folder per hash (`<data>/packages`).
    pub packages_dir: std::path::PathBuf,
    /// The installed-dependencies cache and its builds.
    pub deps: DepsConfig,
    /// The region functions are told they run in.
    pub region: String,
}

/// What the control plane needs to know of this host, found once at start-up: what it
/// checks a spec against before storing it, and what the API shows.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub runtimes: Runtimes,
    /// False only when the server was started with `--insecure-no-sandbox`.
    pub sandboxed: bool,
    /// Why functions cannot have outbound networking on this host, if they cannot.
    pub outbound_unavailable: Option<String>,
    /// The microvm isolation tier on this host, or why it is unavailable.
    pub microvm: Result<MicrovmFacts, String>,
}

/// How this host runs the microvm tier's virtual machines, found by a probe at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MicrovmFacts {
    /// `kvm` (hardware virtualization) or `tcg` (QEMU's software emulation).
    pub accelerator: String,
    /// The guest kernel's release (`uname -r` inside the guest).
    pub guest_kernel: String,
    /// Whether cold starts restore a guest saved after its boot rather than boot one.
    pub snapshots: bool,
    /// Guests kept restored ahead of cold starts per kind of guest (0: none).
    pub pool: usize,
}

/// The serving version of a function.
struct Active {
    version: u32,
    pool: VersionPool,
}

/// What the API shows of a function's lifecycle; changed only under the control mutex or
/// by the deploy task of the newest version.
#[derive(Debug, Clone)]
struct Status {
    state: FunctionState,
    reason: Option<String>,
    /// The newest version's load failure, for the editor to mark.
    deploy_error: Option<view::DeployError>,
    /// The newest version and its spec (what GET shows and the editor edits).
    latest_version: u32,
    /// The version whose deploy decides the state: the newest one started. Usually the
    /// latest; at restore, the last good one when the latest had failed.
    deploying: Option<u32>,
    latest: Arc<FunctionSpec>,
    /// The hash of the newest version's code, computed once per version: views (list and
    /// get) show it without hashing up to 5 MiB of code per function per request.
    latest_sha256: String,
    created_at: time::OffsetDateTime,
    updated_at: time::OffsetDateTime,
}

/// One function in the table.
struct Slot {
    active: ArcSwapOption<Active>,
    /// The latest version's function URL settings, read without a lock on every request.
    http: ArcSwap<HttpSettings>,
    status: Mutex<Status>,
    metrics: metrics::FunctionMetrics,
}

impl Slot {
    fn status(&self) -> Status {
        self.status
            .lock()
            .expect("status lock is never poisoned: no code panics while holding it")
            .clone()
    }

    /// The latest version's spec, without copying the rest of the status.
    fn latest(&self) -> Arc<FunctionSpec> {
        self.status
            .lock()
            .expect("status lock is never poisoned: no code panics while holding it")
            .latest
            .clone()
    }

    fn update_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self
            .status
            .lock()
            .expect("status lock is never poisoned: no code panics while holding it"));
    }
}

/// The control plane. Shared by the API handlers through an `Arc`.
pub struct Platform {
    store: Store,
    writer: InvocationWriter,
    /// Starts instances: the process launcher in the server, a fake one in tests.
    launcher: Arc<dyn Starter>,
    host: HostFacts,
    capacity: Arc<Capacity>,
    config: ControlConfig,
    table: ArcSwap<HashMap<String, Arc<Slot>>>,
    /// Serialises create, update and delete, which read then write the table and store.
    changes: tokio::sync::Mutex<()>,
    /// Asynchronous invocations waiting or running.
    queue: queue::Queue,
    /// The time schedules follow.
    clock: Clock,
    /// Wakes the scheduler when schedules change.
    schedule_wake: tokio::sync::Notify,
    /// Live log tails.
    live: live::Live,
    /// Playground runs in flight.
    playground_runs: tokio::sync::Semaphore,
    /// Packages unpacked for instances to see.
    packages: Arc<packages::PackageCache>,
    /// Synchronous calls with an idempotency key that are running.
    inflight: idempotency::InFlight,
    /// Installed dependency sets, by key.
    deps: Arc<deps::DepsCache>,
    /// Builds running, by function and version (finished ones are in the store).
    builds: Mutex<HashMap<(String, u32), Arc<builds::LiveBuild>>>,
    /// Woken when a build starts or a deploy ends (a follower of a build not yet started
    /// waits on it).
    build_events: tokio::sync::Notify,
}

impl Platform {
    pub fn new(
        store: Store,
        launcher: Arc<dyn Starter>,
        host: HostFacts,
        capacity: Arc<Capacity>,
        config: ControlConfig,
        clock: Clock,
    ) -> Arc<Platform> {
        let writer = store.start_invocation_writer(config.retention_per_function);
        Arc::new(Platform {
            queue: queue::Queue::new(config.queue.clone()),
            clock,
            schedule_wake: tokio::sync::Notify::new(),
            live: live::Live::default(),
            playground_runs: tokio::sync::Semaphore::new(playground::MAX_PLAYGROUND_RUNS),
            packages: Arc::new(packages::PackageCache::open(&config.packages_dir)),
            inflight: idempotency::InFlight::default(),
            deps: Arc::new(deps::DepsCache::open(config.deps.clone())),
            builds: Mutex::default(),
            build_events: tokio::sync::Notify::new(),
            store,
            writer,
            launcher,
            host,
            capacity,
            config,
            table: ArcSwap::from_pointee(HashMap::new()),
            changes: tokio::sync::Mutex::new(()),
        })
    }

    pub fn runtimes(&self) -> &Runtimes {
        &self.host.runtimes
    }

    /// False only when the server was started with `--insecure-no-sandbox`.
    pub fn sandboxed(&self) -> bool {
        self.host.sandboxed
    }

    /// The microvm tier on this host, or why functions cannot use it: the probe's reason,
    /// or the sandbox being off (the tier runs its virtual machines inside it).
    pub fn microvm(&self) -> Result<&MicrovmFacts, String> {
        match (&self.host.microvm, self.host.sandboxed) {
            (Err(why), _) => Err(why.clone()),
            (Ok(_), false) => Err("the microvm tier runs its virtual machines inside the sandbox, \
                 and the server was started with --insecure-no-sandbox"
                .to_owned()),
            (Ok(facts), true) => Ok(facts),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn slot(&self, name: &str) -> Option<Arc<Slot>> {
        self.table.load().get(name).cloned()
    }

    /// The function URL settings of `name` (its latest version's), if it exists.
    pub fn http_settings(&self, name: &str) -> Option<Arc<HttpSettings>> {
        self.slot(name).map(|s| s.http.load_full())
    }

    /// Follows `name`'s log lines from now on: the lines of each invocation that finishes.
    /// Subscribe before reading the stored backlog so that nothing falls between the two.
    pub fn follow_logs(&self, name: &str) -> Follower {
        self.live.follow(name)
    }

    /// Ends every live log tail (at shutdown, so that open tails do not hold it up).
    pub fn end_log_tails(&self) {
        self.live.close();
    }

    /// Commits every recorded invocation (at shutdown), waiting at most `within`: while the
    /// disk is full the records cannot be written, and the server still stops. Returns how
    /// many records were left unwritten (lost).
    pub fn flush(&self, within: std::time::Duration) -> usize {
        self.writer.flush_within(within)
    }
}

/// Runs store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ignis_store::StoreError> + Send + 'static,
) -> Result<T, ignis_store::StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ignis_store::StoreError::Corrupt(format!("the store task failed: {e}")))?
}
