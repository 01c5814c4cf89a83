//! Code packages, content-addressed: a package row per package hash, its file list, and
//! each file's content once per hash. Written in the transaction that stores the version
//! using it; collected when the last version using it goes.

use std::sync::Arc;

use rusqlite::{params, OptionalExtension, Transaction};

use crate::{ms, Store, StoreError};

/// A package to store with a version.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPackage {
    pub sha256: String,
    pub files: Vec<NewPackageFile>,
}

/// The package of a version: new files, or a package stored already (kept by an update
/// that gave no code), by hash.
#[derive(Debug, Clone, PartialEq)]
pub enum VersionPackage {
    New(Arc<NewPackage>),
    Stored(String),
}

impl VersionPackage {
    pub fn sha256(&self) -> &str {
        match self {
            VersionPackage::New(p) => &p.sha256,
            VersionPackage::Stored(sha) => sha,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewPackageFile {
    pub path: String,
    pub sha256: String,
    pub content: Arc<[u8]>,
}

/// A package's files as (path, content), sorted by path.
pub type PackageContent = Vec<(String, Vec<u8>)>;

/// One file of a stored package, without its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPackageFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl Store {
    /// The files of package `sha256`, sorted by path; `None` if no such package.
    pub fn package_files(&self, sha256: &str) -> Result<Option<Vec<StoredPackageFile>>, StoreError> {
        let conn = self.conn();
        let known: Option<String> = conn
            .query_row("SELECT sha256 FROM packages WHERE sha256 = ?1", [sha256], |r| {
                r.get(0)
            })
            .optional()?;
        if known.is_none() {
            return Ok(None);
        }
        let mut stmt = conn.prepare_cached(
            "SELECT path, size, sha256 FROM package_files WHERE package = ?1 ORDER BY path",
        )?;
        let rows = stmt.query_map([sha256], |r| {
            Ok(StoredPackageFile {
                path: r.get(0)?,
                size: r.get(1)?,
                sha256: r.get(2)?,
            })
        })?;
        Ok(Some(rows.collect::<Result<_, _>>()?))
    }

    /// The files of package `sha256` with their content, sorted by path.
    pub fn package_content(&self, sha256: &str) -> Result<Option<PackageContent>, StoreError> {
        let Some(files) = self.package_files(sha256)? else {
            return Ok(None);
        };
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT content FROM package_blobs WHERE sha256 = ?1")?;
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            let content: Vec<u8> = stmt.query_row([&f.sha256], |r| r.get(0))?;
            out.push((f.path, content));
        }
        Ok(Some(out))
    }
}

/// Stores `p` unless it is stored already (its blobs likewise).
pub(crate) fn insert_package(tx: &Transaction<'_>, p: &NewPackage, now_ms: i64) -> Result<(), StoreError> {
    let inserted = tx.execute(
        "INSERT INTO packages (sha256, created_at) VALUES (?1, ?2) ON CONFLICT (sha256) DO NOTHING",
        params![p.sha256, now_ms],
    )?;
    if inserted == 0 {
        return Ok(());
    }
    let mut blob = tx.prepare_cached(
        "INSERT INTO package_blobs (sha256, content) VALUES (?1, ?2) ON CONFLICT (sha256) DO NOTHING",
    )?;
    let mut file =
        tx.prepare_cached("INSERT INTO package_files (package, path, size, sha256) VALUES (?1, ?2, ?3, ?4)")?;
    for f in &p.files {
        blob.execute(params![f.sha256, &f.content[..]])?;
        let size = i64::try_from(f.content.len()).unwrap_or(i64::MAX);
        file.execute(params![p.sha256, f.path, size, f.sha256])?;
    }
    Ok(())
}

/// Deletes the packages no version uses any more, and the contents no package holds.
pub(crate) fn collect_packages(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM packages WHERE sha256 NOT IN
         (SELECT package_sha256 FROM function_versions WHERE package_sha256 IS NOT NULL)
         AND sha256 NOT IN (SELECT package_sha256 FROM layer_versions)",
        [],
    )?;
    tx.execute(
        "DELETE FROM package_blobs WHERE sha256 NOT IN (SELECT sha256 FROM package_files)",
        [],
    )?;
    Ok(())
}

/// For `ms`'s callers: the timestamp form the store keeps.
pub(crate) fn now(created_at: time::OffsetDateTime) -> i64 {
    ms(created_at)
}
