//! The store keeps SQLite's file locks for as long as it is open: another process reading
//! the database never checkpoints the WAL away under the live server.

use std::path::Path;
use std::process::Command;

use crate::{open, version};

/// Opens the database from another process (CPython's sqlite3), counts the functions and
/// closes it. Closing the last connection of that process checkpoints and deletes the WAL
/// when it can take the locks, which it can only if this process no longer holds them.
fn count_from_another_process(db: &Path) -> i64 {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nprint(c.execute('select count(*) from functions').fetchone()[0])\nc.close()",
        ])
        .arg(db)
        .output()
        .expect("run python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a count")
}

#[test]
fn a_reader_in_another_process_never_loses_the_servers_later_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.create_function(&version("first", 1)).expect("create");
    assert_eq!(count_from_another_process(store.path()), 1);
    // Had the store dropped its locks (an open + close of the database file by the server
    // after SQLite opened it does that), the reader above deleted the live WAL, and this
    // write would land in an unlinked file no one else sees.
    store.create_function(&version("second", 1)).expect("create");
    assert_eq!(count_from_another_process(store.path()), 2);
    assert!(
        dir.path().join("ignis.db-wal").exists(),
        "the WAL of the open store is still there"
    );
}
