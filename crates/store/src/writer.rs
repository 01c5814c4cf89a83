//! The background writer of invocation records: batched transactions on its own thread,
//! retention after each batch, and a pending map that makes records readable at once.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::{ms, open_connection, InvocationRecord, StoreError};

/// Most records committed in one transaction.
const MAX_BATCH: usize = 512;

/// Records handed to the writer and not committed yet, by id.
#[derive(Clone, Default)]
pub(crate) struct Pending(Arc<Mutex<HashMap<String, InvocationRecord>>>);

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, InvocationRecord>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, id: &str) -> Option<InvocationRecord> {
        self.lock().get(id).cloned()
    }

    pub(crate) fn of_function(&self, function: &str) -> Vec<InvocationRecord> {
        self.lock()
            .values()
            .filter(|r| r.function == function)
            .cloned()
            .collect()
    }

    pub(crate) fn remove_function(&self, function: &str) {
        self.lock().retain(|_, r| r.function != function);
    }
}

enum Msg {
    Record(String),
    Flush(mpsc::Sender<()>),
}

/// Hands invocation records to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct InvocationWriter {
    tx: mpsc::Sender<Msg>,
    pending: Pending,
}

impl InvocationWriter {
    /// Queues a record. Never blocks on SQLite and never drops the record.
    pub fn record(&self, rec: InvocationRecord) {
        let id = rec.id.clone();
        self.pending.lock().insert(id.clone(), rec);
        // The thread only ends when every writer is gone, so this send cannot fail while
        // `self` exists.
        let _ = self.tx.send(Msg::Record(id));
    }

    /// Blocks until everything recorded before the call is committed.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

pub(crate) fn start(path: PathBuf, pending: Pending, retention: usize) -> InvocationWriter {
    // The channel is unbounded on purpose: a record must never be dropped and recording
    // must never block an invocation. Memory is bounded in practice by the rate of
    // invocations times the commit latency.
    let (tx, rx) = mpsc::channel();
    let thread_pending = pending.clone();
    std::thread::Builder::new()
        .name("ignis-invocation-writer".to_owned())
        .spawn(move || run(path, thread_pending, retention, rx))
        .expect("the OS can start the writer thread at start-up");
    InvocationWriter { tx, pending }
}

fn run(path: PathBuf, pending: Pending, retention: usize, rx: mpsc::Receiver<Msg>) {
    let mut conn = loop {
        match open_connection(&path) {
            Ok(c) => break c,
            Err(e) => {
                tracing::error!("invocation writer cannot open the store, retrying: {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    };
    while let Ok(first) = rx.recv() {
        let mut ids = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Record(id) => ids.push(id),
                Msg::Flush(done) => flushes.push(done),
            }
            next = if ids.len() < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        let mut backoff = Duration::from_millis(50);
        loop {
            let batch: Vec<InvocationRecord> = {
                let map = pending.lock();
                ids.iter().filter_map(|id| map.get(id).cloned()).collect()
            };
            match commit(&mut conn, &batch, retention) {
                Ok(()) => {
                    let mut map = pending.lock();
                    for id in &ids {
                        map.remove(id);
                    }
                    break;
                }
                Err(e) => {
                    // Disk full, I/O errors: keep the records pending (still readable) and
                    // try again; they are never dropped.
                    tracing::error!(
                        "could not write {} invocation records, retrying: {e}",
                        batch.len()
                    );
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

fn commit(conn: &mut Connection, batch: &[InvocationRecord], retention: usize) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    {
        let mut inv = tx.prepare_cached(
            "INSERT OR REPLACE INTO invocations (id, function, version, status, cold_start, started_at, duration_ms, error_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut del_logs = tx.prepare_cached("DELETE FROM log_lines WHERE invocation_id = ?1")?;
        let mut log = tx.prepare_cached(
            "INSERT INTO log_lines (invocation_id, function, ts, stream, line) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for r in batch {
            inv.execute(params![
                r.id,
                r.function,
                r.version,
                r.status,
                r.cold_start,
                ms(r.started_at),
                r.duration_ms,
                r.error_json
            ])?;
            // A retried batch must not duplicate lines.
            del_logs.execute([&r.id])?;
            for l in &r.logs {
                log.execute(params![r.id, r.function, ms(l.ts), l.stream, l.line])?;
            }
        }
    }
    let touched: HashSet<&str> = batch.iter().map(|r| r.function.as_str()).collect();
    let keep = i64::try_from(retention).unwrap_or(i64::MAX);
    for function in touched {
        let cutoff: Option<(i64, String)> = tx
            .query_row(
                "SELECT started_at, id FROM invocations WHERE function = ?1
                 ORDER BY started_at DESC, id DESC LIMIT 1 OFFSET ?2",
                params![function, keep],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((at, id)) = cutoff {
            tx.execute(
                "DELETE FROM log_lines WHERE invocation_id IN (SELECT id FROM invocations WHERE function = ?1
                   AND (started_at < ?2 OR (started_at = ?2 AND id <= ?3)))",
                params![function, at, id],
            )?;
            tx.execute(
                "DELETE FROM invocations WHERE function = ?1 AND (started_at < ?2 OR (started_at = ?2 AND id <= ?3))",
                params![function, at, id],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}
