//! The instances of one function version: warm reuse, up to `concurrency` calls per
//! instance, scale-out up to `max_instances`, `min_instances` always kept, a bounded queue
//! of waiting calls, idle scale-down, and eviction when another function needs the memory.
//! One task owns this state; calls reach it through a channel, so no lock is shared
//! between invocations.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ignis_core::limits::MAX_QUEUED_PER_FUNCTION;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::capacity::{Capacity, PoolShared, Reservation};
use crate::instance::{Instance, RunResult, StartError, StartTimings};
use crate::launcher::{LaunchSpec, Starter};

/// How often idle instances are checked against their idle timeout.
const REAP_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InstanceCounts {
    pub starting: usize,
    pub idle: usize,
    pub busy: usize,
}

/// Why an invocation had to wait for a new instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColdReason {
    /// The first call of a function's first version.
    FirstCall,
    /// The first call of a later version.
    NewVersion,
    /// Every instance had been stopped for idleness (or evicted).
    AfterIdle,
    /// All instances were busy.
    ScaleOut,
}

impl ColdReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ColdReason::FirstCall => "first_call",
            ColdReason::NewVersion => "new_version",
            ColdReason::AfterIdle => "after_idle",
            ColdReason::ScaleOut => "scale_out",
        }
    }
}

/// How a cold invocation's instance was started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColdStart {
    pub reason: ColdReason,
    pub timings: StartTimings,
}

/// Why no instance could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AcquireError {
    #[error("too many requests are waiting for an instance of this function")]
    QueueFull,
    #[error("no instance became free before the deadline")]
    DeadlinePassed,
    #[error("the host's memory capacity is taken by busy instances; nothing idle could be evicted")]
    CapacityExhausted,
    #[error("could not start an instance: {0}")]
    StartFailed(StartError),
    #[error("this version is no longer served")]
    Retired,
}

/// An instance lent to one invocation. Give it back with [`VersionPool::release`].
#[derive(Debug)]
pub struct Lease {
    pub instance: Instance,
    /// Set when the call waited for this instance to start.
    pub cold: Option<ColdStart>,
}

pub(crate) enum Msg {
    Acquire {
        reply: oneshot::Sender<Result<Lease, AcquireError>>,
    },
    Release {
        instance: u64,
        reusable: bool,
    },
    Started {
        result: Result<(crate::instance::Started, Reservation), StartFailure>,
        reason: ColdReason,
    },
    Evict {
        reply: oneshot::Sender<bool>,
    },
    Retire,
}

pub(crate) enum StartFailure {
    Capacity,
    Start(StartError),
}

/// The scaling settings of a version.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    pub min_instances: usize,
    pub max_instances: usize,
    pub concurrency: usize,
    /// Zero: an instance stops as soon as it has nothing to do.
    pub idle_timeout: Duration,
}

/// A handle to the pool of one function version. Cheap to clone.
#[derive(Clone)]
pub struct VersionPool {
    tx: mpsc::UnboundedSender<Msg>,
    shared: Arc<PoolShared>,
    pub spec: Arc<LaunchSpec>,
}

impl VersionPool {
    /// Deploys a version: starts one instance, which checks that the module loads and the
    /// handler exists. On success that instance becomes the pool's first warm instance
    /// (when the capacity has room for it), and `min_instances` start in the background.
    pub async fn deploy(
        starter: Arc<dyn Starter>,
        capacity: Arc<Capacity>,
        spec: LaunchSpec,
        limits: PoolLimits,
        evictions: Arc<AtomicU64>,
    ) -> Result<VersionPool, StartError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(PoolShared::new(spec.function.clone(), evictions, tx.downgrade()));
        let spec = Arc::new(spec);
        let mb = u64::from(spec.memory_mb);
        let reservation = match capacity.try_reserve(mb) {
            Some(r) => Some(r),
            None => capacity.reserve_evicting(mb, &shared).await,
        };
        let first = starter.clone().start(spec.clone()).await?;
        let mut task = PoolTask {
            starter,
            capacity: capacity.clone(),
            spec: spec.clone(),
            limits: PoolLimits {
                concurrency: limits.concurrency.max(1),
                max_instances: limits.max_instances.max(1),
                ..limits
            },
            tx: tx.downgrade(),
            shared: shared.clone(),
            entries: Vec::new(),
            starting: 0,
            waiters: VecDeque::new(),
            served: false,
            retired: false,
            start_blocked: false,
        };
        // Without room the check instance is not kept: it stops here.
        if let Some(reservation) = reservation {
            task.add(first.instance, reservation, None);
        }
        capacity.register(&shared);
        task.scale();
        task.publish();
        tokio::spawn(task.run(rx));
        Ok(VersionPool { tx, shared, spec })
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
    pub fn release(&self, instance: &Instance, reusable: bool) {
        // If the pool task is gone the instance is dropped, which stops it.
        let _ = self.tx.send(Msg::Release {
            instance: instance.id(),
            reusable,
        });
    }

