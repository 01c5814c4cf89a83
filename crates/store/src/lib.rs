//! Every SQL statement of Ignis: functions, their versions, invocation records and log lines.
//!
//! Control-plane calls are synchronous on one connection behind a mutex (callers run them
//! on blocking threads). Invocation records go through [`InvocationWriter`]: a channel send
//! for the caller, batched transactions on a thread and connection of its own.
//!
//! The store knows nothing of the domain crate: a version's validated spec is an opaque
//! JSON string, an invocation's status and error are opaque text.

mod builds;
mod functions;
mod invocations;
mod layers;
mod packages;
mod queue;
mod test_events;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;
use rusqlite_migration::{Migrations, M};
use time::OffsetDateTime;

pub use builds::{BuildStatus, StoredBuild};
pub use layers::{LayerDelete, NewLayerVersion, StoredLayer};
pub use packages::{NewPackage, NewPackageFile, PackageContent, StoredPackageFile, VersionPackage};
pub use queue::{
    AsyncRow, AsyncSource, AsyncStatus, AttemptRow, DeadReason, Enqueued, Finish, IdempotentRecord, KeyKind,
    NewAsync,
};
pub use test_events::{Saved, TestEvent};
pub use writer::InvocationWriter;

/// The database file inside the data directory.
pub const DB_FILE: &str = "ignis.db";

/// How long a statement waits for the other connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("function {0:?} already exists")]
    AlreadyExists(String),
    #[error("function {0:?} does not exist")]
    NotFound(String),
    #[error("function {function:?} has no version {version}")]
    VersionNotFound { function: String, version: u32 },
    #[error("function {function:?} is at version {latest}; version {given} cannot follow it")]
    VersionConflict {
        function: String,
        latest: u32,
        given: u32,
    },
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    /// SQLITE_FULL or ENOSPC: the file system of the data directory has no space left.
    /// Nothing was written; the same call succeeds once space is freed.
    #[error("the disk of the data directory is full ({0})")]
    DiskFull(String),
    #[error("migrating the schema: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("creating the data directory: {0}")]
    Io(std::io::Error),
    #[error("a stored value is not valid: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// True when the call failed only because the disk is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::DiskFull(_))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::DiskFull(e.to_string()),
            _ => StoreError::Sqlite(e),
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> StoreError {
        match e.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                StoreError::DiskFull(e.to_string())
            }
            _ => StoreError::Io(e),
        }
    }
}

/// The deploy status of one version, stored as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionStatus {
    Deploying,
    Ready,
    Error,
}

impl VersionStatus {
    pub fn as_str(self) -> &'static str {
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

/// A version to store. Its status starts as [`VersionStatus::Deploying`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewVersion {
    pub function: String,
    pub version: u32,
    pub runtime: String,
    pub handler: String,
    pub code: String,
    pub code_sha256: String,
    /// The validated spec, opaque to the store.
    pub spec_json: String,
    pub created_at: OffsetDateTime,
    /// The package the version is made of, when it is several files (stored once per hash).
    pub package: Option<VersionPackage>,
    /// The layers it lists (name, version), in order.
    pub layers: Vec<(String, u32)>,
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
    /// When the version failed to load: JSON `{type, message, line}`.
    pub status_detail: Option<String>,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredFunction {
    pub name: String,
    /// When version 1 was created.
    pub created_at: OffsetDateTime,
    /// When the latest version was created.
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
    /// UUIDv7 text.
    pub id: String,
    pub function: String,
    pub version: u32,
    /// `succeeded`, `function_error`, `timeout`, `crashed`, ...: opaque to the store.
    pub status: String,
    pub cold_start: bool,
    pub started_at: OffsetDateTime,
    pub duration_ms: f64,
    pub error_json: Option<String>,
    pub logs: Vec<LogLine>,
    /// The function version's `memory_mb` (for GB-seconds).
    pub memory_mb: u32,
    /// `duration_ms` rounded up to a whole millisecond.
    pub billed_ms: u64,
    /// The instance's peak memory use as of the end of this invocation, when known.
    pub peak_memory_mb: Option<u32>,
    /// Set when this invocation had to start its instance.
    pub init: Option<ColdStart>,
}

/// Why and how an invocation's instance was started.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdStart {
    /// `first_call`, `scale_out`, `after_idle` or `new_version`.
    pub reason: String,
    /// Whole start, as the caller waited for it.
    pub init_ms: f64,
    /// Making the sandbox (0 when a pre-warmed instance was used).
    pub sandbox_ms: f64,
    /// Starting the interpreter up to its hello (0 when pre-warmed).
    pub runtime_ms: f64,
    /// Loading the function's code.
    pub load_ms: f64,
    /// A virtual machine booted from its kernel up to its agent's readiness (part of
    /// `runtime_ms`); `None` when the instance was not a virtual machine booted so.
    pub boot_ms: Option<f64>,
    /// A virtual machine restored from a snapshot up to its first answer (part of
    /// `runtime_ms`); `None` when the instance was not a restored virtual machine.
    pub restore_ms: Option<f64>,
}

