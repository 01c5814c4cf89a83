//! Opening: the directory, the pragmas, and migrations that run once.

use ignis_store::{AsyncSource, AsyncStatus, DeadReason, KeyKind};

use crate::{open, raw, t, version};

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

/// The schema as it was at migration `n` (1-based), as a server of that time left it.
fn schema_at(dir: &std::path::Path, n: usize) -> rusqlite::Connection {
    const SHIPPED: [&str; 9] = [
        include_str!("../../src/migrations/001_initial.sql"),
        include_str!("../../src/migrations/002_usage.sql"),
        include_str!("../../src/migrations/003_events.sql"),
        include_str!("../../src/migrations/004_console.sql"),
        include_str!("../../src/migrations/005_destination_hops.sql"),
        include_str!("../../src/migrations/006_packages.sql"),
        include_str!("../../src/migrations/007_async_checks.sql"),
        include_str!("../../src/migrations/008_builds.sql"),
        include_str!("../../src/migrations/009_layers.sql"),
    ];
    let db = raw(dir);
    db.execute_batch("PRAGMA foreign_keys = ON")
        .expect("foreign keys");
    for sql in &SHIPPED[..n] {
        db.execute_batch(sql).expect("a shipped migration");
    }
    db.pragma_update(None, "user_version", n).expect("user_version");
    db
}

#[test]
fn the_async_checks_migration_keeps_every_row_attempt_key_and_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = schema_at(dir.path(), 6);
        db.execute_batch(
            "INSERT INTO async_invocations (id, function, event, status, source, created_at, next_attempt_at,
               attempts, result, dead_reason, finished_at, dead_letter, redrive_of, redriven_as, hops) VALUES
             ('a', 'f', '{\"n\":1}', 'dead', 'api', 1000, 1000, 2, NULL, 'retries_exhausted', 5000, 1, NULL, NULL, 0),
             ('b', 'f', '{}', 'failed', 'destination', 2000, 9000, 1, NULL, NULL, NULL, 0, NULL, NULL, 3),
             ('c', 'g', '[1]', 'succeeded', 'schedule', 3000, 3000, 1, '{\"ok\":true}', NULL, 4000, 0, NULL, NULL, 0);
             INSERT INTO async_attempts VALUES
             ('a', 1, 'exec-1', 1, 1100, 2.5, 'function_error', '{\"message\":\"no\"}'),
             ('a', 2, 'exec-2', 1, 2100, 3.5, 'timeout', NULL),
             ('c', 1, 'exec-3', 2, 3100, 1.0, 'succeeded', NULL);
             INSERT INTO idempotency_keys VALUES
             ('f', 'k1', 'a', 'async', 1000, NULL),
             ('g', 'k2', 'x', 'sync', 2000, '{\"status\":200}');",
        )
        .expect("rows at schema 6");
    }
    let store = open(dir.path());
    let (a, attempts) = store.get_async("a").expect("read").expect("kept");
    assert_eq!(
        (
            a.status,
            a.source,
            a.dead_reason,
            a.dead_letter,
            a.attempts,
            a.finished_at
        ),
        (
            AsyncStatus::Dead,
            AsyncSource::Api,
            Some(DeadReason::RetriesExhausted),
            true,
            2,
            Some(t(5_000))
        )
    );
    assert_eq!(a.event, r#"{"n":1}"#);
    let kept: Vec<(u32, &str, &str)> = attempts
        .iter()
        .map(|x| (x.attempt, x.execution_id.as_str(), x.status.as_str()))
        .collect();
    assert_eq!(kept, [(1, "exec-1", "function_error"), (2, "exec-2", "timeout")]);
    assert_eq!(attempts[0].error_json.as_deref(), Some(r#"{"message":"no"}"#));
    let (b, _) = store.get_async("b").expect("read").expect("kept");
    assert_eq!(
        (b.status, b.source, b.hops, b.next_attempt_at),
        (AsyncStatus::Failed, AsyncSource::Destination, 3, t(9_000))
    );
    let (c, c_attempts) = store.get_async("c").expect("read").expect("kept");
    assert_eq!(
        (c.status, c.result.as_deref(), c_attempts.len()),
        (AsyncStatus::Succeeded, Some(r#"{"ok":true}"#), 1)
    );
    assert_eq!(store.dead_letters("f", 10).expect("list").len(), 1);
    let open_rows = store.recover_async().expect("recover");
    assert_eq!(open_rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["b"]);
    let key = store
        .idempotent_record("f", "k1", t(0))
        .expect("read")
        .expect("kept");
    assert_eq!((key.invocation_id.as_str(), key.kind), ("a", KeyKind::Async));
    let key = store
        .idempotent_record("g", "k2", t(0))
        .expect("read")
        .expect("kept");
    assert_eq!(
        (key.kind, key.reply.as_deref()),
        (KeyKind::Sync, Some(r#"{"status":200}"#))
    );

    let db = raw(dir.path());
    let mut indexes: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' AND tbl_name IN ('async_invocations', 'async_attempts', 'idempotency_keys') ORDER BY name")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("names");
    indexes.sort();
    assert_eq!(
        indexes,
        [
            "async_by_function",
            "async_dead_letters",
            "async_open",
            "idempotency_age"
        ]
    );
    let leftovers: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '%_old'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(leftovers, 0, "the old tables are gone");
    // The attempts still belong to their invocation: deleting it takes them along.
    assert!(store.delete_dead_letter("f", "a").expect("delete"));
    assert_eq!(crate::count(&db, "async_attempts", "invocation_id", "a"), 0);
    assert_eq!(crate::count(&db, "async_attempts", "invocation_id", "c"), 1);
}

#[test]
fn cold_starts_recorded_before_the_microvm_tier_read_back_without_boot_or_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = schema_at(dir.path(), 9);
        db.execute_batch(
            "INSERT INTO invocations (id, function, version, status, cold_start, started_at, duration_ms,
               error_json, memory_mb, billed_ms, peak_memory_mb, init_reason, init_ms, init_sandbox_ms,
               init_runtime_ms, init_load_ms) VALUES
             ('old', 'f', 1, 'succeeded', 1, 1000, 2.5, NULL, 128, 3, NULL, 'first_call', 40.0, 10.0, 20.0, 10.0);",
        )
        .expect("a row at schema 9");
    }
    let store = open(dir.path());
    let init = store
        .get_invocation("old")
        .expect("read")
        .expect("kept")
        .init
        .expect("a cold start");
    assert_eq!(
        (
            init.reason.as_str(),
            init.runtime_ms,
            init.boot_ms,
            init.restore_ms
        ),
        ("first_call", 20.0, None, None)
    );
}
