//! Code packages: a function made of several files, sent as `files` (path → text) or as a
//! `zip` archive. Paths are checked here once (relative, no `..`, no links or devices), the
//! size and file count are bounded while reading (a zip bomb stops at the limit, whatever
//! its headers claim), and a package is named by the SHA-256 of its file list.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Runtime;

/// Largest accepted zip archive (decoded from base64), as Lambda's `ZipFile`.
pub const MAX_ZIP_BYTES: usize = 50 * 1024 * 1024;
/// Largest total size of a package's files, unpacked, as Lambda's.
pub const MAX_UNPACKED_BYTES: u64 = 250 * 1024 * 1024;
/// Most files in one package.
pub const MAX_FILES: usize = 10_000;
/// Longest path of a file in a package, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Deepest folder nesting in a package.
pub const MAX_DEPTH: usize = 32;

/// Why a package was refused. `code` is the stable error code the API answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PackageError {
    /// `invalid_zip`, `invalid_package_path`, `unsupported_zip_entry`, `too_many_files`,
    /// `package_too_large`.
    pub code: &'static str,
    pub message: String,
}

impl PackageError {
    fn new(code: &'static str, message: String) -> PackageError {
        PackageError { code, message }
    }
}

/// One file of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFile {
    /// Relative, `/`-separated, checked by [`check_path`].
    pub path: String,
    pub sha256: String,
    pub content: Arc<[u8]>,
}

/// What the API shows of a file: its path, size and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// A checked package: its files sorted by path, and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    files: Vec<PackageFile>,
    sha256: String,
}

impl Package {
    /// A package of these files (any order); checks paths, count and size.
    pub fn new(files: Vec<(String, Vec<u8>)>) -> Result<Package, PackageError> {
        if files.is_empty() {
            return Err(PackageError::new(
                "invalid_package_path",
                "a package must hold at least one file".to_owned(),
            ));
        }
        if files.len() > MAX_FILES {
            return Err(too_many(files.len()));
        }
        let mut total: u64 = 0;
        let mut out = Vec::with_capacity(files.len());
        for (path, content) in files {
            check_path(&path)?;
            total += content.len() as u64;
            if total > MAX_UNPACKED_BYTES {
                return Err(too_large());
            }
            out.push(PackageFile {
                sha256: hex::encode(Sha256::digest(&content)),
                path,
                content: Arc::from(content),
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        check_tree(&out)?;
        let sha256 = manifest_sha256(out.iter().map(|f| (f.path.as_str(), f.sha256.as_str())));
        Ok(Package { files: out, sha256 })
    }

    /// Reads a zip archive: regular files only (directories are implied by paths), no
    /// links, devices or encrypted entries, at most [`MAX_FILES`] files and
    /// [`MAX_UNPACKED_BYTES`] in all, counted as the data is inflated.
    pub fn from_zip(bytes: &[u8]) -> Result<Package, PackageError> {
        Package::from_zip_within(bytes, MAX_UNPACKED_BYTES)
    }

    /// [`Package::from_zip`] with `max_unpacked` bytes in all.
    fn from_zip_within(bytes: &[u8], max_unpacked: u64) -> Result<Package, PackageError> {
        if bytes.len() > MAX_ZIP_BYTES {
            return Err(PackageError::new(
                "package_too_large",
                format!(
                    "the zip archive is {} bytes; the limit is {MAX_ZIP_BYTES} bytes (50 MiB)",
                    bytes.len()
                ),
            ));
        }
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| {
            PackageError::new("invalid_zip", format!("zip is not a readable zip archive: {e}"))
        })?;
        if archive.len() > MAX_FILES {
            return Err(too_many(archive.len()));
        }
        let mut files = Vec::new();
        let mut total: u64 = 0;
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(|e| {
                PackageError::new("invalid_zip", format!("zip entry {i} cannot be read: {e}"))
            })?;
            let name = String::from_utf8(entry.name_raw().to_vec()).map_err(|_| {
                PackageError::new(
                    "invalid_package_path",
                    format!("zip entry {i} has a name that is not UTF-8"),
                )
            })?;
            let kind = entry.unix_mode().map_or(0, |m| m & 0o170_000);
            if entry.is_symlink() || kind == 0o120_000 {
                return Err(unsupported(&name, "a symbolic link"));
            }
            if entry.is_dir() || kind == 0o040_000 {
                // Directories come from the files' paths; an empty one is not kept.
                check_path(name.trim_end_matches('/'))?;
                continue;
            }
            if kind != 0 && kind != 0o100_000 {
                return Err(unsupported(&name, "a device, pipe or socket"));
            }
            if entry.encrypted() {
                return Err(unsupported(&name, "encrypted"));
            }
            check_path(&name)?;
            // The header's size is a claim; the data read is what counts.
            if total.saturating_add(entry.size()) > max_unpacked {
                return Err(too_large());
            }
            let mut content = Vec::new();
            let left = max_unpacked - total;
            (&mut entry)
                .take(left + 1)
                .read_to_end(&mut content)
                .map_err(|e| {
                    PackageError::new(
                        "invalid_zip",
                        format!("zip entry {name:?} cannot be inflated: {e}"),
                    )
                })?;
            total += content.len() as u64;
            if total > max_unpacked {
                return Err(too_large());
            }
            files.push((name, content));
        }
        let names: BTreeSet<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        if names.len() != files.len() {
            return Err(PackageError::new(
                "invalid_package_path",
                "the zip archive holds the same path twice".to_owned(),
            ));
        }
        Package::new(files)
    }

    /// The package's files, sorted by path.
    pub fn files(&self) -> &[PackageFile] {
        &self.files
    }

    /// The hash that names the package: of its sorted list of (path, file hash).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn entries(&self) -> Vec<FileEntry> {
        self.files
            .iter()
            .map(|f| FileEntry {
                path: f.path.clone(),
                size: f.content.len() as u64,
                sha256: f.sha256.clone(),
            })
            .collect()
    }

