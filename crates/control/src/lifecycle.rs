//! Creating, updating, deleting and restoring functions, and deploying their versions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use ignis_core::events::destination_cycle;
use ignis_core::package::resolve_handler;
use ignis_core::{FunctionName, FunctionSpec, FunctionState, KeepCode, SpecError, SpecUpdate, StateEvent};
use ignis_pool::{CodePackage, LaunchSpec, PoolLimits, StartError, Starter, VersionPool};
use ignis_store::{
    NewPackage, NewPackageFile, NewVersion, StoreError, StoredVersion, VersionPackage, VersionStatus,
};
use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::view::{DeployError, FunctionView};
use crate::{Active, Platform, Slot, Status};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("function {0:?} already exists")]
    AlreadyExists(String),
    #[error("function {0:?} does not exist")]
    NotFound(String),
    #[error("function {0:?} has no version {1}")]
    VersionNotFound(String, u32),
    #[error("layer {0} does not exist")]
    LayerNotFound(String),
    /// A function lists a layer version that does not exist.
    #[error("layers: layer {0} does not exist (GET /v1/layers lists the layers)")]
    UnknownLayer(String),
    #[error("layer {layer} is used by {}: update them to another version first", functions.join(", "))]
    LayerInUse { layer: String, functions: Vec<String> },
    #[error("layer {layer} is for {}, not {}", runtimes.join(", "), runtime.as_str())]
    LayerRuntime {
        layer: String,
        runtime: ignis_core::Runtime,
        runtimes: Vec<String>,
    },
    #[error("{0}")]
    LayersUnavailable(String),
    /// A layer's dependencies could not be installed; nothing was stored.
    #[error("{0}")]
    LayerBuild(String),
    #[error("{0}")]
    RuntimeUnavailable(String),
    #[error("{0}")]
    NetworkUnavailable(String),
    /// The function asks for an isolation tier this host cannot give it.
    #[error("the {} tier is unavailable on this host: {reason}", isolation.as_str())]
    IsolationUnavailable {
        isolation: ignis_core::Isolation,
        reason: String,
    },
    /// A destination that leads back to the function: one asynchronous invocation would
    /// start others forever.
    #[error("{field} {destination} would make a cycle of destinations: {}; one asynchronous invocation would start invocations without end", cycle.join(" → "))]
    DestinationCycle {
        /// `on_success` or `on_failure`: the function's own destination the cycle starts with.
        field: &'static str,
        /// The function that field names.
        destination: String,
        /// The functions along the cycle, from the function back to it.
        cycle: Vec<String>,
    },
    /// An update that keeps the function's code, refused for a setting that does not fit
    /// that code (a handler naming no file of its package).
    #[error("{0}")]
    Spec(#[from] SpecError),
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("a stored function could not be read or written: {0}")]
    Io(#[from] std::io::Error),
    #[error("a background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Whether a create or update answers at once or after the deploy check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployWait {
    No,
    UntilDone,
}

