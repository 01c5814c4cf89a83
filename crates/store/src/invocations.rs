//! Reading invocation records and log lines, merging what the writer has not committed yet.
//!
//! Every read takes its snapshot of the pending map before it reads SQLite. A record leaves
//! the map only after its commit, so it is always in one of the two snapshots (possibly
//! both, hence the de-duplication by id).

use std::collections::{BTreeMap, HashSet};

use time::OffsetDateTime;

use rusqlite::{params, OptionalExtension, Row};

use crate::writer::{self, InvocationWriter};
use crate::{
    from_ms, ms, sql_limit, Activity, ColdStart, FunctionUsage, InvocationRecord, LogLine, MinuteUsage,
    Store, StoreError, StoredLogLine,
};

const INVOCATION_COLUMNS: &str = "id, function, version, status, cold_start, started_at, duration_ms, \
     error_json, memory_mb, billed_ms, peak_memory_mb, init_reason, init_ms, init_sandbox_ms, \
     init_runtime_ms, init_load_ms, init_boot_ms, init_restore_ms";

impl Store {
    /// Starts the background writer of invocation records. After each batch it keeps the
    /// newest `retention_per_function` invocations of each function the batch touched.
    pub fn start_invocation_writer(&self, retention_per_function: usize) -> InvocationWriter {
        writer::start(
            self.inner.path.clone(),
            self.inner.pending.clone(),
            retention_per_function,
        )
    }

    /// One invocation with its logs; sees records the writer has not committed yet.
    pub fn get_invocation(&self, id: &str) -> Result<Option<InvocationRecord>, StoreError> {
        if let Some(rec) = self.inner.pending.get(id) {
            return Ok(Some(rec));
        }
        let conn = self.conn();
        // One read transaction: retention may delete the record between the two queries.
        let tx = conn.unchecked_transaction()?;
        let rec = tx
            .prepare_cached(&format!(
                "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE id = ?1"
            ))?
            .query_row([id], |r| Ok(invocation_row(r)))
            .optional()?
            .transpose()?;
        let Some(mut rec) = rec else { return Ok(None) };
        let mut stmt = tx
            .prepare_cached("SELECT ts, stream, line FROM log_lines WHERE invocation_id = ?1 ORDER BY seq")?;
        let lines = stmt.query_map([id], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?)))?;
        for line in lines {
            let (ts, stream, line) = line?;
            rec.logs.push(LogLine {
                ts: from_ms(ts)?,
                stream,
                line,
            });
        }
        Ok(Some(rec))
    }

    /// The newest `limit` invocations of a function (started_at, then id, descending),
    /// pending ones included, with `logs` left empty.
    pub fn list_invocations(
        &self,
        function: &str,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>, StoreError> {
        let mut records = self.inner.pending.of_function_without_logs(function);
        let pending_ids: HashSet<String> = records.iter().map(|r| r.id.clone()).collect();
        {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE function = ?1
                 ORDER BY started_at DESC, id DESC LIMIT ?2"
            ))?;
            for rec in stmt.query_map(params![function, sql_limit(limit)], |r| Ok(invocation_row(r)))? {
                let rec = rec??;
                // Committed while this call read the pending map: keep one copy.
                if !pending_ids.contains(&rec.id) {
                    records.push(rec);
                }
            }
        }
        records.sort_by(|a, b| b.started_at.cmp(&a.started_at).then_with(|| b.id.cmp(&a.id)));
        records.truncate(limit);
        Ok(records)
    }

    /// The most recent `limit` log lines of a function across its invocations, oldest
    /// first (like `tail`). Lines are in the order their invocations were recorded.
    pub fn recent_logs(&self, function: &str, limit: usize) -> Result<Vec<StoredLogLine>, StoreError> {
        // In record order, which is the order the writer will commit them in.
        let pending = self.inner.pending.of_function(function);
        let mut lines: Vec<StoredLogLine> = Vec::new();
        let mut uncommitted = Vec::with_capacity(pending.len());
        {
            let conn = self.conn();
            let tx = conn.unchecked_transaction()?;
            let mut stmt = tx.prepare_cached(
                "SELECT invocation_id, ts, stream, line FROM log_lines WHERE function = ?1
                 ORDER BY seq DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![function, sql_limit(limit)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get(2)?, r.get(3)?))
            })?;
            for row in rows {
                let (invocation_id, ts, stream, line) = row?;
                lines.push(StoredLogLine {
                    invocation_id,
                    ts: from_ms(ts)?,
                    stream,
                    line,
                });
            }
            lines.reverse();
            let mut committed = tx.prepare_cached("SELECT 1 FROM invocations WHERE id = ?1")?;
            for rec in pending {
                if !committed.exists([&rec.id])? {
                    uncommitted.push(rec);
                }
            }
        }
        // Not committed yet, so recorded after everything that is.
        for rec in uncommitted {
            lines.extend(rec.logs.into_iter().map(|l| StoredLogLine {
                invocation_id: rec.id.clone(),
                ts: l.ts,
                stream: l.stream,
                line: l.line,
            }));
        }
        let excess = lines.len().saturating_sub(limit);
        lines.drain(..excess);
        Ok(lines)
    }
}

