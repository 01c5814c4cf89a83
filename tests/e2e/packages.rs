//! Code packages end to end: functions of several files (Python with a Lambda-style
//! handler in a folder, sibling modules and a subpackage; TypeScript with relative imports),
//! cold and on pre-warmed instances; the package read-only at `/code` and no host path in
//! the mount table; archives that escape, link or explode refused with nothing stored; the
//! file list and the download.

use std::io::Write;
use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{wait_until, Server};

const WAIT: Duration = Duration::from_secs(60);

fn python_files() -> Value {
    json!({
        "hello_world/__init__.py": "",
        "hello_world/app.py": r#"
import os
from . import helper
from hello_world import helper as same
from hello_world.sub.deep import answer
import shared

def lambda_handler(event, context):
    try:
        open(os.path.join(os.path.dirname(__file__), "new.txt"), "w")
        write = "allowed"
    except OSError as e:
        write = e.errno
    return {"greeting": helper.greet(event["name"]), "answer": answer(), "shared": shared.VALUE,
            "same": same is helper, "file": __file__, "cwd": os.getcwd(), "write": write,
            "mountinfo": open("/proc/self/mountinfo").read()}
"#,
        "hello_world/helper.py": "def greet(name):\n    return 'hello ' + name\n",
        "hello_world/sub/__init__.py": "",
        "hello_world/sub/deep.py": "def answer():\n    return 42\n",
        "shared.py": "VALUE = 'root module'\n",
        "README.md": "not code\n",
    })
}

fn typescript_files() -> Value {
    json!({
        "src/lambda.ts": r#"
import fs from "node:fs";
import { greet } from "./lib/greet";
import { answer } from "../answer.mjs";
export const handler = async (event: { name: string }) => {
  let write: string | number = "allowed";
  try { fs.writeFileSync(new URL("./new.txt", import.meta.url), "x"); }
  catch (e: any) { write = e.code; }
  return { greeting: greet(event.name), answer: answer, file: import.meta.path, write,
           mountinfo: fs.readFileSync("/proc/self/mountinfo", "utf8") };
};
"#,
        "src/lib/greet.ts": "export function greet(name: string): string { return `hello ${name}`; }\n",
        "answer.mjs": "export const answer = 42;\n",
    })
}

fn commonjs_files() -> Value {
    json!({
        "index.cjs": "const { twice } = require('./lib/math.cjs');\nexports.handler = async (event) => ({ n: twice(event.n), file: __filename });\n",
        "lib/math.cjs": "exports.twice = (n) => 2 * n;\n",
    })
}

fn prewarmed(s: &Server, runtime: &str) -> f64 {
    s.metric(&format!("ignis_prewarmed_instances{{runtime=\"{runtime}\"}}"))
        .unwrap_or(0.0)
}

