//! Host capacity: the sum of `memory_mb` of live instances is capped. Reserving is a
//! compare-and-swap on one counter; only when it fails (a cold path) are idle instances of
//! other functions evicted, least recently used first, under a fair-share rule.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::pool::Msg;

/// How many evictions one reservation may try before it gives up.
const MAX_EVICTION_ROUNDS: usize = 64;

/// The memory budget of all instances, and the pools that can give memory back.
pub struct Capacity {
    total_mb: u64,
    used_mb: AtomicU64,
    /// Idle times are published as nanoseconds since this instant.
    epoch: Instant,
    pools: Mutex<Vec<Weak<PoolShared>>>,
}

impl std::fmt::Debug for Capacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capacity")
            .field("total_mb", &self.total_mb)
            .field("used_mb", &self.used_mb())
            .finish_non_exhaustive()
    }
}

/// Memory held for one instance; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    capacity: Arc<Capacity>,
    mb: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.capacity.used_mb.fetch_sub(self.mb, Ordering::AcqRel);
    }
}

/// What a version pool publishes for eviction decisions and metrics, without a lock.
#[derive(Debug)]
pub struct PoolShared {
    pub function: String,
    /// Memory held by this pool's instances (live and starting).
    pub(crate) reserved_mb: AtomicU64,
    /// When this pool's least recently used *evictable* idle instance became idle
    /// (nanoseconds since the capacity's epoch), or `u64::MAX` when it has none.
    pub(crate) evictable_since: AtomicU64,
    pub(crate) waiting: AtomicUsize,
    pub(crate) starting: AtomicUsize,
    pub(crate) idle: AtomicUsize,
    pub(crate) busy: AtomicUsize,
    pub(crate) evictions: Arc<AtomicU64>,
    pub(crate) tx: mpsc::WeakUnboundedSender<Msg>,
}

impl PoolShared {
    pub(crate) fn new(
        function: String,
        evictions: Arc<AtomicU64>,
        tx: mpsc::WeakUnboundedSender<Msg>,
    ) -> PoolShared {
        PoolShared {
            function,
            reserved_mb: AtomicU64::new(0),
            evictable_since: AtomicU64::new(u64::MAX),
            waiting: AtomicUsize::new(0),
            starting: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            evictions,
            tx,
        }
    }
}

impl Capacity {
    pub fn new(total_mb: u64) -> Arc<Capacity> {
        Arc::new(Capacity {
            total_mb,
            used_mb: AtomicU64::new(0),
            epoch: Instant::now(),
            pools: Mutex::new(Vec::new()),
        })
    }

    pub fn total_mb(&self) -> u64 {
        self.total_mb
    }

    pub fn used_mb(&self) -> u64 {
        self.used_mb.load(Ordering::Acquire)
    }

    pub(crate) fn since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    pub(crate) fn register(&self, pool: &Arc<PoolShared>) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|p| p.strong_count() > 0);
        pools.push(Arc::downgrade(pool));
    }

    /// Reserves `mb` if it fits now.
    pub fn try_reserve(self: &Arc<Self>, mb: u64) -> Option<Reservation> {
        let mut used = self.used_mb.load(Ordering::Acquire);
        loop {
            if used + mb > self.total_mb {
                return None;
            }
            match self
                .used_mb
                .compare_exchange_weak(used, used + mb, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Some(Reservation {
                        capacity: self.clone(),
                        mb,
                    })
                }
                Err(now) => used = now,
            }
        }
    }

    /// Reserves `mb` for `requester`, evicting idle instances of other functions (least
    /// recently used first) until it fits. `None` when nothing more can be evicted.
    pub(crate) async fn reserve_evicting(
        self: &Arc<Self>,
        mb: u64,
        requester: &PoolShared,
    ) -> Option<Reservation> {
        for _ in 0..MAX_EVICTION_ROUNDS {
            if let Some(r) = self.try_reserve(mb) {
                return Some(r);
            }
            let victim = self.pick_victim(mb, requester)?;
            let tx = victim.tx.upgrade()?;
            let (reply, evicted) = oneshot::channel();
            if tx.send(Msg::Evict { reply }).is_err() {
                continue;
            }
            // `false`: the victim's instance was taken meanwhile; look again.
            let _ = evicted.await;
        }
        None
    }

    /// The pool whose idle instance has waited longest, among those `requester` may take
    /// from. Fair share: with `n` functions holding or wanting memory, each is entitled to
    /// `total / n`; a function may evict only while it stays within its share, or from a
    /// function that is over its own. So one function's burst cannot push out the warm
    /// instances of another that uses no more than its share.
    fn pick_victim(&self, mb: u64, requester: &PoolShared) -> Option<Arc<PoolShared>> {
        let pools: Vec<Arc<PoolShared>> = {
            let mut list = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            list.retain(|p| p.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        let mut usage: HashMap<String, u64> = HashMap::new();
        for p in &pools {
            let held = p.reserved_mb.load(Ordering::Acquire);
            if held > 0 || p.waiting.load(Ordering::Acquire) > 0 {
                *usage.entry(p.function.clone()).or_default() += held;
            }
        }
        let mine = *usage.entry(requester.function.clone()).or_default();
        let share = self.total_mb / u64::try_from(usage.len().max(1)).unwrap_or(1);
        pools
            .into_iter()
            .filter(|p| p.function != requester.function)
            .filter(|p| p.evictable_since.load(Ordering::Acquire) != u64::MAX)
            .filter(|p| mine + mb <= share || usage.get(p.function.as_str()).copied().unwrap_or(0) > share)
            .min_by_key(|p| p.evictable_since.load(Ordering::Acquire))
    }
}
