//! Updates that name no code (none of `code`, `files`, `zip`) keep the function's code, as
//! Lambda's UpdateFunctionConfiguration: a one-file function keeps its file, a package
//! function its package (same hash and files, not sent again), each in a new version that
//! deploys and answers, also after a restart; the handler is checked against the package
//! kept; a create still needs code and two sources are still refused.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{wait_until, Server};

const ONE_FILE: &str = "import os\n\ndef run(event, context):\n    return {'kind': 'one file', 'mark': os.environ.get('MARK')}\n";

fn package_files() -> Value {
    json!({
        "app/main.py": "import os\nfrom app import helper\n\ndef handler(event, context):\n    return {'kind': helper.KIND, 'mark': os.environ.get('MARK')}\n",
        "app/__init__.py": "",
        "app/helper.py": "KIND = 'package'\n",
    })
}

/// Updates `name` with `body` (no code), asserting version `version` is made and serves.
fn update_keeps(s: &Server, name: &str, body: Value, version: u64) -> Value {
    let a = s.update(name, &body);
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let f = s.function(name);
    assert_eq!(f["version"], version, "{f}");
    assert_eq!(f["active_version"], version, "the new version deployed: {f}");
    assert_eq!(f["state"], "ready", "{f}");
    f
}

fn answer(s: &Server, name: &str) -> Value {
    let a = s.invoke(name, "{}");
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.json()
}

#[test]
fn an_update_without_code_keeps_one_file_and_a_package() {
    let mut s = Server::start();

    // One file.
    let before = s.deploy("single", "python", ONE_FILE, json!({"handler": "run"}));
    let f = update_keeps(
        &s,
        "single",
        json!({"runtime": "python", "handler": "run", "memory_mb": 256}),
        2,
    );
    assert_eq!(f["memory_mb"], 256, "{f}");
    assert_eq!(f["code_sha256"], before["code_sha256"], "{f}");
    assert_eq!(f["code"], ONE_FILE, "the same one file: {f}");
    assert_eq!(f["package_sha256"], Value::Null, "{f}");
    assert_eq!(answer(&s, "single")["kind"], "one file");

    // A package.
    let a = s.create(
        &json!({"name": "pkg", "runtime": "python", "files": package_files(),
                             "handler": "app/main.handler"}),
    );
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let created = s.function("pkg");
    let sha = created["package_sha256"].as_str().expect("a package").to_owned();
    let f = update_keeps(
        &s,
        "pkg",
        json!({"runtime": "python", "handler": "app/main.handler", "memory_mb": 256}),
        2,
    );
    assert_eq!(f["memory_mb"], 256, "{f}");
    assert_eq!(f["package_sha256"], sha.as_str(), "the same package: {f}");
    assert_eq!(f["code_sha256"], sha.as_str(), "{f}");
    assert_eq!(f["files"], created["files"], "the same files: {f}");
    assert_eq!(f["code"], Value::Null, "{f}");
    assert_eq!(answer(&s, "pkg")["kind"], "package");

    // The new settings reach the kept code: the new version is the one answering.
    for (name, handler) in [("single", "run"), ("pkg", "app/main.handler")] {
        update_keeps(
            &s,
            name,
            json!({"runtime": "python", "handler": handler, "env": {"MARK": "v3"}}),
            3,
        );
        assert_eq!(answer(&s, name)["mark"], "v3", "{name}");
    }

    // The kept code is stored with the version: it comes back after a restart.
    s.restart();
    wait_until("both functions are ready again", Duration::from_secs(60), || {
        ["single", "pkg"]
            .iter()
            .all(|name| s.function(name)["state"] == "ready")
    });
    for (name, kind) in [("single", "one file"), ("pkg", "package")] {
        let a = answer(&s, name);
        assert_eq!(
            (a["kind"].as_str(), a["mark"].as_str()),
            (Some(kind), Some("v3")),
            "{a}"
        );
    }
    assert_eq!(s.function("pkg")["package_sha256"], sha.as_str());
}

