//! Function lifecycle: deploy checks, errors with their line, versions, delete.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{wait_until, Server};

#[test]
fn a_syntax_error_puts_the_function_in_error_with_its_line() {
    let s = Server::start();
    let cases = [
        (
            "syntax-py",
            "python",
            "def handler(event):\n    return (\n",
            "line 2",
        ),
        (
            "syntax-js",
            "javascript",
            "export function handler(e) {\n  return {;\n}\n",
            "line 2",
        ),
        (
            "syntax-ts",
            "typescript",
            "const x: number = 1;\n\nexport function handler(e) {\n  return x +;\n}\n",
            "line 4",
        ),
        (
            "import-py",
            "python",
            "import os\n\nraise RuntimeError('no config')\n",
            "line 3",
        ),
    ];
    for (name, runtime, code, line) in cases {
        let a = s.create(&json!({"name": name, "runtime": runtime, "code": code}));
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let f = a.json();
        assert_eq!(f["state"], "error", "{name}: {f}");
        assert_eq!(f["active_version"], serde_json::Value::Null);
        let reason = f["state_reason"].as_str().expect("a reason");
        assert!(reason.contains(line), "{name}: {reason:?} should name {line}");
        let call = s.invoke(name, "{}");
        assert_eq!(call.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(call.error_code(), "not_ready");
        assert!(call.json()["error"]["message"]
            .as_str()
            .expect("message")
            .contains("error"));
    }
    let a =
        s.create(&json!({"name": "no-handler", "runtime": "python", "code": "def main(e):\n    return 1\n"}));
    let reason = a.json()["state_reason"].as_str().expect("reason").to_owned();
    assert!(reason.contains("handler 'handler' is not a function"), "{reason}");
}

#[test]
fn without_wait_the_function_is_deploying_then_ready() {
    let s = Server::start();
    let a = s.post(
        "/v1/functions",
        json!({"name": "later", "runtime": "python", "code": "def handler(e):\n    return 1\n"}).to_string(),
    );
    assert_eq!(a.status, StatusCode::CREATED);
    assert!(["creating", "deploying", "ready"].contains(&a.json()["state"].as_str().expect("state")));
    wait_until(
        "the function is ready",
        std::time::Duration::from_secs(20),
        || s.function("later")["state"] == "ready",
    );
    assert_eq!(s.invoke("later", "{}").body, "1");
}

#[test]
fn updates_make_new_versions_and_a_failed_update_keeps_the_old_one() {
    let s = Server::start();
    let v1 = "def handler(e):\n    return 'one'\n";
    let f = s.deploy("versions", "python", v1, json!({}));
    assert_eq!(
        (f["version"].as_u64(), f["active_version"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(s.invoke("versions", "{}").body, r#""one""#);

    let v2 = json!({"runtime": "python", "code": "def handler(e):\n    return 'two'\n", "memory_mb": 256});
    let a = s.update("versions", &v2);
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let f = a.json();
    assert_eq!(
        (f["version"].as_u64(), f["state"].as_str()),
        (Some(2), Some("ready"))
    );
    assert_eq!(f["memory_mb"], 256);
    let call = s.invoke("versions", "{}");
    assert_eq!(call.body, r#""two""#);
    assert_eq!(call.header("x-ignis-version"), "2");

    let broken = json!({"name": "versions", "runtime": "python", "code": "def handler(e)\n    return 3\n"});
    let f = s.update("versions", &broken).json();
    assert_eq!(f["version"], 3);
    assert_eq!(f["active_version"], 2, "the last good version keeps serving");
    assert_eq!(f["state"], "ready");
    assert!(
        f["state_reason"].as_str().expect("reason").contains("version 3"),
        "{f}"
    );
    assert_eq!(s.invoke("versions", "{}").body, r#""two""#);
    assert_eq!(
        s.function("versions")["code"],
        broken["code"],
        "GET shows the newest code"
    );

    let fixed = json!({"runtime": "python", "code": "def handler(e):\n    return 'four'\n"});
    let f = s.update("versions", &fixed).json();
    assert_eq!(
        (f["version"].as_u64(), f["state_reason"].is_null()),
        (Some(4), true)
    );
    assert_eq!(s.invoke("versions", "{}").body, r#""four""#);
}

#[test]
fn an_error_function_can_be_fixed_by_an_update() {
    let s = Server::start();
    let a = s.create(&json!({"name": "fixme", "runtime": "javascript", "code": "export const handler = ;"}));
    assert_eq!(a.json()["state"], "error");
    let f = s
        .update(
            "fixme",
            &json!({"runtime": "javascript", "code": "export const handler = () => 7;"}),
        )
        .json();
    assert_eq!(f["state"], "ready");
    assert_eq!(s.invoke("fixme", "").body, "7");
}

#[test]
fn delete_removes_the_function_and_its_instances() {
    let s = Server::start();
    s.deploy("gone", "python", "def handler(e):\n    return 1\n", json!({}));
    let list = s.get("/v1/functions").json();
    assert_eq!(list["functions"].as_array().expect("list").len(), 1);
    let a = s.send(s.request(Method::DELETE, "/v1/functions/gone"));
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(s.invoke("gone", "{}").error_code(), "not_found");
    assert_eq!(s.get("/v1/functions/gone").status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.send(s.request(Method::DELETE, "/v1/functions/gone")).status,
        StatusCode::NOT_FOUND
    );
    assert!(s.get("/v1/functions").json()["functions"]
        .as_array()
        .expect("list")
        .is_empty());
    // The name can be used again.
    s.deploy("gone", "python", "def handler(e):\n    return 2\n", json!({}));
    assert_eq!(s.invoke("gone", "{}").body, "2");
}

#[test]
fn unknown_functions_and_routes_are_404_with_a_code() {
    let s = Server::start();
    let a = s.invoke("nothing-here", "{}");
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert_eq!(s.get("/v1/nope").error_code(), "not_found");
    assert_eq!(s.get("/v1/invocations/not-an-id").status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/healthz").json()["status"], "ok");
}
