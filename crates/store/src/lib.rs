//! Every SQL statement of Ignis: functions, their versions, invocation records and log lines.
//!
//! Control-plane calls are synchronous on one connection (callers run them on blocking
//! threads). Invocation records go through [`InvocationWriter`]: a channel send for the
//! caller, batched transactions on a thread of its own.

mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Row};
use rusqlite_migration::{Migrations, M};
use time::OffsetDateTime;

pub use writer::InvocationWriter;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("function {0:?} already exists")]
    AlreadyExists(String),
    #[error("function {0:?} does not exist")]
    NotFound(String),
    #[error("function {function:?} is at version {latest}; version {given} cannot follow it")]
    VersionConflict {
        function: String,
        latest: u32,
        given: u32,
    },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migrating the schema: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("creating the data directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("a stored value is not valid: {0}")]
    Corrupt(String),
}

/// The deploy status of one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionStatus {
    Deploying,
    Ready,
    Error,
}

impl VersionStatus {
    fn as_str(self) -> &'static str {
        match self {
            VersionStatus::Deploying => "deploying",
            VersionStatus::Ready => "ready",
            VersionStatus::Error => "error",
        }
    }

    fn parse(s: &str) -> Result<VersionStatus, StoreError> {
        match s {
            "deploying" => Ok(VersionStatus::Deploying),
            "ready" => Ok(VersionStatus::Ready),
            "error" => Ok(VersionStatus::Error),
            other => Err(StoreError::Corrupt(format!("version status {other:?}"))),
        }
    }
}

/// A version to store.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub function: String,
    pub version: u32,
    pub runtime: String,
    pub handler: String,
    pub code: String,
    pub code_sha256: String,
    pub spec_json: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredVersion {
    pub function: String,
    pub version: u32,
    pub runtime: String,
    pub handler: String,
    pub code: String,
    pub code_sha256: String,
    pub spec_json: String,
    pub status: VersionStatus,
    pub status_reason: Option<String>,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredFunction {
    pub name: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub latest: StoredVersion,
    /// The highest version whose deploy succeeded.
    pub last_ready_version: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub ts: OffsetDateTime,
    pub stream: String,
    pub line: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredLogLine {
    pub invocation_id: String,
    pub ts: OffsetDateTime,
    pub stream: String,
    pub line: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InvocationRecord {
    pub id: String,
    pub function: String,
    pub version: u32,
    pub status: String,
    pub cold_start: bool,
    pub started_at: OffsetDateTime,
    pub duration_ms: f64,
    pub error_json: Option<String>,
    pub logs: Vec<LogLine>,
}

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: std::path::PathBuf,
    conn: Mutex<Connection>,
    pending: writer::Pending,
}

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(include_str!("migrations/001_initial.sql"))])
}

pub(crate) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL mode cannot corrupt the database on a crash; it may lose the last
    // transactions on a power cut, not on a process kill.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

pub(crate) fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_ms(v: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v) * 1_000_000)
        .map_err(|e| StoreError::Corrupt(format!("timestamp {v}: {e}")))
}

