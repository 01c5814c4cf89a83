//! The instances of one function version: warm reuse, scale-out up to `max_instances`, a
//! bounded queue of waiting calls, and idle scale-to-zero. One task owns this state; calls
//! reach it through a channel, so no lock is shared between invocations.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ignis_core::limits::MAX_QUEUED_PER_FUNCTION;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::instance::{Instance, LaunchSpec, Launcher, StartError};

/// How often idle instances are checked against their idle timeout.
const REAP_INTERVAL: Duration = Duration::from_millis(250);

/// Counts of a version's instances, readable without asking the pool task.
#[derive(Debug, Default)]
pub struct PoolStats {
    starting: AtomicUsize,
    idle: AtomicUsize,
    busy: AtomicUsize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InstanceCounts {
    pub starting: usize,
    pub idle: usize,
    pub busy: usize,
}

/// Why no instance could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AcquireError {
    #[error("too many requests are waiting for an instance of this function")]
    QueueFull,
    #[error("no instance became free before the deadline")]
    DeadlinePassed,
    #[error("could not start an instance: {0}")]
    StartFailed(StartError),
    #[error("this version is no longer served")]
    Retired,
}

/// An instance lent to one invocation. Give it back with [`VersionPool::release`].
#[derive(Debug)]
pub struct Lease {
    pub instance: Instance,
    /// True when the instance was started for this call.
    pub cold: bool,
}

enum Msg {
    Acquire {
        reply: oneshot::Sender<Result<Lease, AcquireError>>,
    },
    Release {
        instance: Instance,
        reusable: bool,
    },
    Started(Result<Instance, StartError>),
    Retire,
}

/// A handle to the pool of one function version. Cheap to clone.
#[derive(Clone)]
pub struct VersionPool {
    tx: mpsc::UnboundedSender<Msg>,
    stats: Arc<PoolStats>,
    pub spec: Arc<LaunchSpec>,
}

/// The settings of a pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    pub max_instances: usize,
    pub idle_timeout: Duration,
}

impl VersionPool {
    /// Deploys a version: starts one instance, which checks that the module loads and the
    /// handler exists. On success that instance becomes the pool's first warm instance.
    pub async fn deploy(
        launcher: Arc<Launcher>,
        spec: LaunchSpec,
        limits: PoolLimits,
    ) -> Result<VersionPool, StartError> {
        let first = Instance::start(&launcher, &spec).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(PoolStats::default());
        let spec = Arc::new(spec);
        let task = PoolTask {
            launcher,
            spec: spec.clone(),
            limits,
            tx: tx.downgrade(),
            stats: stats.clone(),
            idle: vec![(first, Instant::now())],
            busy: 0,
            starting: 0,
            waiters: VecDeque::new(),
            retired: false,
        };
        task.publish();
        tokio::spawn(task.run(rx));
        Ok(VersionPool { tx, stats, spec })
    }

    /// Waits for an instance until `deadline`.
    pub async fn acquire(&self, deadline: Instant) -> Result<Lease, AcquireError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Acquire { reply })
            .map_err(|_| AcquireError::Retired)?;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(AcquireError::Retired),
            // Dropping `rx` tells the pool task this waiter is gone.
            Err(_) => Err(AcquireError::DeadlinePassed),
        }
    }

    /// Gives an instance back after an invocation.
    pub fn release(&self, instance: Instance, reusable: bool) {
        // If the pool task is gone the instance is dropped, which stops it.
        let _ = self.tx.send(Msg::Release { instance, reusable });
    }

    /// Stops serving: idle instances stop now, busy ones when their invocation ends.
    pub fn retire(&self) {
        let _ = self.tx.send(Msg::Retire);
    }

    pub fn counts(&self) -> InstanceCounts {
        InstanceCounts {
            starting: self.stats.starting.load(Ordering::Relaxed),
            idle: self.stats.idle.load(Ordering::Relaxed),
            busy: self.stats.busy.load(Ordering::Relaxed),
        }
    }
}

struct PoolTask {
    launcher: Arc<Launcher>,
    spec: Arc<LaunchSpec>,
    limits: PoolLimits,
    tx: mpsc::WeakUnboundedSender<Msg>,
    stats: Arc<PoolStats>,
    /// Idle instances with the time they became idle; the most recently used is last, so
    /// reuse takes the warmest and reaping finds the coldest first.
    idle: Vec<(Instance, Instant)>,
    busy: usize,
    starting: usize,
    waiters: VecDeque<oneshot::Sender<Result<Lease, AcquireError>>>,
    retired: bool,
}