impl Platform {
    /// Creates a function (version 1) and starts its deploy check.
    pub async fn create(
        self: &Arc<Self>,
        mut spec: FunctionSpec,
        wait: DeployWait,
    ) -> Result<FunctionView, ControlError> {
        self.check_host_can_run(&spec)?;
        let guard = self.changes.lock().await;
        let name = spec.name.as_str().to_owned();
        if self.slot(&name).is_some() {
            return Err(ControlError::AlreadyExists(name));
        }
        self.check_destinations(&spec)?;
        self.check_layers(&spec).await?;
        let now = now_ms();
        let new = new_version(&spec, 1, now)?;
        let store = self.store.clone();
        let packages = self.packages.clone();
        let package = spec.package.take();
        tokio::task::spawn_blocking(move || {
            store.create_function(&new)?;
            unpack_stored(&packages, &store, package.as_deref());
            Ok(())
        })
        .await?
        .map_err(|e| match e {
            StoreError::AlreadyExists(_) => ControlError::AlreadyExists(name.clone()),
            other @ (StoreError::NotFound(_)
            | StoreError::VersionNotFound { .. }
            | StoreError::VersionConflict { .. }
            | StoreError::Sqlite(_)
            | StoreError::DiskFull(_)
            | StoreError::Migration(_)
            | StoreError::Io(_)
            | StoreError::Corrupt(_)) => ControlError::Store(other),
        })?;
        let spec = Arc::new(spec);
        let slot = Arc::new(Slot {
            metrics: Default::default(),
            active: ArcSwapOption::empty(),
            http: ArcSwap::from_pointee(spec.http.clone()),
            status: std::sync::Mutex::new(Status {
                state: FunctionState::Creating,
                reason: None,
                deploy_error: None,
                latest_version: 1,
                deploying: None,
                latest_sha256: spec.code_sha256(),
                latest: spec.clone(),
                created_at: now,
                updated_at: now,
            }),
        });
        self.insert_slot(&name, slot.clone());
        drop(guard);
        self.schedules_changed();
        let done = self.start_deploy(slot.clone(), spec, 1);
        if wait == DeployWait::UntilDone {
            let _ = done.await;
        }
        Ok(FunctionView::of(&slot, false, self.clock.now()).with_spec(&slot))
    }

    /// Makes version N+1 of a function: from a whole spec, or from settings that keep the
    /// code of the newest version (its one file, or its package by hash). Calls keep going
    /// to the serving version until the new one is ready; if it fails, the old one keeps
    /// serving.
    pub async fn update(
        self: &Arc<Self>,
        update: impl Into<SpecUpdate>,
        wait: DeployWait,
    ) -> Result<FunctionView, ControlError> {
        let update = update.into();
        if let SpecUpdate::Replace(spec) = &update {
            self.check_host_can_run(spec)?;
        }
        let guard = self.changes.lock().await;
        let name = update.name().as_str().to_owned();
        let slot = self
            .slot(&name)
            .ok_or_else(|| ControlError::NotFound(name.clone()))?;
        let mut spec = match update {
            SpecUpdate::Replace(spec) => spec,
            SpecUpdate::KeepCode(keep) => {
                let spec = self.keep_code(keep, &slot.latest()).await?;
                self.check_host_can_run(&spec)?;
                spec
            }
        };
        self.check_destinations(&spec)?;
        self.check_layers(&spec).await?;
        let version = slot.status().latest_version + 1;
        let now = now_ms();
        let new = new_version(&spec, version, now)?;
        let store = self.store.clone();
        let packages = self.packages.clone();
        // The files are kept by the store (and unpacked), not in memory with the spec.
        let package = spec.package.take();
        tokio::task::spawn_blocking(move || {
            store.add_version(&new)?;
            unpack_stored(&packages, &store, package.as_deref());
            Ok::<(), StoreError>(())
        })
        .await??;
        let spec = Arc::new(spec);
        // Hashed before the status lock is taken: views read the status.
        let sha256 = spec.code_sha256();
        slot.update_status(|s| {
            s.latest_version = version;
            s.latest_sha256 = sha256;
            s.latest = spec.clone();
            s.updated_at = now;
        });
        slot.http.store(Arc::new(spec.http.clone()));
        drop(guard);
        self.schedules_changed();
        let done = self.start_deploy(slot.clone(), spec, version);
        if wait == DeployWait::UntilDone {
            let _ = done.await;
        }
        Ok(FunctionView::of(&slot, false, self.clock.now()).with_spec(&slot))
    }

    /// The spec of an update that keeps the code of `current`, the function's newest
    /// version; a package's file list is read from the store to check the handler against.
    async fn keep_code(&self, keep: KeepCode, current: &FunctionSpec) -> Result<FunctionSpec, ControlError> {
        let paths: std::collections::HashSet<String> = match &current.package_sha256 {
            None => Default::default(),
            Some(sha) => {
                let (store, sha) = (self.store.clone(), sha.clone());
                let files = tokio::task::spawn_blocking(move || store.package_files(&sha))
                    .await??
                    .ok_or_else(|| {
                        ControlError::Io(std::io::Error::other(format!(
                            "the package of function {:?} is not in the store",
                            current.name.as_str()
                        )))
                    })?;
                files.into_iter().map(|f| f.path).collect()
            }
        };
        Ok(keep.keep(current, |p| paths.contains(p))?)
    }

