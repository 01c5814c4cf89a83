//! Bad input on every route: unknown query parameters, values out of range, environment
//! variables the OS cannot hold, malformed paths, headers, methods and bodies. Each is
//! refused with `{"error": {"code", "message"}}` and a stable code, and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{Answer, Server};

const ECHO_PY: &str = "import os\n\ndef handler(event, context):\n    return {\"statusCode\": 200, \"body\": os.environ.get(\"GREETING\", \"\")}\n";

/// Every route of the API (function URLs aside: their query string is the function's),
/// with a body it would accept.
fn routes() -> Vec<(Method, &'static str, Option<Value>)> {
    let spec = json!({"name": "other", "runtime": "python", "code": ECHO_PY});
    let update = json!({"runtime": "python", "code": ECHO_PY});
    vec![
        (Method::GET, "/healthz", None),
        (Method::GET, "/metrics", None),
        (Method::GET, "/v1/functions", None),
        (Method::POST, "/v1/functions", Some(spec)),
        (Method::GET, "/v1/functions/target", None),
        (Method::GET, "/v1/functions/target/code", None),
        (Method::GET, "/v1/functions/target/versions/1/build", None),
        (Method::GET, "/v1/layers", None),
        (
            Method::POST,
            "/v1/layers",
            Some(json!({"name": "shared", "runtimes": ["python"], "files": {"python/x.py": "X = 1\n"}})),
        ),
        (Method::GET, "/v1/layers/shared/versions/1", None),
        (Method::DELETE, "/v1/layers/shared/versions/1", None),
        (Method::PUT, "/v1/functions/target", Some(update)),
        (Method::DELETE, "/v1/functions/target", None),
        (Method::POST, "/v1/functions/target/invoke", Some(json!({}))),
        (Method::GET, "/v1/functions/target/invocations", None),
        (Method::GET, "/v1/functions/target/logs", None),
        (
            Method::GET,
            "/v1/invocations/0190c5a4-0000-7000-8000-000000000000",
            None,
        ),
        (Method::GET, "/v1/functions/target/dead-letters", None),
        (Method::GET, "/v1/functions/target/dead-letters/x", None),
        (Method::DELETE, "/v1/functions/target/dead-letters/x", None),
        (Method::POST, "/v1/functions/target/dead-letters/x/redrive", None),
        (Method::GET, "/v1/schedules", None),
        (Method::GET, "/v1/clock", None),
        (
            Method::PUT,
            "/v1/clock",
            Some(json!({"now": "2030-01-01T00:00:00Z"})),
        ),
        (Method::GET, "/v1/runtimes", None),
        (Method::GET, "/v1/openapi.json", None),
        (Method::GET, "/v1/usage", None),
        (Method::GET, "/v1/stats", None),
        (Method::GET, "/v1/functions/target/stats", None),
        (
            Method::POST,
            "/v1/playground/run",
            Some(json!({"runtime": "python", "code": ECHO_PY})),
        ),
        (Method::GET, "/v1/functions/target/test-events", None),
        (
            Method::PUT,
            "/v1/functions/target/test-events/first",
            Some(json!({"a": 1})),
        ),
        (Method::DELETE, "/v1/functions/target/test-events/first", None),
    ]
}

fn call(s: &Server, method: Method, path: &str, body: Option<&Value>) -> Answer {
    let mut r = s.request(method, path);
    if let Some(b) = body {
        r = r.body(b.to_string());
    }
    s.send(r)
}

fn assert_error(a: &Answer, status: StatusCode, code: &str, what: &str) -> Value {
    assert_eq!(a.status, status, "{what}: {}", a.body);
    let e = a.json();
    assert_eq!(e["error"]["code"], code, "{what}: {e}");
    assert!(
        !e["error"]["message"].as_str().expect("a message").is_empty(),
        "{what}: {e}"
    );
    e
}

