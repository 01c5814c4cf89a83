//! Packages: stored once per hash with the version using them, read back, collected.

use std::sync::Arc;

use ignis_store::{NewPackage, NewPackageFile, StoreError, VersionPackage};

use crate::{open, version};

fn package(sha: &str, files: &[(&str, &str)]) -> Arc<NewPackage> {
    Arc::new(NewPackage {
        sha256: sha.to_owned(),
        files: files
            .iter()
            .map(|(path, content)| NewPackageFile {
                path: (*path).to_owned(),
                sha256: format!("blob-{content}"),
                content: Arc::from(content.as_bytes()),
            })
            .collect(),
    })
}

fn count(dir: &std::path::Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(dir.join("ignis.db")).expect("open");
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

#[test]
fn a_package_is_stored_once_and_read_back_in_path_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let p = package("pkg-1", &[("b/app.py", "shared"), ("a.py", "one")]);
    let mut v1 = version("alpha", 1);
    v1.package = Some(VersionPackage::New(p.clone()));
    store.create_function(&v1).expect("create");
    let mut v2 = version("alpha", 2);
    v2.package = Some(VersionPackage::New(p.clone()));
    store.add_version(&v2).expect("same package again");
    // Another package sharing a file's content keeps one copy of it.
    let mut b = version("beta", 1);
    b.package = Some(VersionPackage::New(package("pkg-2", &[("x.py", "shared")])));
    store.create_function(&b).expect("create beta");
    assert_eq!(count(dir.path(), "packages"), 2);
    assert_eq!(count(dir.path(), "package_blobs"), 2);

    let files = store.package_files("pkg-1").expect("read").expect("stored");
    let listed: Vec<(&str, u64)> = files.iter().map(|f| (f.path.as_str(), f.size)).collect();
    assert_eq!(listed, [("a.py", 3), ("b/app.py", 6)]);
    let content = store.package_content("pkg-1").expect("read").expect("stored");
    assert_eq!(content[1], ("b/app.py".to_owned(), b"shared".to_vec()));
    assert_eq!(store.package_files("unknown").expect("read"), None);
}

#[test]
fn a_rejected_version_stores_no_package_and_deleting_collects_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.create_function(&version("alpha", 1)).expect("create");
    let mut again = version("alpha", 1);
    again.package = Some(VersionPackage::New(package("pkg-1", &[("a.py", "one")])));
    assert!(matches!(
        store.create_function(&again),
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(
        count(dir.path(), "packages"),
        0,
        "nothing of a rejected create is kept"
    );

    let mut a = version("beta", 1);
    a.package = Some(VersionPackage::New(package(
        "pkg-1",
        &[("a.py", "one"), ("s.py", "shared")],
    )));
    store.create_function(&a).expect("create beta");
    let mut b = version("gamma", 1);
    b.package = Some(VersionPackage::New(package("pkg-2", &[("s.py", "shared")])));
    store.create_function(&b).expect("create gamma");
    assert!(store.delete_function("beta").expect("delete"));
    assert_eq!(store.package_files("pkg-1").expect("read"), None);
    assert_eq!(
        count(dir.path(), "package_blobs"),
        1,
        "the shared content stays for gamma"
    );
    assert!(store.delete_function("gamma").expect("delete"));
    assert_eq!(count(dir.path(), "package_blobs"), 0);
}

#[test]
fn a_version_can_keep_a_stored_package_by_hash_but_not_name_an_unknown_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut v1 = version("alpha", 1);
    v1.package = Some(VersionPackage::New(package("pkg-1", &[("a.py", "one")])));
    store.create_function(&v1).expect("create");
    let mut v2 = version("alpha", 2);
    v2.package = Some(VersionPackage::Stored("pkg-1".to_owned()));
    store.add_version(&v2).expect("the stored package is kept");
    assert_eq!(count(dir.path(), "packages"), 1);
    let mut v3 = version("alpha", 3);
    v3.package = Some(VersionPackage::Stored("pkg-unknown".to_owned()));
    assert!(
        store.add_version(&v3).is_err(),
        "a version cannot name a package that is not stored"
    );
    assert_eq!(
        store.get_version("alpha", 3).expect("read"),
        None,
        "nothing of the refused version is kept"
    );
}
