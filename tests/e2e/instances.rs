//! Instances: warm reuse, cold starts, concurrency, failures that keep or replace instances,
//! the max_instances cap with its queue, and scale to zero.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{log_lines, wait_until, Server};

const COUNTER_PY: &str = r#"
import os, time
count = 0
def handler(event, context):
    global count
    count += 1
    if event.get("raise"):
        raise ValueError("bad input: " + str(event["raise"]))
    if event.get("loop"):
        while True:
            pass
    if event.get("exit"):
        os._exit(3)
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"count": count, "pid": os.getpid()}
"#;

const COUNTER_JS: &str = r#"
let count = 0;
export async function handler(event, context) {
  count++;
  if (event.raise) throw new RangeError("bad input: " + event.raise);
  if (event.loop) for (;;) {}
  if (event.exit) process.exit(3);
  return { count, pid: process.pid };
}
"#;

fn counters() -> [(&'static str, &'static str, &'static str); 2] {
    [
        ("counter-py", "python", COUNTER_PY),
        ("counter-js", "javascript", COUNTER_JS),
    ]
}

#[test]
fn deploy_instance_is_kept_warm_and_reused() {
    let s = Server::start();
    for (name, runtime, code) in counters() {
        s.deploy(name, runtime, code, json!({}));
        assert_eq!(
            s.function(name)["instances"]["idle"],
            1,
            "the deploy check's instance is kept"
        );
        let first = s.invoke(name, "{}");
        let second = s.invoke(name, "{}");
        assert!(!first.cold() && !second.cold(), "{name}");
        assert_eq!(first.json()["count"], 1);
        assert_eq!(
            second.json()["count"],
            2,
            "module globals survive between warm calls"
        );
        assert_eq!(first.json()["pid"], second.json()["pid"]);
        assert!(
            first
                .header("x-ignis-duration-ms")
                .parse::<f64>()
                .expect("a number")
                >= 0.0
        );
    }
}

#[test]
fn idle_instances_stop_and_the_next_call_is_cold_then_warm() {
    let s = Server::start();
    for (name, runtime, code) in counters() {
        s.deploy(name, runtime, code, json!({"idle_timeout_secs": 1}));
        wait_until("the idle instance is stopped", Duration::from_secs(10), || {
            s.function(name)["instances"]["idle"] == 0
        });
        let cold = s.invoke(name, "{}");
        assert_eq!(cold.status, StatusCode::OK);
        assert!(
            cold.cold(),
            "{name}: the first call after scale to zero starts an instance"
        );
        assert_eq!(cold.json()["count"], 1, "a fresh instance");
        let warm = s.invoke(name, "{}");
        assert!(!warm.cold());
        assert_eq!(warm.json()["count"], 2);
        let record = s.invocation(cold.header("x-ignis-invocation-id"));
        assert_eq!(record["cold_start"], true);
    }
}

#[test]
fn an_exception_fails_only_its_call() {
    let s = Server::start();
    for ((name, runtime, code), kind) in counters().into_iter().zip(["ValueError", "RangeError"]) {
        s.deploy(name, runtime, code, json!({}));
        let a = s.invoke(name, r#"{"raise": "x1"}"#);
        assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
        let e = a.json();
        assert_eq!(e["error"]["code"], "function_error");
        assert_eq!(e["error"]["type"], kind);
        assert_eq!(e["error"]["message"], "bad input: x1");
        assert!(e["error"]["stack"].as_str().expect("stack").contains("bad input"));
        let next = s.invoke(name, "{}");
        assert!(!next.cold(), "{name}: the instance stays warm");
        assert_eq!(next.json()["count"], 2);
        let record = s.invocation(a.header("x-ignis-invocation-id"));
        assert_eq!(record["status"], "function_error");
        assert_eq!(record["error"]["type"], kind);
    }
}

#[test]
fn an_endless_loop_times_out_on_time_and_the_next_call_works() {
    let s = Server::start();
    for (name, runtime, code) in counters() {
        s.deploy(name, runtime, code, json!({"timeout_secs": 1}));
        let started = Instant::now();
        let a = s.invoke(name, r#"{"loop": true}"#);
        let took = started.elapsed();
        assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT, "{}", a.body);
        assert_eq!(a.error_code(), "timeout");
        assert!(
            took < Duration::from_secs(2),
            "{name}: answered after {took:?}, more than timeout + 1 s"
        );
        let next = s.invoke(name, "{}");
        assert_eq!(next.status, StatusCode::OK);
        assert!(next.cold(), "the looping instance was killed");
        assert_eq!(
            s.invocation(a.header("x-ignis-invocation-id"))["status"],
            "timeout"
        );
    }
}

#[test]
fn a_dying_instance_fails_its_call_and_the_next_call_recovers() {
    let s = Server::start();
    for (name, runtime, code) in counters() {
        s.deploy(name, runtime, code, json!({}));
        let a = s.invoke(name, r#"{"exit": true}"#);
        assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.body);
        assert_eq!(a.error_code(), "instance_crashed");
        assert!(a.json()["error"]["message"]
            .as_str()
            .expect("message")
            .contains("status 3"));
        let next = s.invoke(name, "{}");
        assert_eq!(next.status, StatusCode::OK);
        assert!(next.cold());
        assert_eq!(next.json()["count"], 1, "a fresh instance");
        assert_eq!(
            s.invocation(a.header("x-ignis-invocation-id"))["status"],
            "crashed"
        );
    }
}

const ECHO_PY: &str = r#"
import time
def handler(event, context):
    print("event", event["n"], "request", context.request_id)
    time.sleep(0.05)
    return {"n": event["n"], "request_id": context.request_id}
"#;

const ECHO_JS: &str = r#"
export async function handler(event, context) {
  console.log("event", event.n, "request", context.requestId);
  await new Promise((r) => setTimeout(r, 50));
  return { n: event.n, request_id: context.requestId };
}
"#;

#[test]
fn concurrent_calls_get_their_own_answers_and_logs() {
    let s = Server::start();
    for (name, runtime, code) in [("echo-py", "python", ECHO_PY), ("echo-js", "javascript", ECHO_JS)] {
        s.deploy(name, runtime, code, json!({}));
        let answers: Vec<(u64, crate::harness::Answer)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..20u64)
                .map(|n| {
                    let s = &s;
                    scope.spawn(move || (n, s.invoke(name, &json!({"n": n}).to_string())))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        let mut cold = 0;
        for (n, a) in &answers {
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            let body = a.json();
            let id = a.header("x-ignis-invocation-id");
            assert_eq!(body["n"], *n, "{name}: call {n} got another call's answer");
            assert_eq!(body["request_id"], id);
            let logs = log_lines(&s.invocation(id));
            assert_eq!(
                logs,
                vec![format!("event {n} request {id}")],
                "{name}: call {n}'s logs"
            );
            cold += usize::from(a.cold());
        }
        let f = s.function(name);
        assert!(
            cold >= 1,
            "{name}: 20 overlapping calls needed more than the one warm instance"
        );
        let total =
            f["instances"]["idle"].as_u64().expect("count") + f["instances"]["busy"].as_u64().expect("count");
        assert!(total <= 10, "{name}: never more than max_instances: {f}");
    }
}

#[test]
fn max_instances_queues_calls_and_throttles_past_the_deadline() {
    let s = Server::start();
    // Each call holds the one instance for 1.4 s of a 2 s timeout: the second caller gets it
    // at 1.4 s (0.6 s before its deadline), the third's deadline passes at 2 s while the
    // second still runs (until 2.8 s). The margins absorb scheduling delays on a busy host.
    s.deploy(
        "one",
        "python",
        COUNTER_PY,
        json!({"max_instances": 1, "timeout_secs": 2}),
    );
    let answers: Vec<crate::harness::Answer> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let s = &s;
                scope.spawn(move || s.invoke("one", r#"{"sleep": 1.4}"#))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let ok: Vec<&crate::harness::Answer> = answers.iter().filter(|a| a.status == StatusCode::OK).collect();
    let throttled: Vec<&crate::harness::Answer> = answers
        .iter()
        .filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(
        ok.len(),
        2,
        "the first runs, the second waits for it: {answers:?}"
    );
    assert_eq!(
        throttled.len(),
        1,
        "the third's deadline passes while the second runs: {answers:?}"
    );
    assert_eq!(throttled[0].error_code(), "throttled");
    let pids: Vec<Value> = ok.iter().map(|a| a.json()["pid"].clone()).collect();
    assert_eq!(pids[0], pids[1], "one instance served both");
    assert!(ok.iter().all(|a| !a.cold()));
}

#[test]
fn commonjs_and_es_modules_both_load_from_the_load_message() {
    let s = Server::start();
    for (name, code) in [
        (
            "cjs",
            "module.exports.handler = (e) => ({ kind: 'commonjs', x: e.x });\n",
        ),
        (
            "esm",
            "export const handler = (e) => ({ kind: 'module', x: e.x });\n",
        ),
    ] {
        s.deploy(name, "javascript", code, json!({}));
        let a = s.invoke(name, r#"{"x": 3}"#);
        assert_eq!(a.status, StatusCode::OK, "{name}: {}", a.body);
        assert_eq!(a.json()["x"], 3, "{name}");
    }
    assert_eq!(s.invoke("cjs", "{}").json()["kind"], "commonjs");
}

#[test]
fn python_instances_start_without_site_hooks_but_import_installed_packages() {
    // What `site` would have put on sys.path for this interpreter (isolated, as instances).
    let probe = std::process::Command::new("python3")
        .args([
            "-I",
            "-c",
            "import os, site; print(*[p for p in site.getsitepackages() if os.path.isdir(p)], sep='\\n')",
        ])
        .output()
        .expect("python3 runs");
    let expected: Vec<String> = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(!expected.is_empty(), "the test host's CPython has site-packages");
    let s = Server::start();
    s.deploy(
        "paths",
        "python",
        "import os, sys\ndef handler(e):\n    return {'no_site': sys.flags.no_site, 'site_loaded': 'site' in sys.modules,\n            'visible': [p for p in sys.path if os.path.isdir(p)]}\n",
        json!({}),
    );
    let a = s.invoke("paths", "{}");
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v = a.json();
    assert_eq!(v["no_site"], 1, "{v}");
    assert_eq!(v["site_loaded"], false, "no .pth hook ran: {v}");
    let visible = crate::harness::strings(&v["visible"], "visible");
    for dir in &expected {
        assert!(
            visible.contains(&dir.as_str()),
            "{dir} is on sys.path and visible in the sandbox: {visible:?}"
        );
    }
}