impl Store {
    /// Per function, what was used by invocations started in `[since, until)`, counted by
    /// the minute: both ends are rounded down to a whole minute. Functions with no
    /// invocations in the period are left out; deleted functions are not (their use
    /// happened). Sees records the writer has not committed yet.
    pub fn usage(
        &self,
        since: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Vec<FunctionUsage>, StoreError> {
        let (from, to) = (minute_of(since), minute_of(until));
        let mut by_function: BTreeMap<String, FunctionUsage> = BTreeMap::new();
        // Under the commit gate the pending map holds exactly the records not committed:
        // nothing is counted twice or missed.
        let _gate = self.inner.pending.commit_gate();
        {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT function, SUM(invocations), SUM(errors), SUM(cold_starts), SUM(billed_ms), SUM(mb_ms)
                 FROM usage_minutes WHERE minute >= ?1 AND minute < ?2 GROUP BY function
                 HAVING SUM(invocations) > 0",
            )?;
            let rows = stmt.query_map(params![from, to], |r| {
                Ok(FunctionUsage {
                    function: r.get(0)?,
                    invocations: r.get(1)?,
                    errors: r.get(2)?,
                    cold_starts: r.get(3)?,
                    billed_ms: r.get(4)?,
                    mb_ms: r.get(5)?,
                })
            })?;
            for row in rows {
                let u = row?;
                by_function.insert(u.function.clone(), u);
            }
        }
        for rec in self.inner.pending.all_without_logs() {
            let minute = minute_of(rec.started_at);
            if minute < from || minute >= to {
                continue;
            }
            let u = by_function
                .entry(rec.function.clone())
                .or_insert_with(|| FunctionUsage {
                    function: rec.function.clone(),
                    ..FunctionUsage::default()
                });
            let c = Contribution::of(&rec);
            u.invocations += 1;
            u.errors += u64::from(c.error);
            u.cold_starts += u64::from(c.cold);
            u.billed_ms += c.billed_ms;
            u.mb_ms += c.mb_ms;
        }
        Ok(by_function.into_values().collect())
    }
}

impl Store {
    /// What `function` (or every function) did from `since` to `until`: the usage rows by
    /// minute, and the durations of the invocation records kept (records beyond the
    /// retention are gone; the minutes are not).
    pub fn activity(
        &self,
        function: Option<&str>,
        since: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Activity, StoreError> {
        let (from, to) = (minute_of(since), minute_of(until));
        let mut minutes: BTreeMap<(String, i64), MinuteUsage> = BTreeMap::new();
        let mut durations = Vec::new();
        // As for usage: under the commit gate, committed rows and pending records are
        // disjoint.
        let _gate = self.inner.pending.commit_gate();
        {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT function, minute, invocations, errors, cold_starts, billed_ms FROM usage_minutes
                 WHERE minute >= ?1 AND minute < ?2 AND (?3 IS NULL OR function = ?3)",
            )?;
            let rows = stmt.query_map(params![from, to, function], |r| {
                Ok(MinuteUsage {
                    function: r.get(0)?,
                    minute: r.get(1)?,
                    invocations: r.get(2)?,
                    errors: r.get(3)?,
                    cold_starts: r.get(4)?,
                    billed_ms: r.get(5)?,
                })
            })?;
            for row in rows {
                let m = row?;
                minutes.insert((m.function.clone(), m.minute), m);
            }
            let mut stmt = conn.prepare_cached(
                "SELECT function, duration_ms FROM invocations
                 WHERE started_at >= ?1 AND started_at < ?2 AND (?3 IS NULL OR function = ?3)",
            )?;
            let rows = stmt.query_map(params![ms(since), ms(until), function], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?))
            })?;
            for row in rows {
                durations.push(row?);
            }
        }
        let pending = match function {
            Some(f) => self.inner.pending.of_function_without_logs(f),
            None => self.inner.pending.all_without_logs(),
        };
        for rec in pending {
            if rec.started_at < since || rec.started_at >= until {
                continue;
            }
            let minute = minute_of(rec.started_at);
            let m = minutes
                .entry((rec.function.clone(), minute))
                .or_insert_with(|| MinuteUsage {
                    function: rec.function.clone(),
                    minute,
                    ..MinuteUsage::default()
                });
            let c = Contribution::of(&rec);
            m.invocations += 1;
            m.errors += u64::from(c.error);
            m.cold_starts += u64::from(c.cold);
            m.billed_ms += c.billed_ms;
            durations.push((rec.function.clone(), rec.duration_ms));
        }
        Ok(Activity {
            minutes: minutes.into_values().collect(),
            durations,
        })
    }
}

/// The usage bucket of an instant: Unix minutes.
pub(crate) fn minute_of(t: OffsetDateTime) -> i64 {
    ms(t).div_euclid(60_000)
}

/// What one invocation adds to its usage bucket.
pub(crate) struct Contribution {
    pub(crate) error: bool,
    pub(crate) cold: bool,
    pub(crate) billed_ms: u64,
    pub(crate) mb_ms: u64,
}

impl Contribution {
    pub(crate) fn of(rec: &InvocationRecord) -> Contribution {
        Contribution {
            error: rec.status != "succeeded",
            cold: rec.cold_start,
            billed_ms: rec.billed_ms,
            mb_ms: u64::from(rec.memory_mb).saturating_mul(rec.billed_ms),
        }
    }
}

fn invocation_row(r: &Row<'_>) -> Result<InvocationRecord, StoreError> {
    Ok(InvocationRecord {
        id: r.get(0)?,
        function: r.get(1)?,
        version: r.get(2)?,
        status: r.get(3)?,
        cold_start: r.get(4)?,
        started_at: from_ms(r.get(5)?)?,
        duration_ms: r.get(6)?,
        error_json: r.get(7)?,
        logs: Vec::new(),
        memory_mb: r.get(8)?,
        billed_ms: r.get(9)?,
        peak_memory_mb: r.get(10)?,
        init: match r.get::<_, Option<String>>(11)? {
            None => None,
            Some(reason) => Some(ColdStart {
                reason,
                init_ms: r.get(12)?,
                sandbox_ms: r.get(13)?,
                runtime_ms: r.get(14)?,
                load_ms: r.get(15)?,
                boot_ms: r.get(16)?,
                restore_ms: r.get(17)?,
            }),
        },
    })
}