#[test]
fn every_route_refuses_an_unknown_query_parameter_and_does_nothing() {
    let s = Server::start();
    s.deploy("target", "python", ECHO_PY, json!({"http": {"auth": "none"}}));
    for (method, path, body) in routes() {
        let what = format!("{method} {path}?bogus=1");
        let a = call(&s, method, &format!("{path}?bogus=1"), body.as_ref());
        let e = assert_error(&a, StatusCode::BAD_REQUEST, "unknown_parameter", &what);
        assert_eq!(e["error"]["field"], "bogus", "{what}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap_or("").contains("\"bogus\""),
            "{what}: the message names the parameter: {e}"
        );
    }
    // Nothing was created, updated, deleted, invoked or saved by the refused requests.
    let f = s.function("target");
    assert_eq!(f["version"], 1, "{f}");
    let list = s.get("/v1/functions").json();
    assert_eq!(list["functions"].as_array().map(Vec::len), Some(1), "{list}");
    let invocations = s.get("/v1/functions/target/invocations").json();
    assert_eq!(invocations["invocations"], json!([]), "{invocations}");
    let events = s.get("/v1/functions/target/test-events").json();
    assert_eq!(events["test_events"], json!([]), "{events}");
    // A function URL's query string is the function's: passed through, not refused.
    let a = s.get("/fn/target/path?bogus=1&limit=-1");
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[test]
fn values_out_of_range_are_refused_naming_the_parameter_and_the_range() {
    let s = Server::start();
    s.deploy("target", "python", ECHO_PY, json!({}));
    let list = "/v1/functions/target/invocations";
    let dead = "/v1/functions/target/dead-letters";
    let logs = "/v1/functions/target/logs";
    let stats = "/v1/functions/target/stats";
    // (path and query, code, parameter, what the message must say)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            &format!("{list}?limit=0"),
            "invalid_parameter",
            "limit",
            "from 1 to 1000",
        ),
        (
            &format!("{list}?limit=-1"),
            "invalid_parameter",
            "limit",
            "from 1 to 1000",
        ),
        (
            &format!("{list}?limit=1001"),
            "invalid_parameter",
            "limit",
            "from 1 to 1000",
        ),
        (
            &format!("{list}?limit=ten"),
            "invalid_parameter",
            "limit",
            "from 1 to 1000",
        ),
        (
            &format!("{list}?limit=1.5"),
            "invalid_parameter",
            "limit",
            "from 1 to 1000",
        ),
        (
            &format!("{list}?limit="),
            "invalid_parameter",
            "limit",
            "from 1 to 1000",
        ),
        (
            &format!("{list}?limit=1&limit=2"),
            "duplicate_parameter",
            "limit",
            "more than once",
        ),
        (
            &format!("{dead}?limit=0"),
            "invalid_parameter",
            "limit",
            "from 1 to 1000",
        ),
        (
            &format!("{dead}?limit=-5"),
            "invalid_parameter",
            "limit",
            "from 1 to 1000",
        ),
        (
            &format!("{logs}?limit=0"),
            "invalid_parameter",
            "limit",
            "from 1 to 10000",
        ),
        (
            &format!("{logs}?limit=10001"),
            "invalid_parameter",
            "limit",
            "from 1 to 10000",
        ),
        (
            &format!("{logs}?follow=maybe"),
            "invalid_parameter",
            "follow",
            "true or false",
        ),
        (
            &format!("{stats}?minutes=0"),
            "invalid_parameter",
            "minutes",
            "from 1 to 1440",
        ),
        (
            &format!("{stats}?minutes=1441"),
            "invalid_parameter",
            "minutes",
            "from 1 to 1440",
        ),
        (
            "/v1/stats?minutes=-60",
            "invalid_parameter",
            "minutes",
            "from 1 to 1440",
        ),
        (
            "/v1/stats?minutes=hour",
            "invalid_parameter",
            "minutes",
            "from 1 to 1440",
        ),
        ("/v1/usage", "missing_parameter", "since", "RFC 3339"),
        (
            "/v1/usage?since=yesterday",
            "invalid_parameter",
            "since",
            "RFC 3339",
        ),
        (
            "/v1/usage?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            "invalid_parameter",
            "until",
            "after since",
        ),
        (
            "/v1/usage?since=2026-01-01T00:00:00Z&until=soon",
            "invalid_parameter",
            "until",
            "RFC 3339",
        ),
    ];
    for (path, code, field, says) in cases {
        let a = s.get(path);
        let e = assert_error(&a, StatusCode::BAD_REQUEST, code, path);
        assert_eq!(e["error"]["field"], *field, "{path}: {e}");
        let message = e["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(says), "{path}: {message:?} should say {says:?}");
    }
    // `?wait=` on create and update takes true or false only, and a refused one stores nothing.
    let body = json!({"name": "waited", "runtime": "python", "code": ECHO_PY});
    let a = s.post("/v1/functions?wait=maybe", body.to_string());
    let e = assert_error(
        &a,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        "create ?wait=maybe",
    );
    assert_eq!(e["error"]["field"], "wait");
    assert_eq!(s.get("/v1/functions/waited").status, StatusCode::NOT_FOUND);
    let a = s.send(
        s.request(Method::PUT, "/v1/functions/target?wait=2")
            .body(json!({"runtime": "python", "code": ECHO_PY, "memory_mb": 256}).to_string()),
    );
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_parameter", "update ?wait=2");
    assert_eq!(
        s.function("target")["version"],
        1,
        "a refused update changes nothing"
    );
    // The bounds themselves, and values sent percent-encoded, are accepted.
    for ok in [
        format!("{list}?limit=1000"),
        format!("{list}?limit=%31"),
        format!("{dead}?limit=1"),
        format!("{logs}?limit=10000&follow=false"),
        format!("{stats}?minutes=1440"),
        "/v1/stats?minutes=1".to_owned(),
        "/v1/usage?since=2026-01-01T00:00:00%2B01:00".to_owned(),
        "/v1/usage?since=2026-01-01T00:00:00+01:00".to_owned(),
    ] {
        let a = s.get(&ok);
        assert_eq!(a.status, StatusCode::OK, "{ok}: {}", a.body);
    }
}