impl Store {
    /// Opens (creating if needed) `<dir>/ignis.db` and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("ignis.db");
        let mut conn = open_connection(&path)?;
        migrations().to_latest(&mut conn)?;
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                conn: Mutex::new(conn),
                pending: writer::Pending::default(),
            }),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock would be a bug; the connection itself is still
        // consistent (SQLite rolls back an unfinished transaction), so keep using it.
        self.inner.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn create_function(&self, v: &NewVersion) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let inserted = tx.execute(
            "INSERT INTO functions (name, created_at, updated_at, latest_version) VALUES (?1, ?2, ?2, 1)
             ON CONFLICT (name) DO NOTHING",
            params![v.function, ms(v.created_at)],
        )?;
        if inserted == 0 {
            return Err(StoreError::AlreadyExists(v.function.clone()));
        }
        insert_version(&tx, v, 1)?;
        tx.commit()?;
        Ok(())
    }

    pub fn add_version(&self, v: &NewVersion) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let latest: Option<u32> = tx
            .query_row(
                "SELECT latest_version FROM functions WHERE name = ?1",
                [&v.function],
                |r| r.get(0),
            )
            .optional()?;
        let latest = latest.ok_or_else(|| StoreError::NotFound(v.function.clone()))?;
        if v.version != latest + 1 {
            return Err(StoreError::VersionConflict {
                function: v.function.clone(),
                latest,
                given: v.version,
            });
        }
        insert_version(&tx, v, v.version)?;
        tx.execute(
            "UPDATE functions SET latest_version = ?2, updated_at = ?3 WHERE name = ?1",
            params![v.function, v.version, ms(v.created_at)],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn set_version_status(
        &self,
        function: &str,
        version: u32,
        status: VersionStatus,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let changed = self.conn().execute(
            "UPDATE function_versions SET status = ?3, status_reason = ?4 WHERE function = ?1 AND version = ?2",
            params![function, version, status.as_str(), reason],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("{function} version {version}")));
        }
        Ok(())
    }

    pub fn list_functions(&self) -> Result<Vec<StoredFunction>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(FUNCTION_QUERY_ALL)?;
        let rows = stmt.query_map([], function_row)?;
        rows.map(|r| r?).collect()
    }

    pub fn get_function(&self, name: &str) -> Result<Option<StoredFunction>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(FUNCTION_QUERY_ONE)?;
        stmt.query_row([name], function_row).optional()?.transpose()
    }

    pub fn get_version(&self, function: &str, version: u32) -> Result<Option<StoredVersion>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {VERSION_COLUMNS} FROM function_versions v WHERE function = ?1 AND version = ?2"
        ))?;
        stmt.query_row(params![function, version], |r| Ok(version_row(r, 0)))
            .optional()?
            .transpose()
    }

    /// Deletes a function with its versions, invocation records and log lines.
    pub fn delete_function(&self, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let deleted = tx.execute("DELETE FROM functions WHERE name = ?1", [name])?;
        tx.execute("DELETE FROM log_lines WHERE function = ?1", [name])?;
        tx.execute("DELETE FROM invocations WHERE function = ?1", [name])?;
        tx.commit()?;
        self.inner.pending.remove_function(name);
        Ok(deleted > 0)
    }

    /// Starts the background writer of invocation records.
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
        let rec = conn
            .query_row(
                &format!("SELECT {INVOCATION_COLUMNS} FROM invocations WHERE id = ?1"),
                [id],
                |r| Ok(invocation_row(r)),
            )
            .optional()?
            .transpose()?;
        let Some(mut rec) = rec else { return Ok(None) };
        let mut stmt =
            conn.prepare("SELECT ts, stream, line FROM log_lines WHERE invocation_id = ?1 ORDER BY seq")?;
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

    /// The newest invocations of a function (without their logs), pending ones included.
    pub fn list_invocations(
        &self,
        function: &str,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>, StoreError> {
        let mut records = self.inner.pending.of_function(function);
        {
            let conn = self.conn();
            let mut stmt = conn.prepare(&format!(
                "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE function = ?1
                 ORDER BY started_at DESC, id DESC LIMIT ?2"
            ))?;
            let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
            for rec in stmt.query_map(params![function, limit_sql], |r| Ok(invocation_row(r)))? {
                let rec = rec??;
                // A record may be committed and still in the pending map for a moment.
                if !records.iter().any(|p| p.id == rec.id) {
                    records.push(rec);
                }
            }
        }
        for rec in &mut records {
            rec.logs.clear();
        }
        records.sort_by(|a, b| b.started_at.cmp(&a.started_at).then_with(|| b.id.cmp(&a.id)));
        records.truncate(limit);
        Ok(records)
    }

    /// The most recent `limit` log lines of a function across invocations, oldest first.
    pub fn recent_logs(&self, function: &str, limit: usize) -> Result<Vec<StoredLogLine>, StoreError> {
        let mut lines: Vec<StoredLogLine> = Vec::new();
        {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT invocation_id, ts, stream, line FROM log_lines WHERE function = ?1 ORDER BY seq DESC LIMIT ?2",
            )?;
            let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![function, limit_sql], |r| {
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
        }
        lines.reverse();
        // Lines still pending are newer than everything committed.
        let committed: std::collections::HashSet<String> =
            lines.iter().map(|l| l.invocation_id.clone()).collect();
        let mut pending = self.inner.pending.of_function(function);
        pending.sort_by(|a, b| a.started_at.cmp(&b.started_at).then_with(|| a.id.cmp(&b.id)));
        for rec in pending.into_iter().filter(|r| !committed.contains(&r.id)) {
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

fn insert_version(tx: &rusqlite::Transaction<'_>, v: &NewVersion, version: u32) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO function_versions
         (function, version, runtime, handler, code, code_sha256, spec_json, status, status_reason, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'deploying', NULL, ?8)",
        params![v.function, version, v.runtime, v.handler, v.code, v.code_sha256, v.spec_json, ms(v.created_at)],
    )?;
    Ok(())
}

const VERSION_COLUMNS: &str =
    "v.function, v.version, v.runtime, v.handler, v.code, v.code_sha256, v.spec_json, v.status, v.status_reason, v.created_at";

const FUNCTION_QUERY_ALL: &str = "SELECT f.name, f.created_at, f.updated_at,
    (SELECT MAX(version) FROM function_versions r WHERE r.function = f.name AND r.status = 'ready'),
    v.function, v.version, v.runtime, v.handler, v.code, v.code_sha256, v.spec_json, v.status, v.status_reason, v.created_at
    FROM functions f JOIN function_versions v ON v.function = f.name AND v.version = f.latest_version
    ORDER BY f.name";

const FUNCTION_QUERY_ONE: &str = "SELECT f.name, f.created_at, f.updated_at,
    (SELECT MAX(version) FROM function_versions r WHERE r.function = f.name AND r.status = 'ready'),
    v.function, v.version, v.runtime, v.handler, v.code, v.code_sha256, v.spec_json, v.status, v.status_reason, v.created_at
    FROM functions f JOIN function_versions v ON v.function = f.name AND v.version = f.latest_version
    WHERE f.name = ?1";

fn version_row(r: &Row<'_>, at: usize) -> Result<StoredVersion, StoreError> {
    Ok(StoredVersion {
        function: r.get(at)?,
        version: r.get(at + 1)?,
        runtime: r.get(at + 2)?,
        handler: r.get(at + 3)?,
        code: r.get(at + 4)?,
        code_sha256: r.get(at + 5)?,
        spec_json: r.get(at + 6)?,
        status: VersionStatus::parse(&r.get::<_, String>(at + 7)?)?,
        status_reason: r.get(at + 8)?,
        created_at: from_ms(r.get(at + 9)?)?,
    })
}

fn function_row(r: &Row<'_>) -> rusqlite::Result<Result<StoredFunction, StoreError>> {
    Ok((|| {
        Ok(StoredFunction {
            name: r.get(0)?,
            created_at: from_ms(r.get(1)?)?,
            updated_at: from_ms(r.get(2)?)?,
            last_ready_version: r.get(3)?,
            latest: version_row(r, 4)?,
        })
    })())
}

const INVOCATION_COLUMNS: &str =
    "id, function, version, status, cold_start, started_at, duration_ms, error_json";

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
    })
}
