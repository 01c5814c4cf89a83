//! Tidy: the invariants ARCHITECTURE.md states as absences, checked over the source tree so
//! that breaking one fails `make test` (in the spirit of rust-analyzer's tidy tests).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The repository root (this package is the workspace root).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file of the repository, as paths relative to the root, outside `target/`
/// and other build or tool folders.
fn rust_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.expect("directory entry");
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let file_type = entry.file_type().expect("file type");
            if file_type.is_dir() {
                if name.starts_with('.') || name == "target" || name == "node_modules" {
                    continue;
                }
                walk(&path, root, out);
            } else if file_type.is_file() && name.ends_with(".rs") {
                out.push(path.strip_prefix(root).expect("under the root").to_path_buf());
            }
        }
    }
    let root = root();
    let mut files = Vec::new();
    for top in ["crates", "src", "tests"] {
        walk(&root.join(top), &root, &mut files);
    }
    files.sort();
    assert!(
        files.len() > 50,
        "the walk found only {} files: is the root {}?",
        files.len(),
        root.display()
    );
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Production code: a crate's `src/` or the binary's `src/` (tests, fixtures and the tidy
/// test itself are not bound by the layering rules).
fn is_production(path: &Path) -> bool {
    let s = path.to_string_lossy();
    (s.starts_with("src/") || (s.starts_with("crates/") && s.contains("/src/")))
        && !s.ends_with("/tests.rs")
        && !s.contains("/tests/")
}

/// The lines of a file that are code, not comments: `//` comments are cut off (strings
/// holding `//` are rare enough in this tree that a false cut only weakens a check).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, line)| {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        (i + 1, code)
    })
}

/// The places in production code where `pattern` (any of several spellings) appears,
/// outside the files `allowed` accepts.
fn occurrences(patterns: &[&str], allowed: impl Fn(&Path) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for path in rust_files() {
        if !is_production(&path) || allowed(&path) {
            continue;
        }
        let text = read(&path);
        for (n, line) in code_lines(&text) {
            if patterns.iter().any(|p| line.contains(p)) {
                found.push(format!("{}:{n}: {}", path.display(), line.trim()));
            }
        }
    }
    found
}

#[test]
fn unsafe_code_lives_only_in_the_sandbox_sys_module() {
    // The microVM guest's agent (PID 1 of a guest) has its own small `sys` module for the
    // system calls std and nix do not wrap safely.
    let found = occurrences(&["unsafe {", "unsafe fn", "unsafe impl", "unsafe extern"], |p| {
        p == Path::new("crates/sandbox/src/sys.rs") || p == Path::new("crates/guest/src/sys.rs")
    });
    assert!(
        found.is_empty(),
        "`unsafe` belongs in crates/sandbox/src/sys.rs (and the guest agent's crates/guest/src/sys.rs) only (each block with a SAFETY comment):\n{}",
        found.join("\n")
    );
    // The one module that may hold it does, so this check looks where it should.
    assert!(read(Path::new("crates/sandbox/src/sys.rs")).contains("unsafe {"));
}

#[test]
fn sql_lives_only_in_the_store() {
    let found = occurrences(
        &[
            "SELECT ",
            "INSERT INTO",
            "INSERT OR",
            "DELETE FROM",
            "CREATE TABLE",
            "ALTER TABLE",
            "PRAGMA ",
            "rusqlite",
        ],
        |p| p.starts_with("crates/store"),
    );
    assert!(
        found.is_empty(),
        "SQL belongs in crates/store only (add a store function instead):\n{}",
        found.join("\n")
    );
}

#[test]
fn http_status_codes_live_only_in_the_api() {
    let found = occurrences(&["StatusCode"], |p| p.starts_with("crates/api"));
    assert!(
        found.is_empty(),
        "HTTP status codes belong in crates/api only (map a typed error there):\n{}",
        found.join("\n")
    );
}

#[test]
fn every_rust_file_opens_with_a_doc_line_saying_what_it_owns() {
    let undocumented: Vec<String> = rust_files()
        .into_iter()
        .filter(|p| !read(p).starts_with("//!"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        undocumented.is_empty(),
        "every .rs file opens with a `//!` line saying what it owns; these do not:\n{}",
        undocumented.join("\n")
    );
}

#[test]
fn no_source_file_is_over_a_thousand_lines() {
    let long: Vec<String> = rust_files()
        .into_iter()
        .filter_map(|p| {
            let lines = read(&p).lines().count();
            (lines > 1000).then(|| format!("{}: {lines} lines", p.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these files by concept (STYLE.md: modules stay under about 1,000 lines):\n{}",
        long.join("\n")
    );
}

/// `cargo metadata`'s resolved graph: package id → (name, ids of its normal dependencies).
fn dependency_graph() -> (BTreeMap<String, (String, Vec<String>)>, Value) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(root())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let names: BTreeMap<String, String> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().expect("id").to_owned(),
                p["name"].as_str().expect("name").to_owned(),
            )
        })
        .collect();
    let mut graph = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().expect("resolve nodes") {
        let id = node["id"].as_str().expect("node id").to_owned();
        // Only dependencies the built library links: not dev- or build-dependencies.
        let deps = node["deps"]
            .as_array()
            .expect("deps")
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()))
            })
            .map(|d| d["pkg"].as_str().expect("dep pkg").to_owned())
            .collect();
        graph.insert(id.clone(), (names[&id].clone(), deps));
    }
    (graph, meta)
}

