//! The background writer of invocation records: batched transactions on its own thread and
//! connection, retention after each batch, and the pending map that makes a record readable
//! from the moment it is recorded until (and a little after) it is committed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::invocations::{minute_of, Contribution};
use crate::{ms, open_connection, sql_limit, InvocationRecord, StoreError};

/// Most records committed in one transaction.
const MAX_BATCH: usize = 512;
/// Wait before retrying a failed commit; doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Memory that records waiting for their commit may take (about). Past it, while the disk
/// is full or the database cannot be written, the oldest waiting records are dropped (and
/// counted) so that the server does not run out of memory; below it nothing is dropped.
const MAX_PENDING_BYTES: usize = 256 * 1024 * 1024;

/// Records handed to the writer and not committed yet, shared by the store's readers, the
/// writers' handles and the writer thread.
pub(crate) struct Pending {
    records: Mutex<PendingMap>,
    /// Held by the writer thread from taking a batch out of the map to removing it after the
    /// commit, and by `delete_function`: a delete never falls inside a batch's commit.
    commit: Mutex<()>,
    cap_bytes: usize,
    /// Records dropped unwritten because the pending ones outgrew `cap_bytes`.
    dropped: AtomicU64,
}

impl Default for Pending {
    fn default() -> Pending {
        Pending::with_cap(MAX_PENDING_BYTES)
    }
}

#[derive(Default)]
struct PendingMap {
    /// Record order, so readers can list pending records the way they will be committed.
    next_seq: u64,
    by_id: HashMap<String, (u64, InvocationRecord)>,
    /// Ids by record order, oldest first.
    order: BTreeMap<u64, String>,
    /// The approximate memory of the records in `by_id`.
    bytes: usize,
}

impl PendingMap {
    fn remove(&mut self, id: &str) -> Option<(u64, InvocationRecord)> {
        let (seq, rec) = self.by_id.remove(id)?;
        self.order.remove(&seq);
        self.bytes = self.bytes.saturating_sub(approximate_size(&rec));
        Some((seq, rec))
    }
}

/// About how much memory a pending record takes.
fn approximate_size(r: &InvocationRecord) -> usize {
    let logs: usize = r.logs.iter().map(|l| 48 + l.stream.len() + l.line.len()).sum();
    256 + r.id.len() + r.function.len() + r.status.len() + r.error_json.as_ref().map_or(0, String::len) + logs
}

/// A record as the writer took it from the map.
struct Taken {
    seq: u64,
    rec: InvocationRecord,
}

impl Pending {
    fn records(&self) -> MutexGuard<'_, PendingMap> {
        // Every critical section is a plain map operation; a panic in one leaves the map usable.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn commit_gate(&self) -> MutexGuard<'_, ()> {
        self.commit.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn with_cap(cap_bytes: usize) -> Pending {
        Pending {
            records: Mutex::default(),
            commit: Mutex::default(),
            cap_bytes,
            dropped: AtomicU64::new(0),
        }
    }

