//! Asynchronous invocations: accepted (durably, before the caller hears 202), attempted,
//! retried, ended; their dead letters; idempotency keys; and schedules' last fire times.
//!
//! Every change of an asynchronous invocation is one transaction on the control
//! connection, so a kill at any point leaves each invocation in exactly one state.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension, Row, Transaction, TransactionBehavior};
use time::OffsetDateTime;

use crate::{from_ms, ms, sql_limit, Store, StoreError};

/// A closed set of values stored as text (each column has a CHECK listing them).
macro_rules! stored_text {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored (and shown) text.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Reads a stored text; anything else means the database was changed by hand.
            pub fn parse(s: &str) -> Result<$name, StoreError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(StoreError::Corrupt(format!(concat!($what, " {:?}"), other))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }
    };
}

stored_text!(
    /// Where an asynchronous invocation is in its life.
    AsyncStatus, "asynchronous invocation status" {
        /// Waiting for its first attempt.
        Queued = "queued",
        /// An attempt is running.
        Running = "running",
        /// An attempt failed; the next is due at `next_attempt_at`.
        Failed = "failed",
        Succeeded = "succeeded",
        /// Failed for good.
        Dead = "dead",
    }
);

impl AsyncStatus {
    /// Not ended: it will be attempted (again).
    pub fn is_open(self) -> bool {
        match self {
            AsyncStatus::Queued | AsyncStatus::Running | AsyncStatus::Failed => true,
            AsyncStatus::Succeeded | AsyncStatus::Dead => false,
        }
    }
}

stored_text!(
    /// Why an asynchronous invocation ended dead.
    DeadReason, "dead reason" {
        /// Its last allowed attempt failed.
        RetriesExhausted = "retries_exhausted",
        /// Its event became older than the function's `max_event_age_secs`.
        EventTooOld = "event_too_old",
        /// Its function was deleted before it ran.
        FunctionNotFound = "function_not_found",
        /// It was a destination's event past the longest chain of destinations.
        DestinationHopsExceeded = "destination_hops_exceeded",
    }
);

stored_text!(
    /// Who made an asynchronous invocation.
    AsyncSource, "asynchronous invocation source" {
        /// A caller of the API.
        Api = "api",
        /// A function's schedule.
        Schedule = "schedule",
        /// The redrive of a dead letter.
        Redrive = "redrive",
        /// Another invocation's destination.
        Destination = "destination",
    }
);

stored_text!(
    /// How the first invocation with an idempotency key was made.
    KeyKind, "idempotency key kind" {
        /// A synchronous call: its answer is kept to replay.
        Sync = "sync",
        /// An asynchronous invocation: a repeat answers with its id.
        Async = "async",
    }
);

/// An asynchronous invocation to accept.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAsync {
    pub id: String,
    pub function: String,
    pub event: String,
    pub source: AsyncSource,
    pub created_at: OffsetDateTime,
    pub redrive_of: Option<String>,
    /// Destination hops that led to it: 0 when a caller made it, the invocation's own plus
    /// one for the event its destination receives.
    pub hops: u32,
}

/// What accepting with an idempotency key came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Enqueued {
    /// Stored: it will run.
    New,
    /// The key was used within its lifetime: the first invocation, nothing stored.
    Existing(IdempotentRecord),
}

/// The first invocation made with an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotentRecord {
    pub invocation_id: String,
    pub kind: KeyKind,
    pub created_at: OffsetDateTime,
    /// For `sync`: the answer to replay, opaque to the store.
    pub reply: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AsyncRow {
    pub id: String,
    pub function: String,
    pub event: String,
    pub status: AsyncStatus,
    pub source: AsyncSource,
    pub created_at: OffsetDateTime,
    pub next_attempt_at: OffsetDateTime,
    /// Finished attempts.
    pub attempts: u32,
    pub result: Option<String>,
    pub dead_reason: Option<DeadReason>,
    pub finished_at: Option<OffsetDateTime>,
    pub dead_letter: bool,
    pub redrive_of: Option<String>,
    pub redriven_as: Option<String>,
    /// See [`NewAsync::hops`].
    pub hops: u32,
}

/// One finished attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    pub attempt: u32,
    /// The invocation record holding the attempt's logs.
    pub execution_id: String,
    pub version: u32,
    pub started_at: OffsetDateTime,
    pub duration_ms: f64,
    /// An invocation record status: `succeeded`, `function_error`, `timeout`, ...
    pub status: String,
    pub error_json: Option<String>,
}