#[test]
fn an_update_without_code_checks_the_handler_against_the_package_kept() {
    let s = Server::start();
    let a = s.create(
        &json!({"name": "pkg", "runtime": "python", "files": package_files(),
                             "handler": "app/main.handler"}),
    );
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);

    let a = s.update(
        "pkg",
        &json!({"runtime": "python", "handler": "app/gone.handler"}),
    );
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    let e = a.json();
    assert_eq!(e["error"]["code"], "invalid_value", "{e}");
    assert_eq!(e["error"]["field"], "handler", "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap_or("").contains("app/gone"),
        "{e}"
    );

    // A package function's handler is Lambda's path/module.function: needed.
    let a = s.update("pkg", &json!({"runtime": "python", "memory_mb": 256}));
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(a.error_code(), "missing_field");
    assert_eq!(a.json()["error"]["field"], "handler", "{}", a.body);

    // Nothing of the refused updates was made.
    let f = s.function("pkg");
    assert_eq!(
        (f["version"].as_u64(), f["memory_mb"].as_u64()),
        (Some(1), Some(128)),
        "{f}"
    );
    assert_eq!(s.invoke("pkg", "{}").status, StatusCode::OK);

    // A function that does not exist has no code to keep.
    let a = s.update("nobody", &json!({"runtime": "python"}));
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
}

#[test]
fn a_create_still_needs_code_and_two_sources_are_still_refused() {
    let s = Server::start();
    let a = s.create(&json!({"name": "nocode", "runtime": "python"}));
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(a.error_code(), "missing_field");
    assert_eq!(a.json()["error"]["field"], "code", "{}", a.body);
    assert_eq!(
        s.get("/v1/functions/nocode").status,
        StatusCode::NOT_FOUND,
        "nothing was created"
    );

    s.deploy("single", "python", ONE_FILE, json!({"handler": "run"}));
    let a = s.update(
        "single",
        &json!({"runtime": "python", "code": ONE_FILE, "files": package_files(), "handler": "run"}),
    );
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert_eq!(a.error_code(), "invalid_value");
    assert_eq!(s.function("single")["version"], 1);
}

/// `GET` gives the settings in the shape `PUT` takes (`spec`): sent back unchanged, it makes
/// a version with the same settings, and a field that follows a server default stays out of
/// it, named in `defaulted`, so it keeps following (here when `max_instances` changes).
#[test]
fn the_spec_a_get_shows_is_an_update_body_that_round_trips() {
    let s = Server::start();
    s.deploy("target", "python", ONE_FILE, json!({"handler": "run"}));
    s.deploy(
        "full",
        "python",
        ONE_FILE,
        json!({
            "handler": "run", "memory_mb": 192, "timeout_secs": 12, "vcpus": 1,
            "min_instances": 0, "max_instances": 4, "concurrency": 2, "idle_timeout_secs": 30,
            "env": {"MARK": "m"}, "network": "none",
            "http": {"auth": "none", "cors": {"allow_origins": ["https://app.example"], "max_age_secs": 60}},
            "retry": {"max_retries": 1, "max_event_age_secs": 600},
            "on_success": "target",
            "schedules": [{"cron": "0 9 * * 1-5", "timezone": "Europe/Paris", "event": {"k": 1}, "catch_up": "one"}],
        }),
    );
    let first = s.function("full");
    let spec = first["spec"].clone();
    assert_eq!(first["defaulted"], json!(["max_async_concurrency"]), "{first}");
    assert!(
        spec.get("max_async_concurrency").is_none(),
        "a defaulted field is left out: {spec}"
    );
    assert!(
        spec.get("code").is_none() && spec.get("package_sha256").is_none(),
        "{spec}"
    );
    assert_eq!(
        first["max_async_concurrency"], 4,
        "the effective default: half of 4 × 2"
    );

    let second = update_keeps(&s, "full", spec.clone(), 2);
    assert_eq!(second["spec"], spec, "the same settings, field for field");
    assert_eq!(second["code_sha256"], first["code_sha256"]);

    // The default keeps following what it follows.
    let mut bigger = spec.clone();
    bigger["max_instances"] = json!(8);
    let third = update_keeps(&s, "full", bigger, 3);
    assert_eq!(third["max_async_concurrency"], 8, "{third}");
    assert_eq!(third["defaulted"], json!(["max_async_concurrency"]));

    // A value the function sets is in the spec and no longer defaulted.
    let mut set = third["spec"].clone();
    set["max_async_concurrency"] = json!(3);
    let fourth = update_keeps(&s, "full", set, 4);
    assert_eq!(fourth["spec"]["max_async_concurrency"], 3, "{fourth}");
    assert_eq!(fourth["defaulted"], json!([]));
    assert_eq!(answer(&s, "full")["mark"], "m");

    // Lists do not carry it.
    let list = s.get("/v1/functions").json();
    let listed = list["functions"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["name"] == "full"))
        .cloned()
        .unwrap_or_else(|| panic!("listed: {list}"));
    assert!(listed.get("spec").is_none(), "{listed}");
}
