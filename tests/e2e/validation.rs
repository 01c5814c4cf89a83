//! Every validation rule: 400 for malformed input, 422 for invalid values, the field
//! named, and nothing stored.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::Server;

fn base() -> Value {
    json!({"name": "valid", "runtime": "python", "code": "def handler(e):\n    return 1\n"})
}

fn with(field: &str, value: Value) -> Value {
    let mut b = base();
    b[field] = value;
    b
}

fn assert_rejected(s: &Server, body: &Value, status: StatusCode, field: &str) {
    let a = s.create(body);
    assert_eq!(a.status, status, "{body}: {}", a.body);
    let e = a.json();
    assert_eq!(e["error"]["field"], field, "{body}: {e}");
    assert!(!e["error"]["code"].as_str().expect("code").is_empty());
    assert!(!e["error"]["message"].as_str().expect("message").is_empty());
    let stored = s.get("/v1/functions").json();
    assert_eq!(stored["functions"], json!([]), "a rejected create stores nothing");
}

#[test]
fn invalid_values_are_422_naming_the_field() {
    let s = Server::start();
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    for bad in ["", "Hello", "1abc", "-a", "a_b", "a.b", &"a".repeat(64)] {
        assert_rejected(&s, &with("name", json!(bad)), unprocessable, "name");
    }
    assert_rejected(&s, &with("runtime", json!("ruby")), unprocessable, "runtime");
    assert_rejected(&s, &with("code", json!("")), unprocessable, "code");
    assert_rejected(
        &s,
        &with("code", json!("x".repeat(5 * 1024 * 1024 + 1))),
        unprocessable,
        "code",
    );
    for bad in ["", "1x", "a.b", "a-b", "a b"] {
        assert_rejected(&s, &with("handler", json!(bad)), unprocessable, "handler");
    }
    for (field, low, high) in [
        ("timeout_secs", 0, 301),
        ("memory_mb", 127, 3073),
        ("vcpus", 0, 33),
        ("max_instances", 0, 1001),
        ("idle_timeout_secs", -1, 86401),
        ("min_instances", -1, 1001),
        ("concurrency", 0, 1001),
    ] {
        assert_rejected(&s, &with(field, json!(low)), unprocessable, field);
        assert_rejected(&s, &with(field, json!(high)), unprocessable, field);
    }
    assert_rejected(
        &s,
        &{
            let mut b = with("min_instances", json!(3));
            b["max_instances"] = json!(2);
            b
        },
        unprocessable,
        "min_instances",
    );
    assert_rejected(&s, &with("env", json!({"1BAD": "x"})), unprocessable, "env.1BAD");
    assert_rejected(
        &s,
        &with("env", json!({"BIG": "x".repeat(4096)})),
        unprocessable,
        "env",
    );
}

#[test]
fn malformed_bodies_are_400() {
    let s = Server::start();
    assert_rejected(
        &s,
        &with("colour", json!("red")),
        StatusCode::BAD_REQUEST,
        "colour",
    );
    assert_rejected(
        &s,
        &with("timeout_secs", json!("10")),
        StatusCode::BAD_REQUEST,
        "timeout_secs",
    );
    assert_rejected(
        &s,
        &with("env", json!({"A": 1})),
        StatusCode::BAD_REQUEST,
        "env.A",
    );
    let mut no_code = base();
    no_code.as_object_mut().expect("object").remove("code");
    assert_rejected(&s, &no_code, StatusCode::BAD_REQUEST, "code");
    let a = s.post("/v1/functions", "{not json");
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    let a = s.post("/v1/functions?wiat=true", base().to_string());
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "unknown_parameter")
    );
    assert!(s.get("/v1/functions").json()["functions"]
        .as_array()
        .expect("list")
        .is_empty());
}

#[test]
fn limits_at_their_bounds_are_accepted_and_returned() {
    let s = Server::start();
    let body = json!({
        "name": "bounds", "runtime": "python", "code": "def main(e):\n    return 1\n", "handler": "main",
        "timeout_secs": 300, "memory_mb": 3072, "vcpus": 32, "max_instances": 1000, "idle_timeout_secs": 86400,
        "min_instances": 0, "concurrency": 1000,
        "env": {"A_1": "x"}
    });
    let a = s.create(&body);
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let f = a.json();
    for field in [
        "timeout_secs",
        "memory_mb",
        "vcpus",
        "max_instances",
        "idle_timeout_secs",
        "min_instances",
        "concurrency",
        "env",
        "handler",
    ] {
        assert_eq!(f[field], body[field], "{field}");
    }
    assert_eq!(f["code_sha256"].as_str().map(str::len), Some(64));
    let defaults = s.deploy("defaults", "python", "def handler(e):\n    return 1\n", json!({}));
    assert_eq!(
        (
            &defaults["timeout_secs"],
            &defaults["memory_mb"],
            &defaults["vcpus"],
            &defaults["max_instances"],
            &defaults["idle_timeout_secs"],
            &defaults["min_instances"],
            &defaults["concurrency"]
        ),
        (
            &json!(30),
            &json!(128),
            &json!(1),
            &json!(10),
            &json!(300),
            &json!(0),
            &json!(1)
        )
    );
}

#[test]
fn duplicates_and_mismatched_names() {
    let s = Server::start();
    s.deploy("dup", "python", "def handler(e):\n    return 1\n", json!({}));
    let mut body = base();
    body["name"] = json!("dup");
    let a = s.create(&body);
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (StatusCode::CONFLICT, "already_exists")
    );
    let a = s.update(
        "dup",
        &json!({"name": "other", "runtime": "python", "code": "x = 1"}),
    );
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.json()["error"]["field"], "name");
    assert_eq!(s.function("dup")["version"], 1, "nothing stored");
    let mut nameless = base();
    nameless.as_object_mut().expect("object").remove("name");
    let a = s.update("missing", &nameless);
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[test]
fn invocation_payloads_are_checked() {
    let s = Server::start();
    s.deploy(
        "payload",
        "python",
        "def handler(e):\n    return len(str(e))\n",
        json!({}),
    );
    let a = s.invoke("payload", "{\"a\": ");
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    let big = format!("\"{}\"", "x".repeat(6 * 1024 * 1024));
    let a = s.invoke("payload", &big);
    assert_eq!(
        (a.status, a.error_code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let fits = format!("\"{}\"", "x".repeat(6 * 1024 * 1024 - 10));
    let a = s.invoke("payload", &fits);
    assert_eq!(a.status, StatusCode::OK, "a payload under 6 MiB is accepted");
    assert_eq!(s.invoke("payload", "").body, "2", "an empty body is {{}}");
    let a = s.get("/v1/functions/payload/invocations?limit=0");
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}
