//! One outcome vocabulary: a failed invocation's code and message are the same in the
//! caller's answer, in its record and in an asynchronous attempt.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::Server;

const FAILING_PY: &str = r#"
import os
def handler(event, context):
    if event.get("loop"):
        while True:
            pass
    if event.get("exit"):
        os._exit(3)
    return {"ok": True}
"#;

#[test]
fn a_timeout_and_a_crash_say_the_same_to_the_caller_the_record_and_an_attempt() {
    let s = Server::start();
    s.deploy(
        "failing",
        "python",
        FAILING_PY,
        json!({"timeout_secs": 1, "retry": {"max_retries": 0}}),
    );
    for (event, status, code) in [
        (r#"{"loop": true}"#, StatusCode::GATEWAY_TIMEOUT, "timeout"),
        (r#"{"exit": true}"#, StatusCode::BAD_GATEWAY, "instance_crashed"),
    ] {
        let a = s.invoke("failing", event);
        assert_eq!(
            (a.status, a.error_code()),
            (status, code.to_owned()),
            "{}",
            a.body
        );
        let answered = a.json()["error"].clone();
        let message = answered["message"].as_str().expect("a message").to_owned();
        assert!(!message.is_empty());
        let record = s.invocation(a.header("x-ignis-invocation-id"));
        assert_eq!(
            record["error"],
            json!({"code": code, "message": message}),
            "{event}: the record says what the caller heard"
        );
        let queued = s.invoke_async("failing", event);
        let id = queued.json()["invocation_id"].as_str().expect("an id").to_owned();
        let dead = s.wait_for_status(&id, "dead");
        assert_eq!(dead["attempts"][0]["error"]["code"], code, "{dead}");
        assert_eq!(dead["error"]["code"], code, "{dead}");
        // An attempt's message is the one a caller hears.
        assert_eq!(
            dead["attempts"][0]["error"]["message"],
            message.as_str(),
            "{dead}"
        );
    }
}