    /// Deletes a function and everything stored of it; its instances stop.
    pub async fn delete(&self, name: &str) -> Result<(), ControlError> {
        let _guard = self.changes.lock().await;
        let slot = self
            .slot(name)
            .ok_or_else(|| ControlError::NotFound(name.to_owned()))?;
        let mut table = HashMap::clone(&self.table.load());
        table.remove(name);
        self.table.store(Arc::new(table));
        if let Some(active) = slot.active.swap(None) {
            active.pool.retire();
        }
        let store = self.store.clone();
        let owned = name.to_owned();
        tokio::task::spawn_blocking(move || store.delete_function(&owned)).await??;
        self.schedules_changed();
        Ok(())
    }

    /// Brings back every stored function after a start: each is deployed again from its
    /// newest version, or from its last good one when the newest failed.
    pub async fn restore(self: &Arc<Self>) -> Result<usize, ControlError> {
        let (store, packages) = (self.store.clone(), self.packages.clone());
        match tokio::task::spawn_blocking(move || packages.collect(&store)).await? {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "removed unpacked packages no function uses"),
            Err(e) => tracing::warn!(error = %e, "could not collect unpacked packages"),
        }
        let store = self.store.clone();
        let stored = tokio::task::spawn_blocking(move || store.list_functions()).await??;
        let count = stored.len();
        for f in stored {
            let latest = parse_stored(&f.latest)?;
            let (deploy, reason) = match (f.latest.status, f.last_ready_version) {
                (VersionStatus::Error, Some(good)) if good != f.latest.version => {
                    let store = self.store.clone();
                    let name = f.name.clone();
                    let good = tokio::task::spawn_blocking(move || store.get_version(&name, good)).await??;
                    (
                        good.map(|v| parse_stored(&v)).transpose()?,
                        f.latest.status_reason.clone(),
                    )
                }
                (VersionStatus::Error, _) => (None, f.latest.status_reason.clone()),
                (VersionStatus::Ready | VersionStatus::Deploying, _) => (Some(latest.clone()), None),
            };
            let slot = Arc::new(Slot {
                metrics: Default::default(),
                active: ArcSwapOption::empty(),
                http: ArcSwap::from_pointee(latest.1.http.clone()),
                status: std::sync::Mutex::new(Status {
                    state: if deploy.is_some() {
                        FunctionState::Deploying
                    } else {
                        FunctionState::Error
                    },
                    reason,
                    deploy_error: f
                        .latest
                        .status_detail
                        .as_deref()
                        .and_then(|d| serde_json::from_str(d).ok()),
                    latest_version: f.latest.version,
                    deploying: None,
                    latest_sha256: latest.1.code_sha256(),
                    latest: Arc::new(latest.1),
                    created_at: f.created_at,
                    updated_at: f.updated_at,
                }),
            });
            self.insert_slot(&f.name, slot.clone());
            if let Some((version, spec)) = deploy {
                // Restores run in the background; the server answers meanwhile.
                drop(self.start_deploy(slot, Arc::new(spec), version));
            }
        }
        Ok(count)
    }

    /// Refuses destinations that lead back to the function, seen in the whole graph: every
    /// function's newest spec, with `spec` in place of its function's. Called under the
    /// `changes` lock, so two changes cannot each close half of a cycle.
    fn check_destinations(&self, spec: &FunctionSpec) -> Result<(), ControlError> {
        fn destinations(s: &FunctionSpec) -> Vec<FunctionName> {
            [&s.on_success, &s.on_failure]
                .into_iter()
                .flatten()
                .cloned()
                .collect()
        }
        let table = self.table.load();
        let cycle = destination_cycle(&spec.name, |f| {
            if f == &spec.name {
                destinations(spec)
            } else {
                table
                    .get(f.as_str())
                    .map(|slot| destinations(&slot.latest()))
                    .unwrap_or_default()
            }
        });
        let Some(cycle) = cycle else {
            return Ok(());
        };
        let first = cycle.get(1).unwrap_or(&spec.name);
        let field = if spec.on_success.as_ref() == Some(first) {
            "on_success"
        } else {
            "on_failure"
        };
        Err(ControlError::DestinationCycle {
            field,
            destination: first.as_str().to_owned(),
            cycle: cycle.iter().map(|n| n.as_str().to_owned()).collect(),
        })
    }

    /// Refuses a spec this host cannot run: a missing runtime, outbound networking
    /// without slirp4netns, or the microvm tier where it is unavailable. Checked before
    /// anything is stored.
    pub(crate) fn check_host_can_run(&self, spec: &FunctionSpec) -> Result<(), ControlError> {
        self.check_isolation(spec.isolation)?;
        if spec.network == ignis_core::Network::Outbound {
            if let Some(why) = &self.host.outbound_unavailable {
                return Err(ControlError::NetworkUnavailable(why.clone()));
            }
        }
        if self.host.runtimes.interpreter(spec.runtime).available {
            Ok(())
        } else {
            Err(ControlError::RuntimeUnavailable(
                self.host.runtimes.missing_message(spec.runtime),
            ))
        }
    }

    /// Refuses an isolation tier this host cannot give.
    fn check_isolation(&self, isolation: ignis_core::Isolation) -> Result<(), ControlError> {
        let available = match isolation {
            ignis_core::Isolation::Process => Ok(()),
            ignis_core::Isolation::Microvm => self.microvm().map(|_| ()),
        };
        available.map_err(|reason| ControlError::IsolationUnavailable { isolation, reason })
    }

    fn insert_slot(&self, name: &str, slot: Arc<Slot>) {
        let mut table = HashMap::clone(&self.table.load());
        table.insert(name.to_owned(), slot);
        self.table.store(Arc::new(table));
    }

    /// Starts the deploy check of `version` in the background; the receiver fires when it
    /// has ended, whatever its result.
    fn start_deploy(
        self: &Arc<Self>,
        slot: Arc<Slot>,
        spec: Arc<FunctionSpec>,
        version: u32,
    ) -> oneshot::Receiver<()> {
        let (done_tx, done_rx) = oneshot::channel();
        slot.update_status(|s| {
            s.state = s.state.on(StateEvent::DeployStarted);
            s.deploying = Some(version);
        });
        let platform = self.clone();
        tokio::spawn(async move {
            let result = platform.deploy(&slot, &spec, version).await;
            platform.finish_deploy(&slot, &spec, version, result).await;
            let _ = done_tx.send(());
        });
        done_rx
    }

    async fn deploy(
        &self,
        slot: &Slot,
        spec: &FunctionSpec,
        version: u32,
    ) -> Result<VersionPool, StartError> {
        let (package, handler) = match &spec.package_sha256 {
            None => (None, spec.handler.clone()),
            Some(sha) => {
                let (packages, store, sha) = (self.packages.clone(), self.store.clone(), sha.clone());
                let dir = tokio::task::spawn_blocking(move || packages.ensure(&store, &sha, None))
                    .await
                    .map_err(|e| StartError::Spawn(format!("unpacking the package: {e}")))?
                    .map_err(|e| StartError::Spawn(format!("unpacking the package: {e}")))?;
                let entry = resolve_handler(spec.runtime, &spec.handler, |p| dir.join(p).is_file())
                    .map_err(StartError::Spawn)?;
                let deps = self
                    .install_dependencies(slot, spec, version, &dir)
                    .await
                    .map_err(StartError::Spawn)?;
                let (dir, deps) = match deps {
                    // Without the sandbox there is no overlay: the instance reads one host
                    // folder holding both.
                    Some(deps) if !self.host.sandboxed => {
                        let under = self.config.packages_dir.join(".merged");
                        let merged =
                            tokio::task::spawn_blocking(move || crate::deps::merged(&dir, &deps, &under))
                                .await
                                .map_err(|e| StartError::Spawn(format!("merging the dependencies: {e}")))?
                                .map_err(|e| StartError::Spawn(format!("merging the dependencies: {e}")))?;
                        (merged, None)
                    }
                    deps => (dir, deps),
                };
                (
                    Some(CodePackage {
                        dir,
                        deps,
                        file: entry.file,
                    }),
                    entry.function,
                )
            }
        };
        let layers = self.layer_dirs(&spec.layers).await.map_err(StartError::Spawn)?;
        let launch = LaunchSpec {
            layers,
            handler_style: spec.handler_style,
            rest_answers: spec.http.payload_format_version == ignis_core::http::PayloadFormat::V1,
            runtime: spec.runtime,
            code: Arc::from(spec.code.as_str()),
            package,
            handler,
            env: ignis_core::lambda_env::function_env(
                &spec.env,
                &ignis_core::lambda_env::LambdaFacts {
                    name: spec.name.as_str(),
                    version,
                    memory_mb: spec.memory_mb,
                    region: &self.config.region,
                    handler: &spec.handler,
                    log_format: spec.log_format,
                    log_level: spec.log_level,
                },
            ),
            function: spec.name.as_str().to_owned(),
            version,
            memory_mb: spec.memory_mb,
            vcpus: spec.vcpus,
            network: spec.network,
            isolation: spec.isolation,
            timeout: Duration::from_secs(u64::from(spec.timeout_secs)),
            log_limit: self.config.log_limit_bytes,
            concurrency: spec.concurrency,
        };
        let limits = PoolLimits {
            min_instances: spec.min_instances as usize,
            max_instances: spec.max_instances as usize,
            concurrency: spec.concurrency as usize,
            idle_timeout: Duration::from_secs(u64::from(spec.idle_timeout_secs)),
        };
        let starter: Arc<dyn Starter> = self.launcher.clone();
        let evictions = slot.metrics.evictions.clone();
        VersionPool::deploy(starter, self.capacity.clone(), launch, limits, evictions).await
    }

    async fn finish_deploy(
        &self,
        slot: &Arc<Slot>,
        spec: &FunctionSpec,
        version: u32,
        result: Result<VersionPool, StartError>,
    ) {
        let name = spec.name.as_str();
        let (reason, detail) = match &result {
            Ok(_) => (None, None),
            Err(e) => (
                Some(format!("version {version} failed to deploy: {e}")),
                match e {
                    StartError::Load(l) => Some(DeployError {
                        version,
                        kind: l.kind.clone(),
                        message: l.message.clone(),
                        line: l.line,
                    }),
                    StartError::RuntimeMissing(_)
                    | StartError::Spawn(_)
                    | StartError::Died(_)
                    | StartError::Timeout => None,
                },
            ),
        };
        // A function deleted while deploying (and perhaps created again under the same name)
        // must not come back to life, nor have its result written over the new one's.
        if !self.slot(name).is_some_and(|s| Arc::ptr_eq(&s, slot)) {
            if let Ok(pool) = result {
                pool.retire();
            }
            tracing::info!(
                function = name,
                version,
                "deleted while deploying: the result is dropped"
            );
            return;
        }
        let store = self.store.clone();
        let (owned, why) = (name.to_owned(), reason.clone());
        let detail_json = detail.as_ref().and_then(|d| serde_json::to_string(d).ok());
        let stored = tokio::task::spawn_blocking(move || match why {
            None => store.set_version_status(&owned, version, VersionStatus::Ready, None),
            Some(why) => store.set_version_failed(&owned, version, &why, detail_json.as_deref()),
        })
        .await;
        match stored {
            Ok(Ok(())) => {}
            // Deleted between the check above and the write: nothing is left to record.
            Ok(Err(StoreError::VersionNotFound { .. })) => {
                tracing::info!(
                    function = name,
                    version,
                    "deleted while deploying: the result is dropped"
                );
            }
            other => tracing::error!(
                function = name,
                version,
                "could not record the deploy result: {other:?}"
            ),
        }
        // A function deleted while the result was written must not come back to life.
        if !self.slot(name).is_some_and(|s| Arc::ptr_eq(&s, slot)) {
            if let Ok(pool) = result {
                pool.retire();
            }
            return;
        }
        match result {
            Ok(pool) => {
                let newer_serving = slot.active.load().as_ref().is_some_and(|a| a.version > version);
                if newer_serving {
                    pool.retire();
                } else if let Some(old) = slot.active.swap(Some(Arc::new(Active { version, pool }))) {
                    old.pool.retire();
                }
            }
            Err(ref e) => tracing::info!(function = name, version, error = %e, "deploy failed"),
        }
        slot.update_status(|s| {
            // Only the newest deploy decides the state; an older one finishing late must
            // not override it.
            if s.deploying != Some(version) {
                return;
            }
            s.deploying = None;
            let event = match reason {
                None => StateEvent::DeploySucceeded,
                Some(_) => StateEvent::DeployFailed {
                    serving: slot.active.load().is_some(),
                },
            };
            s.state = s.state.on(event);
            // A restored last-good version keeps the newest version's failure visible.
            if reason.is_some() || version == s.latest_version {
                s.reason = reason;
                s.deploy_error = detail;
            }
        });
        self.build_events.notify_waiters();
    }
}

