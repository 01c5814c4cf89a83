//! What the web console stands on: its files served by Ignis itself, the playground, the
//! live log tail, the stats behind its charts, saved test events, and deploy errors with
//! their line. (The console itself is tested in a real browser: console/tests.)

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{log_lines, wait_until, Server};
use crate::persistence::instance_cgroups;

#[test]
fn the_console_and_monaco_are_served_by_ignis_itself() {
    // With a token: the console's files are public (they hold no data), the API is not.
    let s = Server::start_with(Some("s3cret"), &[]);
    let plain = reqwest::blocking::Client::new();
    let page = plain.get(format!("{}/", s.url)).send().expect("GET /");
    assert_eq!(page.status(), StatusCode::OK);
    let header = |r: &reqwest::blocking::Response, n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert!(header(&page, "content-type").starts_with("text/html"));
    let csp = header(&page, "content-security-policy");
    assert!(
        csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    let html = page.text().expect("body");
    assert!(html.contains("/console/app.js"), "{html}");
    for (path, kind) in [
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
        ("/console/monaco/vs/loader.js", "text/javascript"),
        ("/console/monaco/vs/editor/editor.main.js", "text/javascript"),
        ("/console/monaco/vs/editor/editor.main.css", "text/css"),
    ] {
        let r = plain.get(format!("{}{path}", s.url)).send().expect("GET");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(
            header(&r, "content-type").starts_with(kind),
            "{path}: {}",
            header(&r, "content-type")
        );
        assert!(!header(&r, "content-security-policy").is_empty(), "{path}");
        assert!(!r.bytes().expect("body").is_empty(), "{path}");
    }
    for path in [
        "/console/nope.js",
        "/console/monaco/vs/nope.js",
        "/console/monaco/vs/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/console/monaco/..%2f..%2f..%2fCargo.toml",
    ] {
        let r = plain.get(format!("{}{path}", s.url)).send().expect("GET");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = r.json().expect("JSON error");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    let api = plain.get(format!("{}/v1/functions", s.url)).send().expect("GET");
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}

fn playground(s: &Server, body: &Value) -> (StatusCode, Value) {
    let a = s.post("/v1/playground/run", body.to_string());
    (a.status, a.json())
}

#[test]
fn the_playground_runs_code_in_a_fresh_sandbox_and_keeps_nothing() {
    let s = Server::start_with(None, &["--prewarm", "0"]);
    let data = s.data_dir();
    let code = format!(
        r#"
import os
DATA = {data:?}
def handler(event):
    seen = os.path.exists("/tmp/was-here")
    open("/tmp/was-here", "w").write("x")
    print("playground says", event["n"])
    return {{"statusCode": 201, "headers": {{"x-a": "b"}},
            "body": f"seen={{seen}} data={{os.path.exists(DATA)}}"}}
"#,
        data = data.display().to_string()
    );
    for n in [1, 2] {
        let (status, run) = playground(&s, &json!({"runtime": "python", "code": code, "event": {"n": n}}));
        assert_eq!(status, StatusCode::OK, "{run}");
        assert_eq!(run["load_error"], Value::Null, "{run}");
        let resp = &run["response"];
        assert_eq!(resp["status"], 201, "{run}");
        assert_eq!(resp["headers"]["x-a"], "b", "{run}");
        assert_eq!(resp["headers"]["x-ignis-cold-start"], "true", "{run}");
        // A fresh instance each time, and the server's files are not visible inside.
        assert_eq!(resp["body"], "seen=False data=False", "{run}");
        assert_eq!(resp["body_encoding"], "utf8");
        assert_eq!(run["cold_start"], true);
        assert!(run["duration_ms"].as_f64().expect("duration") > 0.0, "{run}");
        assert!(run["init_ms"].as_f64().expect("init") > 0.0, "{run}");
        assert_eq!(log_lines(&run), vec![format!("playground says {n}")], "{run}");
    }
    // Nothing was created or recorded, the instance's memory is given back, and its
    // cgroup goes (only the two parked sandbox inits' remain).
    assert_eq!(s.get("/v1/functions").json()["functions"], json!([]));
    assert_eq!(s.get("/v1/stats").json()["functions"], json!({}));
    assert_eq!(s.metric("ignis_memory_reserved_bytes"), Some(0.0));
    wait_until(
        "the playground instances' cgroups are removed",
        Duration::from_secs(15),
        || instance_cgroups(s.pid()) <= 2,
    );
}

#[test]
fn playground_failures_come_back_as_invoke_would_answer_them() {
    let s = Server::start();
    // A syntax error: no response, the error with its line.
    let (status, run) = playground(
        &s,
        &json!({"runtime": "python", "code": "def handler(event):\n    x = 1\n    return (\n"}),
    );
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["response"], Value::Null);
    assert_eq!(run["load_error"]["type"], "SyntaxError", "{run}");
    assert_eq!(run["load_error"]["line"], 3, "{run}");
    let (_, run) = playground(
        &s,
        &json!({"runtime": "typescript", "code": "export function handler(e: any) {\n  return 1;\n}\nconst x: number = ;\n"}),
    );
    assert_eq!(run["load_error"]["line"], 4, "{run}");
    // A function error: the 500 invoke answers, with the logs printed before it.
    let (_, run) = playground(
        &s,
        &json!({"runtime": "javascript", "handler": "main",
                "code": "export function main(e) { console.log('before'); throw new TypeError('nope ' + e.k); }",
                "event": {"k": "v"}}),
    );
    assert_eq!(run["response"]["status"], 500, "{run}");
    let body: Value = serde_json::from_str(run["response"]["body"].as_str().expect("body")).expect("JSON");
    assert_eq!(body["error"]["code"], "function_error", "{body}");
    assert_eq!(body["error"]["type"], "TypeError", "{body}");
    assert_eq!(body["error"]["message"], "nope v", "{body}");
    assert_eq!(log_lines(&run), vec!["before"], "{run}");
    // The function's limits hold: a timeout.
    let (_, run) = playground(
        &s,
        &json!({"runtime": "python", "timeout_secs": 1,
                "code": "import time\ndef handler(event):\n    time.sleep(30)\n"}),
    );
    assert_eq!(run["response"]["status"], 504, "{run}");
    // Bad input: the errors a function's create gives for the same fields.
    for body in [
        json!({"code": "x"}),
        json!({"runtime": "cobol", "code": "x"}),
        json!({"runtime": "python", "code": ""}),
        json!({"runtime": "python", "code": "x", "memory_mb": 1}),
        json!({"runtime": "python", "code": "x", "env": {"A": 1}}),
    ] {
        let (status, err) = playground(&s, &body);
        let mut named = body.clone();
        named["name"] = json!("f");
        let created = s.create(&named);
        assert!(status.is_client_error(), "{body}: {err}");
        assert_eq!(status, created.status, "{body}: {err}");
        assert_eq!(err["error"], created.json()["error"], "{body}");
        assert!(!err["error"]["field"].is_null(), "{body}: {err}");
    }
    let (status, err) = playground(&s, &json!({"runtime": "python", "code": "x", "name": "f"}));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        (err["error"]["code"].as_str(), err["error"]["field"].as_str()),
        (Some("unknown_field"), Some("name"))
    );
    let a = s.post("/v1/playground/run", "{not json");
    assert_eq!(
        (a.status, a.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_json".to_owned())
    );
    assert_eq!(s.get("/v1/functions").json()["functions"], json!([]));
}

/// Follows a function's logs; events arrive on the channel as (event, data).
fn follow(s: &Server, name: &str) -> mpsc::Receiver<(String, Value)> {
    let resp = s
        .request(Method::GET, &format!("/v1/functions/{name}/logs?follow=true"))
        .send()
        .expect("follow");
    assert_eq!(resp.status(), StatusCode::OK);
    let kind = resp.headers()["content-type"].to_str().expect("type").to_owned();
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut event = String::new();
        for line in BufReader::new(resp).lines().map_while(Result::ok) {
            if let Some(e) = line.strip_prefix("event: ") {
                event = e.to_owned();
            } else if let Some(d) = line.strip_prefix("data: ") {
                let data: Value = serde_json::from_str(d).expect("data is JSON");
                if tx.send((event.clone(), data)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

#[test]
fn a_followed_log_shows_the_backlog_then_each_new_line_as_it_happens() {
    let s = Server::start();
    let code = "def handler(event):\n    print('line', event['m'])\n    return 1\n";
    s.deploy("tailed", "python", code, json!({}));
    s.deploy("other", "python", code, json!({}));
    assert_eq!(s.invoke("tailed", r#"{"m": "old"}"#).status, StatusCode::OK);
    let rx = follow(&s, "tailed");
    let within = Duration::from_secs(10);
    let (event, first) = rx.recv_timeout(within).expect("the backlog");
    assert_eq!(event, "log");
    assert_eq!(first["line"], "line old", "{first}");
    assert_eq!(first["stream"], "stdout");
    // Another function's lines are not in this tail; this one's arrive as they happen.
    assert_eq!(s.invoke("other", r#"{"m": "elsewhere"}"#).status, StatusCode::OK);
    for m in ["new-1", "new-2"] {
        let a = s.invoke("tailed", &json!({ "m": m }).to_string());
        assert_eq!(a.status, StatusCode::OK);
        let (event, data) = rx.recv_timeout(within).expect("a live line");
        assert_eq!(event, "log");
        assert_eq!(data["line"], format!("line {m}"), "{data}");
        assert_eq!(data["invocation_id"], a.header("x-ignis-invocation-id"), "{data}");
    }
    // Bad input.
    let a = s.get("/v1/functions/tailed/logs?follow=maybe");
    assert_eq!(
        (a.status, a.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_parameter".to_owned())
    );
    let a = s.get("/v1/functions/nope/logs?follow=true");
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[test]
fn an_open_log_tail_does_not_hold_up_a_graceful_shutdown() {
    let mut s = Server::start();
    s.deploy(
        "tailed",
        "python",
        "def handler(event):\n    print('x')\n",
        json!({}),
    );
    assert_eq!(s.invoke("tailed", "{}").status, StatusCode::OK);
    let rx = follow(&s, "tailed");
    rx.recv_timeout(Duration::from_secs(10)).expect("the backlog");
    assert!(
        s.terminate(Duration::from_secs(20)),
        "the server did not exit on SIGTERM"
    );
    // The stream ended rather than being cut mid-event: the reader saw its end.
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(10)),
        Err(mpsc::RecvTimeoutError::Disconnected)
    ));
}

#[test]
fn stats_count_invocations_errors_and_durations_by_minute() {
    let s = Server::start();
    let code =
        "def handler(event):\n    if event.get('fail'):\n        raise ValueError('no')\n    return 1\n";
    s.deploy("counted", "python", code, json!({}));
    for event in ["{}", "{}", "{}", r#"{"fail": true}"#] {
        s.invoke("counted", event);
    }
    let stats = s.get("/v1/functions/counted/stats?minutes=5").json();
    assert_eq!(stats["minutes"], 5);
    let totals = &stats["totals"];
    assert_eq!(
        (totals["invocations"].as_u64(), totals["errors"].as_u64()),
        (Some(4), Some(1)),
        "{stats}"
    );
    assert!(totals["p50_ms"].as_f64().expect("p50") > 0.0, "{stats}");
    assert!(totals["p95_ms"].as_f64() >= totals["p50_ms"].as_f64(), "{stats}");
    let series = stats["series"].as_array().expect("series");
    assert_eq!(series.len(), 5);
    let sum: u64 = series.iter().map(|m| m["invocations"].as_u64().expect("n")).sum();
    assert_eq!(sum, 4, "{stats}");
    let all = s.get("/v1/stats").json();
    assert_eq!(all["functions"]["counted"]["invocations"], 4, "{all}");
    assert_eq!(all["functions"]["counted"]["errors"], 1, "{all}");
    for q in ["minutes=0", "minutes=1441", "minutes=ten", "window=5"] {
        let a = s.get(&format!("/v1/functions/counted/stats?{q}"));
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{q}: {}", a.body);
    }
    assert_eq!(s.get("/v1/functions/nope/stats").status, StatusCode::NOT_FOUND);
}

#[test]
fn test_events_are_saved_per_function_and_go_with_it() {
    let s = Server::start();
    s.deploy(
        "ev",
        "python",
        "def handler(event):\n    return event\n",
        json!({}),
    );
    let put = |name: &str, body: &str| {
        s.send(
            s.request(Method::PUT, &format!("/v1/functions/ev/test-events/{name}"))
                .body(body.to_owned()),
        )
    };
    let a = put("first%20try", r#"{"n": 1}"#);
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.json()["name"], "first try");
    assert_eq!(put("first%20try", r#"{"n": 2}"#).status, StatusCode::OK);
    let list = s.get("/v1/functions/ev/test-events").json();
    assert_eq!(list["test_events"][0]["event"], json!({"n": 2}), "{list}");
    assert_eq!(list["test_events"].as_array().map(Vec::len), Some(1));
    let a = put("bad", "{nope");
    assert_eq!(
        (a.status, a.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_json".to_owned())
    );
    let a = put("%20lead", "{}");
    assert_eq!(
        (a.status, a.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_name".to_owned())
    );
    for i in 1..50 {
        assert_eq!(put(&format!("e{i}"), "{}").status, StatusCode::CREATED);
    }
    let a = put("one-too-many", "{}");
    assert_eq!(
        (a.status, a.error_code()),
        (StatusCode::CONFLICT, "too_many_test_events".to_owned())
    );
    let del = |name: &str| s.send(s.request(Method::DELETE, &format!("/v1/functions/ev/test-events/{name}")));
    assert_eq!(del("e1").status, StatusCode::NO_CONTENT);
    assert_eq!(del("e1").status, StatusCode::NOT_FOUND);
    // Deleting the function deletes its events.
    assert_eq!(
        s.send(s.request(Method::DELETE, "/v1/functions/ev")).status,
        StatusCode::NO_CONTENT
    );
    s.deploy(
        "ev",
        "python",
        "def handler(event):\n    return event\n",
        json!({}),
    );
    assert_eq!(
        s.get("/v1/functions/ev/test-events").json()["test_events"],
        json!([])
    );
}

#[test]
fn a_load_failure_names_its_line_and_survives_a_restart() {
    let mut s = Server::start();
    let broken = "def handler(event):\n    return 1\n\nx = (\n";
    let a = s.create(&json!({"name": "broken", "runtime": "python", "code": broken}));
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let f = a.json();
    assert_eq!(f["state"], "error", "{f}");
    assert_eq!(f["deploy_error"]["type"], "SyntaxError", "{f}");
    assert_eq!(f["deploy_error"]["line"], 4, "{f}");
    assert_eq!(f["deploy_error"]["version"], 1, "{f}");
    let listed = s.get("/v1/functions").json();
    assert_eq!(listed["functions"][0]["deploy_error"]["line"], 4, "{listed}");
    s.restart();
    let f = s.function("broken");
    assert_eq!(f["deploy_error"]["line"], 4, "after a restart: {f}");
    // A fixed version clears it; a later broken one (while v2 serves) sets it again.
    let a = s.update(
        "broken",
        &json!({"runtime": "python", "code": "def handler(event):\n    return 1\n"}),
    );
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    assert_eq!(s.function("broken")["deploy_error"], Value::Null);
    let a = s.update(
        "broken",
        &json!({"runtime": "javascript", "code": "export function handler() {\n  return 1;\n}\n}\n"}),
    );
    let f = a.json();
    assert_eq!(f["state"], "ready", "the old version keeps serving: {f}");
    assert_eq!(f["deploy_error"]["version"], 3, "{f}");
    assert_eq!(f["deploy_error"]["line"], 4, "{f}");
}