    /// Stops serving: idle instances stop now, busy ones when their invocation ends.
    pub fn retire(&self) {
        let _ = self.tx.send(Msg::Retire);
    }

    pub fn counts(&self) -> InstanceCounts {
        InstanceCounts {
            starting: self.shared.starting.load(Ordering::Relaxed),
            idle: self.shared.idle.load(Ordering::Relaxed),
            busy: self.shared.busy.load(Ordering::Relaxed),
        }
    }

    /// Calls waiting for an instance now.
    pub fn queue_depth(&self) -> usize {
        self.shared.waiting.load(Ordering::Relaxed)
    }
}

/// One live instance of the pool.
struct Entry {
    instance: Instance,
    inflight: usize,
    /// When it last became idle (or started).
    idle_since: Instant,
    _reservation: Reservation,
}

struct Waiter {
    reply: oneshot::Sender<Result<Lease, AcquireError>>,
}

struct PoolTask {
    starter: Arc<dyn Starter>,
    capacity: Arc<Capacity>,
    spec: Arc<LaunchSpec>,
    limits: PoolLimits,
    tx: mpsc::WeakUnboundedSender<Msg>,
    shared: Arc<PoolShared>,
    entries: Vec<Entry>,
    /// Instances being started (their memory is reserved by their start task).
    starting: usize,
    waiters: VecDeque<Waiter>,
    /// Whether any call was served: the first cold start is `first_call`/`new_version`.
    served: bool,
    retired: bool,
    /// Set when a start failed (no memory, or the start itself): no new start until the
    /// next reap tick, so a full host or a broken runtime is not retried in a tight loop.
    start_blocked: bool,
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
                _ = reap.tick() => {
                    self.start_blocked = false;
                    self.reap();
                    self.scale();
                }
            }
            self.publish();
            if self.retired && self.entries.is_empty() && self.starting == 0 {
                return;
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Acquire { reply } => self.acquire(reply),
            Msg::Release { instance, reusable } => {
                if let Some(i) = self.entries.iter().position(|e| e.instance.id() == instance) {
                    self.entries[i].inflight -= 1;
                    if !reusable || self.retired || !self.entries[i].instance.is_alive() {
                        self.entries.swap_remove(i);
                    } else {
                        if self.entries[i].inflight == 0 {
                            self.entries[i].idle_since = Instant::now();
                        }
                        self.serve_from(i, None);
                        self.drop_if_idle_and_done(i);
                    }
                }
                self.scale();
            }
            Msg::Started { result, reason } => {
                self.starting -= 1;
                match result {
                    Ok(_) if self.retired => {}
                    Ok((started, reservation)) => {
                        let cold = ColdStart {
                            reason,
                            timings: started.timings,
                        };
                        self.add(started.instance, reservation, Some(cold));
                    }
                    Err(failure) => {
                        self.start_blocked = true;
                        let error = match failure {
                            StartFailure::Capacity => AcquireError::CapacityExhausted,
                            StartFailure::Start(e) => {
                                tracing::warn!(function = %self.spec.function, error = %e, "instance failed to start");
                                AcquireError::StartFailed(e)
                            }
                        };
                        // Waiters that neither a starting nor a live instance will serve
                        // would wait for nothing.
                        if self.entries.is_empty() {
                            self.waiters.retain(|w| !w.reply.is_closed());
                            let served = self.starting * self.limits.concurrency;
                            while self.waiters.len() > served {
                                if let Some(w) = self.waiters.pop_back() {
                                    let _ = w.reply.send(Err(error.clone()));
                                }
                            }
                        }
                    }
                }
                self.scale();
            }
            Msg::Evict { reply } => {
                let evicted = self.evict_one();
                let _ = reply.send(evicted);
            }
            Msg::Retire => {
                self.retired = true;
                self.entries.retain(|e| e.inflight > 0);
                for w in self.waiters.drain(..) {
                    let _ = w.reply.send(Err(AcquireError::Retired));
                }
            }
        }
    }

    fn acquire(&mut self, reply: oneshot::Sender<Result<Lease, AcquireError>>) {
        if self.retired {
            let _ = reply.send(Err(AcquireError::Retired));
            return;
        }
        // Dead instances leave first: no call goes to them.
        self.entries.retain(|e| e.inflight > 0 || e.instance.is_alive());
        // The fullest instance with room (packs concurrent calls, so others can go
        // idle), then the most recently used (the warmest).
        let best = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.inflight < self.limits.concurrency)
            .max_by_key(|(_, e)| (e.inflight, e.idle_since))
            .map(|(i, _)| i);
        if let Some(i) = best {
            let lease = Lease {
                instance: self.entries[i].instance.clone(),
                cold: None,
            };
            if reply.send(Ok(lease)).is_ok() {
                self.entries[i].inflight += 1;
                self.served = true;
            }
            return;
        }
        self.waiters.retain(|w| !w.reply.is_closed());
        if self.waiters.len() >= MAX_QUEUED_PER_FUNCTION {
            let _ = reply.send(Err(AcquireError::QueueFull));
            return;
        }
        self.waiters.push_back(Waiter { reply });
        self.scale();
    }

    /// A started instance joins the pool and serves the first callers waiting.
    fn add(&mut self, instance: Instance, reservation: Reservation, cold: Option<ColdStart>) {
        self.entries.push(Entry {
            instance,
            inflight: 0,
            idle_since: Instant::now(),
            _reservation: reservation,
        });
        let i = self.entries.len() - 1;
        self.serve_from(i, cold);
        self.drop_if_idle_and_done(i);
    }

    /// Hands entry `i`'s free slots to the callers waiting longest.
    fn serve_from(&mut self, i: usize, cold: Option<ColdStart>) {
        while self.entries[i].inflight < self.limits.concurrency {
            let Some(w) = self.waiters.pop_front() else { break };
            let lease = Lease {
                instance: self.entries[i].instance.clone(),
                cold,
            };
            if w.reply.send(Ok(lease)).is_ok() {
                self.entries[i].inflight += 1;
                self.served = true;
            }
        }
    }

    /// With an idle timeout of zero, an instance stops as soon as it has nothing to do
    /// (unless `min_instances` keeps it).
    fn drop_if_idle_and_done(&mut self, i: usize) {
        if self.limits.idle_timeout.is_zero()
            && self.entries[i].inflight == 0
            && self.entries.len() > self.limits.min_instances
        {
            self.entries.swap_remove(i);
        }
    }

    /// Starts instances while callers wait that no starting instance will serve, and
    /// while fewer than `min_instances` are live.
    fn scale(&mut self) {
        if self.retired || self.start_blocked {
            return;
        }
        self.waiters.retain(|w| !w.reply.is_closed());
        let conc = self.limits.concurrency;
        loop {
            let live = self.entries.len() + self.starting;
            let unserved = self.waiters.len().saturating_sub(self.starting * conc);
            let wanted = unserved > 0 || live < self.limits.min_instances;
            if !wanted || live >= self.limits.max_instances {
                return;
            }
            self.start_one();
        }
    }

    fn start_one(&mut self) {
        let reason = if !self.served {
            if self.spec.version <= 1 {
                ColdReason::FirstCall
            } else {
                ColdReason::NewVersion
            }
        } else if self.entries.is_empty() {
            ColdReason::AfterIdle
        } else {
            ColdReason::ScaleOut
        };
        self.starting += 1;
        let starter = self.starter.clone();
        let capacity = self.capacity.clone();
        let shared = self.shared.clone();
        let spec = self.spec.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mb = u64::from(spec.memory_mb);
            let reservation = match capacity.try_reserve(mb) {
                Some(r) => Some(r),
                None => capacity.reserve_evicting(mb, &shared).await,
            };
            let result = match reservation {
                None => Err(StartFailure::Capacity),
                Some(reservation) => match starter.start(spec).await {
                    Ok(started) => Ok((started, reservation)),
                    Err(e) => Err(StartFailure::Start(e)),
                },
            };
            if let Some(tx) = tx.upgrade() {
                let _ = tx.send(Msg::Started { result, reason });
            }
        });
    }

    /// Stops the least recently used idle instance, unless `min_instances` needs it.
    fn evict_one(&mut self) -> bool {
        if self.entries.len() <= self.limits.min_instances {
            return false;
        }
        let lru = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.inflight == 0)
            .min_by_key(|(_, e)| e.idle_since)
            .map(|(i, _)| i);
        match lru {
            Some(i) => {
                self.entries.swap_remove(i);
                self.shared.evictions.fetch_add(1, Ordering::Relaxed);
                self.publish();
                true
            }
            None => false,
        }
    }

    /// Stops instances idle past the idle timeout (the longest idle first), keeping
    /// `min_instances`, and forgets dead ones.
    fn reap(&mut self) {
        self.entries.retain(|e| e.inflight > 0 || e.instance.is_alive());
        let now = Instant::now();
        let timeout = self.limits.idle_timeout;
        self.entries.sort_by_key(|e| std::cmp::Reverse(e.idle_since));
        while self.entries.len() > self.limits.min_instances {
            let Some(last) = self.entries.last() else { break };
            if last.inflight == 0 && now.duration_since(last.idle_since) >= timeout {
                self.entries.pop();
            } else {
                break;
            }
        }
        self.waiters.retain(|w| !w.reply.is_closed());
    }

    fn publish(&self) {
        let s = &self.shared;
        let busy = self.entries.iter().filter(|e| e.inflight > 0).count();
        let mb = u64::from(self.spec.memory_mb);
        s.starting.store(self.starting, Ordering::Relaxed);
        s.idle.store(self.entries.len() - busy, Ordering::Relaxed);
        s.busy.store(busy, Ordering::Relaxed);
        s.waiting.store(self.waiters.len(), Ordering::Relaxed);
        let held = u64::try_from(self.entries.len() + self.starting).unwrap_or(u64::MAX);
        s.reserved_mb.store(held * mb, Ordering::Release);
        let evictable = if self.entries.len() > self.limits.min_instances {
            self.entries
                .iter()
                .filter(|e| e.inflight == 0)
                .map(|e| self.capacity.since_epoch(e.idle_since))
                .min()
                .unwrap_or(u64::MAX)
        } else {
            u64::MAX
        };
        s.evictable_since.store(evictable, Ordering::Release);
    }
}

/// One invocation run through a pool.
#[derive(Debug)]
pub struct Ran {
    pub result: RunResult,
    /// Set when the call waited for its instance to start.
    pub cold: Option<ColdStart>,
    /// Time spent in the instance, from dispatch to answer.
    pub duration: Duration,
    /// The instance that ran it (to read its peak memory before answering).
    pub instance: Instance,
}

impl VersionPool {
    /// Runs one invocation: waits for an instance (at most the function's timeout), runs
    /// the event on it and gives it back. Callers spawn this so that an invocation runs to
    /// its end, and its instance comes back, even when the client goes away.
    pub async fn invoke(
        &self,
        id: String,
        event: Arc<serde_json::value::RawValue>,
        sink: Option<crate::StreamSink>,
    ) -> Result<Ran, AcquireError> {
        let timeout = self.spec.timeout;
        let lease = self.acquire(Instant::now() + timeout).await?;
        let started = Instant::now();
        let result = lease.instance.run(id, event, timeout, sink).await;
        let duration = started.elapsed();
        self.release(&lease.instance, result.reusable);
        Ok(Ran {
            result,
            cold: lease.cold,
            duration,
            instance: lease.instance,
        })
    }
}

#[cfg(test)]
mod tests;
