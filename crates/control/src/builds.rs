//! Building a version's dependencies before its deploy check, and builds as the API shows
//! them: a running build lives in memory (its log grows line by line and followers wake on
//! each), a finished one is one row in the store, written once when it ends.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ignis_core::{FunctionSpec, StateEvent};
use ignis_pool::{BuildJob, Installer};
use ignis_store::{BuildStatus, StoredBuild};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use utoipa::ToSchema;

use crate::deps::{self, DepsPlan};
use crate::lifecycle::now_ms;
use crate::view::rfc3339;
use crate::{ControlError, Platform, Slot};

/// Log bytes kept of one build from its start; past them, only the last lines.
const MAX_LOG_BYTES: usize = 1024 * 1024;
const TAIL_LINES: usize = 100;
/// Lines of the installer's output quoted in the function's `state_reason`.
const REASON_LINES: usize = 8;

/// A version's build as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BuildView {
    pub function: String,
    pub version: u32,
    /// `none` (nothing to install), `pending` (the version's deploy has not yet found
    /// out), `running`, `succeeded`, `failed` or `cached` (the same dependencies were
    /// installed before: nothing was installed).
    #[schema(example = "succeeded")]
    pub status: &'static str,
    /// `uv` or `bun`; null when there was nothing to install.
    pub installer: Option<String>,
    /// The dependency set's key in the cache (the same for every function and version
    /// with the same manifest files, installer and interpreter versions).
    pub cache_key: Option<String>,
    /// What the installer printed (stdout and stderr, in order), one line per line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl BuildView {
    fn none(function: &str, version: u32, status: &'static str) -> BuildView {
        BuildView {
            function: function.to_owned(),
            version,
            status,
            installer: None,
            cache_key: None,
            log: Some(String::new()),
            error: None,
            started_at: None,
            finished_at: None,
        }
    }

    fn stored(b: StoredBuild) -> BuildView {
        BuildView {
            function: b.function,
            version: b.version,
            status: b.status.as_str(),
            installer: Some(b.installer),
            cache_key: Some(b.cache_key),
            log: Some(b.log),
            error: b.error,
            started_at: Some(rfc3339(b.started_at)),
            finished_at: Some(rfc3339(b.finished_at)),
        }
    }

    /// Without its log (what a follower's end event carries).
    pub fn without_log(mut self) -> BuildView {
        self.log = None;
        self
    }
}

/// A build in progress.
#[derive(Debug)]
pub struct LiveBuild {
    function: String,
    version: u32,
    installer: Installer,
    key: String,
    started_at: OffsetDateTime,
    state: Mutex<LiveState>,
    changed: watch::Sender<()>,
}

#[derive(Debug, Default)]
struct LiveState {
    lines: Vec<String>,
    bytes: usize,
    /// Lines past the byte cap: only the last `TAIL_LINES` are kept, added at the end.
    tail: VecDeque<String>,
    left_out: usize,
    end: Option<(BuildStatus, Option<String>, OffsetDateTime)>,
}

impl LiveBuild {
    pub(crate) fn new(function: &str, version: u32, plan: &DepsPlan) -> LiveBuild {
        LiveBuild {
            function: function.to_owned(),
            version,
            installer: plan.installer,
            key: plan.key.clone(),
            started_at: now_ms(),
            state: Mutex::default(),
            changed: watch::channel(()).0,
        }
    }

