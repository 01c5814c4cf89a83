//! Integration tests of the control plane without processes: a real store in a temporary
//! directory, instances from the pool's fake starter, and tokio's clock paused (time moves
//! only when every task waits), so retries, backoff and slow deploys take no real time.

mod deploys;
mod idempotency;
mod isolation;
mod queue;

use std::sync::Arc;
use std::time::Duration;

use ignis_control::{
    Accepted, Clock, ControlConfig, DeployWait, DepsConfig, HostFacts, MicrovmFacts, Platform, QueueConfig,
};
use ignis_core::parse_spec;
use ignis_pool::testing::FakeStarter;
use ignis_pool::{Capacity, Interpreter, Runtimes};
use ignis_store::{AsyncRow, AttemptRow, Store};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::time::Instant;

/// The first retry's delay; the next ones double (with jitter, at least half of it).
pub const RETRY_BASE: Duration = Duration::from_millis(100);

/// A platform over a fresh store, with its queue and scheduler running.
pub struct World {
    pub platform: Arc<Platform>,
    pub starter: Arc<FakeStarter>,
    _dir: tempfile::TempDir,
}

fn interpreter() -> Interpreter {
    Interpreter {
        available: true,
        version: Some("fake".to_owned()),
        path: None,
        error: None,
        mounts: Vec::new(),
        site_packages: Vec::new(),
    }
}

impl World {
    /// Fake instances take `start_ms` to start unless their code says otherwise.
    pub async fn new(start_ms: u64) -> World {
        World::on_host(
            start_ms,
            Err("no virtual machines in these tests".to_owned()),
            true,
        )
        .await
    }

    /// As [`World::new`], on a host with this microvm tier and sandbox (on or off).
    pub async fn on_host(start_ms: u64, microvm: Result<MicrovmFacts, String>, sandboxed: bool) -> World {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path()).expect("open the store");
        let starter = FakeStarter::new(start_ms);
        let host = HostFacts {
            runtimes: Runtimes {
                python: interpreter(),
                bun: interpreter(),
                uv: interpreter(),
                bootstrap_dir: dir.path().to_owned(),
            },
            sandboxed,
            outbound_unavailable: Some("no network in these tests".to_owned()),
            microvm,
        };
        let config = ControlConfig {
            log_limit_bytes: 64 * 1024,
            retention_per_function: 1000,
            packages_dir: dir.path().join("packages"),
            deps: DepsConfig {
                dir: dir.path().join("deps"),
                max_cache_bytes: 1 << 30,
                max_build_bytes: 1 << 30,
                build_timeout: std::time::Duration::from_secs(60),
                build_memory_mb: 512,
            },
            region: "us-east-1".to_owned(),
            queue: QueueConfig {
                max_queued: 1000,
                retry_base: RETRY_BASE,
            },
        };
        let start = OffsetDateTime::from_unix_timestamp(1_780_000_000).expect("a valid time");
        let platform = Platform::new(
            store,
            starter.clone(),
            host,
            Capacity::new(1 << 20),
            config,
            Clock::tokio(start),
        );
        platform.restore().await.expect("restore");
        platform.start_queue().await.expect("start the queue");
        platform.start_scheduler();
        World {
            platform,
            starter,
            _dir: dir,
        }
    }

    /// Creates function `name` from `fields` (added to a Python spec) and waits for its
    /// deploy; `code` tells the fake instances what to do (see `ignis_pool::testing`).
    pub async fn create(&self, name: &str, code: Value, fields: Value) {
        let spec = spec(name, &code, fields);
        self.platform
            .create(spec, DeployWait::UntilDone)
            .await
            .expect("create the function");
    }

    /// Accepts an asynchronous invocation of `name`; its id.
    pub async fn accept(&self, name: &str, event: Value) -> String {
        match self
            .platform
            .accept_async(name, event.to_string(), None)
            .await
            .expect("accepted")
        {
            Accepted::New { id } => id,
            Accepted::Existing(first) => panic!("no key was given, yet {first:?} came back"),
        }
    }

    pub fn row(&self, id: &str) -> (AsyncRow, Vec<AttemptRow>) {
        self.platform
            .store()
            .get_async(id)
            .expect("read the store")
            .unwrap_or_else(|| panic!("invocation {id} is stored"))
    }

    /// Waits (in tokio's time, at most ten minutes of it) until invocation `id` has ended.
    pub async fn ended(&self, id: &str) -> (AsyncRow, Vec<AttemptRow>) {
        wait_for(&format!("invocation {id} to end"), || {
            let (row, attempts) = self.row(id);
            row.finished_at.is_some().then_some((row, attempts))
        })
        .await
    }
}

/// A function spec as `PUT /v1/functions` takes it.
pub fn spec(name: &str, code: &Value, fields: Value) -> ignis_core::FunctionSpec {
    let mut body = json!({"name": name, "runtime": "python", "code": code.to_string()});
    if let (Value::Object(b), Value::Object(f)) = (&mut body, fields) {
        b.extend(f);
    }
    parse_spec(body.to_string().as_bytes(), None).unwrap_or_else(|e| panic!("a valid spec: {e:?}"))
}

/// Checks `f` every 10 ms of tokio's time until it gives a value; fails after ten minutes.
pub async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
