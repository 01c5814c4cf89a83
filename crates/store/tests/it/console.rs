//! What the console reads and keeps: load failures with their line, test events, and the
//! activity by minute with durations.

use ignis_store::{MinuteUsage, Saved, StoreError, TestEvent, VersionStatus};

use crate::{open, record, t, version, WriteLock};

const MINUTE: i64 = 60_000;

#[test]
fn a_load_failure_keeps_its_detail_until_the_version_is_marked_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.create_function(&version("f", 1)).expect("create");
    let detail = r#"{"type":"SyntaxError","message":"bad","line":3}"#;
    store
        .set_version_failed("f", 1, "version 1 failed", Some(detail))
        .expect("fail");
    let v = store.get_version("f", 1).expect("get").expect("version");
    assert_eq!(v.status, VersionStatus::Error);
    assert_eq!(v.status_reason.as_deref(), Some("version 1 failed"));
    assert_eq!(v.status_detail.as_deref(), Some(detail));
    // Listed functions carry it too (what a restart reads).
    let listed = store.list_functions().expect("list");
    assert_eq!(listed[0].latest.status_detail.as_deref(), Some(detail));
    store
        .set_version_status("f", 1, VersionStatus::Ready, None)
        .expect("ready");
    let v = store.get_version("f", 1).expect("get").expect("version");
    assert_eq!(v.status_detail, None);
    assert!(matches!(
        store.set_version_failed("f", 9, "x", None),
        Err(StoreError::VersionNotFound { version: 9, .. })
    ));
}

fn event(name: &str, json: &str, at: i64) -> TestEvent {
    TestEvent {
        name: name.to_owned(),
        event: json.to_owned(),
        updated_at: t(at),
    }
}

#[test]
fn test_events_are_saved_replaced_capped_and_go_with_their_function() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.create_function(&version("f", 1)).expect("create");
    assert_eq!(
        store
            .put_test_event("f", &event("b", r#"{"n":1}"#, 1_000), 2)
            .expect("put"),
        Saved::Created
    );
    assert_eq!(
        store
            .put_test_event("f", &event("a", "[]", 2_000), 2)
            .expect("put"),
        Saved::Created
    );
    // A third name is refused at the cap; replacing one is not.
    assert_eq!(
        store
            .put_test_event("f", &event("c", "{}", 3_000), 2)
            .expect("put"),
        Saved::Full
    );
    assert_eq!(
        store
            .put_test_event("f", &event("b", r#"{"n":2}"#, 4_000), 2)
            .expect("put"),
        Saved::Replaced
    );
    assert_eq!(
        store.list_test_events("f").expect("list"),
        vec![event("a", "[]", 2_000), event("b", r#"{"n":2}"#, 4_000)]
    );
    assert!(matches!(
        store.put_test_event("nope", &event("a", "{}", 1), 2),
        Err(StoreError::NotFound(_))
    ));
    assert!(store.delete_test_event("f", "a").expect("delete"));
    assert!(!store.delete_test_event("f", "a").expect("delete again"));
    store.delete_function("f").expect("delete function");
    store.create_function(&version("f", 1)).expect("create again");
    assert_eq!(store.list_test_events("f").expect("list"), vec![]);
}

#[test]
fn activity_counts_by_minute_with_durations_committed_or_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let writer = store.start_invocation_writer(100);
    let base = 1_700_000_040_000 - 1_700_000_040_000 % MINUTE;
    let rec = |id: &str, f: &str, at: i64, status: &str, cold: bool, ms: f64| ignis_store::InvocationRecord {
        status: status.to_owned(),
        cold_start: cold,
        duration_ms: ms,
        billed_ms: ms.ceil() as u64,
        ..record(id, f, at, &[])
    };
    writer.record(rec("a1", "a", base + 5, "succeeded", true, 4.0));
    writer.record(rec("a2", "a", base + 10, "timeout", false, 10.0));
    writer.record(rec("b1", "b", base + MINUTE, "succeeded", false, 1.0));
    writer.record(rec("a0", "a", base - MINUTE, "succeeded", false, 99.0));
    writer.flush();
    // One more the writer cannot commit yet: it counts all the same.
    let lock = WriteLock::take(dir.path());
    writer.record(rec("a3", "a", base + MINUTE + 1, "succeeded", false, 2.0));
    let a = store
        .activity(Some("a"), t(base), t(base + 2 * MINUTE))
        .expect("activity");
    lock.release();
    let minute = base / MINUTE;
    assert_eq!(
        a.minutes,
        vec![
            MinuteUsage {
                function: "a".to_owned(),
                minute,
                invocations: 2,
                errors: 1,
                cold_starts: 1,
                billed_ms: 14,
            },
            MinuteUsage {
                function: "a".to_owned(),
                minute: minute + 1,
                invocations: 1,
                errors: 0,
                cold_starts: 0,
                billed_ms: 2,
            },
        ]
    );
    let mut durations: Vec<f64> = a.durations.iter().map(|(_, d)| *d).collect();
    durations.sort_by(f64::total_cmp);
    assert_eq!(durations, vec![2.0, 4.0, 10.0]);
    writer.flush();
    let all = store.activity(None, t(base), t(base + 2 * MINUTE)).expect("all");
    let functions: Vec<&str> = all.minutes.iter().map(|m| m.function.as_str()).collect();
    assert_eq!(functions, vec!["a", "a", "b"]);
    assert_eq!(all.durations.len(), 4);
}
