//! The invocation writer and the reads beside it: read-your-writes, persistence, retention,
//! listing order, recent logs, failed commits.

use std::time::Duration;

use ignis_store::{ColdStart, InvocationRecord, InvocationWriter, LogLine, StoredLogLine};

use crate::{count, ids, open, raw, record, t, WriteLock};

/// A record with every field away from its default.
fn full_record(id: &str, at: i64) -> InvocationRecord {
    InvocationRecord {
        id: id.to_owned(),
        function: "f".to_owned(),
        version: 7,
        status: "function_error".to_owned(),
        cold_start: true,
        started_at: t(at),
        duration_ms: 12.345_678,
        error_json: Some(r#"{"type":"ValueError","message":"bad"}"#.to_owned()),
        logs: vec![
            LogLine {
                ts: t(at + 1),
                stream: "stdout".to_owned(),
                line: "starting".to_owned(),
            },
            LogLine {
                ts: t(at + 9),
                stream: "stderr".to_owned(),
                line: "Traceback: ünïcödé".to_owned(),
            },
        ],
        memory_mb: 256,
        billed_ms: 13,
        peak_memory_mb: Some(87),
        init: Some(ColdStart {
            reason: "scale_out".to_owned(),
            init_ms: 4.25,
            sandbox_ms: 1.5,
            runtime_ms: 2.0,
            load_ms: 0.75,
            boot_ms: None,
            restore_ms: None,
        }),
    }
}

#[test]
fn records_are_readable_before_their_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let writer = store.start_invocation_writer(100);
    writer.record(record("old", "f", 1_000, &["old line"]));
    writer.flush();

    let lock = WriteLock::take(dir.path());
    let rec = full_record("new", 2_000);
    writer.record(rec.clone());
    // The writer cannot have committed it: it is served from memory.
    assert_eq!(count(lock.conn(), "invocations", "id", "new"), 0);
    assert_eq!(store.get_invocation("new").expect("get"), Some(rec.clone()));
    let listed = store.list_invocations("f", 10).expect("list");
    assert_eq!(ids(&listed), ["new", "old"]);
    assert!(
        listed[0].logs.is_empty(),
        "listing leaves logs out, pending ones too"
    );
    let tail: Vec<String> = store
        .recent_logs("f", 2)
        .expect("logs")
        .into_iter()
        .map(|l| l.line)
        .collect();
    assert_eq!(tail, ["starting", "Traceback: ünïcödé"]);
    assert_eq!(store.recent_logs("f", 3).expect("logs")[0].line, "old line");

    lock.release();
    writer.flush();
    assert_eq!(count(&raw(dir.path()), "invocations", "id", "new"), 1);
    assert_eq!(store.get_invocation("new").expect("get"), Some(rec));
    assert_eq!(
        ids(&store.list_invocations("f", 10).expect("list")),
        ["new", "old"]
    );
}

#[test]
fn flushed_records_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = [
        full_record("a", 1_000),
        full_record("b", 3_000),
        record("c", "f", 2_000, &[]),
    ];
    {
        let store = open(dir.path());
        let writer = store.start_invocation_writer(100);
        for r in &records {
            writer.record(r.clone());
        }
        writer.flush();
    }

    let store = open(dir.path());
    for r in &records {
        assert_eq!(store.get_invocation(&r.id).expect("get").as_ref(), Some(r));
    }
    assert_eq!(store.get_invocation("nope").expect("get"), None);
    let listed = store.list_invocations("f", 10).expect("list");
    assert_eq!(ids(&listed), ["b", "c", "a"]);
    let mut without_logs = records[1].clone();
    without_logs.logs.clear();
    assert_eq!(listed[0], without_logs);
}