    fn insert(&self, rec: InvocationRecord) {
        let mut dropped = 0u64;
        {
            let mut map = self.records();
            let seq = map.next_seq;
            map.next_seq += 1;
            map.remove(&rec.id);
            map.bytes += approximate_size(&rec);
            map.order.insert(seq, rec.id.clone());
            map.by_id.insert(rec.id.clone(), (seq, rec));
            while map.bytes > self.cap_bytes && map.by_id.len() > 1 {
                let Some(oldest) = map.order.values().next().cloned() else {
                    break;
                };
                if map.remove(&oldest).is_none() {
                    // Never happens (both maps change together); do not loop on it.
                    map.order.pop_first();
                    continue;
                }
                dropped += 1;
            }
        }
        if dropped > 0 {
            let total = self.dropped.fetch_add(dropped, Ordering::Relaxed) + dropped;
            // Said at the first drop and then once per thousand, not once per record.
            if total == dropped || total / 1000 != (total - dropped) / 1000 {
                tracing::error!(
                    "{total} invocation records dropped unwritten so far: the database cannot be \
                     written (is the disk full?) and those waiting outgrew {} MiB",
                    self.cap_bytes / (1024 * 1024)
                );
            }
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<InvocationRecord> {
        self.records().by_id.get(id).map(|(_, r)| r.clone())
    }

    /// A function's pending records, in record order.
    pub(crate) fn of_function(&self, function: &str) -> Vec<InvocationRecord> {
        self.collect(Some(function), InvocationRecord::clone)
    }

    /// Same, without cloning the logs (listing leaves them out).
    pub(crate) fn of_function_without_logs(&self, function: &str) -> Vec<InvocationRecord> {
        self.collect(Some(function), without_logs)
    }

    /// Every pending record, without logs.
    pub(crate) fn all_without_logs(&self) -> Vec<InvocationRecord> {
        self.collect(None, without_logs)
    }

    fn collect(
        &self,
        function: Option<&str>,
        copy: impl Fn(&InvocationRecord) -> InvocationRecord,
    ) -> Vec<InvocationRecord> {
        let mut found: Vec<(u64, InvocationRecord)> = {
            let map = self.records();
            map.by_id
                .values()
                .filter(|(_, r)| function.is_none_or(|f| r.function == f))
                .map(|(seq, r)| (*seq, copy(r)))
                .collect()
        };
        found.sort_by_key(|(seq, _)| *seq);
        found.into_iter().map(|(_, r)| r).collect()
    }

    pub(crate) fn remove_function(&self, function: &str) {
        let mut map = self.records();
        let gone: Vec<String> = map
            .by_id
            .iter()
            .filter(|(_, (_, r))| r.function == function)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            map.remove(&id);
        }
    }

    /// The records of `ids` still pending (a delete may have removed some).
    fn take(&self, ids: &[String]) -> Vec<Taken> {
        let map = self.records();
        let mut seen = HashSet::new();
        ids.iter()
            .filter(|id| seen.insert(id.as_str()))
            .filter_map(|id| map.by_id.get(id))
            .map(|(seq, rec)| Taken {
                seq: *seq,
                rec: rec.clone(),
            })
            .collect()
    }

    fn remove_committed(&self, batch: &[Taken]) {
        let mut map = self.records();
        for t in batch {
            // Recorded again under the same id since the batch was taken: that newer record
            // is queued behind this batch and stays readable until its own commit.
            if map.by_id.get(&t.rec.id).is_some_and(|(seq, _)| *seq == t.seq) {
                map.remove(&t.rec.id);
            }
        }
    }
}

fn without_logs(r: &InvocationRecord) -> InvocationRecord {
    InvocationRecord {
        id: r.id.clone(),
        function: r.function.clone(),
        version: r.version,
        status: r.status.clone(),
        cold_start: r.cold_start,
        started_at: r.started_at,
        duration_ms: r.duration_ms,
        error_json: r.error_json.clone(),
        logs: Vec::new(),
        memory_mb: r.memory_mb,
        billed_ms: r.billed_ms,
        peak_memory_mb: r.peak_memory_mb,
        init: r.init.clone(),
    }
}

enum Msg {
    Record(String),
    Flush(mpsc::Sender<()>),
}

/// Hands invocation records to the writer thread. Cheap to clone; the thread ends once
/// every clone is dropped and everything queued is written.
#[derive(Clone)]
pub struct InvocationWriter {
    tx: mpsc::Sender<Msg>,
    pending: Arc<Pending>,
}

impl std::fmt::Debug for InvocationWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvocationWriter").finish_non_exhaustive()
    }
}

impl InvocationWriter {
    /// Queues a record. Never blocks on SQLite; it is readable through the store at once. It
    /// is dropped unwritten only if the database cannot be written (a full disk) for so long
    /// that the records waiting outgrow `MAX_PENDING_BYTES`: the oldest go first, counted.
    pub fn record(&self, rec: InvocationRecord) {
        let id = rec.id.clone();
        // Into the map before the channel: the writer must find the record when it gets the id.
        self.pending.insert(rec);
        // The thread only ends when every sender is gone (or if it panicked, a bug), so
        // this send cannot fail while `self` exists in practice.
        if self.tx.send(Msg::Record(id)).is_err() {
            tracing::error!("the invocation writer thread is gone; the record stays in memory only");
        }
    }

