//! A function deleted while its deploy runs, then created again under the same name: the
//! old deploy's result (found by the API fuzzer) must not land on the new function.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{wait_until, Server};

/// Loads for two seconds, then fails.
const SLOW_FAILING_PY: &str =
    "import time\ntime.sleep(2)\nraise RuntimeError('the old version')\n\ndef handler(event, context):\n    return 1\n";
const GOOD_PY: &str = "def handler(event, context):\n    return {'new': True}\n";

#[test]
fn a_deploy_of_a_deleted_function_does_not_fail_its_successor_of_the_same_name() {
    let mut s = Server::start_with(None, &["--prewarm", "0"]);
    let reserved = |s: &Server| s.metric("ignis_memory_reserved_bytes").unwrap_or(0.0);
    let a = s.post(
        "/v1/functions",
        json!({"name": "race", "runtime": "python", "code": SLOW_FAILING_PY}).to_string(),
    );
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let a = s.send(s.request(Method::DELETE, "/v1/functions/race"));
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    s.deploy("race", "python", GOOD_PY, json!({"min_instances": 0}));
    // The old deploy's instance still holds its memory while its code loads; it lets go
    // once the load failed and the deploy ended.
    let with_old = reserved(&s);
    wait_until("the old deploy ended", Duration::from_secs(30), || {
        reserved(&s) < with_old
    });
    assert_eq!(s.function("race")["state"], "ready");
    // What the store says about the new function is what a restart brings back.
    s.restart();
    let mut f = serde_json::Value::Null;
    wait_until(
        "the restored function's deploy ended",
        Duration::from_secs(30),
        || {
            f = s.function("race");
            f["state"] != "deploying"
        },
    );
    assert_eq!(f["state"], "ready", "{f}");
    assert_eq!(f["deploy_error"], serde_json::Value::Null, "{f}");
    let a = s.invoke("race", "{}");
    assert_eq!((a.status, a.json()), (StatusCode::OK, json!({"new": true})));
}