    fn push(&self, line: String) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.bytes + line.len() <= MAX_LOG_BYTES {
            s.bytes += line.len() + 1;
            s.lines.push(line);
        } else {
            s.tail.push_back(line);
            if s.tail.len() > TAIL_LINES {
                s.tail.pop_front();
                s.left_out += 1;
            }
        }
        drop(s);
        self.changed.send_replace(());
    }

    pub(crate) fn finish(&self, status: BuildStatus, error: Option<String>) -> StoredBuild {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.left_out > 0 {
            let note = format!("[… {} lines of output not kept …]", s.left_out);
            s.lines.push(note);
        }
        let tail: Vec<String> = s.tail.drain(..).collect();
        s.lines.extend(tail);
        let finished = now_ms();
        s.end = Some((status, error.clone(), finished));
        StoredBuild {
            function: self.function.clone(),
            version: self.version,
            status,
            installer: self.installer.as_str().to_owned(),
            cache_key: self.key.clone(),
            log: s.lines.join("\n"),
            error,
            started_at: self.started_at,
            finished_at: finished,
        }
    }

    /// Lines from `from` on, and the view once the build has ended.
    pub fn read(&self, from: usize) -> (Vec<String>, Option<BuildView>) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let lines = s.lines.get(from..).unwrap_or_default().to_vec();
        (lines, s.end.as_ref().map(|_| self.view(&s, false)))
    }

    fn view(&self, s: &LiveState, with_log: bool) -> BuildView {
        let (status, error, finished) = match &s.end {
            None => ("running", None, None),
            Some((status, error, at)) => (status.as_str(), error.clone(), Some(rfc3339(*at))),
        };
        BuildView {
            function: self.function.clone(),
            version: self.version,
            status,
            installer: Some(self.installer.as_str().to_owned()),
            cache_key: Some(self.key.clone()),
            log: with_log.then(|| s.lines.join("\n")),
            error,
            started_at: Some(rfc3339(self.started_at)),
            finished_at: finished,
        }
    }

    /// Wakes when a line arrives or the build ends.
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }
}

/// A build to show: finished (or none), or one to follow as it runs.
pub enum BuildFollow {
    Done(BuildView),
    Live(Arc<LiveBuild>),
}

impl Platform {
    /// The build of `name`'s `version`.
    pub async fn build(&self, name: &str, version: u32) -> Result<BuildView, ControlError> {
        match self.find_build(name, version, false).await? {
            BuildFollow::Done(view) => Ok(view),
            BuildFollow::Live(live) => {
                let s = live.state.lock().unwrap_or_else(|p| p.into_inner());
                Ok(live.view(&s, true))
            }
        }
    }

    /// The build of `name`'s `version`, live while it runs. A version whose deploy has not
    /// yet found out whether it installs anything is waited for.
    pub async fn follow_build(&self, name: &str, version: u32) -> Result<BuildFollow, ControlError> {
        self.find_build(name, version, true).await
    }