    /// Records dropped unwritten since start (see `MAX_PENDING_BYTES`).
    pub fn dropped(&self) -> u64 {
        self.pending.dropped.load(Ordering::Relaxed)
    }

    /// Blocks until everything recorded before the call is committed.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            // An error here means the thread is gone; there is nothing left to wait for.
            let _ = rx.recv();
        }
    }

    /// As [`flush`](Self::flush), waiting at most `within` (the writer retries forever
    /// while the disk is full). Returns the number of records still not committed.
    pub fn flush_within(&self, within: Duration) -> usize {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() && rx.recv_timeout(within).is_ok() {
            return 0;
        }
        self.pending.records().by_id.len()
    }
}

pub(crate) fn start(path: PathBuf, pending: Arc<Pending>, retention: usize) -> InvocationWriter {
    // Unbounded on purpose: recording must never block an invocation. The channel holds ids
    // only; the records' memory is bounded by the pending map's cap.
    let (tx, rx) = mpsc::channel();
    let thread_pending = pending.clone();
    std::thread::Builder::new()
        .name("ignis-invocation-writer".to_owned())
        .spawn(move || run(path, thread_pending, retention, rx))
        .expect("the OS can start the writer thread at start-up");
    InvocationWriter { tx, pending }
}

fn run(path: PathBuf, pending: Arc<Pending>, retention: usize, rx: mpsc::Receiver<Msg>) {
    let mut backoff = FIRST_BACKOFF;
    let mut conn = loop {
        match open_connection(&path) {
            Ok(c) => break c,
            Err(e) => {
                // Records keep queueing (and stay readable) meanwhile.
                tracing::error!("invocation writer cannot open {}, retrying: {e}", path.display());
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    while let Ok(first) = rx.recv() {
        // Everything queued, up to MAX_BATCH records, in one transaction.
        let mut ids = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Record(id) => ids.push(id),
                // Every record sent before this flush is already in `ids`.
                Msg::Flush(done) => flushes.push(done),
            }
            next = if ids.len() < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        write_batch(&mut conn, &pending, &ids, retention);
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Commits the records of `ids`, retrying until it succeeds.
fn write_batch(conn: &mut Connection, pending: &Pending, ids: &[String], retention: usize) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let result = {
            let _gate = pending.commit_gate();
            // Taken afresh on every attempt: a function deleted meanwhile drops out.
            let batch = pending.take(ids);
            if batch.is_empty() {
                return;
            }
            let result = commit(conn, &batch, retention);
            if result.is_ok() {
                pending.remove_committed(&batch);
            }
            result.map_err(|e| (e, batch.len()))
        };
        match result {
            Ok(()) => return,
            Err((e, n)) => {
                // Disk full, I/O errors, a lock held too long: the records stay pending (and
                // readable) and are tried again, dropped only past the pending map's memory
                // cap. The gate is released while waiting so deletes go on.
                if e.is_disk_full() {
                    tracing::error!(
                        "the disk is full: {n} invocation records are kept in memory and written \
                         once space is freed (retrying in {backoff:?})"
                    );
                } else {
                    tracing::error!("could not write {n} invocation records, retrying in {backoff:?}: {e}");
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn commit(conn: &mut Connection, batch: &[Taken], retention: usize) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // The batch's usage, summed per function and minute: one upsert per row it touches.
    let mut usage: BTreeMap<(&str, i64), UsageDelta> = BTreeMap::new();
    // Rows of records recorded again (their old usage to take back), owned by this scope.
    let mut replaced: Vec<(String, i64, UsageDelta)> = Vec::new();
    {
        // A new id (the usual case) is one insert; an id recorded again replaces its row.
        let mut insert_new = tx.prepare_cached(
            "INSERT INTO invocations
             (id, function, version, status, cold_start, started_at, duration_ms, error_json,
              memory_mb, billed_ms, peak_memory_mb, init_reason, init_ms, init_sandbox_ms,
              init_runtime_ms, init_load_ms, init_boot_ms, init_restore_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
             ON CONFLICT (id) DO NOTHING",
        )?;
        let mut replace = tx.prepare_cached(
            "INSERT OR REPLACE INTO invocations
             (id, function, version, status, cold_start, started_at, duration_ms, error_json,
              memory_mb, billed_ms, peak_memory_mb, init_reason, init_ms, init_sandbox_ms,
              init_runtime_ms, init_load_ms, init_boot_ms, init_restore_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )?;
        let mut previous = tx.prepare_cached(
            "SELECT function, started_at, status, cold_start, memory_mb, billed_ms
             FROM invocations WHERE id = ?1",
        )?;
        let mut del_logs = tx.prepare_cached("DELETE FROM log_lines WHERE invocation_id = ?1")?;
        let mut log = tx.prepare_cached(
            "INSERT INTO log_lines (invocation_id, function, ts, stream, line) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for Taken { rec: r, .. } in batch {
            let init = r.init.as_ref();
            let row = params![
                r.id,
                r.function,
                r.version,
                r.status,
                r.cold_start,
                ms(r.started_at),
                finite(r.duration_ms),
                r.error_json,
                r.memory_mb,
                sql_i64(r.billed_ms),
                r.peak_memory_mb,
                init.map(|i| i.reason.as_str()),
                init.map(|i| finite(i.init_ms)),
                init.map(|i| finite(i.sandbox_ms)),
                init.map(|i| finite(i.runtime_ms)),
                init.map(|i| finite(i.load_ms)),
                init.and_then(|i| i.boot_ms).map(finite),
                init.and_then(|i| i.restore_ms).map(finite),
            ];
            if insert_new.execute(row)? == 0 {
                // Recorded before (and not deleted by retention yet): take the old record
                // out of the usage rollup and replace it with its lines.
                let (function, started_at, status, cold, memory_mb, billed_ms) =
                    previous.query_row([&r.id], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, bool>(3)?,
                            row.get::<_, i64>(4)?,
                            row.get::<_, i64>(5)?,
                        ))
                    })?;
                replaced.push((
                    function,
                    started_at.div_euclid(60_000),
                    UsageDelta {
                        invocations: -1,
                        errors: -i64::from(status != "succeeded"),
                        cold_starts: -i64::from(cold),
                        billed_ms: -billed_ms,
                        mb_ms: -memory_mb.saturating_mul(billed_ms),
                    },
                ));
                replace.execute(row)?;
                del_logs.execute([&r.id])?;
            }
            let c = Contribution::of(r);
            usage
                .entry((r.function.as_str(), minute_of(r.started_at)))
                .or_default()
                .add(&UsageDelta {
                    invocations: 1,
                    errors: i64::from(c.error),
                    cold_starts: i64::from(c.cold),
                    billed_ms: sql_i64(c.billed_ms),
                    mb_ms: sql_i64(c.mb_ms),
                });
            for l in &r.logs {
                log.execute(params![r.id, r.function, ms(l.ts), l.stream, l.line])?;
            }
        }
        for (function, minute, delta) in &replaced {
            usage.entry((function.as_str(), *minute)).or_default().add(delta);
        }
        let mut add_usage = tx.prepare_cached(
            "INSERT INTO usage_minutes (function, minute, invocations, errors, cold_starts, billed_ms, mb_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (function, minute) DO UPDATE SET
               invocations = invocations + excluded.invocations,
               errors = errors + excluded.errors,
               cold_starts = cold_starts + excluded.cold_starts,
               billed_ms = billed_ms + excluded.billed_ms,
               mb_ms = mb_ms + excluded.mb_ms",
        )?;
        for ((function, minute), d) in &usage {
            add_usage.execute(params![
                function,
                minute,
                d.invocations,
                d.errors,
                d.cold_starts,
                d.billed_ms,
                d.mb_ms
            ])?;
        }
    }
    let touched: HashSet<&str> = batch.iter().map(|t| t.rec.function.as_str()).collect();
    for function in touched {
        enforce_retention(&tx, function, retention)?;
    }
    tx.commit()?;
    Ok(())
}

/// What a batch adds to (or, for a replaced record, takes from) one `usage_minutes` row.
#[derive(Default)]
struct UsageDelta {
    invocations: i64,
    errors: i64,
    cold_starts: i64,
    billed_ms: i64,
    mb_ms: i64,
}

impl UsageDelta {
    fn add(&mut self, other: &UsageDelta) {
        self.invocations += other.invocations;
        self.errors += other.errors;
        self.cold_starts += other.cold_starts;
        self.billed_ms = self.billed_ms.saturating_add(other.billed_ms);
        self.mb_ms = self.mb_ms.saturating_add(other.mb_ms);
    }
}

/// NaN would be stored as NULL, which a NOT NULL column refuses: one such record would fail
/// every retry of its batch forever.
fn finite(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v
    }
}

fn sql_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Deletes all but the newest `keep` invocations of `function`, with their log lines.
fn enforce_retention(tx: &rusqlite::Transaction<'_>, function: &str, keep: usize) -> Result<(), StoreError> {
    // The newest invocation past the limit; it and everything older go.
    let cutoff: Option<(i64, String)> = tx
        .prepare_cached(
            "SELECT started_at, id FROM invocations WHERE function = ?1
             ORDER BY started_at DESC, id DESC LIMIT 1 OFFSET ?2",
        )?
        .query_row(params![function, sql_limit(keep)], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((at, id)) = cutoff else { return Ok(()) };
    tx.prepare_cached(
        "DELETE FROM log_lines WHERE invocation_id IN (SELECT id FROM invocations WHERE function = ?1
           AND (started_at < ?2 OR (started_at = ?2 AND id <= ?3)))",
    )?
    .execute(params![function, at, id])?;
    tx.prepare_cached(
        "DELETE FROM invocations WHERE function = ?1 AND (started_at < ?2 OR (started_at = ?2 AND id <= ?3))",
    )?
    .execute(params![function, at, id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogLine;

    fn record(id: &str, function: &str) -> InvocationRecord {
        let ts = time::OffsetDateTime::UNIX_EPOCH;
        InvocationRecord {
            id: id.to_owned(),
            function: function.to_owned(),
            version: 1,
            status: "succeeded".to_owned(),
            cold_start: false,
            started_at: ts,
            duration_ms: 1.0,
            error_json: None,
            logs: vec![LogLine {
                ts,
                stream: "stdout".to_owned(),
                line: "x".repeat(1000),
            }],
            memory_mb: 128,
            billed_ms: 1,
            peak_memory_mb: None,
            init: None,
        }
    }

    #[test]
    fn waiting_records_past_the_memory_cap_drop_the_oldest_and_are_counted() {
        let one = approximate_size(&record("r0", "f"));
        let pending = Pending::with_cap(3 * one);
        for i in 0..5 {
            pending.insert(record(&format!("r{i}"), "f"));
        }
        assert_eq!(pending.dropped.load(Ordering::Relaxed), 2);
        assert!(pending.get("r0").is_none() && pending.get("r1").is_none());
        let kept: Vec<String> = pending.of_function("f").into_iter().map(|r| r.id).collect();
        assert_eq!(kept, ["r2", "r3", "r4"]);
        // Recording an id again replaces it without counting it twice.
        pending.insert(record("r4", "f"));
        assert_eq!(pending.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(pending.records().bytes, 3 * one);
        pending.remove_function("f");
        let map = pending.records();
        assert_eq!((map.bytes, map.by_id.len(), map.order.len()), (0, 0, 0));
    }

    #[test]
    fn below_the_cap_nothing_is_dropped() {
        let pending = Pending::default();
        for i in 0..1000 {
            pending.insert(record(&format!("r{i}"), "f"));
        }
        assert_eq!(pending.dropped.load(Ordering::Relaxed), 0);
        assert_eq!(pending.of_function("f").len(), 1000);
    }
}
