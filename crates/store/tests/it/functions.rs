//! Functions and versions: create, duplicates, add_version, statuses, listing, delete.

use ignis_store::{StoreError, StoredVersion, VersionStatus};
use time::macros::offset;

use crate::{count, open, raw, record, t, version, WriteLock};

#[test]
fn a_created_function_reads_back_field_for_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut v1 = version("hello", 1);
    // A non-UTC offset and a millisecond part: the instant must survive the round trip.
    v1.created_at = t(1_700_000_000_123).to_offset(offset!(+2));
    store.create_function(&v1).expect("create");

    let expected = StoredVersion {
        function: "hello".to_owned(),
        version: 1,
        runtime: v1.runtime.clone(),
        handler: v1.handler.clone(),
        code: v1.code.clone(),
        code_sha256: v1.code_sha256.clone(),
        spec_json: v1.spec_json.clone(),
        status: VersionStatus::Deploying,
        status_reason: None,
        status_detail: None,
        created_at: t(1_700_000_000_123),
    };
    assert_eq!(
        store.get_version("hello", 1).expect("get"),
        Some(expected.clone())
    );
    let f = store.get_function("hello").expect("get").expect("exists");
    assert_eq!(f.name, "hello");
    assert_eq!(f.created_at, t(1_700_000_000_123));
    assert_eq!(f.updated_at, f.created_at);
    assert_eq!(f.latest, expected);
    assert_eq!(f.last_ready_version, None);
    assert_eq!(store.get_version("hello", 2).expect("get"), None);
    assert_eq!(store.get_function("absent").expect("get"), None);
}

#[test]
fn a_duplicate_name_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.create_function(&version("a", 1)).expect("create");
    let mut other = version("a", 1);
    other.code = "something else".to_owned();
    assert!(matches!(
        store.create_function(&other),
        Err(StoreError::AlreadyExists(name)) if name == "a"
    ));
    let stored = store.get_version("a", 1).expect("get").expect("exists");
    assert_eq!(
        stored.code,
        version("a", 1).code,
        "the first version is untouched"
    );
    assert_eq!(store.list_functions().expect("list").len(), 1);
}

#[test]
fn versions_follow_one_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.create_function(&version("a", 1)).expect("create");
    for wrong in [1, 3, 0] {
        match store.add_version(&version("a", wrong)) {
            Err(StoreError::VersionConflict {
                function,
                latest,
                given,
            }) => assert_eq!((function.as_str(), latest, given), ("a", 1, wrong)),
            other => panic!("version {wrong} after 1: {other:?}"),
        }
    }
    assert!(matches!(
        store.add_version(&version("zz", 2)),
        Err(StoreError::NotFound(name)) if name == "zz"
    ));
    assert_eq!(
        store.get_version("a", 3).expect("get"),
        None,
        "a refused version stores nothing"
    );

    store.add_version(&version("a", 2)).expect("v2");
    let f = store.get_function("a").expect("get").expect("exists");
    assert_eq!(f.latest.version, 2);
    assert_eq!(f.latest.code, version("a", 2).code);
    assert_eq!(
        f.created_at,
        version("a", 1).created_at,
        "created_at is version 1's"
    );
    assert_eq!(
        f.updated_at,
        version("a", 2).created_at,
        "updated_at is the latest's"
    );
    assert_eq!(
        store.get_version("a", 1).expect("get").expect("v1 kept").code,
        version("a", 1).code
    );
    assert!(matches!(
        store.add_version(&version("a", 2)),
        Err(StoreError::VersionConflict { latest: 2, .. })
    ));
}

