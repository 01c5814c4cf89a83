//! The CLI with folders: `fn create|update --dir` packs a folder by its rules (no `.git/`,
//! `__pycache__/`, what `.ignisignore` lists; links refused), and `ignis deploy` reads a
//! manifest, creates its functions, then gives a new version only to what changed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::harness::{Server, BIN};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/fixtures/cli/project")
}

/// A copy of the fixture project to change, with what a working folder holds beside the
/// code: a git repository, Python's byte-code caches and scratch files.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy(&fixture(), dir.path());
    let shop = dir.path().join("shop");
    for (path, text) in [
        (".git/HEAD", "ref: refs/heads/main\n"),
        (".git/objects/ab/cdef", "blob"),
        ("__pycache__/app.cpython-313.pyc", "bytecode"),
        ("lib/__pycache__/pricing.cpython-313.pyc", "bytecode"),
        ("scratch/todo.txt", "later\n"),
    ] {
        write(&shop.join(path), text);
    }
    dir
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn ignis_in(s: &Server, cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(cwd)
        .arg("--url")
        .arg(&s.url)
        .args(args)
        .env_remove("IGNIS_TOKEN")
        .output()
        .expect("run ignis")
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn files(f: &Value) -> Vec<String> {
    f["files"]
        .as_array()
        .expect("a package function lists its files")
        .iter()
        .map(|e| e["path"].as_str().expect("path").to_owned())
        .collect()
}

fn invoke(s: &Server, name: &str, event: &str) -> Value {
    let a = s.invoke(name, event);
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

fn versions(s: &Server) -> (Value, Value) {
    (
        s.function("shop")["version"].clone(),
        s.function("api")["version"].clone(),
    )
}

#[test]
fn fn_create_and_update_pack_a_folder() {
    let s = Server::start();
    let project = project();
    let shop = project.path().join("shop");
    let dir = shop.to_str().expect("utf-8 path");

    let o = ignis_in(
        &s,
        project.path(),
        &[
            "fn",
            "create",
            "shop",
            "--dir",
            dir,
            "--runtime",
            "python",
            "--handler",
            "app.lambda_handler",
            "--memory",
            "256",
            "--env",
            "STAGE=test",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(stdout(&o).contains("shop v1 ready"), "{}", text(&o));
    let f = s.function("shop");
    // No .git/, no __pycache__/, nothing .ignisignore lists, not the ignore file itself.
    assert_eq!(files(&f), ["app.py", "lib/__init__.py", "lib/pricing.py"]);
    assert_eq!(
        invoke(&s, "shop", r#"{"n": 2}"#),
        json!({"price": 6, "stage": "test"})
    );

    write(
        &shop.join("lib/pricing.py"),
        "UNIT = 5\n\ndef price(n):\n    return n * UNIT\n",
    );
    let o = ignis_in(&s, project.path(), &["fn", "update", "shop", "--dir", dir]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(stdout(&o).contains("shop v2 ready"), "{}", text(&o));
    assert_eq!(
        invoke(&s, "shop", r#"{"n": 2}"#),
        json!({"price": 10, "stage": "test"})
    );
    let f = s.function("shop");
    // What the update did not name is kept: the handler, the memory, the variables.
    assert_eq!(
        (&f["version"], &f["memory_mb"], &f["handler"]),
        (&json!(2), &json!(256), &json!("app.lambda_handler"))
    );
    let package = f["package_sha256"].clone();

    // Neither --dir nor --file: a new version of the settings, with the same code.
    let o = ignis_in(&s, project.path(), &["fn", "update", "shop", "--memory", "512"]);
    assert!(o.status.success(), "{}", text(&o));
    let f = s.function("shop");
    assert_eq!(
        (&f["version"], &f["memory_mb"], &f["package_sha256"]),
        (&json!(3), &json!(512), &package)
    );
    assert_eq!(
        invoke(&s, "shop", r#"{"n": 1}"#),
        json!({"price": 5, "stage": "test"})
    );

    // A link in the folder is refused by name, and nothing is sent.
    std::os::unix::fs::symlink("/etc/passwd", shop.join("passwd")).expect("symlink");
    let o = ignis_in(&s, project.path(), &["fn", "update", "shop", "--dir", dir]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stderr(&o).contains(&format!("{} is a symbolic link", shop.join("passwd").display())),
        "{}",
        text(&o)
    );
    assert_eq!(s.function("shop")["version"], 3);

    // One file and a folder at once is refused before anything is sent.
    let o = ignis_in(
        &s,
        project.path(),
        &["fn", "update", "shop", "--dir", dir, "--file", "app.py"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("cannot be used with"), "{}", text(&o));
    assert_eq!(s.function("shop")["version"], 3);
}

#[test]
fn deploy_creates_then_changes_only_what_changed() {
    let s = Server::start();
    let project = project();
    let root = project.path();

    let o = ignis_in(&s, root, &["deploy"]);
    assert!(o.status.success(), "{}", text(&o));
    for line in ["api: create", "shop: create", "api v1 ready", "shop v1 ready"] {
        assert!(stdout(&o).contains(line), "{line:?} in {}", text(&o));
    }
    let shop = s.function("shop");
    assert_eq!(files(&shop), ["app.py", "lib/__init__.py", "lib/pricing.py"]);
    assert_eq!(
        (
            &shop["memory_mb"],
            &shop["timeout_secs"],
            &shop["retry"]["max_retries"]
        ),
        (&json!(256), &json!(10), &json!(1))
    );
    assert_eq!(files(&s.function("api")), ["src/handler.ts", "src/lib/greet.ts"]);
    assert_eq!(
        invoke(&s, "shop", r#"{"n": 2}"#),
        json!({"price": 6, "stage": "prod"})
    );
    assert_eq!(
        invoke(&s, "api", r#"{"name": "ada"}"#),
        json!({"message": "hello ada"})
    );

    // Nothing changed: nothing is sent, no version moves.
    let o = ignis_in(&s, root, &["deploy"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        stdout(&o).contains("api: unchanged") && stdout(&o).contains("shop: unchanged"),
        "{}",
        text(&o)
    );
    assert_eq!(versions(&s), (json!(1), json!(1)));

    // One file of one function, one setting of the other.
    write(
        &root.join("api/src/lib/greet.ts"),
        "export function greet(name: string): string {\n  return `hi ${name}`;\n}\n",
    );
    let manifest = std::fs::read_to_string(root.join("ignis.yaml")).expect("read");
    let changed = manifest.replace("memory_mb: 256", "memory_mb: 512");
    assert_ne!(manifest, changed);
    write(&root.join("ignis.yaml"), &changed);

    // The plan, and nothing changed.
    let o = ignis_in(&s, root, &["deploy", "--dry-run"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(stdout(&o).contains("api: update (code changed)"), "{}", text(&o));
    assert!(
        stdout(&o).contains("shop: update (settings: memory_mb; code unchanged)"),
        "{}",
        text(&o)
    );
    assert_eq!(versions(&s), (json!(1), json!(1)));
    assert_eq!(
        invoke(&s, "api", r#"{"name": "ada"}"#),
        json!({"message": "hello ada"})
    );

    // From another folder, naming the manifest: its `dir`s are relative to it.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let file = root.join("ignis.yaml");
    let o = ignis_in(
        &s,
        elsewhere.path(),
        &["deploy", "--file", file.to_str().expect("utf-8")],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        stdout(&o).contains("api v2 ready") && stdout(&o).contains("shop v2 ready"),
        "{}",
        text(&o)
    );
    assert_eq!(versions(&s), (json!(2), json!(2)));
    assert_eq!(
        invoke(&s, "api", r#"{"name": "ada"}"#),
        json!({"message": "hi ada"})
    );
    let shop_v2 = s.function("shop");
    assert_eq!(
        (&shop_v2["memory_mb"], &shop_v2["package_sha256"]),
        (&json!(512), &shop["package_sha256"])
    );

    let o = ignis_in(&s, root, &["deploy"]);
    assert!(
        stdout(&o).contains("api: unchanged") && stdout(&o).contains("shop: unchanged"),
        "{}",
        text(&o)
    );
    assert_eq!(versions(&s), (json!(2), json!(2)));
}

#[test]
fn deploy_names_the_function_and_the_field_of_an_error() {
    let s = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("code/app.py"),
        "def lambda_handler(e, c):\n    return 1\n",
    );

    // Refused while reading the manifest: nothing is sent.
    write(
        &dir.path().join("ignis.yaml"),
        "functions:\n  good:\n    runtime: python\n    dir: code\n    handler: app.lambda_handler\n  broken:\n    runtime: python\n    handler: app.lambda_handler\n",
    );
    let o = ignis_in(&s, dir.path(), &["deploy"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stderr(&o).contains("ignis.yaml: function \"broken\": field `dir` is missing"),
        "{}",
        text(&o)
    );
    assert_eq!(s.get("/v1/functions/good").status, 404);

    // Refused by the server: the others are still deployed, and the command fails.
    write(
        &dir.path().join("ignis.yaml"),
        "functions:\n  good:\n    runtime: python\n    dir: code\n    handler: app.lambda_handler\n  greedy:\n    runtime: python\n    dir: code\n    handler: app.lambda_handler\n    memory_mb: 1\n",
    );
    let o = ignis_in(&s, dir.path(), &["deploy"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stderr(&o).contains("ignis.yaml: function \"greedy\": error: field `memory_mb`"),
        "{}",
        text(&o)
    );
    assert!(stdout(&o).contains("good v1 ready"), "{}", text(&o));
    assert_eq!(s.get("/v1/functions/greedy").status, 404);
}

#[test]
fn fn_create_streams_the_build_log_and_ends_with_the_state() {
    let s = Server::start_with(None, &["--deps-cache", &crate::dependencies::shared_cache()]);
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("app.py"),
        "import jwt\n\ndef handler(e, c):\n    return jwt.__version__\n",
    );
    write(&dir.path().join("requirements.txt"), "pyjwt==2.9.0\n");
    let dir_arg = dir.path().display().to_string();
    let out = ignis_in(
        &s,
        dir.path(),
        &[
            "fn",
            "create",
            "signer",
            "--runtime",
            "python",
            "--dir",
            &dir_arg,
            "--handler",
            "app.handler",
        ],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The installer's lines (or the cache's, from an earlier run), then the build's end.
    assert!(
        stderr.contains("  | "),
        "the build log is streamed: {stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("build succeeded (uv)") || stderr.contains("build cached (uv)"),
        "{stderr}"
    );
    assert!(
        format!("{stdout}{stderr}").contains("ready"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(s.invoke("signer", "{}").json(), "2.9.0");

    // A build that fails: non-zero exit, the installer's message shown.
    write(
        &dir.path().join("requirements.txt"),
        "ignis-no-such-package-3f9c1e==1.0\n",
    );
    let out = ignis_in(&s, dir.path(), &["fn", "update", "signer", "--dir", &dir_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("ignis-no-such-package-3f9c1e"), "{stderr}");
    assert_eq!(s.invoke("signer", "{}").json(), "2.9.0", "version 1 still serves");
}