/// Asserts what a package function answered: its imports worked, its code root is `/code`,
/// read-only, and the mount table names nothing of the host's. Returns the invocation id.
fn check_answer(s: &Server, name: &str, entry: &str) -> String {
    let a = s.invoke(name, r#"{"name": "ignis"}"#);
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v = a.json();
    assert_eq!(v["greeting"], "hello ignis", "{v}");
    assert_eq!(v["answer"], 42, "{v}");
    assert_eq!(v["file"], format!("/code/{entry}"), "{v}");
    assert_ne!(v["write"], "allowed", "the package is read-only: {v}");
    let mountinfo = v["mountinfo"].as_str().expect("mountinfo");
    let code = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/code"))
        .unwrap_or_else(|| panic!("no mount at /code: {mountinfo}"));
    assert!(code.contains(" ro,") || code.contains(" ro "), "{code}");
    let data = s.data_dir().display().to_string();
    assert!(!mountinfo.contains(&data), "{name} sees {data}: {mountinfo}");
    assert!(
        !mountinfo.contains("packages/"),
        "{name} sees the package cache: {mountinfo}"
    );
    a.header("x-ignis-invocation-id").to_owned()
}

fn deploy_both(s: &Server) {
    let py = "pkg-py".to_owned();
    let a = s.create(&json!({"name": py, "runtime": "python", "files": python_files(),
                             "handler": "hello_world/app.lambda_handler"}));
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    let _ = check_answer(s, &py, "hello_world/app.py");
    let a = s.invoke(&py, r#"{"name": "again"}"#);
    assert!(!a.cold(), "the second call is warm");
    assert_eq!(a.json()["shared"], "root module");
    assert_eq!(a.json()["same"], true);

    let ts = "pkg-ts".to_owned();
    let a = s.create(
        &json!({"name": ts, "runtime": "typescript", "files": typescript_files(),
                             "handler": "src/lambda.handler"}),
    );
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    let _ = check_answer(s, &ts, "src/lambda.ts");

    // JavaScript: `index.handler` finds `index.cjs` as Lambda does; require resolves beside it.
    let a = s.create(
        &json!({"name": "pkg-cjs", "runtime": "javascript", "files": commonjs_files(),
                             "handler": "index.handler"}),
    );
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    let v = s.invoke("pkg-cjs", r#"{"n": 21}"#).json();
    assert_eq!(v, json!({"n": 42, "file": "/code/index.cjs"}));
}

#[test]
fn multi_file_packages_run_on_fresh_instances() {
    let s = Server::start_with(None, &["--prewarm", "0"]);
    deploy_both(&s);
    // Another function's instance sees none of those packages: its /code is empty.
    s.deploy(
        "peek",
        "python",
        "import os\ndef handler(e):\n    return os.listdir('/code')\n",
        json!({}),
    );
    assert_eq!(s.invoke("peek", "{}").json(), json!([]));
}

#[test]
fn multi_file_packages_run_on_prewarmed_instances() {
    let s = Server::start();
    for (name, runtime, label, files, handler, entry) in [
        (
            "warm-py",
            "python",
            "python",
            python_files(),
            "hello_world/app.lambda_handler",
            "hello_world/app.py",
        ),
        (
            "warm-ts",
            "typescript",
            "bun",
            typescript_files(),
            "src/lambda.handler",
            "src/lambda.ts",
        ),
    ] {
        wait_until("the pool is full", WAIT, || prewarmed(&s, label) == 2.0);
        let a = s.create(
            &json!({"name": name, "runtime": runtime, "files": files, "handler": handler,
                                 "idle_timeout_secs": 0}),
        );
        assert_eq!(a.json()["state"], "ready", "{}", a.body);
        wait_until("the pool refilled after the deploy", WAIT, || {
            prewarmed(&s, label) == 2.0
        });
        // Every call now takes a pre-warmed instance, which is given the package at its load.
        let id = check_answer(&s, name, entry);
        let init = s.invocation(&id)["init"].clone();
        assert_eq!(
            (init["sandbox_ms"].as_f64(), init["runtime_ms"].as_f64()),
            (Some(0.0), Some(0.0)),
            "{name}: a pre-warmed instance served: {init}"
        );
    }
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, content) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .expect("start");
        w.write_all(content).expect("write");
    }
    w.finish().expect("finish").into_inner()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn a_zip_deploys_and_downloads_as_deployed() {
    let mut s = Server::start_with(None, &["--prewarm", "0"]);
    let entries: [(&str, &[u8]); 3] = [
        (
            "app.py",
            b"import util\ndef lambda_handler(event, context):\n    return util.twice(event['n'])\n",
        ),
        ("util.py", b"def twice(n):\n    return 2 * n\n"),
        ("data/notes.txt", b"kept as is\n"),
    ];
    let a = s.create(
        &json!({"name": "zipped", "runtime": "python", "zip": b64(&zip_of(&entries)),
                             "handler": "app.lambda_handler"}),
    );
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(s.invoke("zipped", r#"{"n": 21}"#).json(), 42);

    let f = s.function("zipped");
    let files = f["files"]
        .as_array()
        .unwrap_or_else(|| panic!("a file list: {f}"));
    let listed: Vec<(&str, u64)> = files
        .iter()
        .map(|f| {
            (
                f["path"].as_str().expect("path"),
                f["size"].as_u64().expect("size"),
            )
        })
        .collect();
    let mut expected: Vec<(&str, u64)> = entries.iter().map(|(n, c)| (*n, c.len() as u64)).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected, "in path order, with their sizes");
    for file in files {
        assert_eq!(file["sha256"].as_str().map(str::len), Some(64), "{file}");
    }

    let download = s
        .request(reqwest::Method::GET, "/v1/functions/zipped/code")
        .send()
        .expect("download");
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(
        download
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/zip")
    );
    let bytes = download.bytes().expect("the zip");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("a zip archive");
    let mut got = Vec::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).expect("entry");
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut content).expect("read");
        got.push((f.name().expect("name").into_owned(), content));
    }
    got.sort();
    let mut want: Vec<(String, Vec<u8>)> = entries
        .iter()
        .map(|(n, c)| ((*n).to_owned(), c.to_vec()))
        .collect();
    want.sort();
    assert_eq!(got, want, "the download holds what was deployed");

    // The same files again (as `files`) make a version with the same package, stored once.
    let files: serde_json::Map<String, Value> = entries
        .iter()
        .map(|(n, c)| {
            (
                (*n).to_owned(),
                json!(String::from_utf8(c.to_vec()).expect("text")),
            )
        })
        .collect();
    let a = s.update(
        "zipped",
        &json!({"runtime": "python", "files": files, "handler": "app.lambda_handler"}),
    );
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["package_sha256"], f["package_sha256"], "{}", a.body);

    // A one-file function downloads as its one file.
    s.deploy("single", "python", "def handler(e):\n    return 1\n", json!({}));
    let one = s
        .request(reqwest::Method::GET, "/v1/functions/single/code")
        .send()
        .expect("download")
        .bytes()
        .expect("bytes");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(one.to_vec())).expect("a zip archive");
    assert_eq!(archive.len(), 1);
    assert_eq!(
        archive.by_index(0).expect("entry").name().expect("name"),
        "main.py"
    );
    assert!(
        s.function("single").get("files").is_none(),
        "no file list for one file"
    );
    assert_eq!(stopped_count(&mut s, "packages"), 1, "two versions, one package");
}

