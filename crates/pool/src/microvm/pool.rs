//! Guests restored ahead of cold starts: the microvm tier's pre-warmed pool. Per kind of
//! guest (runtime, size and network: what a snapshot is made for), up to `size` guests
//! restored from the kind's snapshot, given fresh entropy and the clock, and warmed up
//! (their emulator has translated the load and call paths) wait for code. A cold start of that kind takes
//! one and only loads its function; the launcher refills the kind afterwards, one restore
//! at a time.
//!
//! A guest's size is fixed when it is restored, so guests are kept per kind, and only for
//! the kinds used most recently: a kind enters the pool at its first cold start, and past
//! [`MAX_KINDS`] the one used longest ago leaves it (its guests stop).

use std::sync::Mutex;

use ignis_core::Runtime;

use super::snapshot::SnapshotKey;

/// Kinds of guests kept restored at once.
pub(crate) const MAX_KINDS: usize = 4;

struct Kind<T> {
    key: SnapshotKey,
    ready: Vec<T>,
    filling: bool,
}

/// The guests waiting, per kind (`T` is a generic instance; tests use plain values).
pub(crate) struct Pool<T> {
    /// Guests kept per kind (0: none, cold starts restore on demand).
    size: usize,
    /// The most recently used kind last.
    kinds: Mutex<Vec<Kind<T>>>,
}

impl<T> Pool<T> {
    pub(crate) fn new(size: usize) -> Pool<T> {
        Pool {
            size,
            kinds: Mutex::new(Vec::new()),
        }
    }

    /// Guests kept per kind.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    fn kinds(&self) -> std::sync::MutexGuard<'_, Vec<Kind<T>>> {
        self.kinds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A cold start of `key`: a waiting guest for which `alive` holds, if any (dead ones
    /// are dropped). The kind becomes the most recently used; a kind pushed out of the
    /// pool by it has its guests dropped here, outside the lock.
    pub(crate) fn take(&self, key: SnapshotKey, mut alive: impl FnMut(&mut T) -> bool) -> Option<T> {
        if self.size == 0 {
            return None;
        }
        let (taken, gone) = {
            let mut kinds = self.kinds();
            let kind = match kinds.iter().position(|k| k.key == key) {
                Some(i) => kinds.remove(i),
                None => Kind {
                    key,
                    ready: Vec::new(),
                    filling: false,
                },
            };
            kinds.push(kind);
            let gone: Vec<Kind<T>> = if kinds.len() > MAX_KINDS {
                let extra = kinds.len() - MAX_KINDS;
                kinds.drain(..extra).collect()
            } else {
                Vec::new()
            };
            let kind = kinds.last_mut().expect("just pushed");
            let mut taken = None;
            while let Some(mut g) = kind.ready.pop() {
                if alive(&mut g) {
                    taken = Some(g);
                    break;
                }
            }
            (taken, gone)
        };
        drop(gone);
        taken
    }

    /// Marks a restore for `key` as begun, unless the kind is not in the pool (no cold
    /// start of it lately), one is under way, or the kind is full.
    pub(crate) fn begin_fill(&self, key: SnapshotKey) -> bool {
        let mut kinds = self.kinds();
        match kinds.iter_mut().find(|k| k.key == key) {
            Some(k) if !k.filling && k.ready.len() < self.size => {
                k.filling = true;
                true
            }
            _ => false,
        }
    }

    /// A restore begun with [`Pool::begin_fill`] ended: its guest waits, unless the kind
    /// left the pool meanwhile (then it is dropped, outside the lock).
    pub(crate) fn filled(&self, key: SnapshotKey, guest: Option<T>) {
        let unwanted = {
            let mut kinds = self.kinds();
            match kinds.iter_mut().find(|k| k.key == key) {
                Some(k) => {
                    k.filling = false;
                    match guest {
                        Some(g) => {
                            k.ready.push(g);
                            None
                        }
                        None => None,
                    }
                }
                None => guest,
            }
        };
        drop(unwanted);
    }

    /// Guests of `runtime`'s kinds waiting now.
    pub(crate) fn ready(&self, runtime: Runtime) -> usize {
        self.kinds()
            .iter()
            .filter(|k| k.key.runtime == runtime)
            .map(|k| k.ready.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(runtime: Runtime, memory_mb: u32) -> SnapshotKey {
        SnapshotKey {
            runtime,
            memory_mb,
            vcpus: 1,
            outbound: false,
        }
    }

    #[test]
    fn a_kind_fills_after_its_first_cold_start_and_serves_the_next() {
        let pool = Pool::new(2);
        let py = key(Runtime::Python, 128);
        assert!(!pool.begin_fill(py), "no cold start of the kind yet");
        assert_eq!(pool.take(py, |_| true), None);
        assert!(pool.begin_fill(py));
        assert!(!pool.begin_fill(py), "one restore at a time");
        pool.filled(py, Some(1));
        assert!(pool.begin_fill(py));
        pool.filled(py, Some(2));
        assert!(!pool.begin_fill(py), "full");
        assert_eq!(pool.ready(Runtime::Python), 2);
        assert_eq!(pool.ready(Runtime::Javascript), 0);
        assert_eq!(pool.take(py, |_| true), Some(2));
        assert_eq!(pool.ready(Runtime::Python), 1);
        assert!(pool.begin_fill(py));
    }

    #[test]
    fn dead_guests_are_skipped_and_a_failed_restore_frees_the_kind() {
        let pool = Pool::new(3);
        let py = key(Runtime::Python, 128);
        pool.take(py, |_| true);
        for g in [1, 2, 3] {
            assert!(pool.begin_fill(py));
            pool.filled(py, Some(g));
        }
        assert_eq!(pool.take(py, |g| *g != 3), Some(2));
        assert_eq!(pool.ready(Runtime::Python), 1);
        assert!(pool.begin_fill(py));
        pool.filled(py, None);
        assert!(
            pool.begin_fill(py),
            "a failed restore does not leave the kind filling"
        );
    }

    #[test]
    fn the_kind_used_longest_ago_leaves_the_pool() {
        let pool = Pool::new(1);
        let kinds: Vec<SnapshotKey> = (0..=MAX_KINDS as u32)
            .map(|n| key(Runtime::Python, 128 + n))
            .collect();
        pool.take(kinds[0], |_| true);
        assert!(pool.begin_fill(kinds[0]));
        for k in &kinds[1..] {
            pool.take(*k, |_| true);
        }
        // kinds[0] left while its restore ran: the guest is not kept.
        pool.filled(kinds[0], Some(7));
        assert_eq!(pool.ready(Runtime::Python), 0);
        assert!(!pool.begin_fill(kinds[0]));
        for k in &kinds[1..] {
            assert!(pool.begin_fill(*k));
        }
    }

    #[test]
    fn size_zero_keeps_nothing() {
        let pool: Pool<u8> = Pool::new(0);
        let py = key(Runtime::Python, 128);
        assert_eq!(pool.take(py, |_| true), None);
        assert!(!pool.begin_fill(py));
    }
}
