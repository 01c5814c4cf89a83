//! Packages unpacked on the host, one folder per hash under `<data>/packages`, which the
//! sandbox shows read-only at an instance's code root. A cache: the store holds the files,
//! and a missing folder is made again from it. A folder appears only complete: it is
//! written under a temporary name, synced, then renamed; temporary folders left by a kill
//! are removed at start, so a half-unpacked package is never used.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ignis_core::package::{FileEntry, Package};
use ignis_store::Store;

use crate::ControlError;

/// The prefix of folders being written.
const TEMPORARY: &str = ".tmp-";

#[derive(Debug)]
pub struct PackageCache {
    dir: PathBuf,
}

impl PackageCache {
    /// The cache in `dir`, without what an interrupted unpack left there.
    pub fn open(dir: &Path) -> PackageCache {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                // `.merged` (packages with their dependencies, for a server without the
                // sandbox) is made again on demand: nothing uses it before a deploy.
                if entry.file_name().to_string_lossy().starts_with(TEMPORARY)
                    || entry.file_name() == ".merged"
                {
                    if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                        tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a half-unpacked package");
                    }
                }
            }
        }
        PackageCache { dir: dir.to_owned() }
    }

    /// The folder of package `sha256`, unpacked from `package` (when the caller has its
    /// files at hand) or from the store, unless it is there already. Blocking.
    pub fn ensure(&self, store: &Store, sha256: &str, package: Option<&Package>) -> std::io::Result<PathBuf> {
        if sha256.is_empty() || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(std::io::Error::other(format!("{sha256:?} is not a package hash")));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.dir)?;
        let target = self.dir.join(sha256);
        if target.is_dir() {
            return Ok(target);
        }
        let read;
        let package = match package {
            Some(p) => p,
            None => {
                let files = store
                    .package_content(sha256)
                    .map_err(std::io::Error::other)?
                    .ok_or_else(|| std::io::Error::other(format!("package {sha256} is not in the store")))?;
                read = Package::new(files).map_err(std::io::Error::other)?;
                &read
            }
        };
        // What is unpacked is what the name says: a store row that changed is not used.
        if package.sha256() != sha256 {
            return Err(std::io::Error::other(format!(
                "package {sha256} read back with the hash {}",
                package.sha256()
            )));
        }
        let temporary = self
            .dir
            .join(format!("{TEMPORARY}{sha256}-{:016x}", rand::random::<u64>()));
        let written = write_tree(&temporary, package).and_then(|()| {
            match std::fs::rename(&temporary, &target) {
                Ok(()) => sync_dir(&self.dir),
                // Another deploy of the same package was faster: its copy is as good.
                Err(_) if target.is_dir() => std::fs::remove_dir_all(&temporary),
                Err(e) => Err(e),
            }
        });
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&temporary);
            return Err(e);
        }
        Ok(target)
    }
}

impl PackageCache {
    /// Removes unpacked packages the store no longer holds (their last version was
    /// deleted). Called at start, before any instance can be using one. Blocking.
    pub fn collect(&self, store: &Store) -> std::io::Result<usize> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(0);
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if store
                .package_files(&name)
                .map_err(std::io::Error::other)?
                .is_none()
            {
                std::fs::remove_dir_all(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Writes every file of `package` under `root` (folders 0755, files 0644, readable by the
/// instances' users) and syncs files and folders.
fn write_tree(root: &Path, package: &Package) -> std::io::Result<()> {
    let mut dirs = std::collections::BTreeSet::new();
    let builder = {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true).mode(0o755);
        b
    };
    builder.create(root)?;
    dirs.insert(root.to_owned());
    for f in package.files() {
        // Checked paths: relative, no `..`; nothing lands outside `root`.
        let path = root.join(&f.path);
        if let Some(parent) = path.parent() {
            builder.create(parent)?;
            let mut at = parent;
            while at.starts_with(root) && dirs.insert(at.to_owned()) {
                match at.parent() {
                    Some(p) => at = p,
                    None => break,
                }
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)?;
        file.write_all(&f.content)?;
        file.sync_all()?;
    }
    for dir in dirs.iter().rev() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl crate::Platform {
    /// The files of the newest version of `name` (path, size, hash), when it is a package;
    /// `None` for a one-file function.
    pub async fn package_files(&self, name: &str) -> Result<Option<Vec<FileEntry>>, ControlError> {
        let slot = self
            .slot(name)
            .ok_or_else(|| ControlError::NotFound(name.to_owned()))?;
        let Some(sha) = slot.latest().package_sha256.clone() else {
            return Ok(None);
        };
        let store = self.store.clone();
        let files = tokio::task::spawn_blocking(move || store.package_files(&sha)).await??;
        Ok(files.map(file_entries))
    }

    /// The code of the newest version of `name` as a zip archive: its package's files, or
    /// its one file under the name the runtime gives it (`main.py`, `index.js`, `index.ts`).
    pub async fn code_zip(&self, name: &str) -> Result<Vec<u8>, ControlError> {
        let slot = self
            .slot(name)
            .ok_or_else(|| ControlError::NotFound(name.to_owned()))?;
        let spec = slot.latest();
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let files = match &spec.package_sha256 {
                Some(sha) => store.package_content(sha)?.ok_or_else(|| {
                    ControlError::Io(std::io::Error::other(format!(
                        "package {sha} is not in the store"
                    )))
                })?,
                None => vec![(
                    spec.runtime.source_file().to_owned(),
                    spec.code.clone().into_bytes(),
                )],
            };
            let zip = Package::new(files)
                .and_then(|p| p.to_zip())
                .map_err(|e| ControlError::Io(std::io::Error::other(e)))?;
            Ok(zip)
        })
        .await?
    }
}

/// A stored package's files as the API lists them (a function's package or a layer's).
pub(crate) fn file_entries(files: Vec<ignis_store::StoredPackageFile>) -> Vec<FileEntry> {
    files
        .into_iter()
        .map(|f| FileEntry {
            path: f.path,
            size: f.size,
            sha256: f.sha256,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_is_unpacked_once_and_leftovers_go_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let cache_dir = dir.path().join("packages");
        std::fs::create_dir_all(cache_dir.join(".tmp-half")).expect("a leftover");
        std::fs::create_dir_all(cache_dir.join(".merged/a-b")).expect("a merged folder");
        let cache = PackageCache::open(&cache_dir);
        assert!(
            !cache_dir.join(".merged").exists(),
            "merged folders are made again on demand"
        );
        assert!(
            !cache_dir.join(".tmp-half").exists(),
            "a half-written folder is removed"
        );
        let package = Package::new(vec![
            ("a/b/c.py".to_owned(), b"x = 1\n".to_vec()),
            ("main.py".to_owned(), b"".to_vec()),
        ])
        .expect("package");
        let at = cache
            .ensure(&store, package.sha256(), Some(&package))
            .expect("unpack");
        assert_eq!(std::fs::read(at.join("a/b/c.py")).expect("read"), b"x = 1\n");
        assert_eq!(at, cache_dir.join(package.sha256()));
        // Present already: not written again (and the store is not asked).
        assert_eq!(cache.ensure(&store, package.sha256(), None).expect("cached"), at);
        let names: Vec<String> = std::fs::read_dir(&cache_dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [package.sha256().to_owned()]);
        // Unknown to the store and not unpacked: an error, nothing made.
        assert!(cache.ensure(&store, "abcd", None).is_err());
        assert!(cache.ensure(&store, "../x", None).is_err());
    }
}