impl PoolTask {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut reap = tokio::time::interval(REAP_INTERVAL);
        reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    // Every handle is gone: the version was deleted or replaced.
                    None => return,
                },
                _ = reap.tick() => self.reap(),
            }
            self.publish();
            if self.retired && self.busy == 0 && self.starting == 0 {
                return;
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Acquire { reply } => self.acquire(reply),
            Msg::Release { instance, reusable } => {
                self.busy -= 1;
                if reusable && !self.retired {
                    self.give(instance, false);
                }
                self.scale();
            }
            Msg::Started(result) => {
                self.starting -= 1;
                match result {
                    Ok(instance) if !self.retired => self.give(instance, true),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(function = %self.spec.function, error = %e, "instance failed to start");
                        // Waiters beyond what is still starting would wait for nothing.
                        while self.waiters.len() > self.starting {
                            if let Some(w) = self.waiters.pop_front() {
                                let _ = w.send(Err(AcquireError::StartFailed(e.clone())));
                            }
                        }
                    }
                }
            }
            Msg::Retire => {
                self.retired = true;
                self.idle.clear();
                for w in self.waiters.drain(..) {
                    let _ = w.send(Err(AcquireError::Retired));
                }
            }
        }
    }

    fn acquire(&mut self, reply: oneshot::Sender<Result<Lease, AcquireError>>) {
        if self.retired {
            let _ = reply.send(Err(AcquireError::Retired));
            return;
        }
        while let Some((instance, _)) = self.idle.pop() {
            if instance.is_alive() {
                self.busy += 1;
                if let Err(Ok(lease)) = reply.send(Ok(Lease {
                    instance,
                    cold: false,
                })) {
                    // The caller left before it got the instance: keep it idle.
                    self.busy -= 1;
                    self.idle.push((lease.instance, Instant::now()));
                }
                return;
            }
        }
        self.waiters.retain(|w| !w.is_closed());
        if self.waiters.len() >= MAX_QUEUED_PER_FUNCTION {
            let _ = reply.send(Err(AcquireError::QueueFull));
            return;
        }
        self.waiters.push_back(reply);
        self.scale();
    }

    /// Hands an instance to the first caller still waiting, or parks it idle.
    fn give(&mut self, mut instance: Instance, cold: bool) {
        if !instance.is_alive() {
            return;
        }
        while let Some(w) = self.waiters.pop_front() {
            self.busy += 1;
            match w.send(Ok(Lease { instance, cold })) {
                Ok(()) => return,
                Err(Ok(lease)) => {
                    self.busy -= 1;
                    instance = lease.instance;
                }
                Err(Err(_)) => unreachable!("only leases are sent to waiters here"),
            }
        }
        self.idle.push((instance, Instant::now()));
    }

    /// Starts instances while callers wait that no starting instance will serve.
    fn scale(&mut self) {
        self.waiters.retain(|w| !w.is_closed());
        while !self.retired
            && self.waiters.len() > self.starting
            && self.busy + self.idle.len() + self.starting < self.limits.max_instances
        {
            self.starting += 1;
            let launcher = self.launcher.clone();
            let spec = self.spec.clone();
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let result = Instance::start(&launcher, &spec).await;
                if let Some(tx) = tx.upgrade() {
                    let _ = tx.send(Msg::Started(result));
                }
            });
        }
    }

    fn reap(&mut self) {
        let now = Instant::now();
        let timeout = self.limits.idle_timeout;
        self.idle
            .retain(|(instance, since)| instance.is_alive() && now.duration_since(*since) < timeout);
        self.waiters.retain(|w| !w.is_closed());
    }

    fn publish(&self) {
        self.stats.starting.store(self.starting, Ordering::Relaxed);
        self.stats.idle.store(self.idle.len(), Ordering::Relaxed);
        self.stats.busy.store(self.busy, Ordering::Relaxed);
    }
}

/// One invocation run through a pool.
#[derive(Debug)]
pub struct Ran {
    pub result: crate::instance::RunResult,
    pub cold: bool,
    /// Time spent in the instance, from dispatch to answer.
    pub duration: Duration,
}

impl VersionPool {
    /// Runs one invocation: waits for an instance (at most the function's timeout), runs
    /// the event on it and gives it back. Callers spawn this so that an invocation runs to
    /// its end, and its instance comes back, even when the client goes away.
    pub async fn invoke(
        &self,
        id: String,
        event: Arc<serde_json::value::RawValue>,
    ) -> Result<Ran, AcquireError> {
        let timeout = self.spec.timeout;
        let lease = self.acquire(Instant::now() + timeout).await?;
        let started = Instant::now();
        let result = lease.instance.run(id, event, timeout).await;
        let duration = started.elapsed();
        self.release(lease.instance, result.reusable);
        Ok(Ran {
            result,
            cold: lease.cold,
            duration,
        })
    }
}