#[test]
fn a_virtual_machines_boot_and_restore_times_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let with = |id: &str, at: i64, boot_ms: Option<f64>, restore_ms: Option<f64>| {
        let mut r = full_record(id, at);
        let init = r.init.as_mut().expect("a cold start");
        (init.boot_ms, init.restore_ms) = (boot_ms, restore_ms);
        r
    };
    let records = [
        with("booted", 1_000, Some(912.5), None),
        with("restored", 2_000, None, Some(47.25)),
        full_record("process", 3_000),
    ];
    {
        let store = open(dir.path());
        let writer = store.start_invocation_writer(100);
        for r in &records {
            writer.record(r.clone());
        }
        writer.flush();
    }
    let store = open(dir.path());
    for r in &records {
        assert_eq!(store.get_invocation(&r.id).expect("get").as_ref(), Some(r));
    }
    let conn = raw(dir.path());
    let stored: (Option<f64>, Option<f64>) = conn
        .query_row(
            "SELECT init_boot_ms, init_restore_ms FROM invocations WHERE id = 'restored'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("the row");
    assert_eq!(stored, (None, Some(47.25)), "a part that did not happen is NULL");
    let listed = store.list_invocations("f", 10).expect("list");
    let parts: Vec<_> = listed
        .iter()
        .map(|r| r.init.as_ref().map(|i| (i.boot_ms, i.restore_ms)))
        .collect();
    assert_eq!(
        parts,
        [
            Some((None, None)),
            Some((None, Some(47.25))),
            Some((Some(912.5), None))
        ]
    );
}

#[test]
fn listing_is_newest_first_with_ties_broken_by_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let writer = store.start_invocation_writer(100);
    writer.record(record("b", "f", 2_000, &[]));
    writer.record(record("a", "f", 2_000, &[]));
    writer.record(record("z", "f", 1_000, &[]));
    writer.record(record("other", "g", 9_000, &[]));
    writer.flush();
    // Pending ones are merged into the same order.
    let lock = WriteLock::take(dir.path());
    writer.record(record("c", "f", 2_000, &[]));
    writer.record(record("y", "f", 500, &[]));

    assert_eq!(
        ids(&store.list_invocations("f", 10).expect("list")),
        ["c", "b", "a", "z", "y"]
    );
    assert_eq!(ids(&store.list_invocations("f", 2).expect("list")), ["c", "b"]);
    assert!(store.list_invocations("f", 0).expect("list").is_empty());
    assert!(store.list_invocations("nobody", 10).expect("list").is_empty());
    lock.release();
    writer.flush();
    assert_eq!(
        ids(&store.list_invocations("f", 10).expect("list")),
        ["c", "b", "a", "z", "y"]
    );
}

#[test]
fn retention_keeps_the_newest_invocations_of_each_function_with_their_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let writer = store.start_invocation_writer(3);
    for i in 0..5 {
        let line = format!("line {i}");
        writer.record(record(&format!("i{i}"), "f", 1_000 + i, &[&line, "second"]));
    }
    writer.record(record("g0", "g", 1, &["g line"]));
    writer.flush();

    assert_eq!(
        ids(&store.list_invocations("f", 10).expect("list")),
        ["i4", "i3", "i2"]
    );
    let db = raw(dir.path());
    for gone in ["i0", "i1"] {
        assert_eq!(store.get_invocation(gone).expect("get"), None, "{gone}");
        assert_eq!(
            count(&db, "log_lines", "invocation_id", gone),
            0,
            "{gone}'s lines"
        );
    }
    assert_eq!(count(&db, "log_lines", "function", "f"), 6);
    assert_eq!(store.recent_logs("f", 100).expect("logs").len(), 6);
    // Retention is per function: g's one old record stays.
    assert!(store.get_invocation("g0").expect("get").is_some());

    // Later batches trim what earlier ones committed; an invocation older than the kept
    // ones goes at once.
    writer.record(record("i5", "f", 1_005, &[]));
    writer.record(record("ancient", "f", 1, &["ancient line"]));
    writer.flush();
    assert_eq!(
        ids(&store.list_invocations("f", 10).expect("list")),
        ["i5", "i4", "i3"]
    );
    assert_eq!(count(&db, "invocations", "id", "ancient"), 0);
    assert_eq!(count(&db, "log_lines", "invocation_id", "ancient"), 0);
    assert_eq!(count(&db, "log_lines", "invocation_id", "i2"), 0);
}