#[test]
fn environment_variables_the_os_cannot_hold_are_refused_at_create_update_and_playground() {
    let s = Server::start();
    s.deploy("target", "python", ECHO_PY, json!({"env": {"GREETING": "hello"}}));
    // (env, the field named, what the message says)
    let cases = [
        (json!({"": "x"}), "env.", "empty name"),
        (json!({"A=B": "x"}), "env.A=B", "'='"),
        (json!({"A\u{0}B": "x"}), "env.A\u{0}B", "NUL"),
        (json!({"GREETING": "a\u{0}b"}), "env.GREETING", "NUL"),
        (json!({"9LIVES": "x"}), "env.9LIVES", "[A-Za-z_]"),
    ];
    for (env, field, says) in cases {
        let check = |a: &Answer, what: &str| {
            let e = assert_error(a, StatusCode::UNPROCESSABLE_ENTITY, "invalid_env", what);
            assert_eq!(e["error"]["field"], field, "{what}: {e}");
            let message = e["error"]["message"].as_str().unwrap_or("");
            assert!(message.contains(says), "{what}: {message:?} should say {says:?}");
        };
        let create = json!({"name": "fresh", "runtime": "python", "code": ECHO_PY, "env": env});
        check(&s.create(&create), &format!("create with env {env}"));
        let update = json!({"runtime": "python", "code": ECHO_PY, "env": env});
        check(&s.update("target", &update), &format!("update with env {env}"));
        let run = json!({"runtime": "python", "code": ECHO_PY, "env": env});
        check(
            &s.post("/v1/playground/run", run.to_string()),
            &format!("playground with env {env}"),
        );
    }
    assert_eq!(s.get("/v1/functions/fresh").status, StatusCode::NOT_FOUND);
    let f = s.function("target");
    assert_eq!(
        (f["version"].clone(), f["env"].clone()),
        (json!(1), json!({"GREETING": "hello"}))
    );
    // The function still runs with its own environment.
    let a = s.invoke("target", "{}");
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "hello"));
}

