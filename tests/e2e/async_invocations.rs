//! Asynchronous invocations: accepted durably, retried, dead letters, redrive,
//! destinations, idempotency keys, bounds, and a SIGKILL with work queued and running.

use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{log_lines, wait_until, Server};

const ECHO: &str = "def handler(event, context):\n    print('request', context.request_id)\n    return {'got': event, 'request_id': context.request_id}\n";
const FAIL: &str = "def handler(event, context):\n    print('request', context.request_id)\n    raise ValueError('no luck ' + str(event.get('n')))\n";
const SLOW: &str = "import time\ndef handler(event, context):\n    time.sleep(event.get('secs', 1))\n    return event['n']\n";

fn accepted_id(a: &crate::harness::Answer) -> String {
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let v = a.json();
    assert_eq!(v["status"], "queued", "{v}");
    v["invocation_id"].as_str().expect("invocation_id").to_owned()
}

#[test]
fn an_async_invocation_is_accepted_then_runs_to_success() {
    let s = Server::start();
    s.deploy("echo", "python", ECHO, json!({}));
    let id = accepted_id(&s.invoke_async("echo", r#"{"n": 1}"#));
    let done = s.wait_for_status(&id, "succeeded");
    assert_eq!(done["type"], "async");
    assert_eq!(done["result"]["got"], json!({"n": 1}), "{done}");
    assert_eq!(
        done["result"]["request_id"],
        id.as_str(),
        "the context's request id is the invocation id"
    );
    let attempts = done["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{done}");
    assert_eq!(attempts[0]["status"], "succeeded");
    assert_eq!(log_lines(&attempts[0]), [format!("request {id}")]);

    // Limits and bad headers.
    let big = format!(r#"{{"x": "{}"}}"#, "a".repeat(1024 * 1024));
    let a = s.invoke_async("echo", &big);
    assert_eq!(
        (a.status, a.error_code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".to_owned())
    );
    let sync_ok = s.invoke("echo", &big);
    assert_eq!(sync_ok.status, StatusCode::OK, "the sync limit stays 6 MiB");
    let a = s.send(
        s.request(Method::POST, "/v1/functions/echo/invoke")
            .header("x-ignis-invocation-type", "later")
            .body("{}"),
    );
    assert_eq!(
        (a.status, a.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_header".to_owned())
    );
    let a = s.invoke_async("missing", "{}");
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = s.invoke_async("echo", "{nope");
    assert_eq!(
        (a.status, a.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_json".to_owned())
    );
}

#[test]
fn failures_retry_until_dead_then_redrive_runs_again() {
    let s = Server::start_with(None, &["--retry-base-ms", "20"]);
    s.deploy("flaky", "python", FAIL, json!({"retry": {"max_retries": 2}}));
    let id = accepted_id(&s.invoke_async("flaky", r#"{"n": 7}"#));
    let dead = s.wait_for_status(&id, "dead");
    assert_eq!(dead["dead_reason"], "retries_exhausted");
    let attempts = dead["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3, "max_retries 2 is three attempts: {dead}");
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["attempt"], i + 1);
        assert_eq!(a["status"], "function_error");
        assert_eq!(a["error"]["message"], "no luck 7");
        // One request id across retries, so handlers can deduplicate.
        assert_eq!(log_lines(a), [format!("request {id}")]);
    }
    assert_eq!(dead["error"]["type"], "ValueError");

    let list = s.get("/v1/functions/flaky/dead-letters").json();
    let ids: Vec<&str> = list["dead_letters"]
        .as_array()
        .expect("list")
        .iter()
        .map(|d| d["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let one = s.get(&format!("/v1/functions/flaky/dead-letters/{id}"));
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["attempts"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        s.get("/v1/functions/flaky/dead-letters/nope").status,
        StatusCode::NOT_FOUND
    );

    // Fixed: the redrive runs the same event as a new invocation.
    let a = s.update("flaky", &json!({"runtime": "python", "code": ECHO}));
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let r = s.post(&format!("/v1/functions/flaky/dead-letters/{id}/redrive"), "");
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let new_id = r.json()["invocation_id"].as_str().expect("id").to_owned();
    assert_ne!(new_id, id);
    let ok = s.wait_for_status(&new_id, "succeeded");
    assert_eq!(ok["result"]["got"], json!({"n": 7}));
    assert_eq!(ok["redrive_of"], id.as_str());
    let old = s.invocation(&id);
    assert_eq!(
        (&old["redriven_as"], &old["dead_letter"]),
        (&json!(new_id), &json!(false))
    );
    let list = s.get("/v1/functions/flaky/dead-letters").json();
    assert_eq!(
        list["dead_letters"],
        json!([]),
        "a redriven letter leaves the list"
    );
    let again = s.post(&format!("/v1/functions/flaky/dead-letters/{id}/redrive"), "");
    assert_eq!(again.status, StatusCode::NOT_FOUND, "a letter is redriven once");
}

#[test]
fn dead_letters_can_be_deleted_and_too_old_events_die() {
    let s = Server::start_with(None, &["--retry-base-ms", "20"]);
    s.deploy("broken", "python", FAIL, json!({"retry": {"max_retries": 0}}));
    let id = accepted_id(&s.invoke_async("broken", "{}"));
    let dead = s.wait_for_status(&id, "dead");
    assert_eq!(
        dead["attempts"].as_array().map(Vec::len),
        Some(1),
        "max_retries 0: one attempt"
    );
    let path = format!("/v1/functions/broken/dead-letters/{id}");
    assert_eq!(
        s.send(s.request(Method::DELETE, &path)).status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.send(s.request(Method::DELETE, &path)).status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get("/v1/functions/broken/dead-letters").json()["dead_letters"],
        json!([])
    );

    // A 1 s event age: after a 1.5 s failed attempt no retry is allowed.
    let slow_fail =
        "import time\ndef handler(event, context):\n    time.sleep(1.5)\n    raise RuntimeError('slow')\n";
    s.deploy(
        "aging",
        "python",
        slow_fail,
        json!({"retry": {"max_retries": 5, "max_event_age_secs": 1}}),
    );
    let id = accepted_id(&s.invoke_async("aging", "{}"));
    let dead = s.wait_for_status(&id, "dead");
    assert_eq!(dead["dead_reason"], "event_too_old", "{dead}");
    assert_eq!(dead["attempts"].as_array().map(Vec::len), Some(1));
}

#[test]
fn destinations_receive_the_event_and_the_outcome() {
    let s = Server::start_with(None, &["--retry-base-ms", "20"]);
    let sink = "import json\ndef handler(event, context):\n    print(json.dumps(event, sort_keys=True))\n    return 'ok'\n";
    s.deploy("sink", "python", sink, json!({}));
    s.deploy("good", "python", ECHO, json!({"on_success": "sink"}));
    s.deploy(
        "bad",
        "python",
        FAIL,
        json!({"on_failure": "sink", "retry": {"max_retries": 1}}),
    );
    let ok_id = accepted_id(&s.invoke_async("good", r#"{"n": 1}"#));
    let bad_id = accepted_id(&s.invoke_async("bad", r#"{"n": 2}"#));
    let mut events: Vec<Value> = Vec::new();
    wait_until("the sink got both outcomes", Duration::from_secs(60), || {
        let logs = s.get("/v1/functions/sink/logs").json();
        events = logs["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .filter_map(|l| serde_json::from_str(l["line"].as_str()?).ok())
            .collect();
        events.len() >= 2
    });
    let by = |cond: &str| {
        events
            .iter()
            .find(|e| e["condition"] == cond)
            .cloned()
            .expect(cond)
    };
    let success = by("success");
    assert_eq!(
        (
            &success["invocation_id"],
            &success["function"],
            &success["event"],
            &success["attempts"]
        ),
        (&json!(ok_id), &json!("good"), &json!({"n": 1}), &json!(1))
    );
    assert_eq!(success["result"]["got"], json!({"n": 1}));
    let failure = by("failure");
    assert_eq!(
        (
            &failure["invocation_id"],
            &failure["event"],
            &failure["attempts"],
            &failure["reason"]
        ),
        (
            &json!(bad_id),
            &json!({"n": 2}),
            &json!(2),
            &json!("retries_exhausted")
        )
    );
    assert_eq!(failure["error"]["message"], "no luck 2");
}

fn invocation_count(s: &Server, name: &str) -> usize {
    s.get(&format!("/v1/functions/{name}/invocations?limit=1000"))
        .json()["invocations"]
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn idempotency_keys_return_the_first_invocation() {
    let s = Server::start();
    s.deploy("echo", "python", ECHO, json!({}));
    let call = |key: &str, event: &str| {
        s.send(
            s.request(Method::POST, "/v1/functions/echo/invoke")
                .header("idempotency-key", key)
                .body(event.to_owned()),
        )
    };
    let first = call("order-1", r#"{"n": 1}"#);
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let again = call("order-1", r#"{"n": 1}"#);
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, first.body);
    assert_eq!(
        again.header("x-ignis-invocation-id"),
        first.header("x-ignis-invocation-id")
    );
    assert_eq!(again.header("x-ignis-idempotent-replay"), "true");
    assert_eq!(invocation_count(&s, "echo"), 1, "the handler ran once");
    let other = call("order-2", r#"{"n": 2}"#);
    assert_ne!(
        other.header("x-ignis-invocation-id"),
        first.header("x-ignis-invocation-id")
    );
    assert_eq!(invocation_count(&s, "echo"), 2);

    // Asynchronous: the repeat gets the first id and its status, nothing new is queued.
    let a = s.send(
        s.request(Method::POST, "/v1/functions/echo/invoke")
            .header("x-ignis-invocation-type", "async")
            .header("idempotency-key", "job-9")
            .body("{}"),
    );
    let id = accepted_id(&a);
    s.wait_for_status(&id, "succeeded");
    let b = s.send(
        s.request(Method::POST, "/v1/functions/echo/invoke")
            .header("x-ignis-invocation-type", "async")
            .header("idempotency-key", "job-9")
            .body("{}"),
    );
    assert_eq!(b.status, StatusCode::ACCEPTED);
    assert_eq!(b.json(), json!({"invocation_id": id, "status": "succeeded"}));
    assert_eq!(invocation_count(&s, "echo"), 3);

    let bad = s.send(
        s.request(Method::POST, "/v1/functions/echo/invoke")
            .header("idempotency-key", "x".repeat(300))
            .body("{}"),
    );
    assert_eq!(
        (bad.status, bad.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_idempotency_key".to_owned())
    );
}

#[test]
fn concurrent_duplicates_wait_for_the_first_instead_of_running_twice() {
    let s = Server::start();
    s.deploy("slow", "python", SLOW, json!({"max_instances": 4}));
    let url = format!("{}/v1/functions/slow/invoke", s.url);
    let answers: Vec<(StatusCode, String, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let url = url.clone();
                scope.spawn(move || {
                    let r = Client::new()
                        .post(url)
                        .header("idempotency-key", "same")
                        .body(r#"{"n": 5, "secs": 1}"#)
                        .send()
                        .expect("answer");
                    let id = r.headers()["x-ignis-invocation-id"]
                        .to_str()
                        .expect("id")
                        .to_owned();
                    (r.status(), id, r.text().expect("body"))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for (status, id, body) in &answers {
        assert_eq!((*status, body.as_str()), (StatusCode::OK, "5"));
        assert_eq!(id, &answers[0].1, "every duplicate got the first invocation");
    }
    assert_eq!(invocation_count(&s, "slow"), 1, "the handler ran once");
}

#[test]
fn async_concurrency_and_the_queue_bound_leave_room_for_sync_calls() {
    let s = Server::start_with(None, &["--max-queued-async", "3"]);
    s.deploy(
        "worker",
        "python",
        SLOW,
        json!({"max_instances": 2, "max_async_concurrency": 1}),
    );
    let ids: Vec<String> = (0..3)
        .map(|n| accepted_id(&s.invoke_async("worker", &json!({"n": n, "secs": 2}).to_string())))
        .collect();
    let full = s.invoke_async("worker", r#"{"n": 9}"#);
    assert_eq!(
        (full.status, full.error_code()),
        (StatusCode::TOO_MANY_REQUESTS, "queue_full".to_owned())
    );
    wait_until("one is running", Duration::from_secs(30), || {
        ids.iter().any(|id| s.invocation(id)["status"] == "running")
    });
    let statuses: Vec<Value> = ids.iter().map(|id| s.invocation(id)["status"].clone()).collect();
    assert_eq!(
        statuses.iter().filter(|st| **st == "running").count(),
        1,
        "max_async_concurrency 1: {statuses:?}"
    );
    // The second instance is free for synchronous traffic.
    let sync = s.invoke("worker", r#"{"n": 42, "secs": 0}"#);
    assert_eq!((sync.status, sync.body.as_str()), (StatusCode::OK, "42"));
    for id in &ids {
        s.wait_for_status(id, "succeeded");
    }
}

#[test]
fn sigkill_with_queued_and_running_work_loses_nothing() {
    let mut s = Server::start();
    s.deploy("worker", "python", SLOW, json!({"max_async_concurrency": 1}));
    let ids: Vec<String> = (0..4)
        .map(|n| accepted_id(&s.invoke_async("worker", &json!({"n": n, "secs": 1}).to_string())))
        .collect();
    wait_until("one is running", Duration::from_secs(30), || {
        s.invocation(&ids[0])["status"] == "running"
    });
    s.restart();
    for (n, id) in ids.iter().enumerate() {
        let done = s.wait_for_status(id, "succeeded");
        assert_eq!(done["result"], json!(n), "{done}");
    }
}
