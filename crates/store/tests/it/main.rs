//! Integration tests of the store against a real SQLite file in a temporary directory.

mod console;
mod functions;
mod invocations;
mod locks;
mod packages;
mod queue;
mod schema;
mod usage;

use std::path::Path;

use ignis_store::{InvocationRecord, LogLine, NewVersion, Store};
use rusqlite::Connection;
use time::OffsetDateTime;

/// An instant from Unix milliseconds (the store's precision).
pub fn t(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).expect("valid time")
}

pub fn open(dir: &Path) -> Store {
    Store::open(dir).expect("open the store")
}

pub fn version(name: &str, v: u32) -> NewVersion {
    NewVersion {
        function: name.to_owned(),
        version: v,
        runtime: "python3.12".to_owned(),
        handler: "main.handler".to_owned(),
        code: format!("def handler(event, ctx):\n    return {v}\n"),
        code_sha256: format!("sha-of-v{v}"),
        spec_json: format!(r#"{{"name":"{name}","memory_mb":128,"v":{v}}}"#),
        created_at: t(1_700_000_000_000 + i64::from(v) * 1_000),
        package: None,
        layers: Vec::new(),
    }
}

/// A record whose log lines are `lines`, all on stdout at `at`.
pub fn record(id: &str, function: &str, at: i64, lines: &[&str]) -> InvocationRecord {
    InvocationRecord {
        id: id.to_owned(),
        function: function.to_owned(),
        version: 1,
        status: "succeeded".to_owned(),
        cold_start: false,
        started_at: t(at),
        duration_ms: 1.5,
        error_json: None,
        logs: lines
            .iter()
            .map(|l| LogLine {
                ts: t(at),
                stream: "stdout".to_owned(),
                line: (*l).to_owned(),
            })
            .collect(),
        memory_mb: 128,
        billed_ms: 2,
        peak_memory_mb: None,
        init: None,
    }
}

pub fn ids(records: &[InvocationRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

/// A connection of the test's own to the database file, to look under the API.
pub fn raw(dir: &Path) -> Connection {
    let conn = Connection::open(dir.join("ignis.db")).expect("open the database file");
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    conn
}

/// Rows of `table` whose `column` is `value`, counted under the API.
pub fn count(conn: &Connection, table: &str, column: &str, value: &str) -> i64 {
    conn.query_row(
        &format!("SELECT COUNT(*) FROM {table} WHERE {column} = ?1"),
        [value],
        |r| r.get(0),
    )
    .expect("count rows")
}

/// Holds the database's write lock until dropped (or rolled back), so the invocation writer
/// cannot commit: whatever the store returns meanwhile comes from its pending map.
pub struct WriteLock(Connection);

impl WriteLock {
    pub fn take(dir: &Path) -> WriteLock {
        let conn = raw(dir);
        conn.execute_batch("BEGIN IMMEDIATE")
            .expect("take the write lock");
        WriteLock(conn)
    }

    /// Reads from the lock's connection (reads are not blocked by the lock).
    pub fn conn(&self) -> &Connection {
        &self.0
    }

    pub fn release(self) {
        self.0.execute_batch("ROLLBACK").expect("release the write lock");
    }
}