    async fn find_build(&self, name: &str, version: u32, wait: bool) -> Result<BuildFollow, ControlError> {
        let slot = self
            .slot(name)
            .ok_or_else(|| ControlError::NotFound(name.to_owned()))?;
        if version == 0 || version > slot.status().latest_version {
            return Err(ControlError::VersionNotFound(name.to_owned(), version));
        }
        let key = (name.to_owned(), version);
        loop {
            // Registered before the checks, so a build starting in between wakes it.
            let changed = self.build_events.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(live) = self.builds.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
                return Ok(BuildFollow::Live(live.clone()));
            }
            // A finished build is written to the store before it leaves the live table.
            let store = self.store.clone();
            let owned = name.to_owned();
            if let Some(b) = crate::blocking(move || store.get_build(&owned, version)).await? {
                return Ok(BuildFollow::Done(BuildView::stored(b)));
            }
            let undecided = slot.status().deploying == Some(version);
            if !undecided {
                return Ok(BuildFollow::Done(BuildView::none(name, version, "none")));
            }
            if !wait {
                return Ok(BuildFollow::Done(BuildView::none(name, version, "pending")));
            }
            // Woken when a build starts or a deploy ends; the timeout only bounds a missed
            // wake-up (the function deleted meanwhile).
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), changed).await;
            if !self.slot(name).is_some_and(|s| Arc::ptr_eq(&s, &slot)) {
                return Err(ControlError::NotFound(name.to_owned()));
            }
        }
    }

    /// Installs the dependencies the unpacked package at `package` asks for, or finds
    /// them in the cache: the folder to show beside the package, or `None` when there is
    /// nothing to install. The function is `building` meanwhile. An error is the reason
    /// the version failed, with the end of the installer's output.
    pub(crate) async fn install_dependencies(
        &self,
        slot: &Slot,
        spec: &FunctionSpec,
        version: u32,
        package: &Path,
    ) -> Result<Option<PathBuf>, String> {
        let (dir, runtime, runtimes) = (package.to_owned(), spec.runtime, self.host.runtimes.clone());
        let plan = tokio::task::spawn_blocking(move || deps::plan(runtime, &dir, &runtimes))
            .await
            .map_err(|e| format!("reading the package's manifest: {e}"))??;
        let Some(plan) = plan else {
            return Ok(None);
        };
        slot.update_status(|s| {
            if s.deploying == Some(version) {
                s.state = s.state.on(StateEvent::BuildStarted);
            }
        });
        let name = spec.name.as_str().to_owned();
        let live = Arc::new(LiveBuild::new(&name, version, &plan));
        self.builds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((name.clone(), version), live.clone());
        self.build_events.notify_waiters();
        let result = self.run_build(&plan, &live).await;
        let (status, error) = match &result {
            Ok((_, true)) => (BuildStatus::Cached, None),
            Ok((_, false)) => (BuildStatus::Succeeded, None),
            Err(e) => (BuildStatus::Failed, Some(e.clone())),
        };
        let record = live.finish(status, error);
        let store = self.store.clone();
        let put = move || {
            // A version deployed again (at start) finds its own build in the cache: the
            // build it had stays the one shown.
            if record.status == BuildStatus::Cached
                && store.get_build(&record.function, record.version)?.is_some()
            {
                return Ok(());
            }
            store.put_build(&record)
        };
        if let Err(e) = crate::blocking(put).await {
            tracing::warn!(function = name, version, error = %e, "could not record the build");
        }
        self.builds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(name.clone(), version));
        live.changed.send_replace(());
        if status == BuildStatus::Succeeded {
            self.collect_dependencies().await;
        }
        slot.update_status(|s| {
            if s.deploying == Some(version) {
                s.state = s.state.on(StateEvent::DeployStarted);
            }
        });
        match result {
            Ok((dir, _)) => Ok(Some(dir)),
            Err(e) => {
                let (lines, _) = live.read(0);
                let start = lines.len().saturating_sub(REASON_LINES);
                let tail = lines[start..].join("\n");
                Err(if tail.is_empty() {
                    format!("installing its dependencies failed: {e}")
                } else {
                    format!("installing its dependencies failed: {e}; the installer's last lines:\n{tail}")
                })
            }
        }
    }

    /// The cache entry of `plan` and whether it was there already.
    pub(crate) async fn run_build(
        &self,
        plan: &DepsPlan,
        live: &Arc<LiveBuild>,
    ) -> Result<(PathBuf, bool), String> {
        let lock = self.deps.lock(&plan.key);
        let _held = lock.lock().await;
        let cache = self.deps.clone();
        let key = plan.key.clone();
        if let Some(dir) = tokio::task::spawn_blocking(move || cache.find(&key))
            .await
            .map_err(|e| e.to_string())?
        {
            live.push(format!(
                "{} dependencies found in the cache ({}): nothing to install",
                plan.installer.as_str(),
                &plan.key[..16]
            ));
            return Ok((dir, true));
        }
        let (cache, owned) = (self.deps.clone(), plan.clone());
        let work = tokio::task::spawn_blocking(move || cache.prepare(&owned))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("preparing the build: {e}"))?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let pump = {
            let live = live.clone();
            tokio::spawn(async move {
                while let Some(line) = rx.recv().await {
                    live.push(line);
                }
            })
        };
        let job = BuildJob {
            installer: plan.installer,
            work: work.clone(),
            frozen_lockfile: plan.frozen,
            subdir: plan.prefix,
            timeout: self.deps.config.build_timeout,
            memory_mb: self.deps.config.build_memory_mb,
            log: tx,
        };
        let built = self.launcher.clone().build(job).await;
        // Every line is in the log before the result is.
        let _ = pump.await;
        let (cache, owned) = (self.deps.clone(), plan.clone());
        match built {
            Ok(()) => tokio::task::spawn_blocking(move || cache.commit(&owned, &work))
                .await
                .map_err(|e| e.to_string())?
                .map(|dir| (dir, false)),
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(work)).await;
                Err(e.to_string())
            }
        }
    }

    /// Removes cache entries no function needs while the cache is over its size.
    pub(crate) async fn collect_dependencies(&self) {
        let (store, cache) = (self.store.clone(), self.deps.clone());
        let done = tokio::task::spawn_blocking(move || {
            let in_use = store.build_keys_in_use().map_err(std::io::Error::other)?;
            cache.collect(&in_use)
        })
        .await;
        match done {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(removed = n, "removed installed dependencies no function uses"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not collect installed dependencies"),
            Err(e) => tracing::warn!(error = %e, "could not collect installed dependencies"),
        }
    }
}