/// The rows of `table` of a server already stopped.
fn stopped_count_again(s: &Server, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(s.data_dir().join("ignis.db")).expect("open the store");
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

/// The rows of `table`, read once the server has stopped (a second process must not open
/// the database while the server runs).
fn stopped_count(s: &mut Server, table: &str) -> i64 {
    assert!(s.terminate(Duration::from_secs(30)), "the server stops");
    let conn = rusqlite::Connection::open(s.data_dir().join("ignis.db")).expect("open the store");
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

#[test]
fn escaping_linked_and_exploding_archives_are_refused_with_nothing_stored() {
    let mut s = Server::start_with(None, &["--prewarm", "0"]);
    let mut link = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    link.add_symlink("app.py", "/etc/passwd", zip::write::SimpleFileOptions::default())
        .expect("symlink");
    let link = link.finish().expect("finish").into_inner();
    let mut bomb = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    bomb.start_file(
        "zeros",
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated),
    )
    .expect("start");
    let mb = vec![0u8; 1024 * 1024];
    for _ in 0..251 {
        bomb.write_all(&mb).expect("write");
    }
    let bomb = bomb.finish().expect("finish").into_inner();
    assert!(bomb.len() < 1024 * 1024, "a bomb is small: {}", bomb.len());
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("dotdot", zip_of(&[("../app.py", b"x")]), "invalid_package_path"),
        ("absolute", zip_of(&[("/app.py", b"x")]), "invalid_package_path"),
        ("link", link, "unsupported_zip_entry"),
        ("bomb", bomb, "package_too_large"),
    ];
    for (name, zip, code) in cases {
        let a =
            s.create(&json!({"name": name, "runtime": "python", "zip": b64(&zip), "handler": "app.handler"}));
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {}", a.body);
        assert_eq!(a.error_code(), code, "{name}: {}", a.body);
        assert_eq!(
            s.get(&format!("/v1/functions/{name}")).status,
            StatusCode::NOT_FOUND
        );
    }
    let a = s.create(&json!({"name": "files-escape", "runtime": "python",
                             "files": {"../app.py": "x"}, "handler": "app.handler"}));
    assert_eq!(a.error_code(), "invalid_package_path", "{}", a.body);
    let entries = std::fs::read_dir(s.data_dir().join("packages"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(entries, 0, "nothing was unpacked");
    assert_eq!(stopped_count(&mut s, "packages"), 0, "nothing was stored");
}

#[test]
fn a_zip_larger_than_a_one_file_body_is_taken() {
    let s = Server::start_with(None, &["--prewarm", "0"]);
    // 16 MiB that do not compress: 21 MiB of base64, over the 12 MiB a one-file body may be.
    let mut noise = vec![0u8; 16 * 1024 * 1024];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let zip = zip_of(&[
        ("app.py", b"def handler(event, context):\n    return 'big'\n"),
        ("data.bin", &noise),
    ]);
    let a =
        s.create(&json!({"name": "big", "runtime": "python", "zip": b64(&zip), "handler": "app.handler"}));
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(s.invoke("big", "{}").json(), "big");
    let f = s.function("big");
    assert_eq!(f["files"][1]["size"], 16 * 1024 * 1024, "{f}");
    // Over the create body's limit: 413, with the API's error shape.
    let huge = format!(
        r#"{{"name": "huge", "runtime": "python", "handler": "app.handler", "zip": "{}"}}"#,
        "A".repeat(71 * 1024 * 1024)
    );
    let a = s.post("/v1/functions", huge);
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.body);
}

#[test]
fn a_non_root_server_shows_packages_read_only_too() {
    use crate::rootless::{delegate_cgroups, NOBODY};
    delegate_cgroups(NOBODY);
    let data = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::chown(data.path(), Some(NOBODY), Some(NOBODY)).expect("chown data");
    let env = [("IGNIS_PYTHON", "/usr/bin/python3.11")];
    let (mut child, url) = crate::harness::spawn_as(data.path(), &["--prewarm", "1"], &env, Some(NOBODY));
    let http = reqwest::blocking::Client::new();
    for (name, runtime, files, handler, entry) in [
        (
            "pkg-py",
            "python",
            python_files(),
            "hello_world/app.lambda_handler",
            "hello_world/app.py",
        ),
        (
            "pkg-ts",
            "typescript",
            typescript_files(),
            "src/lambda.handler",
            "src/lambda.ts",
        ),
    ] {
        let body = json!({"name": name, "runtime": runtime, "files": files, "handler": handler});
        let created: Value = http
            .post(format!("{url}/v1/functions?wait=true"))
            .body(body.to_string())
            .send()
            .expect("send")
            .json()
            .expect("json");
        assert_eq!(created["state"], "ready", "{created}");
        let r = http
            .post(format!("{url}/v1/functions/{name}/invoke"))
            .body(r#"{"name": "ignis"}"#)
            .send()
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().expect("json");
        assert_eq!(v["greeting"], "hello ignis", "{v}");
        assert_eq!(v["file"], format!("/code/{entry}"), "{v}");
        assert_ne!(v["write"], "allowed", "{v}");
        let mountinfo = v["mountinfo"].as_str().expect("mountinfo");
        assert!(
            !mountinfo.contains(&data.path().display().to_string()),
            "{mountinfo}"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_package_comes_back_after_a_restart_from_the_store_alone() {
    let mut s = Server::start_with(None, &["--prewarm", "0"]);
    let a = s.create(
        &json!({"name": "pkg-py", "runtime": "python", "files": python_files(),
                             "handler": "hello_world/app.lambda_handler"}),
    );
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    let sha = a.json()["package_sha256"]
        .as_str()
        .expect("a package hash")
        .to_owned();
    let cache = s.data_dir().join("packages");
    assert!(
        cache.join(&sha).join("hello_world/app.py").is_file(),
        "unpacked once per hash"
    );
    // As if killed (-9) in the middle of an unpack: the package's folder is missing and a
    // half-written one is left; the store alone rebuilds what instances need.
    std::fs::remove_dir_all(cache.join(&sha)).expect("remove the unpacked package");
    std::fs::create_dir_all(cache.join(format!(".tmp-{sha}-0"))).expect("a half-written leftover");
    s.restart();
    wait_until("the function is ready again", WAIT, || {
        s.function("pkg-py")["state"] == "ready"
    });
    let _ = check_answer(&s, "pkg-py", "hello_world/app.py");
    assert!(cache.join(&sha).is_dir(), "made again from the store");
    assert!(
        !cache.join(format!(".tmp-{sha}-0")).exists(),
        "the leftover was removed"
    );
}

#[test]
fn deleting_the_last_function_of_a_package_collects_it() {
    let mut s = Server::start_with(None, &["--prewarm", "0"]);
    let body = |name: &str| {
        json!({"name": name, "runtime": "python", "files": python_files(),
               "handler": "hello_world/app.lambda_handler"})
    };
    let a = s.create(&body("first"));
    let sha = a.json()["package_sha256"]
        .as_str()
        .expect("a package hash")
        .to_owned();
    let b = s.create(&body("second"));
    assert_eq!(
        b.json()["package_sha256"],
        sha.as_str(),
        "the same files, the same package"
    );
    let unpacked = s.data_dir().join("packages").join(&sha);
    let delete = |s: &Server, name: &str| {
        let a = s.send(s.request(reqwest::Method::DELETE, &format!("/v1/functions/{name}")));
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    };
    delete(&s, "first");
    let _ = check_answer(&s, "second", "hello_world/app.py");
    assert_eq!(stopped_count(&mut s, "packages"), 1, "still used by the second");
    s.restart();
    wait_until("the second is ready again", WAIT, || {
        s.function("second")["state"] == "ready"
    });
    assert!(unpacked.is_dir(), "kept while used");
    delete(&s, "second");
    assert_eq!(
        (
            stopped_count(&mut s, "packages"),
            stopped_count_again(&s, "package_blobs")
        ),
        (0, 0),
        "the store keeps no package nobody uses"
    );
    // The unpacked copy goes at the next start, when no instance can hold it.
    s.restart();
    wait_until("the unpacked copy is removed", WAIT, || !unpacked.exists());
}

#[test]
fn a_package_that_fails_to_load_names_its_file_and_line() {
    let s = Server::start_with(None, &["--prewarm", "0"]);
    let a = s.create(&json!({"name": "broken", "runtime": "python", "handler": "hello_world/app.lambda_handler",
                             "files": {"hello_world/__init__.py": "", "hello_world/app.py": "x = 1\ndef (:\n"}}));
    let f = a.json();
    assert_eq!(f["state"], "error", "{f}");
    assert_eq!(f["deploy_error"]["type"], "SyntaxError", "{f}");
    assert_eq!(f["deploy_error"]["line"], 2, "{f}");
    let a = s.create(
        &json!({"name": "no-such-fn", "runtime": "typescript", "handler": "src/lambda.nothing",
                             "files": typescript_files()}),
    );
    let f = a.json();
    assert_eq!(f["state"], "error", "{f}");
    assert_eq!(f["deploy_error"]["type"], "HandlerNotFound", "{f}");
}

#[test]
fn a_package_with_outbound_networking_starts_fresh_with_its_files() {
    let s = Server::start();
    let a = s.create(
        &json!({"name": "net-pkg", "runtime": "python", "files": python_files(),
                             "handler": "hello_world/app.lambda_handler", "network": "outbound"}),
    );
    // slirp4netns comes with `make tools`, as for the network tests.
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    let _ = check_answer(&s, "net-pkg", "hello_world/app.py");
}