/// How an attempt ends its invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    Succeeded {
        result: String,
    },
    /// Failed; attempted again at `at`.
    Retry {
        at: OffsetDateTime,
    },
    /// Failed for good; listed in the function's dead letters when `dead_letter`.
    Dead {
        reason: DeadReason,
        dead_letter: bool,
    },
}

const ASYNC_COLUMNS: &str = "id, function, event, status, source, created_at, next_attempt_at, attempts, \
     result, dead_reason, finished_at, dead_letter, redrive_of, redriven_as, hops";

fn async_row(r: &Row<'_>) -> rusqlite::Result<Result<AsyncRow, StoreError>> {
    let created_at: i64 = r.get(5)?;
    let next: i64 = r.get(6)?;
    let finished: Option<i64> = r.get(10)?;
    let (status, source, dead_reason): (String, String, Option<String>) = (r.get(3)?, r.get(4)?, r.get(9)?);
    let parsed = (|| {
        Ok::<_, StoreError>((
            from_ms(created_at)?,
            from_ms(next)?,
            finished.map(from_ms).transpose()?,
            AsyncStatus::parse(&status)?,
            AsyncSource::parse(&source)?,
            dead_reason.as_deref().map(DeadReason::parse).transpose()?,
        ))
    })();
    let (created_at, next_attempt_at, finished_at, status, source, dead_reason) = match parsed {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(AsyncRow {
        id: r.get(0)?,
        function: r.get(1)?,
        event: r.get(2)?,
        status,
        source,
        created_at,
        next_attempt_at,
        attempts: r.get(7)?,
        result: r.get(8)?,
        dead_reason,
        finished_at,
        dead_letter: r.get(11)?,
        redrive_of: r.get(12)?,
        redriven_as: r.get(13)?,
        hops: r.get(14)?,
    }))
}

/// An invocation's finished attempts, oldest first.
fn attempts_of(conn: &rusqlite::Connection, id: &str) -> Result<Vec<AttemptRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT attempt, execution_id, version, started_at, duration_ms, status, error_json
         FROM async_attempts WHERE invocation_id = ?1 ORDER BY attempt",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok((
            r.get::<_, u32>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, u32>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, f64>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, Option<String>>(6)?,
        ))
    })?;
    let mut attempts = Vec::new();
    for r in rows {
        let (attempt, execution_id, version, started_at, duration_ms, status, error_json) = r?;
        attempts.push(AttemptRow {
            attempt,
            execution_id,
            version,
            started_at: from_ms(started_at)?,
            duration_ms,
            status,
            error_json,
        });
    }
    Ok(attempts)
}

fn insert_async(tx: &Transaction<'_>, n: &NewAsync) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO async_invocations (id, function, event, status, source, created_at, next_attempt_at, redrive_of, hops)
         VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?5, ?6, ?7)",
    )?
    .execute(params![n.id, n.function, n.event, n.source, ms(n.created_at), n.redrive_of, n.hops])?;
    Ok(())
}

