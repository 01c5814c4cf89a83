//! Integration tests of the store against a real SQLite file.

use ignis_store::{InvocationRecord, LogLine, NewVersion, Store, StoreError, VersionStatus};
use time::OffsetDateTime;

fn t(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).expect("valid time")
}

fn version(name: &str, v: u32) -> NewVersion {
    NewVersion {
        function: name.to_owned(),
        version: v,
        runtime: "python".to_owned(),
        handler: "handler".to_owned(),
        code: format!("# v{v}"),
        code_sha256: format!("sha{v}"),
        spec_json: "{}".to_owned(),
        created_at: t(1_700_000_000_000 + i64::from(v)),
    }
}

fn record(id: &str, function: &str, at: i64, lines: &[&str]) -> InvocationRecord {
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
    }
}

#[test]
fn functions_and_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.create_function(&version("b", 1)).expect("create b");
    store.create_function(&version("a", 1)).expect("create a");
    assert!(matches!(
        store.create_function(&version("a", 1)),
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        store.add_version(&version("a", 3)),
        Err(StoreError::VersionConflict { latest: 1, .. })
    ));
    assert!(matches!(
        store.add_version(&version("zz", 2)),
        Err(StoreError::NotFound(_))
    ));

    store
        .set_version_status("a", 1, VersionStatus::Ready, None)
        .expect("status");
    store.add_version(&version("a", 2)).expect("v2");
    store
        .set_version_status("a", 2, VersionStatus::Error, Some("SyntaxError line 3"))
        .expect("status");

    let list = store.list_functions().expect("list");
    assert_eq!(
        list.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let a = store.get_function("a").expect("get").expect("exists");
    assert_eq!(a.latest.version, 2);
    assert_eq!(a.latest.status, VersionStatus::Error);
    assert_eq!(a.latest.status_reason.as_deref(), Some("SyntaxError line 3"));
    assert_eq!(a.last_ready_version, Some(1));
    assert_eq!(a.created_at, t(1_700_000_000_001));
    assert_eq!(a.updated_at, t(1_700_000_000_002));
    assert_eq!(store.get_version("a", 1).expect("get").expect("v1").code, "# v1");
    assert_eq!(list[1].last_ready_version, None);

    assert!(store.delete_function("a").expect("delete"));
    assert!(!store.delete_function("a").expect("delete again"));
    assert!(store.get_version("a", 1).expect("get").is_none());
    assert!(store.get_function("a").expect("get").is_none());
}

#[test]
fn records_are_readable_before_and_after_commit_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.create_function(&version("f", 1)).expect("create");
    let writer = store.start_invocation_writer(100);
    writer.record(record("i1", "f", 1000, &["one", "two"]));
    // Read-your-writes: visible whether or not the writer has committed yet.
    let got = store.get_invocation("i1").expect("get").expect("present");
    assert_eq!(got.logs.len(), 2);
    writer.flush();
    drop(store);

    let store = Store::open(dir.path()).expect("reopen");
    let got = store.get_invocation("i1").expect("get").expect("persisted");
    assert_eq!(got, record("i1", "f", 1000, &["one", "two"]));
    assert!(store.get_invocation("nope").expect("get").is_none());
}

#[test]
fn listing_order_logs_and_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let writer = store.start_invocation_writer(3);
    for i in 0..5 {
        writer.record(record(&format!("i{i}"), "f", 1000 + i, &[&format!("line {i}")]));
    }
    writer.record(record("other", "g", 5000, &["g line"]));
    writer.flush();
    let list = store.list_invocations("f", 10).expect("list");
    assert_eq!(
        list.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["i4", "i3", "i2"]
    );
    assert!(list.iter().all(|r| r.logs.is_empty()));
    assert!(
        store.get_invocation("i0").expect("get").is_none(),
        "trimmed by retention"
    );
    let logs = store.recent_logs("f", 2).expect("logs");
    assert_eq!(
        logs.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
        ["line 3", "line 4"]
    );
    assert_eq!(logs[1].invocation_id, "i4");
    assert_eq!(
        store.recent_logs("f", 100).expect("logs").len(),
        3,
        "log lines of trimmed invocations go too"
    );
    assert_eq!(store.list_invocations("f", 1).expect("list").len(), 1);
    store.delete_function("f").expect("delete");
    assert!(store.list_invocations("f", 10).expect("list").is_empty());
    assert_eq!(store.list_invocations("g", 10).expect("list").len(), 1);
}

#[test]
fn reopening_runs_migrations_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    Store::open(dir.path())
        .expect("open")
        .create_function(&version("f", 1))
        .expect("create");
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.list_functions().expect("list").len(), 1);
}