/// What one function used over a period (see [`Store::usage`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunctionUsage {
    pub function: String,
    pub invocations: u64,
    /// Invocations whose status is not `succeeded`.
    pub errors: u64,
    pub cold_starts: u64,
    pub billed_ms: u64,
    /// Sum over invocations of `memory_mb` × `billed_ms`; GB-seconds is this / 1024 / 1000.
    pub mb_ms: u64,
}

/// One function's invocations started in one minute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MinuteUsage {
    pub function: String,
    /// Unix minutes.
    pub minute: i64,
    pub invocations: u64,
    pub errors: u64,
    pub cold_starts: u64,
    pub billed_ms: u64,
}

/// What functions did over a period: see [`Store::activity`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Activity {
    /// Ordered by function, then minute; minutes without invocations are absent.
    pub minutes: Vec<MinuteUsage>,
    /// (function, duration in ms) of each invocation record kept from the period.
    pub durations: Vec<(String, f64)>,
}

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
    pending: Arc<writer::Pending>,
}

fn migrations() -> Migrations<'static> {
    // Append new migrations; never edit one that has shipped (databases remember only the
    // index of the last one applied).
    Migrations::new(vec![
        M::up(include_str!("migrations/001_initial.sql")),
        M::up(include_str!("migrations/002_usage.sql")),
        M::up(include_str!("migrations/003_events.sql")),
        M::up(include_str!("migrations/004_console.sql")),
        M::up(include_str!("migrations/005_destination_hops.sql")),
        M::up(include_str!("migrations/006_packages.sql")),
        M::up(include_str!("migrations/007_async_checks.sql")),
        M::up(include_str!("migrations/008_builds.sql")),
        M::up(include_str!("migrations/009_layers.sql")),
        M::up(include_str!("migrations/010_vm_cold_starts.sql")),
    ])
}

pub(crate) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL mode cannot corrupt the database on a crash; it may lose the last
    // transactions on a power cut, not on a process kill.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Per connection: without it the cascade from functions to versions does nothing.
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// The database and its `-wal` and `-shm` files hold every function's code and environment:
/// only the server's user may read them. Creates the database file `0600` (SQLite gives the
/// journal files the database's mode) before SQLite opens it.
fn create_private(db: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(db)?;
    Ok(())
}

/// Tightens the database and its journal files to `0600` where they are wider. By path
/// only (`chmod`), never by opening them: closing any descriptor of a file drops every POSIX
/// lock the process holds on it, SQLite's included, so an `open` + `close` here while a
/// connection is open would let another process checkpoint the WAL under the live server.
fn tighten_private(db: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        let mode = match std::fs::metadata(file) {
            Ok(m) => m.permissions().mode() & 0o777,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        if mode & 0o077 != 0 {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
            tracing::warn!(
                "{} was mode {mode:o}; tightened to 600 so that other users cannot read it",
                file.display()
            );
        }
    }
    Ok(())
}

