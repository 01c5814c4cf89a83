//! Per-invocation logs: captured with their stream, never in the response, capped.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{console_message, log_lines, Server};

fn streams(invocation: &Value) -> Vec<(String, String)> {
    invocation["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().expect("stream").to_owned(),
                console_message(l["line"].as_str().expect("line")).to_owned(),
            )
        })
        .collect()
}

#[test]
fn output_becomes_the_invocations_logs_not_its_response() {
    let s = Server::start();
    let py = r#"
import sys, os, logging
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", force=True)
def handler(event):
    print("to stdout", event["n"])
    print("to stderr", file=sys.stderr)
    logging.warning("via logging")
    os.write(1, b"raw fd write\n")
    sys.stdout.write("no newline at the end")
    return "body"
"#;
    let js = r#"
import fs from "node:fs";
export function handler(event) {
  console.log("to stdout", event.n);
  console.error("to stderr");
  console.warn("via warn");
  fs.writeSync(1, "raw fd write\n");
  process.stdout.write("no newline at the end");
  return "body";
}
"#;
    for (name, runtime, code, middle) in [
        ("logs-py", "python", py, "WARNING via logging"),
        ("logs-js", "javascript", js, "via warn"),
    ] {
        s.deploy(name, runtime, code, json!({}));
        let a = s.invoke(name, r#"{"n": 7}"#);
        assert_eq!(
            a.body, r#""body""#,
            "{name}: output never leaks into the response"
        );
        let inv = s.invocation(a.header("x-ignis-invocation-id"));
        let got = streams(&inv);
        for expected in [
            ("stdout", "to stdout 7"),
            ("stderr", "to stderr"),
            ("stderr", middle),
            ("stdout", "raw fd write"),
            ("stdout", "no newline at the end"),
        ] {
            assert!(
                got.contains(&(expected.0.to_owned(), expected.1.to_owned())),
                "{name}: {expected:?} missing from {got:?}"
            );
        }
        assert_eq!(got.len(), 5, "{name}: {got:?}");
        assert!(inv["logs"][0]["ts"].as_str().expect("ts").ends_with('Z'));
        let recent = s.get(&format!("/v1/functions/{name}/logs?limit=3")).json();
        let recent = recent["logs"].as_array().expect("logs");
        assert_eq!(recent.len(), 3);
        assert!(recent
            .iter()
            .all(|l| l["invocation_id"] == a.header("x-ignis-invocation-id")));
    }
}

#[test]
fn logs_are_capped_with_a_visible_marker() {
    let s = Server::start();
    let py = "def handler(e):\n    for i in range(5000):\n        print('x' * 100)\n    return 'done'\n";
    s.deploy("chatty", "python", py, json!({}));
    let a = s.invoke("chatty", "{}");
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, r#""done""#));
    let lines = log_lines(&s.invocation(a.header("x-ignis-invocation-id")));
    let total: usize = lines.iter().map(String::len).sum();
    assert!(total <= 256 * 1024 + 100, "{total} bytes kept");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("[ignis] log output truncated at 262144 bytes")
    );
    assert!(lines.len() > 2000, "everything up to the cap is kept");
}

#[test]
fn invocation_history_is_newest_first() {
    let s = Server::start();
    s.deploy(
        "history",
        "python",
        "def handler(e):\n    print(e['n'])\n    return e['n']\n",
        json!({}),
    );
    let ids: Vec<String> = (0..3)
        .map(|n| {
            s.invoke("history", &json!({"n": n}).to_string())
                .header("x-ignis-invocation-id")
                .to_owned()
        })
        .collect();
    let list = s.get("/v1/functions/history/invocations?limit=2").json();
    let got: Vec<&str> = list["invocations"]
        .as_array()
        .expect("list")
        .iter()
        .map(|i| i["id"].as_str().expect("id"))
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);
    let first = &list["invocations"][0];
    assert_eq!(
        (&first["status"], &first["function"], &first["version"]),
        (&json!("succeeded"), &json!("history"), &json!(1))
    );
    assert!(first["duration_ms"].as_f64().expect("duration") > 0.0);
    assert_eq!(log_lines(&s.invocation(&ids[0])), ["0"]);
}

#[test]
fn a_handler_that_closes_its_stdout_still_answers_promptly() {
    let s = Server::start();
    let py = "import os\ndef handler(e):\n    os.close(1)\n    os.close(2)\n    return 'closed'\n";
    s.deploy("closer", "python", py, json!({"timeout_secs": 20}));
    let started = std::time::Instant::now();
    let a = s.invoke("closer", "{}");
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, r#""closed""#));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "answered after {:?}",
        started.elapsed()
    );
    let next = s.invoke("closer", "{}");
    assert_eq!(next.status, StatusCode::OK);
    assert!(
        next.cold(),
        "the instance with broken output channels was replaced"
    );
}

#[test]
fn an_answered_invocation_is_readable_at_once() {
    // The record is handed to the store before the caller gets its answer, for every call
    // path: a read right after the answer never misses it.
    let s = Server::start();
    s.deploy("echo", "python", "def handler(e):\n    return e\n", json!({}));
    for n in 0..40 {
        let a = s.invoke("echo", &json!({"n": n}).to_string());
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let r = s.get(&format!("/v1/invocations/{}", a.header("x-ignis-invocation-id")));
        assert_eq!(r.status, StatusCode::OK, "call {n}: {}", r.body);
    }
}
