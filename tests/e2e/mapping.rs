//! Return values become HTTP responses; handlers see their context and environment.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::Server;

const SHAPES_PY: &str = r#"
import base64
def handler(event):
    kind = event.get("kind")
    if kind == "http":
        return {"statusCode": 201, "headers": {"X-Custom": "yes", "content-type": "text/plain"}, "body": "made"}
    if kind == "object-body":
        return {"statusCode": 202, "body": {"nested": [1, 2]}}
    if kind == "base64":
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(bytes([0, 1, 2, 255])).decode(), "isBase64Encoded": True}
    if kind == "none":
        return None
    if kind == "list":
        return [1, "two", {"three": 3}]
    if kind == "unjsonable":
        return {1, 2}
    if kind == "huge":
        return "x" * (7 * 1024 * 1024)
    return {"plain": True}
"#;

const SHAPES_JS: &str = r#"
export default {
  async handler(event) {
    switch (event.kind) {
      case "http": return { statusCode: 201, headers: { "X-Custom": "yes", "content-type": "text/plain" }, body: "made" };
      case "object-body": return { statusCode: 202, body: { nested: [1, 2] } };
      case "base64": return { statusCode: 200, headers: { "content-type": "application/octet-stream" }, body: Buffer.from([0, 1, 2, 255]).toString("base64"), isBase64Encoded: true };
      case "none": return undefined;
      case "list": return [1, "two", { three: 3 }];
      case "unjsonable": return { big: 10n };
      case "huge": return "x".repeat(7 * 1024 * 1024);
      default: return { plain: true };
    }
  },
};
"#;

#[test]
fn return_values_map_to_responses() {
    let s = Server::start();
    for (name, runtime, code) in [
        ("shapes-py", "python", SHAPES_PY),
        ("shapes-js", "javascript", SHAPES_JS),
    ] {
        s.deploy(name, runtime, code, json!({}));
        let a = s.invoke(name, r#"{"kind": "http"}"#);
        assert_eq!(
            (a.status, a.body.as_str()),
            (StatusCode::CREATED, "made"),
            "{name}"
        );
        assert_eq!(
            (a.header("x-custom"), a.header("content-type")),
            ("yes", "text/plain")
        );

        let a = s.invoke(name, r#"{"kind": "object-body"}"#);
        assert_eq!(a.status, StatusCode::ACCEPTED);
        assert_eq!(a.json(), json!({"nested": [1, 2]}));

        let a = s.invoke(name, r#"{"kind": "base64"}"#);
        let bytes = s
            .request(reqwest::Method::POST, &format!("/v1/functions/{name}/invoke"))
            .body(r#"{"kind": "base64"}"#)
            .send()
            .expect("send")
            .bytes()
            .expect("bytes");
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(bytes.as_ref(), &[0u8, 1, 2, 255]);

        let a = s.invoke(name, r#"{"kind": "none"}"#);
        assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "null"));
        assert_eq!(a.header("content-type"), "application/json");

        let a = s.invoke(name, r#"{"kind": "list"}"#);
        assert_eq!(a.json(), json!([1, "two", {"three": 3}]));
        let a = s.invoke(name, "{}");
        assert_eq!(a.json(), json!({"plain": true}));

        let a = s.invoke(name, r#"{"kind": "unjsonable"}"#);
        assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{name}: {}", a.body);
        assert_eq!(a.json()["error"]["type"], "TypeError");

        let a = s.invoke(name, r#"{"kind": "huge"}"#);
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (StatusCode::BAD_GATEWAY, "response_too_large")
        );
        let next = s.invoke(name, "{}");
        assert!(
            !next.cold(),
            "{name}: a too-large answer does not cost the instance"
        );
    }
}

#[test]
fn handlers_see_their_context_and_environment() {
    let s = Server::start();
    let py = r#"
import os
def handler(event, context):
    return {
        "request_id": context.request_id, "aws_request_id": context.aws_request_id,
        "function_name": context.function_name, "function_version": context.function_version,
        "memory_limit_mb": context.memory_limit_mb, "memory_limit_in_mb": context.memory_limit_in_mb,
        "remaining": context.get_remaining_time_ms(), "greeting": os.environ.get("GREETING"),
    }
"#;
    let js = r#"
export function handler(event, context) {
  return {
    request_id: context.requestId, aws_request_id: context.awsRequestId,
    function_name: context.functionName, function_version: context.functionVersion,
    // memoryLimitInMB is a string, as on Lambda (contract_bun.rs checks it).
    memory_limit_mb: context.memoryLimitMb, memory_limit_in_mb: Number(context.memoryLimitInMB),
    remaining: context.getRemainingTimeInMillis(), greeting: process.env.GREETING,
  };
}
"#;
    for (name, runtime, code) in [("ctx-py", "python", py), ("ctx-js", "javascript", js)] {
        s.deploy(
            name,
            runtime,
            code,
            json!({"memory_mb": 256, "timeout_secs": 10, "env": {"GREETING": "hej"}}),
        );
        let a = s.invoke(name, "{}");
        let v = a.json();
        let id = a.header("x-ignis-invocation-id");
        assert_eq!(v["request_id"], id, "{name}");
        assert_eq!(v["aws_request_id"], id);
        assert_eq!(v["function_name"], name);
        assert_eq!(v["function_version"], "1");
        assert_eq!(
            (&v["memory_limit_mb"], &v["memory_limit_in_mb"]),
            (&json!(256), &json!(256))
        );
        let remaining = v["remaining"].as_i64().expect("number");
        assert!(remaining > 5_000 && remaining <= 10_000, "{name}: {remaining}");
        assert_eq!(v["greeting"], "hej");
    }
}

#[test]
fn async_and_one_argument_handlers_work() {
    let s = Server::start();
    let py = "import asyncio\nasync def handler(event):\n    await asyncio.sleep(0.01)\n    return event['x'] * 2\n";
    s.deploy("async-py", "python", py, json!({}));
    assert_eq!(s.invoke("async-py", r#"{"x": 21}"#).body, "42");
    assert_eq!(s.invoke("async-py", r#"{"x": 2}"#).body, "4");
    let js = "export function handler(event) { return event.x * 2; }";
    s.deploy("plain-js", "javascript", js, json!({}));
    assert_eq!(s.invoke("plain-js", r#"{"x": 21}"#).body, "42");
    let ts = "export default async (event: { x: number }): Promise<number> => event.x + 1;";
    s.deploy("default-ts", "typescript", ts, json!({}));
    assert_eq!(s.invoke("default-ts", r#"{"x": 41}"#).body, "42");
}
