//! Packing a folder into a function package: which files go in (not `.git/`, not
//! `__pycache__/`, not `node_modules/` beside a root `package.json`, not what a root
//! `.ignisignore` lists), refusing links and special files, and the zip the API takes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ignis_core::package::Package;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// The file at a package's root that lists what to leave out, in `.gitignore`'s syntax.
pub const IGNORE_FILE: &str = ".ignisignore";

/// A packed folder: its files as the server will hold them, and their hash.
pub struct Packed {
    pub package: Package,
}

impl Packed {
    /// The package as a zip archive, deflated.
    pub fn zip(&self) -> anyhow::Result<Vec<u8>> {
        self.package
            .to_zip()
            .map_err(|e| anyhow::anyhow!("cannot zip the package: {e}"))
    }

    /// The package's hash, by the server's rule (`package_sha256`).
    pub fn sha256(&self) -> &str {
        self.package.sha256()
    }
}

/// Reads the files of `dir` that make the package, checked as the server checks them.
pub fn pack_dir(dir: &Path) -> anyhow::Result<Packed> {
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot read the folder {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let rules = Rules::read(dir)?;
    let mut files = Vec::new();
    collect(dir, PathBuf::new(), &rules, &mut files)?;
    if files.is_empty() {
        bail!(
            "{} holds no file to package (after leaving out what the packing rules skip)",
            dir.display()
        );
    }
    let package =
        Package::new(files).map_err(|e| anyhow::anyhow!("cannot package {}: {e}", dir.display()))?;
    Ok(Packed { package })
}

/// What to leave out of a folder's package.
struct Rules {
    ignore: Gitignore,
    /// A `package.json` at the root: its dependencies are installed by the server, so an
    /// uploaded `node_modules/` would only be sent to be replaced.
    skip_node_modules: bool,
}

impl Rules {
    fn read(root: &Path) -> anyhow::Result<Rules> {
        let mut builder = GitignoreBuilder::new(root);
        let file = root.join(IGNORE_FILE);
        if file.is_file() {
            if let Some(e) = builder.add(&file) {
                bail!("{}: {e}", file.display());
            }
        }
        let ignore = builder
            .build()
            .with_context(|| format!("{}: cannot read its patterns", file.display()))?;
        Ok(Rules {
            ignore,
            skip_node_modules: root.join("package.json").is_file(),
        })
    }

    /// Whether `rel` (relative to the root) stays out of the package.
    fn skips(&self, rel: &Path, is_dir: bool) -> bool {
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if is_dir && (name == ".git" || name == "__pycache__") {
            return true;
        }
        if is_dir && name == "node_modules" && self.skip_node_modules {
            return true;
        }
        if !is_dir && rel == Path::new(IGNORE_FILE) {
            return true;
        }
        self.ignore.matched(rel, is_dir).is_ignore()
    }
}

fn collect(root: &Path, rel: PathBuf, rules: &Rules, out: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let here = root.join(&rel);
    let entries = std::fs::read_dir(&here).with_context(|| format!("cannot list {}", here.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", here.display()))?;
        let path = entry.path();
        let rel = rel.join(entry.file_name());
        // Not followed: a link's target is not part of the folder.
        let kind = entry
            .file_type()
            .with_context(|| format!("cannot read {}", path.display()))?;
        if rules.skips(&rel, kind.is_dir()) {
            continue;
        }
        if kind.is_symlink() {
            bail!(
                "{} is a symbolic link; a package holds regular files only (copy the file in, \
                 or list it in {IGNORE_FILE})",
                path.display()
            );
        }
        if kind.is_dir() {
            collect(root, rel, rules, out)?;
        } else if kind.is_file() {
            let name = package_path(&rel)
                .with_context(|| format!("{} cannot be a path in a package", path.display()))?;
            let content = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            out.push((name, content));
        } else {
            bail!(
                "{} is a device, pipe or socket; a package holds regular files only (list it \
                 in {IGNORE_FILE})",
                path.display()
            );
        }
    }
    Ok(())
}

/// `rel` as a package path: UTF-8 parts joined by `/`.
fn package_path(rel: &Path) -> anyhow::Result<String> {
    let mut parts = Vec::new();
    for part in rel.components() {
        match part.as_os_str().to_str() {
            Some(p) => parts.push(p),
            None => bail!("its name is not UTF-8"),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    fn paths(root: &Path) -> Vec<String> {
        let packed = pack_dir(root).expect("packs");
        packed.package.files().iter().map(|f| f.path.clone()).collect()
    }

    #[test]
    fn git_pycache_and_the_ignore_file_stay_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "app.py", "x");
        write(root, "lib/util.py", "x");
        write(root, "lib/__pycache__/util.cpython-313.pyc", "x");
        write(root, ".git/HEAD", "x");
        write(root, ".ignisignore", "*.log\nsecrets/\n!keep.log\n/top.txt\n");
        write(root, "debug.log", "x");
        write(root, "lib/deep.log", "x");
        write(root, "keep.log", "x");
        write(root, "secrets/key", "x");
        write(root, "top.txt", "x");
        write(root, "lib/top.txt", "x");
        write(root, "node_modules/dep/index.js", "x");
        assert_eq!(
            paths(root),
            [
                "app.py",
                "keep.log",
                "lib/top.txt",
                "lib/util.py",
                "node_modules/dep/index.js"
            ]
        );
    }

    #[test]
    fn node_modules_stays_out_beside_a_package_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "package.json", "{}");
        write(root, "index.ts", "x");
        write(root, "node_modules/dep/index.js", "x");
        write(root, "src/node_modules/other/index.js", "x");
        assert_eq!(paths(root), ["index.ts", "package.json"]);
    }

    #[test]
    fn the_hash_is_the_servers() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "a/b.py", "print(1)\n");
        write(dir.path(), "c.py", "x");
        let packed = pack_dir(dir.path()).expect("packs");
        let from_zip = Package::from_zip(&packed.zip().expect("zips")).expect("reads back");
        assert_eq!(from_zip.sha256(), packed.sha256());
    }

    #[test]
    fn a_link_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "app.py", "x");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).expect("symlink");
        let e = pack_dir(dir.path()).err().expect("refused").to_string();
        assert!(e.contains("passwd is a symbolic link"), "{e}");
        // Listed in the ignore file, it is left out instead.
        write(dir.path(), ".ignisignore", "passwd\n");
        assert_eq!(paths(dir.path()), ["app.py"]);
    }

    #[test]
    fn a_fifo_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "app.py", "x");
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let e = pack_dir(dir.path()).err().expect("refused").to_string();
        assert!(e.contains("pipe is a device, pipe or socket"), "{e}");
    }

    #[test]
    fn an_empty_folder_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), ".git/HEAD", "x");
        let e = pack_dir(dir.path()).err().expect("refused").to_string();
        assert!(e.contains("holds no file"), "{e}");
    }
}