#[test]
fn recent_logs_are_the_last_lines_oldest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let writer = store.start_invocation_writer(100);
    writer.record(record("a", "f", 1_000, &["a1", "a2"]));
    writer.record(record("b", "f", 2_000, &["b1", "b2", "b3"]));
    writer.record(record("g", "g", 3_000, &["not f"]));
    writer.flush();

    let line = |inv: &str, at: i64, text: &str| StoredLogLine {
        invocation_id: inv.to_owned(),
        ts: t(at),
        stream: "stdout".to_owned(),
        line: text.to_owned(),
    };
    assert_eq!(
        store.recent_logs("f", 4).expect("logs"),
        [
            line("a", 1_000, "a2"),
            line("b", 2_000, "b1"),
            line("b", 2_000, "b2"),
            line("b", 2_000, "b3")
        ]
    );
    let all: Vec<String> = store
        .recent_logs("f", 100)
        .expect("logs")
        .into_iter()
        .map(|l| l.line)
        .collect();
    assert_eq!(all, ["a1", "a2", "b1", "b2", "b3"]);
    assert!(store.recent_logs("f", 0).expect("logs").is_empty());
    assert!(store.recent_logs("nobody", 10).expect("logs").is_empty());

    // Pending lines come after the committed ones, in record order.
    let lock = WriteLock::take(dir.path());
    writer.record(record("d", "f", 500, &["d1"]));
    writer.record(record("c", "f", 400, &["c1"]));
    let tail = |store: &ignis_store::Store| -> Vec<String> {
        store
            .recent_logs("f", 3)
            .expect("logs")
            .into_iter()
            .map(|l| l.line)
            .collect()
    };
    assert_eq!(tail(&store), ["b3", "d1", "c1"]);
    lock.release();
    writer.flush();
    assert_eq!(tail(&store), ["b3", "d1", "c1"], "the same once committed");
}

#[test]
fn a_failed_commit_keeps_the_records_and_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let writer = store.start_invocation_writer(100);
    let db = raw(dir.path());
    // Every insert fails, as on a full disk.
    db.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON invocations BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .expect("create the trigger");
    let rec = full_record("x", 1_000);
    writer.record(rec.clone());
    assert_eq!(store.get_invocation("x").expect("get"), Some(rec.clone()));
    assert_eq!(count(&db, "invocations", "id", "x"), 0);

    db.execute_batch("DROP TRIGGER refuse").expect("drop the trigger");
    writer.flush();
    assert_eq!(count(&db, "invocations", "id", "x"), 1);
    assert_eq!(count(&db, "log_lines", "invocation_id", "x"), 2);
    assert_eq!(store.get_invocation("x").expect("get"), Some(rec));
}

#[test]
fn a_nan_duration_does_not_wedge_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let writer = store.start_invocation_writer(100);
    let mut rec = record("nan", "f", 1_000, &[]);
    rec.duration_ms = f64::NAN;
    writer.record(rec);
    writer.record(record("after", "f", 2_000, &[]));
    flush_or_fail(&writer);
    let db = raw(dir.path());
    assert_eq!(count(&db, "invocations", "id", "after"), 1);
    let stored = store.get_invocation("nan").expect("get").expect("stored");
    assert_eq!(stored.duration_ms, 0.0);
}

/// Flushes, failing the test rather than hanging it if the writer is stuck on a batch.
fn flush_or_fail(writer: &InvocationWriter) {
    let (done, flushed) = std::sync::mpsc::channel();
    let writer = writer.clone();
    std::thread::spawn(move || {
        writer.flush();
        let _ = done.send(());
    });
    flushed
        .recv_timeout(Duration::from_secs(30))
        .expect("the writer committed the batch");
}