#[test]
fn statuses_and_the_last_ready_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.create_function(&version("a", 1)).expect("create");
    for v in 2..=4 {
        store.add_version(&version("a", v)).expect("add");
    }
    store
        .set_version_status("a", 1, VersionStatus::Ready, None)
        .expect("status");
    store
        .set_version_status("a", 2, VersionStatus::Ready, None)
        .expect("status");
    store
        .set_version_status("a", 3, VersionStatus::Error, Some("SyntaxError line 3"))
        .expect("status");

    let v3 = store.get_version("a", 3).expect("get").expect("exists");
    assert_eq!(v3.status, VersionStatus::Error);
    assert_eq!(v3.status_reason.as_deref(), Some("SyntaxError line 3"));
    let f = store.get_function("a").expect("get").expect("exists");
    assert_eq!(f.latest.version, 4);
    assert_eq!(f.latest.status, VersionStatus::Deploying);
    assert_eq!(
        f.last_ready_version,
        Some(2),
        "the highest ready version, not the latest"
    );

    // A later success moves it; a status can be replaced, and its reason with it.
    store
        .set_version_status("a", 3, VersionStatus::Ready, None)
        .expect("status");
    assert_eq!(
        store.get_version("a", 3).expect("get").expect("v3").status_reason,
        None
    );
    store
        .set_version_status("a", 4, VersionStatus::Ready, None)
        .expect("status");
    let listed = store.list_functions().expect("list");
    assert_eq!(listed[0].last_ready_version, Some(4));
    assert_eq!(listed[0], store.get_function("a").expect("get").expect("exists"));

    for (name, v) in [("a", 5), ("zz", 1)] {
        assert!(matches!(
            store.set_version_status(name, v, VersionStatus::Ready, None),
            Err(StoreError::VersionNotFound { function, version }) if function == name && version == v
        ));
    }
}

#[test]
fn functions_are_listed_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    assert!(store.list_functions().expect("list").is_empty());
    for name in ["charlie", "alpha", "bravo"] {
        store.create_function(&version(name, 1)).expect("create");
    }
    store.add_version(&version("bravo", 2)).expect("add");
    let list = store.list_functions().expect("list");
    assert_eq!(
        list.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["alpha", "bravo", "charlie"]
    );
    assert_eq!(
        list.iter().map(|f| f.latest.version).collect::<Vec<_>>(),
        [1, 2, 1]
    );
}

#[test]
fn deleting_a_function_removes_its_versions_invocations_and_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.create_function(&version("doomed", 1)).expect("create");
    store.add_version(&version("doomed", 2)).expect("add");
    store.create_function(&version("kept", 1)).expect("create");
    let writer = store.start_invocation_writer(100);
    writer.record(record("d1", "doomed", 1_000, &["d1 out"]));
    writer.record(record("k1", "kept", 1_000, &["k1 out"]));
    writer.flush();
    // Possibly still pending when the delete comes: it must go as well, and not come back
    // when the writer catches up.
    writer.record(record("d2", "doomed", 2_000, &["d2 out"]));

    assert!(store.delete_function("doomed").expect("delete"));
    writer.flush();

    assert_eq!(store.get_function("doomed").expect("get"), None);
    assert_eq!(store.get_version("doomed", 1).expect("get"), None);
    for id in ["d1", "d2"] {
        assert_eq!(store.get_invocation(id).expect("get"), None, "{id}");
    }
    assert!(store.list_invocations("doomed", 10).expect("list").is_empty());
    assert!(store.recent_logs("doomed", 10).expect("logs").is_empty());
    let db = raw(dir.path());
    assert_eq!(count(&db, "function_versions", "function", "doomed"), 0);
    assert_eq!(count(&db, "invocations", "function", "doomed"), 0);
    assert_eq!(count(&db, "log_lines", "function", "doomed"), 0);

    // The other function is untouched.
    assert!(store.get_function("kept").expect("get").is_some());
    assert_eq!(
        store.get_invocation("k1").expect("get"),
        Some(record("k1", "kept", 1_000, &["k1 out"]))
    );
    assert_eq!(count(&db, "log_lines", "function", "kept"), 1);

    assert!(!store.delete_function("doomed").expect("delete again"));
    assert!(!store.delete_function("never").expect("delete unknown"));
    // The name is free again, with no history.
    store.create_function(&version("doomed", 1)).expect("re-create");
    assert!(store.list_invocations("doomed", 10).expect("list").is_empty());
}

#[test]
fn a_delete_during_a_blocked_commit_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.create_function(&version("doomed", 1)).expect("create");
    let writer = store.start_invocation_writer(100);
    // The writer takes the record and then waits on the lock; the delete comes meanwhile.
    let lock = WriteLock::take(dir.path());
    writer.record(record("d1", "doomed", 1_000, &["d1 out"]));
    let deleting = {
        let store = store.clone();
        std::thread::spawn(move || store.delete_function("doomed"))
    };
    lock.release();
    assert!(deleting.join().expect("delete thread").expect("delete"));
    writer.flush();
    let db = raw(dir.path());
    assert_eq!(
        count(&db, "invocations", "function", "doomed"),
        0,
        "the record came back"
    );
    assert_eq!(count(&db, "log_lines", "function", "doomed"), 0);
    assert_eq!(store.get_invocation("d1").expect("get"), None);
}