    pub fn contains(&self, path: &str) -> bool {
        self.files.binary_search_by(|f| f.path.as_str().cmp(path)).is_ok()
    }

    /// The package as a zip archive (deflated), paths in order.
    pub fn to_zip(&self) -> Result<Vec<u8>, PackageError> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o644)
            .large_file(false);
        let failed =
            |e: &dyn std::fmt::Display| PackageError::new("invalid_zip", format!("writing the zip: {e}"));
        for f in &self.files {
            writer
                .start_file(f.path.as_str(), options)
                .map_err(|e| failed(&e))?;
            writer.write_all(&f.content).map_err(|e| failed(&e))?;
        }
        Ok(writer.finish().map_err(|e| failed(&e))?.into_inner())
    }
}

/// The hash of a package from its sorted (path, file hash) list; the same as
/// [`Package::sha256`], for a package read back from its parts.
pub fn manifest_sha256<'a>(files: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut hasher = Sha256::new();
    for (path, sha) in files {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(sha.as_bytes());
        hasher.update([b'\n']);
    }
    hex::encode(hasher.finalize())
}

/// Checks a path inside a package: relative, `/`-separated, no empty, `.` or `..` part, no
/// backslash, NUL or control character, bounded length and depth.
pub fn check_path(path: &str) -> Result<(), PackageError> {
    let bad = |why: &str| PackageError::new("invalid_package_path", format!("path {path:?} {why}"));
    if path.is_empty() {
        return Err(bad("is empty"));
    }
    if path.starts_with('/') {
        return Err(bad("is absolute; paths in a package are relative to its root"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(bad(&format!("is longer than {MAX_PATH_BYTES} bytes")));
    }
    if path.contains('\\') {
        return Err(bad("holds a backslash; use '/' between folders"));
    }
    if path.chars().any(char::is_control) {
        return Err(bad("holds a control character"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() > MAX_DEPTH {
        return Err(bad(&format!("is nested deeper than {MAX_DEPTH} folders")));
    }
    for part in parts {
        match part {
            "" => return Err(bad("has an empty part ('//' or a trailing '/')")),
            "." | ".." => return Err(bad("holds '.' or '..'; paths may not leave or name their folder")),
            p if p.len() > 255 => return Err(bad("has a part longer than 255 bytes")),
            _ => {}
        }
    }
    Ok(())
}

/// No path may be both a file and a folder (`a` and `a/b`). `files` is sorted by path.
fn check_tree(files: &[PackageFile]) -> Result<(), PackageError> {
    let paths: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    for f in files {
        let mut at = f.path.as_str();
        while let Some((parent, _)) = at.rsplit_once('/') {
            if paths.contains(parent) {
                return Err(PackageError::new(
                    "invalid_package_path",
                    format!("{parent:?} is both a file and the folder of {:?}", f.path),
                ));
            }
            at = parent;
        }
    }
    Ok(())
}

fn too_many(n: usize) -> PackageError {
    PackageError::new(
        "too_many_files",
        format!("the package holds {n} entries; the limit is {MAX_FILES} files"),
    )
}

fn too_large() -> PackageError {
    PackageError::new(
        "package_too_large",
        format!("the package's files add up to more than {MAX_UNPACKED_BYTES} bytes (250 MiB) unpacked"),
    )
}

fn unsupported(name: &str, what: &str) -> PackageError {
    PackageError::new(
        "unsupported_zip_entry",
        format!("zip entry {name:?} is {what}; a package holds regular files only"),
    )
}

/// Where a package's handler is: the entry file (relative to the package root) and the
/// name of the function it exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub file: String,
    pub function: String,
}

/// Resolves a Lambda-style handler (`app.lambda_handler`, `hello_world/app.lambda_handler`,
/// `src/lambda.handler`) against a package's files, as Lambda finds it: for Python
/// `path/module.py` or the package `path/module/__init__.py`; for JavaScript
/// `path/file.js`, `.mjs`, `.cjs`; for TypeScript `.ts`, `.mts`, `.cts` first, then the
/// JavaScript ones (Bun runs both).
pub fn resolve_handler(
    runtime: Runtime,
    handler: &str,
    exists: impl Fn(&str) -> bool,
) -> Result<Entry, String> {
    let format = match runtime {
        Runtime::Python => {
            "path/module.function, such as app.lambda_handler or hello_world/app.lambda_handler"
        }
        Runtime::Javascript | Runtime::Typescript => {
            "path/file.export, such as index.handler or src/lambda.handler"
        }
    };
    let Some((module, function)) = handler.rsplit_once('.') else {
        return Err(format!(
            "handler {handler:?} must name a file and a function in Lambda's form {format}"
        ));
    };
    let ident = |s: &str| {
        let mut c = s.chars();
        c.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    if !ident(function) || function.len() > 128 {
        return Err(format!(
            "handler {handler:?}: {function:?} is not a function name (letters, digits, '_' or '$', not starting with a digit)"
        ));
    }
    if module.is_empty() || check_path(module).is_err() {
        return Err(format!("handler {handler:?} must be in Lambda's form {format}"));
    }
    let candidates: Vec<String> = match runtime {
        Runtime::Python => {
            if module.contains('.') {
                // Lambda reads dots in the module part as package separators too.
                let as_path = module.replace('.', "/");
                vec![format!("{as_path}.py"), format!("{as_path}/__init__.py")]
            } else {
                vec![format!("{module}.py"), format!("{module}/__init__.py")]
            }
        }
        Runtime::Javascript => ["js", "mjs", "cjs"]
            .iter()
            .map(|e| format!("{module}.{e}"))
            .collect(),
        Runtime::Typescript => ["ts", "mts", "cts", "js", "mjs", "cjs"]
            .iter()
            .map(|e| format!("{module}.{e}"))
            .collect(),
    };
    match candidates.iter().find(|c| exists(c)) {
        Some(file) => Ok(Entry {
            file: file.clone(),
            function: function.to_owned(),
        }),
        None => Err(format!(
            "handler {handler:?}: the package has none of {}",
            candidates.join(", ")
        )),
    }
}

#[cfg(test)]
#[path = "package/tests.rs"]
mod tests;