#[test]
fn malformed_paths_headers_methods_and_bodies_get_the_error_shape() {
    let s = Server::start();
    s.deploy("target", "python", ECHO_PY, json!({}));

    // A path segment that is not UTF-8, and a name no function can have.
    let a = s.get("/v1/functions/%FF");
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_path", "%FF");
    let a = s.get("/v1/functions/Not_A_Name/invocations");
    let e = assert_error(&a, StatusCode::NOT_FOUND, "not_found", "Not_A_Name");
    assert_eq!(e["error"]["field"], "name");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("lower-case"),
        "{e}"
    );

    // Invocation headers.
    let invoke = |name: &str, value: &str| {
        s.send(
            s.request(Method::POST, "/v1/functions/target/invoke")
                .header(name, value)
                .body("{}"),
        )
    };
    let a = invoke("x-ignis-invocation-type", "sideways");
    let e = assert_error(&a, StatusCode::BAD_REQUEST, "invalid_header", "invocation type");
    assert_eq!(e["error"]["field"], "x-ignis-invocation-type");
    assert!(
        e["error"]["message"].as_str().unwrap_or("").contains("sideways"),
        "{e}"
    );
    for key in ["", &"k".repeat(300)] {
        let a = invoke("idempotency-key", key);
        let e = assert_error(
            &a,
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "idempotency key",
        );
        assert_eq!(e["error"]["field"], "idempotency-key");
    }
    for (name, code) in [
        ("x-ignis-invocation-type", "invalid_header"),
        ("idempotency-key", "invalid_idempotency_key"),
    ] {
        let a = s.send(
            s.request(Method::POST, "/v1/functions/target/invoke")
                .header(name, "sync")
                .header(name, "async")
                .body("{}"),
        );
        let e = assert_error(&a, StatusCode::BAD_REQUEST, code, name);
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("more than once"),
            "{e}"
        );
    }
    let a = s.get("/v1/functions/target/invocations");
    assert_eq!(a.json()["invocations"], json!([]), "refused invokes ran nothing");

    // Invocation ids are UUIDs: anything else says so; any spelling of one finds it.
    for path in [
        "/v1/invocations/not-an-id",
        "/v1/functions/target/dead-letters/not-an-id",
    ] {
        let e = assert_error(&s.get(path), StatusCode::NOT_FOUND, "not_found", path);
        assert_eq!(e["error"]["field"], "id", "{path}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap_or("").contains("UUID"),
            "{e}"
        );
    }
    let ran = s.invoke("target", "{}");
    assert_eq!(ran.status, StatusCode::OK, "{}", ran.body);
    let id = ran.header("x-ignis-invocation-id").to_owned();
    let a = s.get(&format!("/v1/invocations/{}", id.to_uppercase()));
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["id"], id.as_str());

    // A method a route does not have.
    for (method, path) in [
        (Method::DELETE, "/v1/runtimes"),
        (Method::PATCH, "/v1/functions/target"),
        (Method::POST, "/healthz"),
        (Method::PUT, "/metrics"),
    ] {
        let a = call(&s, method.clone(), path, None);
        assert_error(&a, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", path);
        assert!(!a.header("allow").is_empty(), "{method} {path}: an Allow header");
    }

    // Bodies: malformed JSON and unknown fields have stable codes.
    let put = |path: &str, body: &str| s.send(s.request(Method::PUT, path).body(body.to_owned()));
    for (answer, code, what) in [
        (s.post("/v1/functions", "{"), "invalid_json", "create"),
        (put("/v1/functions/target", "{"), "invalid_json", "update"),
        (
            s.post("/v1/functions/target/invoke", "{"),
            "invalid_json",
            "invoke",
        ),
        (s.post("/v1/playground/run", "{"), "invalid_json", "playground"),
        (
            put("/v1/functions/target/test-events/e", "{"),
            "invalid_json",
            "test event",
        ),
        (put("/v1/clock", "{"), "invalid_json", "clock"),
        (put("/v1/clock", "[1]"), "invalid_json", "clock array"),
        (
            put("/v1/clock", r#"{"now": "2030-01-01T00:00:00Z", "later": 1}"#),
            "unknown_field",
            "clock field",
        ),
        (
            s.post(
                "/v1/playground/run",
                r#"{"runtime": "python", "code": "x", "nme": 1}"#,
            ),
            "unknown_field",
            "playground field",
        ),
        (
            s.post(
                "/v1/functions",
                r#"{"name": "x", "runtime": "python", "code": "x", "nme": 1}"#,
            ),
            "unknown_field",
            "create field",
        ),
        (
            s.post(
                "/v1/functions",
                r#"{"name": "x", "runtime": "python", "code": "x", "name": "y"}"#,
            ),
            "duplicate_field",
            "create member twice",
        ),
        (
            put(
                "/v1/functions/target",
                r#"{"runtime": "python", "code": "x", "env": {"A": "1", "A": "2"}}"#,
            ),
            "duplicate_field",
            "update env member twice",
        ),
        (
            s.post(
                "/v1/playground/run",
                r#"{"runtime": "python", "code": "x", "code": "y"}"#,
            ),
            "duplicate_field",
            "playground member twice",
        ),
        (
            put(
                "/v1/clock",
                r#"{"now": "2030-01-01T00:00:00Z", "now": "2031-01-01T00:00:00Z"}"#,
            ),
            "duplicate_field",
            "clock member twice",
        ),
    ] {
        assert_error(&answer, StatusCode::BAD_REQUEST, code, what);
    }
}

/// The routes the router declares, read from its source: (method, path pattern). Function
/// URLs are left out (their query string is the function's).
pub(crate) fn declared_routes() -> Vec<(String, String)> {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crates/api/src/lib.rs"))
        .expect("read the router's source");
    let v1_start = source.find("let v1 = ").expect("the v1 router");
    let v1_end = source[v1_start..].find(';').expect("its end") + v1_start;
    let mut routes = Vec::new();
    for (at, _) in source.match_indices(".route(") {
        let rest = &source[at + ".route(".len()..];
        let call = &rest[..rest.find("\n        .").unwrap_or(rest.len())];
        let path = call.split('"').nth(1).expect("a route's path literal");
        if path.starts_with("/fn/") {
            continue;
        }
        let prefix = if (v1_start..v1_end).contains(&at) {
            "/v1"
        } else {
            ""
        };
        let mut found = false;
        for method in ["get", "post", "put", "delete", "patch"] {
            let called = [
                format!("({method}("),
                format!(" {method}("),
                format!(".{method}("),
                format!("::{method}("),
            ];
            if called.iter().any(|c| call.contains(c.as_str())) {
                routes.push((method.to_ascii_uppercase(), format!("{prefix}{path}")));
                found = true;
            }
        }
        assert!(found, "no method found for route {path}: {call}");
    }
    routes
}

fn matches(pattern: &str, path: &str) -> bool {
    let (p, q): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == q.len() && p.iter().zip(&q).all(|(p, q)| p.starts_with('{') || p == q)
}

#[test]
fn the_walk_covers_every_route_the_router_declares() {
    let declared = declared_routes();
    assert!(declared.len() >= 26, "the source was read: {declared:?}");
    let walked = routes();
    for (method, pattern) in &declared {
        assert!(
            walked
                .iter()
                .any(|(m, path, _)| m.as_str() == method && matches(pattern, path)),
            "{method} {pattern} is a route the bad-input walk does not cover: add it to routes()"
        );
    }
}