fn key_record(
    tx: &Transaction<'_>,
    function: &str,
    key: &str,
    fresh_after: OffsetDateTime,
) -> Result<Option<IdempotentRecord>, StoreError> {
    let found = tx
        .prepare_cached(
            "SELECT invocation_id, kind, created_at, reply FROM idempotency_keys WHERE function = ?1 AND key = ?2",
        )?
        .query_row(params![function, key], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((invocation_id, kind, created_at, reply)) = found else {
        return Ok(None);
    };
    if created_at <= ms(fresh_after) {
        // Expired: the key is free again.
        tx.execute(
            "DELETE FROM idempotency_keys WHERE function = ?1 AND key = ?2",
            params![function, key],
        )?;
        return Ok(None);
    }
    Ok(Some(IdempotentRecord {
        invocation_id,
        kind: KeyKind::parse(&kind)?,
        created_at: from_ms(created_at)?,
        reply,
    }))
}

impl Store {
    /// Stores an asynchronous invocation; with a key, only if the key has no invocation
    /// newer than `fresh_after`. Committed when this returns.
    pub fn enqueue_async(
        &self,
        n: &NewAsync,
        key: Option<&str>,
        fresh_after: OffsetDateTime,
    ) -> Result<Enqueued, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(key) = key {
            if let Some(first) = key_record(&tx, &n.function, key, fresh_after)? {
                return Ok(Enqueued::Existing(first));
            }
            tx.execute(
                "INSERT INTO idempotency_keys (function, key, invocation_id, kind, created_at)
                 VALUES (?1, ?2, ?3, 'async', ?4)",
                params![n.function, key, n.id, ms(n.created_at)],
            )?;
        }
        insert_async(&tx, n)?;
        tx.commit()?;
        Ok(Enqueued::New)
    }

    /// The first invocation made with `key` after `fresh_after`, if any.
    pub fn idempotent_record(
        &self,
        function: &str,
        key: &str,
        fresh_after: OffsetDateTime,
    ) -> Result<Option<IdempotentRecord>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = key_record(&tx, function, key, fresh_after)?;
        tx.commit()?;
        Ok(found)
    }

    /// Remembers the answer of a synchronous invocation made with `key`.
    pub fn save_idempotent_reply(
        &self,
        function: &str,
        key: &str,
        invocation_id: &str,
        reply: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO idempotency_keys (function, key, invocation_id, kind, created_at, reply)
             VALUES (?1, ?2, ?3, 'sync', ?4, ?5)",
            params![function, key, invocation_id, ms(at), reply],
        )?;
        Ok(())
    }

    /// Forgets keys created at or before `before`.
    pub fn expire_idempotency_keys(&self, before: OffsetDateTime) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM idempotency_keys WHERE created_at <= ?1",
            [ms(before)],
        )?)
    }

    /// At start-up: attempts cut short by a stop go back to the queue (at-least-once), and
    /// every invocation not ended yet is returned as (id, function, due).
    pub fn recover_async(&self) -> Result<Vec<(String, String, OffsetDateTime)>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE async_invocations SET status = 'queued' WHERE status = 'running'",
            [],
        )?;
        let open = {
            let mut stmt = tx.prepare(
                "SELECT id, function, next_attempt_at FROM async_invocations
                 WHERE status IN ('queued', 'failed') ORDER BY next_attempt_at, id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            let mut open = Vec::new();
            for row in rows {
                let (id, function, due) = row?;
                open.push((id, function, from_ms(due)?));
            }
            open
        };
        tx.commit()?;
        Ok(open)
    }

    /// Marks an open invocation as running and returns it (None if it ended or is gone).
    pub fn begin_attempt(&self, id: &str) -> Result<Option<AsyncRow>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE async_invocations SET status = 'running' WHERE id = ?1 AND status IN ('queued', 'failed')",
            [id],
        )?;
        if n == 0 {
            return Ok(None);
        }
        let row = tx
            .prepare_cached(&format!(
                "SELECT {ASYNC_COLUMNS} FROM async_invocations WHERE id = ?1"
            ))?
            .query_row([id], async_row)??;
        tx.commit()?;
        Ok(Some(row))
    }

    /// An attempt that did not reach a handler (throttled, not ready): queued again for
    /// `at`, without counting as an attempt.
    pub fn requeue(&self, id: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE async_invocations SET status = CASE WHEN attempts > 0 THEN 'failed' ELSE 'queued' END,
               next_attempt_at = ?2 WHERE id = ?1 AND status = 'running'",
            params![id, ms(at)],
        )?;
        Ok(())
    }

    /// Records a finished attempt (if one ran) and where it leaves the invocation, which
    /// has had `attempts` attempts; `then` (a destination's invocation) is accepted in the
    /// same transaction.
    pub fn finish_attempt(
        &self,
        id: &str,
        attempts: u32,
        attempt: Option<&AttemptRow>,
        finish: &Finish,
        now: OffsetDateTime,
        then: Option<&NewAsync>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(a) = attempt {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO async_attempts
                 (invocation_id, attempt, execution_id, version, started_at, duration_ms, status, error_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                id,
                a.attempt,
                a.execution_id,
                a.version,
                ms(a.started_at),
                a.duration_ms,
                a.status,
                a.error_json
            ])?;
        }
        match finish {
            Finish::Succeeded { result } => tx.execute(
                "UPDATE async_invocations SET status = 'succeeded', attempts = ?2, result = ?3, finished_at = ?4
                 WHERE id = ?1",
                params![id, attempts, result, ms(now)],
            )?,
            Finish::Retry { at } => tx.execute(
                "UPDATE async_invocations SET status = 'failed', attempts = ?2, next_attempt_at = ?3 WHERE id = ?1",
                params![id, attempts, ms(*at)],
            )?,
            Finish::Dead {
                reason,
                dead_letter,
            } => tx.execute(
                "UPDATE async_invocations SET status = 'dead', attempts = ?2, dead_reason = ?3, finished_at = ?4,
                   dead_letter = ?5
                 WHERE id = ?1",
                params![id, attempts, reason, ms(now), dead_letter],
            )?,
        };
        if let Some(next) = then {
            insert_async(&tx, next)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// An asynchronous invocation and its finished attempts, oldest first.
    pub fn get_async(&self, id: &str) -> Result<Option<(AsyncRow, Vec<AttemptRow>)>, StoreError> {
        let conn = self.conn();
        let tx = conn.unchecked_transaction()?;
        let row = tx
            .prepare_cached(&format!(
                "SELECT {ASYNC_COLUMNS} FROM async_invocations WHERE id = ?1"
            ))?
            .query_row([id], async_row)
            .optional()?
            .transpose()?;
        let Some(row) = row else { return Ok(None) };
        let attempts = attempts_of(&tx, id)?;
        Ok(Some((row, attempts)))
    }

    /// A function's dead letters, newest first, each with its attempts.
    pub fn dead_letters(
        &self,
        function: &str,
        limit: usize,
    ) -> Result<Vec<(AsyncRow, Vec<AttemptRow>)>, StoreError> {
        let conn = self.conn();
        let tx = conn.unchecked_transaction()?;
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {ASYNC_COLUMNS} FROM async_invocations WHERE function = ?1 AND dead_letter = 1
             ORDER BY finished_at DESC, id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![function, sql_limit(limit)], async_row)?;
        let mut out = Vec::new();
        for r in rows {
            let row = r??;
            let attempts = attempts_of(&tx, &row.id)?;
            out.push((row, attempts));
        }
        Ok(out)
    }

    /// Takes dead letter `id` of `function` off the list and accepts `new` in its place.
    /// False if there is no such dead letter.
    pub fn redrive(&self, function: &str, id: &str, new: &NewAsync) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE async_invocations SET dead_letter = 0, redriven_as = ?3
             WHERE id = ?1 AND function = ?2 AND dead_letter = 1",
            params![id, function, new.id],
        )?;
        if n == 0 {
            return Ok(false);
        }
        insert_async(&tx, new)?;
        tx.commit()?;
        Ok(true)
    }

    /// Deletes dead letter `id` of `function` (its record with its attempts). False if
    /// there is no such dead letter.
    pub fn delete_dead_letter(&self, function: &str, id: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM async_invocations WHERE id = ?1 AND function = ?2 AND dead_letter = 1",
            params![id, function],
        )?;
        Ok(n > 0)
    }

    /// The last fire time of each of `function`'s schedules, by key.
    pub fn schedule_state(&self, function: &str) -> Result<HashMap<String, OffsetDateTime>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT key, last_fire_at FROM schedule_state WHERE function = ?1")?;
        let rows = stmt.query_map([function], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = HashMap::new();
        for r in rows {
            let (key, at) = r?;
            out.insert(key, from_ms(at)?);
        }
        Ok(out)
    }

    /// Moves a schedule's last fire time to `at` and accepts the firings in `fire` (none
    /// when runs are skipped), in one transaction: a schedule never fires twice for one
    /// time, even across a kill. Firings whose id exists already are not stored again.
    pub fn schedule_advance(
        &self,
        function: &str,
        key: &str,
        at: OffsetDateTime,
        fire: &[NewAsync],
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut stored = Vec::new();
        for f in fire {
            let exists = tx
                .prepare_cached("SELECT 1 FROM async_invocations WHERE id = ?1")?
                .exists([&f.id])?;
            if !exists {
                insert_async(&tx, f)?;
                stored.push(f.id.clone());
            }
        }
        tx.execute(
            "INSERT INTO schedule_state (function, key, last_fire_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (function, key) DO UPDATE SET last_fire_at = max(last_fire_at, excluded.last_fire_at)",
            params![function, key, ms(at)],
        )?;
        tx.commit()?;
        Ok(stored)
    }

    /// Forgets the state of `function`'s schedules whose key is not in `keep`.
    pub fn prune_schedule_state(&self, function: &str, keep: &[String]) -> Result<(), StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT key FROM schedule_state WHERE function = ?1")?;
        let keys: Vec<String> = stmt
            .query_map([function], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for k in keys.iter().filter(|k| !keep.contains(k)) {
            conn.execute(
                "DELETE FROM schedule_state WHERE function = ?1 AND key = ?2",
                params![function, k],
            )?;
        }
        Ok(())
    }
}
