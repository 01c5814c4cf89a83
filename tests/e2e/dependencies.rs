//! Dependencies installed at deploy, against the real registries (PyPI through uv, npm
//! through Bun): a pure Python package and one with a native wheel (numpy), a TypeScript
//! package from `package.json`, a second function with the same requirements served from
//! the cache, an unknown package failing the build while the old version serves, vendored
//! `node_modules` used as uploaded, and what an install script can reach inside its
//! sandbox. Tests whose packages are the same in every run share one cache under `target/`
//! so that `make test` installs them once per machine.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::Server;

/// The cache the registry-backed tests share (numpy is large; installed once).
pub(crate) fn shared_cache() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-deps-cache");
    std::fs::create_dir_all(&dir).expect("create the shared dependency cache");
    dir.display().to_string()
}

fn server_with(cache: &str) -> Server {
    Server::start_with(None, &["--deps-cache", cache])
}

fn build(s: &Server, name: &str, version: u64) -> Value {
    let a = s.get(&format!("/v1/functions/{name}/versions/{version}/build"));
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.json()
}

/// Creates a function without waiting, records every state it goes through until it
/// settles, and returns the final view and the states seen.
fn create_watching(s: &Server, body: &Value) -> (Value, Vec<String>) {
    let a = s.post("/v1/functions", body.to_string());
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let name = body["name"].as_str().expect("a name");
    let mut seen: Vec<String> = vec![a.json()["state"].as_str().unwrap_or_default().to_owned()];
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let f = s.function(name);
        let state = f["state"].as_str().unwrap_or_default().to_owned();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state == "ready" || state == "error" {
            return (f, seen);
        }
        assert!(Instant::now() < deadline, "{name} did not settle: {seen:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const JWT_APP: &str = r#"
import jwt, requests

def lambda_handler(event, context):
    token = jwt.encode({"sub": event["sub"]}, "secret", algorithm="HS256")
    return {"sub": jwt.decode(token, "secret", algorithms=["HS256"])["sub"],
            "jwt": jwt.__version__, "jwt_file": jwt.__file__, "requests": requests.__version__}
"#;

#[test]
fn requirements_are_installed_once_and_shared_by_functions_with_the_same_ones() {
    // A cache of its own: the first install must really run.
    let cache = tempfile::tempdir().expect("tempdir");
    let s = server_with(&cache.path().display().to_string());
    // requests is pinned below the host's own copy: the function's dependencies come first.
    let files = json!({"app.py": JWT_APP, "requirements.txt": "pyjwt==2.9.0\nrequests==2.31.0\n"});
    let body = json!({"name": "first", "runtime": "python", "handler": "app.lambda_handler", "files": files});
    let (f, seen) = create_watching(&s, &body);
    assert_eq!(f["state"], "ready", "{f}");
    assert!(
        seen.contains(&"building".to_owned()),
        "the function was building: {seen:?}"
    );
    let b = build(&s, "first", 1);
    assert_eq!(b["status"], "succeeded", "{b}");
    assert_eq!(b["installer"], "uv");
    let log = b["log"].as_str().expect("a log");
    assert!(
        log.contains("pyjwt==2.9.0"),
        "the installer's output is kept: {log}"
    );
    let a = s.invoke("first", r#"{"sub": "ada"}"#);
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let out = a.json();
    assert_eq!(out["sub"], "ada");
    assert_eq!(out["jwt"], "2.9.0");
    assert_eq!(
        out["requests"], "2.31.0",
        "the function's pin wins over the host's packages"
    );
    assert!(
        out["jwt_file"].as_str().expect("a path").starts_with("/code/"),
        "{out}"
    );

    // Same requirements, other code: nothing is installed.
    let mut second = body.clone();
    second["name"] = json!("second");
    second["files"]["app.py"] = json!(format!("{JWT_APP}\nSECOND = True\n"));
    let a = s.create(&second);
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    let b2 = build(&s, "second", 1);
    assert_eq!(b2["status"], "cached", "{b2}");
    assert_eq!(b2["cache_key"], b["cache_key"]);
    assert!(
        b2["log"].as_str().expect("a log").contains("found in the cache"),
        "{b2}"
    );
    let a = s.invoke("second", r#"{"sub": "bob"}"#);
    assert_eq!(a.json()["sub"], "bob", "{}", a.body);
    // The installers the server found are listed with the runtimes.
    let rt = s.get("/v1/runtimes").json();
    let uv = rt["installers"]
        .as_array()
        .expect("installers")
        .iter()
        .find(|i| i["name"] == "uv")
        .cloned()
        .expect("uv is listed");
    assert_eq!(uv["available"], true, "{uv}");
    assert_eq!(uv["installs"], "requirements.txt");
    let version = uv["version"].as_str().expect("a version");
    assert!(version.starts_with(|c: char| c.is_ascii_digit()), "{uv}");
    // A function without dependencies has no build.
    s.deploy("plain", "python", "def handler(e, c):\n    return 1\n", json!({}));
    assert_eq!(build(&s, "plain", 1)["status"], "none");
    let missing = s.get("/v1/functions/plain/versions/2/build");
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "version_not_found");
}

#[test]
fn a_native_wheel_installs_and_imports() {
    let s = server_with(&shared_cache());
    let files = json!({
        "app.py": "import numpy as np\n\ndef handler(event, context):\n    return {'sum': int(np.arange(event['n']).sum()), 'file': np.__file__}\n",
        "requirements.txt": "numpy==2.1.3\n",
    });
    let a = s.create(
        &json!({"name": "np", "runtime": "python", "handler": "app.handler",
                             "memory_mb": 256, "files": files}),
    );
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    assert!(matches!(
        build(&s, "np", 1)["status"].as_str(),
        Some("succeeded" | "cached")
    ));
    let a = s.invoke("np", r#"{"n": 10}"#);
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["sum"], 45);
    assert!(
        a.json()["file"]
            .as_str()
            .expect("a path")
            .starts_with("/code/numpy/"),
        "{}",
        a.body
    );
}

#[test]
fn a_typescript_package_json_is_installed_with_bun_and_vendored_modules_are_used_as_uploaded() {
    let s = server_with(&shared_cache());
    let files = json!({
        "index.ts": "import { z } from \"zod\";\nexport const handler = async (e: unknown) => ({ ok: z.object({ a: z.number() }).safeParse(e).success });\n",
        "package.json": "{\"name\": \"zod-fn\", \"dependencies\": {\"zod\": \"3.23.8\"}}",
    });
    let a = s
        .create(&json!({"name": "zod", "runtime": "typescript", "handler": "index.handler", "files": files}));
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    let b = build(&s, "zod", 1);
    assert_eq!(b["installer"], "bun", "{b}");
    assert_eq!(s.invoke("zod", r#"{"a": 1}"#).json()["ok"], true);
    assert_eq!(s.invoke("zod", r#"{"a": "x"}"#).json()["ok"], false);
    let mut s = s;
    s.restart();
    crate::harness::wait_until("zod is ready again", Duration::from_secs(60), || {
        s.function("zod")["state"] == "ready"
    });
    assert_eq!(
        s.invoke("zod", r#"{"a": 2}"#).json()["ok"],
        true,
        "served after a restart"
    );
    assert_eq!(
        build(&s, "zod", 1)["status"],
        b["status"],
        "the build shown is the one it had"
    );

    // node_modules in the upload: nothing to install, used as is (as on Lambda).
    let vendored = json!({
        "index.mjs": "import pad from \"left-pad-local\";\nexport const handler = async () => ({ padded: pad(\"7\", 3) });\n",
        "package.json": "{\"dependencies\": {\"left-pad-local\": \"1.0.0\"}}",
        "node_modules/left-pad-local/package.json": "{\"name\": \"left-pad-local\", \"main\": \"index.js\"}",
        "node_modules/left-pad-local/index.js": "module.exports = (s, n) => s.padStart(n, \"0\");\n",
    });
    let a = s.create(
        &json!({"name": "vendored", "runtime": "javascript", "handler": "index.handler", "files": vendored}),
    );
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    assert_eq!(build(&s, "vendored", 1)["status"], "none");
    assert_eq!(s.invoke("vendored", "{}").json()["padded"], "007");
}

#[test]
fn a_build_that_fails_keeps_the_old_version_serving_and_says_why() {
    let cache = tempfile::tempdir().expect("tempdir");
    let s = server_with(&cache.path().display().to_string());
    let v1 = json!({"app.py": "def handler(e, c):\n    return 'v1'\n"});
    let a = s.create(&json!({"name": "f", "runtime": "python", "handler": "app.handler", "files": v1}));
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    let v2 = json!({"runtime": "python", "handler": "app.handler", "files": {
        "app.py": "def handler(e, c):\n    return 'v2'\n",
        "requirements.txt": "ignis-no-such-package-3f9c1e==1.0\n",
    }});
    let a = s.update("f", &v2);
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let f = s.function("f");
    assert_eq!(f["state"], "ready", "the old version serves: {f}");
    assert_eq!(f["active_version"], 1);
    let reason = f["state_reason"].as_str().expect("a reason");
    assert!(reason.contains("installing its dependencies failed"), "{reason}");
    assert!(
        reason.contains("ignis-no-such-package-3f9c1e"),
        "the installer's message: {reason}"
    );
    let b = build(&s, "f", 2);
    assert_eq!(b["status"], "failed", "{b}");
    assert!(
        b["error"].as_str().expect("an error").contains("uv failed"),
        "{b}"
    );
    assert_eq!(s.invoke("f", "{}").json(), "v1");

    // Followed after the end: the whole log, then the end event, then the stream closes.
    let r = s.send(s.request(Method::GET, "/v1/functions/f/versions/2/build?follow=true"));
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("event: log\ndata: "), "{}", r.body);
    let end = r.body.split("event: end\ndata: ").nth(1).expect("an end event");
    let end: Value = serde_json::from_str(end.lines().next().expect("a line")).expect("JSON");
    assert_eq!(end["status"], "failed");
    assert!(end.get("log").is_none(), "the end event carries no log: {end}");
}

#[test]
fn an_install_script_runs_unprivileged_and_writes_only_its_output() {
    let cache = tempfile::tempdir().expect("tempdir");
    let s = server_with(&cache.path().display().to_string());
    // Bun runs the root package's postinstall; it records what it could do.
    let probe = r#"const fs = require('fs'); const t = (f) => { try { f(); return 'allowed'; } catch (e) { return e.code; } }; fs.writeFileSync('node_modules/probe.json', JSON.stringify({ uid: process.getuid(), shadow: t(() => fs.readFileSync('/etc/shadow')), root: t(() => fs.writeFileSync('/escape', 'x')) }));"#;
    let package = json!({
        "name": "probe",
        "dependencies": {"zod": "3.23.8"},
        "scripts": {"postinstall": format!("bun -e {}", serde_json::to_string(probe).expect("quote"))},
    });
    let files = json!({
        "index.mjs": "import fs from 'node:fs';\nexport const handler = async () => JSON.parse(fs.readFileSync('/code/node_modules/probe.json', 'utf8'));\n",
        "package.json": package.to_string(),
    });
    let a = s.create(
        &json!({"name": "probe", "runtime": "javascript", "handler": "index.handler", "files": files}),
    );
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    let out = s.invoke("probe", "{}").json();
    let uid = out["uid"].as_u64().expect("a uid");
    assert!(
        uid >= 200_000,
        "the build ran as an id of its own, not the server's: {out}"
    );
    assert_ne!(out["shadow"], "allowed", "{out}");
    assert_ne!(out["root"], "allowed", "{out}");
    // `..` of the output is the build's own work folder, removed after the build.
    let left: Vec<_> = std::fs::read_dir(cache.path())
        .expect("the cache")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.iter().all(|n| !n.starts_with('.')),
        "no build folder is left: {left:?}"
    );
    assert!(!std::path::Path::new("/escape").exists());
}

#[test]
fn bun_never_installs_a_missing_package_at_run_time() {
    // With outbound networking Bun could fetch an import it cannot find (its auto-install);
    // instances run it with --no-install: what is not shipped or installed at deploy is an
    // import error.
    let s = Server::start();
    let a = s.create(
        &json!({"name": "auto", "runtime": "javascript", "network": "outbound",
        "code": "import isNumber from \"is-number\";\nexport const handler = async () => isNumber(1);\n"}),
    );
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let f = a.json();
    assert_eq!(f["state"], "error", "{f}");
    let why = f["state_reason"].as_str().expect("a reason");
    assert!(why.contains("is-number"), "{why}");
}
