//! Opening: the directory, the pragmas, and migrations that run once.

use crate::{open, raw, version};

#[test]
fn open_creates_the_directory_and_a_wal_database() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("nested").join("data");
    let store = open(&dir);
    assert_eq!(store.path(), dir.join("ignis.db"));
    assert!(dir.join("ignis.db").is_file());
    let db = raw(&dir);
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode");
    assert_eq!(mode, "wal");
}

#[test]
fn reopening_runs_migrations_once_and_keeps_the_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    open(dir.path())
        .create_function(&version("f", 1))
        .expect("create");
    let user_version = || -> i64 {
        raw(dir.path())
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("user_version")
    };
    let first = user_version();
    assert!(first >= 1, "migrations recorded their index: {first}");
    for _ in 0..2 {
        let store = open(dir.path());
        assert_eq!(user_version(), first);
        let names: Vec<String> = store
            .list_functions()
            .expect("list")
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["f"]);
    }
}