/// Unix milliseconds, the stored form of every timestamp (exact at ms precision).
pub(crate) fn ms(t: OffsetDateTime) -> i64 {
    // Floor, not truncation, so an instant before 1970 keeps its millisecond.
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

pub(crate) fn from_ms(v: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v) * 1_000_000)
        .map_err(|e| StoreError::Corrupt(format!("timestamp {v}: {e}")))
}

/// A `LIMIT` bound: SQLite takes i64.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens (creating if needed) `<dir>/ignis.db` and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(DB_FILE);
        create_private(&path)?;
        tighten_private(&path)?;
        let mut conn = open_connection(&path)?;
        migrations().to_latest(&mut conn)?;
        // The first statements created the -wal and -shm files (with the database's mode).
        tighten_private(&path)?;
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                conn: Mutex::new(conn),
                pending: Arc::default(),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock would be a bug; the connection itself is still
        // consistent (SQLite rolls back an unfinished transaction), so keep using it.
        self.inner.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Stores function `name` with versions 1 to `versions` (one-file Python code).
    pub(crate) fn create_test_function(store: &Store, name: &str, versions: u32) {
        let at = from_ms(1_780_000_000_000).expect("a time");
        for version in 1..=versions {
            let v = NewVersion {
                function: name.to_owned(),
                version,
                runtime: "python".to_owned(),
                handler: "handler".to_owned(),
                code: "def handler(e, c): return 1".to_owned(),
                code_sha256: "00".to_owned(),
                spec_json: "{}".to_owned(),
                created_at: at,
                package: None,
                layers: Vec::new(),
            };
            if version == 1 {
                store.create_function(&v).expect("create");
            } else {
                store.add_version(&v).expect("add a version");
            }
        }
    }

    pub(crate) fn set_ready(store: &Store, name: &str, version: u32) {
        store
            .set_version_status(name, version, VersionStatus::Ready, None)
            .expect("set ready");
    }

    #[test]
    fn milliseconds_round_trip_before_and_after_the_epoch() {
        for v in [-1_500, -1, 0, 1, 1_700_000_000_123] {
            assert_eq!(ms(from_ms(v).expect("in range")), v);
        }
        let t = from_ms(1_234).expect("in range") + time::Duration::microseconds(999);
        assert_eq!(
            ms(t),
            1_234,
            "sub-millisecond precision is dropped, not rounded up"
        );
        let before = from_ms(-1_000).expect("in range") + time::Duration::microseconds(1);
        assert_eq!(ms(before), -1_000);
    }

    #[test]
    fn a_full_disk_is_a_typed_error_whether_sqlite_or_the_os_says_so() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".to_owned()),
        );
        assert!(StoreError::from(full).is_disk_full());
        let enospc = std::io::Error::from_raw_os_error(28);
        assert!(StoreError::from(enospc).is_disk_full());
        let busy =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        assert!(!StoreError::from(busy).is_disk_full());
        assert!(!StoreError::from(std::io::Error::from_raw_os_error(13)).is_disk_full());
    }

    #[test]
    fn store_files_are_private_even_when_they_were_wider() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join(DB_FILE);
        let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        let store = Store::open(dir.path()).expect("opens");
        store.list_functions().expect("reads");
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", db.display()));
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
        drop(store);
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let _again = Store::open(dir.path()).expect("opens again");
        assert_eq!(
            mode(&db),
            0o600,
            "a database left readable by others is tightened"
        );
    }

    #[test]
    fn version_status_text_round_trips() {
        for s in [
            VersionStatus::Deploying,
            VersionStatus::Ready,
            VersionStatus::Error,
        ] {
            assert_eq!(VersionStatus::parse(s.as_str()).expect("parses"), s);
        }
        assert!(VersionStatus::parse("gone").is_err());
    }
}
