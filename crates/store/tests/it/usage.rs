//! The usage rollup: exact counts per function and minute, committed or pending, replaced
//! records counted once, and use that outlives retention, deletion and the old schema.

use ignis_store::{FunctionUsage, InvocationRecord, Store};

use crate::{open, raw, record, t, WriteLock};

const MINUTE: i64 = 60_000;

fn rec(
    id: &str,
    function: &str,
    at: i64,
    status: &str,
    cold: bool,
    memory_mb: u32,
    billed_ms: u64,
) -> InvocationRecord {
    InvocationRecord {
        status: status.to_owned(),
        cold_start: cold,
        memory_mb,
        billed_ms,
        ..record(id, function, at, &[])
    }
}

fn usage(store: &Store, since: i64, until: i64) -> Vec<FunctionUsage> {
    store.usage(t(since), t(until)).expect("usage")
}

fn one(
    function: &str,
    invocations: u64,
    errors: u64,
    cold_starts: u64,
    billed_ms: u64,
    mb_ms: u64,
) -> FunctionUsage {
    FunctionUsage {
        function: function.to_owned(),
        invocations,
        errors,
        cold_starts,
        billed_ms,
        mb_ms,
    }
}

#[test]
fn usage_sums_each_function_over_whole_minutes_committed_or_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let writer = store.start_invocation_writer(100);
    let base = 1_700_000_040_000 - 1_700_000_040_000 % MINUTE;
    writer.record(rec("a1", "a", base + 5, "succeeded", true, 128, 3));
    writer.record(rec("a2", "a", base + 59_999, "function_error", false, 128, 10));
    writer.record(rec("b1", "b", base + MINUTE, "timeout", false, 1024, 1000));
    writer.flush();
    // Two more that the writer cannot commit yet: they count all the same.
    let lock = WriteLock::take(dir.path());
    writer.record(rec("a3", "a", base + MINUTE + 1, "succeeded", false, 256, 2));
    writer.record(rec("c1", "c", base - 1, "succeeded", true, 128, 1));

    assert_eq!(
        usage(&store, base, base + 2 * MINUTE),
        [
            one("a", 3, 1, 1, 15, 128 * 3 + 128 * 10 + 256 * 2),
            one("b", 1, 1, 0, 1000, 1024 * 1000)
        ],
        "c1 started before the period"
    );
    assert_eq!(
        usage(&store, base, base + MINUTE),
        [one("a", 2, 1, 1, 13, 128 * 13)],
        "until is exclusive"
    );
    assert_eq!(
        usage(&store, base + 30_000, base + MINUTE + 30_000),
        [one("a", 2, 1, 1, 13, 128 * 13)],
        "both ends are rounded down to their minute"
    );
    lock.release();
    writer.flush();
    assert_eq!(
        usage(&store, base - MINUTE, base + 2 * MINUTE),
        [
            one("a", 3, 1, 1, 15, 128 * 3 + 128 * 10 + 256 * 2),
            one("b", 1, 1, 0, 1000, 1024 * 1000),
            one("c", 1, 0, 1, 1, 128)
        ],
        "the same once everything is committed"
    );
    assert!(usage(&store, base + 5 * MINUTE, base + 6 * MINUTE).is_empty());
}

#[test]
fn a_record_written_again_under_its_id_counts_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let writer = store.start_invocation_writer(100);
    writer.record(rec("x", "f", 10 * MINUTE, "function_error", true, 128, 5));
    writer.flush();
    writer.record(rec("x", "f", 20 * MINUTE, "succeeded", false, 256, 7));
    writer.flush();
    assert_eq!(usage(&store, 0, 100 * MINUTE), [one("f", 1, 0, 0, 7, 256 * 7)]);
    assert!(
        usage(&store, 10 * MINUTE, 11 * MINUTE).is_empty(),
        "the first recording's minute is empty again"
    );
}

#[test]
fn usage_outlives_retention_and_deletion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.create_function(&crate::version("f", 1)).expect("create");
    let writer = store.start_invocation_writer(2);
    for i in 0..5 {
        writer.record(rec(&format!("r{i}"), "f", MINUTE + i, "succeeded", false, 128, 1));
    }
    writer.flush();
    assert_eq!(
        store.list_invocations("f", 10).expect("list").len(),
        2,
        "retention kept two records"
    );
    store.delete_function("f").expect("delete");
    assert_eq!(
        usage(&store, 0, 10 * MINUTE),
        [one("f", 5, 0, 0, 5, 640)],
        "what was used was used, even by a function since deleted"
    );
}

#[test]
fn invocations_recorded_before_the_usage_schema_are_counted_on_upgrade() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let conn = raw(dir.path());
        conn.execute_batch(include_str!("../../src/migrations/001_initial.sql"))
            .expect("the first schema");
        conn.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO invocations (id, function, version, status, cold_start, started_at, duration_ms, error_json)
             VALUES ('o1', 'old', 1, 'succeeded', 1, 60000, 2.5, NULL),
                    ('o2', 'old', 1, 'crashed', 0, 60001, 0.2, NULL),
                    ('o3', 'old', 1, 'succeeded', 0, 120000, 4.0, NULL);",
        )
        .expect("rows from before the upgrade");
    }
    let store = open(dir.path());
    assert_eq!(
        usage(&store, 0, 10 * MINUTE),
        [one("old", 3, 1, 1, 3 + 1 + 4, 0)],
        "billed time is rounded up to at least 1 ms; memory was not recorded then"
    );
    let o1 = store.get_invocation("o1").expect("get").expect("kept");
    assert_eq!(
        (o1.memory_mb, o1.billed_ms, o1.peak_memory_mb, o1.init),
        (0, 0, None, None)
    );
}