/// Now, at the millisecond precision the store keeps, so that what the API shows before
/// and after a restart is the same.
pub fn now_ms() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_millisecond(now.millisecond()).unwrap_or(now)
}

/// Unpacks a package just stored, so its deploy finds it ready; a failure here is only
/// logged, as the deploy unpacks it again from the store and reports why it cannot.
fn unpack_stored(
    packages: &crate::packages::PackageCache,
    store: &ignis_store::Store,
    package: Option<&ignis_core::package::Package>,
) {
    if let Some(p) = package {
        if let Err(e) = packages.ensure(store, p.sha256(), Some(p)) {
            tracing::warn!(package = p.sha256(), error = %e, "could not unpack a package");
        }
    }
}

fn new_version(spec: &FunctionSpec, version: u32, now: OffsetDateTime) -> Result<NewVersion, ControlError> {
    Ok(NewVersion {
        package: match (&spec.package, &spec.package_sha256) {
            (Some(p), _) => Some(VersionPackage::New(new_package(p))),
            // Kept from the version before: stored already.
            (None, Some(sha)) => Some(VersionPackage::Stored(sha.clone())),
            (None, None) => None,
        },
        function: spec.name.as_str().to_owned(),
        version,
        runtime: spec.runtime.as_str().to_owned(),
        handler: spec.handler.clone(),
        code: spec.code.clone(),
        code_sha256: spec.code_sha256(),
        spec_json: serde_json::to_string(spec).map_err(|e| ControlError::Io(e.into()))?,
        created_at: now,
        layers: spec
            .layers
            .iter()
            .map(|l| (l.name.as_str().to_owned(), l.version))
            .collect(),
    })
}

pub(crate) fn new_package(p: &ignis_core::package::Package) -> Arc<NewPackage> {
    Arc::new(NewPackage {
        sha256: p.sha256().to_owned(),
        files: p
            .files()
            .iter()
            .map(|f| NewPackageFile {
                path: f.path.clone(),
                sha256: f.sha256.clone(),
                content: f.content.clone(),
            })
            .collect(),
    })
}

fn parse_stored(v: &StoredVersion) -> Result<(u32, FunctionSpec), ControlError> {
    let mut spec: FunctionSpec =
        serde_json::from_str(&v.spec_json).map_err(|e| ControlError::Io(e.into()))?;
    spec.code = v.code.clone();
    // The name is validated again on the way in, as everywhere: a bad row is an error.
    FunctionName::parse(spec.name.as_str()).map_err(|e| ControlError::Io(std::io::Error::other(e)))?;
    Ok((v.version, spec))
}
