//! Lambda's Node.js handler contract in Bun through the real server: the context, callback
//! handlers, console levels in the logs, answers JSON cannot hold, fetch handlers and
//! Response answers through function URLs.

use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{Answer, Server};

/// A function error's (type, message).
fn function_error(a: &Answer) -> (String, String) {
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", a.body);
    let e = &a.json()["error"];
    assert_eq!(e["code"], "function_error", "{}", a.body);
    (
        e["type"].as_str().expect("type").to_owned(),
        e["message"].as_str().expect("message").to_owned(),
    )
}

#[test]
fn the_context_has_every_lambda_attribute() {
    let s = Server::start();
    let js = r#"
export const handler = (event, context) => {
  const c = { ...context };
  for (const m of ["getRemainingTimeInMillis", "succeed", "fail", "done"]) c[m] = typeof context[m];
  c.remaining = context.getRemainingTimeInMillis();
  c.hasIdentity = "identity" in context && context.identity === undefined;
  c.hasClientContext = "clientContext" in context && context.clientContext === undefined;
  return c;
};
"#;
    s.deploy(
        "ctx-js",
        "javascript",
        js,
        json!({"memory_mb": 256, "timeout_secs": 7}),
    );
    let a = s.invoke("ctx-js", "{}");
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let c = a.json();
    let id = a.header("x-ignis-invocation-id");
    assert_eq!(
        (c["awsRequestId"].as_str(), c["requestId"].as_str()),
        (Some(id), Some(id))
    );
    assert_eq!(c["functionName"], "ctx-js");
    assert_eq!(c["functionVersion"], "1");
    assert_eq!(c["memoryLimitInMB"], "256", "a string, as on Lambda");
    assert_eq!(c["memoryLimitMb"], 256);
    let arn = c["invokedFunctionArn"].as_str().expect("arn");
    assert!(
        arn.starts_with("arn:aws:lambda:") && arn.ends_with(":000000000000:function:ctx-js"),
        "{arn}"
    );
    assert_eq!(c["logGroupName"], "/aws/lambda/ctx-js");
    let stream = c["logStreamName"].as_str().expect("log stream");
    let (day, rest) = stream.split_at(11);
    assert!(
        day.len() == 11 && day.matches('/').count() == 3 && rest.starts_with("[1]") && rest.len() == 35,
        "YYYY/MM/DD/[1]<32 hex>: {stream}"
    );
    assert_eq!(c["callbackWaitsForEmptyEventLoop"], true);
    for m in ["getRemainingTimeInMillis", "succeed", "fail", "done"] {
        assert_eq!(c[m], "function", "{m}");
    }
    let remaining = c["remaining"].as_u64().expect("remaining");
    assert!(remaining > 0 && remaining <= 7000, "{remaining}");
    assert_eq!(
        (c["hasIdentity"].as_bool(), c["hasClientContext"].as_bool()),
        (Some(true), Some(true))
    );
}