/// The names of every package `name` links, directly or not.
fn linked_by(name: &str) -> BTreeSet<String> {
    let (graph, _) = dependency_graph();
    let start = graph
        .iter()
        .find(|(_, (n, _))| n == name)
        .map(|(id, _)| id.clone())
        .unwrap_or_else(|| panic!("no package {name} in the workspace"));
    let mut seen = BTreeSet::new();
    let mut todo = vec![start];
    let mut names = BTreeSet::new();
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let (n, deps) = &graph[&id];
        names.insert(n.clone());
        todo.extend(deps.iter().cloned());
    }
    names
}

#[test]
fn core_links_no_runtime_web_framework_or_database() {
    let linked = linked_by("ignis-core");
    // The walk works: core links serde.
    assert!(linked.contains("serde"), "core's dependencies: {linked:?}");
    let forbidden: Vec<&str> = ["tokio", "axum", "hyper", "rusqlite", "libsqlite3-sys", "reqwest"]
        .into_iter()
        .filter(|f| linked.contains(*f))
        .collect();
    assert!(
        forbidden.is_empty(),
        "crates/core is pure domain logic (no IO, no async, no SQL, no HTTP) but links {forbidden:?}"
    );
}

#[test]
fn only_the_store_links_sqlite() {
    let (graph, _) = dependency_graph();
    let direct: Vec<&str> = graph
        .values()
        .filter(|(name, deps)| {
            name.starts_with("ignis")
                && deps
                    .iter()
                    .any(|d| graph.get(d).is_some_and(|(n, _)| n == "rusqlite"))
        })
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        direct,
        vec!["ignis-store"],
        "crates that depend on rusqlite directly"
    );
}

/// The sibling modules a crate's module refers to (`crate::name`, or `name` inside a
/// `use crate::{...}` group), in its code before its tests.
fn sibling_modules(text: &str, siblings: &BTreeSet<String>) -> BTreeSet<String> {
    let code: String = code_lines(text)
        .map(|(_, line)| line)
        .take_while(|line| line.trim() != "#[cfg(test)]")
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let names = if let Some(group) = rest.strip_prefix('{') {
            // The first name of each item at the group's top level.
            let (mut depth, mut items, mut item) = (0usize, Vec::new(), String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            items.push(item);
            items.iter().map(|i| ident(i)).collect()
        } else {
            vec![ident(rest)]
        };
        found.extend(names.into_iter().filter(|n| siblings.contains(n)));
    }
    found
}

/// The crates whose modules hold the rule below (the others still have pairs to untangle).
const ONE_WAY_CRATES: [&str; 2] = ["api", "control"];

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    // A crate's root (lib.rs) assembles its modules; every other module's dependencies
    // point one way, so that shared helpers live in one place.
    let dirs: Vec<PathBuf> = ONE_WAY_CRATES
        .iter()
        .map(|c| root().join("crates").join(c).join("src"))
        .collect();
    let mut cycles = Vec::new();
    let mut modules_seen = 0;
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir).expect("read src/") {
            let path = entry.expect("file").path();
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            match stem {
                Some(stem)
                    if path.extension().is_some_and(|e| e == "rs") && stem != "lib" && stem != "main" =>
                {
                    files.insert(stem, path);
                }
                Some(_) | None => {}
            }
        }
        let siblings: BTreeSet<String> = files.keys().cloned().collect();
        let uses: BTreeMap<&String, BTreeSet<String>> = files
            .iter()
            .map(|(name, path)| {
                let text = std::fs::read_to_string(path).expect("read a module");
                let mut deps = sibling_modules(&text, &siblings);
                deps.remove(name);
                (name, deps)
            })
            .collect();
        modules_seen += uses.len();
        for (a, deps) in &uses {
            for b in deps.iter().filter(|b| a.as_str() < b.as_str()) {
                if uses.get(b).is_some_and(|d| d.contains(a.as_str())) {
                    cycles.push(format!("{}: {a}.rs and {b}.rs import each other", dir.display()));
                }
            }
        }
    }
    assert!(modules_seen >= 10, "only {modules_seen} modules were read");
    assert!(
        cycles.is_empty(),
        "move what both use into one of them or a third module:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_module_import_reader_sees_groups_and_paths_but_not_tests() {
    let siblings: BTreeSet<String> = ["a", "b", "c", "d"].map(str::to_owned).into();
    let text = "use crate::a::X;\nuse crate::{b, c::{Y, Z}, Root};\nfn f() { crate::d::g(); }\n";
    let want: BTreeSet<String> = ["a", "b", "c", "d"].map(str::to_owned).into();
    assert_eq!(sibling_modules(text, &siblings), want);
    let tested = "use crate::a::X;\n// crate::b::no\n#[cfg(test)]\nmod tests { use crate::c::Y; }\n";
    assert_eq!(sibling_modules(tested, &siblings), ["a".to_owned()].into());
}