#[test]
fn callback_handlers_and_context_succeed() {
    let s = Server::start();
    let js = r#"
export function handler(event, context, callback) {
  setTimeout(() => {
    if (event.k === "ok") callback(null, { doubled: event.n * 2 });
    else if (event.k === "error") callback(new RangeError("n is too big"));
    else if (event.k === "text") callback("failed as text");
    else context.succeed({ via: "succeed" });
  }, 5);
}
"#;
    s.deploy("cb-js", "javascript", js, json!({}));
    let ok = s.invoke("cb-js", r#"{"k": "ok", "n": 21}"#);
    assert_eq!((ok.status, ok.json()), (StatusCode::OK, json!({"doubled": 42})));
    assert_eq!(
        function_error(&s.invoke("cb-js", r#"{"k": "error"}"#)),
        ("RangeError".to_owned(), "n is too big".to_owned())
    );
    assert_eq!(
        function_error(&s.invoke("cb-js", r#"{"k": "text"}"#)),
        ("string".to_owned(), "failed as text".to_owned())
    );
    let succeeded = s.invoke("cb-js", r#"{"k": "succeed"}"#);
    assert_eq!(
        (succeeded.status, succeeded.json()),
        (StatusCode::OK, json!({"via": "succeed"}))
    );
}

#[test]
fn console_levels_reach_the_invocations_logs() {
    let s = Server::start();
    let js = r#"
export function handler(event) {
  console.log("log line");
  console.info("info line");
  console.warn("warn line");
  console.error("error line");
  console.debug("debug line");
  return "ok";
}
"#;
    s.deploy("levels-js", "javascript", js, json!({}));
    s.deploy(
        "levels-json",
        "javascript",
        js,
        json!({"log_format": "json", "log_level": "WARN"}),
    );
    let a = s.invoke("levels-js", "{}");
    let id = a.header("x-ignis-invocation-id");
    let inv = s.invocation(id);
    let lines: Vec<(String, String)> = inv["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().expect("stream").to_owned(),
                l["line"].as_str().expect("line").to_owned(),
            )
        })
        .collect();
    let expected = [
        ("stdout", "INFO", "log line"),
        ("stdout", "INFO", "info line"),
        ("stderr", "WARN", "warn line"),
        ("stderr", "ERROR", "error line"),
        ("stdout", "DEBUG", "debug line"),
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:?}");
    for ((stream, line), (want_stream, level, message)) in lines.iter().zip(expected) {
        let parts: Vec<&str> = line.split('\t').collect();
        assert_eq!(stream, want_stream, "{line}");
        assert_eq!(parts[1..], [id, level, message], "{line}");
        assert!(
            parts[0].len() == 24 && parts[0].ends_with('Z'),
            "an ISO time: {line}"
        );
    }
    let a = s.invoke("levels-json", "{}");
    let id = a.header("x-ignis-invocation-id");
    let records: Vec<Value> = s.invocation(id)["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| serde_json::from_str(l["line"].as_str().expect("line")).expect("one JSON object per line"))
        .collect();
    let got: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["level"].as_str().expect("level"),
                r["requestId"].as_str().expect("requestId"),
                r["message"].as_str().expect("message"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [("WARN", id, "warn line"), ("ERROR", id, "error line")],
        "filtered at WARN"
    );
    assert!(records.iter().all(|r| r["timestamp"].is_string()));
}

#[test]
fn unserializable_answers_are_function_errors_naming_the_type() {
    let s = Server::start();
    let js = r#"
export function handler(event) {
  if (event.k === "map") return { m: new Map([["a", 1]]) };
  if (event.k === "set") return new Set([1]);
  if (event.k === "bigint") return 12n;
  if (event.k === "function") return () => 1;
  if (event.k === "cycle") { const o = {}; o.o = o; return o; }
  return { r: new Response("no") };
}
"#;
    s.deploy("nojson-js", "javascript", js, json!({}));
    for (k, what) in [
        ("map", ".m is a Map"),
        ("set", "it is a Set"),
        ("bigint", "it is a BigInt"),
        ("function", "it is a function"),
        ("cycle", "it is a circular structure"),
        ("response", ".r is a Response where none is expected"),
    ] {
        let (kind, message) = function_error(&s.invoke("nojson-js", &json!({"k": k}).to_string()));
        assert_eq!(kind, "TypeError", "{k}: {message}");
        assert!(
            message.starts_with(&format!("the handler's return value is not JSON: {what}")),
            "{k}: {message}"
        );
    }
}

#[test]
fn a_workers_style_fetch_handler_answers_its_function_url() {
    let s = Server::start();
    let js = r#"export default { fetch(req) { return new Response("hi " + new URL(req.url).pathname, {status: 201, headers: {"x-a": "b"}}) } }"#;
    s.deploy("worker-js", "javascript", js, json!({"http": {"auth": "none"}}));
    let resp = Client::new()
        .get(format!("{}/fn/worker-js/some/path", s.url))
        .send()
        .expect("request");
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["x-a"], "b");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("text")
            .starts_with("text/plain"),
        "{:?}",
        resp.headers()
    );
    assert_eq!(resp.text().expect("body"), "hi /some/path");
    // A direct invoke is a POST of the event to http://localhost/.
    let direct = s.invoke("worker-js", r#"{"a": 1}"#);
    assert_eq!(
        (direct.status, direct.body.as_str()),
        (StatusCode::CREATED, "hi /")
    );
}

#[test]
fn a_typescript_handler_returning_response_json() {
    let s = Server::start();
    let ts = r#"
export async function handler(event: { rawPath: string; rawQueryString: string }): Promise<Response> {
  return Response.json({ path: event.rawPath, query: event.rawQueryString }, { status: 202, headers: { "x-b": "c" } });
}
"#;
    s.deploy("response-ts", "typescript", ts, json!({"http": {"auth": "none"}}));
    let resp = Client::new()
        .get(format!("{}/fn/response-ts/items/7?full=1", s.url))
        .send()
        .expect("request");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(resp.headers()["x-b"], "c");
    assert!(resp.headers()["content-type"]
        .to_str()
        .expect("text")
        .starts_with("application/json"));
    let body: Value = resp.json().expect("JSON");
    assert_eq!(body, json!({"path": "/items/7", "query": "full=1"}));
}
