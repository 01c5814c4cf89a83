//! Response streaming through the real server: Bun's `awslambda.streamifyResponse`, a
//! fetch handler's `Response` with a `ReadableStream` body, and Python generator handlers
//! send their first chunk to a function URL client while the handler still runs; a direct
//! invoke of the same function gets the whole body; a failure mid-stream cuts the body.

use std::io::Read;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{wait_until, Server};

/// Each handler streams `first;`, then (when the request asks it to wait) waits until a
/// second call on the same instance releases it, then streams `second` and ends. The head
/// is 201 with `x-stream` and a cookie.
const PY: &str = r#"
import threading

gate = threading.Event()

def handler(event, context):
    query = event.get("rawQueryString") or ""
    if event.get("release") or "release" in query:
        gate.set()
        return {"released": True}
    if event.get("fail") or "fail" in query:
        return failing()
    return body(event.get("wait") or "wait" in query)

def body(wait):
    yield {"statusCode": 201, "headers": {"content-type": "text/plain", "x-stream": "python"}, "cookies": ["s=1"]}
    yield "first;"
    if wait:
        gate.wait()
    yield b"second"

def failing():
    yield "before;"
    raise ValueError("broke mid-stream")
"#;

const TS: &str = r#"
let release: () => void = () => {};
const gate = new Promise<void>((r) => (release = r));

export const handler = awslambda.streamifyResponse(async (event: any, responseStream: any): Promise<void> => {
  const query: string = event.rawQueryString ?? "";
  if (event.release || query.includes("release")) {
    release();
    responseStream.end("released");
    return;
  }
  if (event.fail || query.includes("fail")) {
    responseStream.write("before;");
    await new Promise((r) => setTimeout(r, 1));
    throw new TypeError("broke mid-stream");
  }
  const stream = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 201, headers: { "content-type": "text/plain", "x-stream": "typescript" }, cookies: ["s=1"] });
  stream.write("first;");
  if (event.wait || query.includes("wait")) await gate;
  stream.end(Buffer.from("second"));
});
"#;

/// A Workers-style fetch handler whose Response body is a ReadableStream.
const FETCH_JS: &str = r#"
let release = () => {};
const gate = new Promise((r) => (release = r));

export default {
  async fetch(request) {
    const url = new URL(request.url);
    // A direct invoke is a POST of the event.
    const event = request.method === "POST" ? await request.json() : {};
    if (url.searchParams.has("release") || event.release) {
      release();
      return new Response("released");
    }
    const wait = url.searchParams.has("wait") || event.wait;
    const body = new ReadableStream({
      async start(c) {
        c.enqueue(new TextEncoder().encode("first;"));
        if (wait) await gate;
        c.enqueue(new TextEncoder().encode("second"));
        c.close();
      },
    });
    const headers = new Headers({ "content-type": "text/plain", "x-stream": "javascript" });
    headers.append("set-cookie", "s=1");
    return new Response(body, { status: 201, headers });
  },
};
"#;

const DEADLINE: Duration = Duration::from_secs(60);

/// Reads the body until it holds `want`, returning what was read.
fn read_until(resp: &mut Response, want: &str) -> String {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(want) {
        assert!(start.elapsed() < DEADLINE, "no {want:?} in time; got {got:?}");
        let n = resp.read(&mut buf).expect("the body reads");
        assert!(n > 0, "the body ended before {want:?}; got {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).expect("UTF-8 body")
}

fn deploy_all(s: &Server) -> Vec<(&'static str, &'static str)> {
    let extra = json!({"http": {"auth": "none"}, "concurrency": 2, "max_instances": 1, "timeout_secs": 60});
    let all = [
        ("stream-py", "python", PY, "python"),
        ("stream-ts", "typescript", TS, "typescript"),
        ("stream-fetch", "javascript", FETCH_JS, "javascript"),
    ];
    for (name, runtime, code, _) in all {
        s.deploy(name, runtime, code, extra.clone());
    }
    all.iter().map(|(name, _, _, tag)| (*name, *tag)).collect()
}

/// Sends a request whose handler streams `first;` then waits; checks that `first;` is read
/// while it waits, releases it with a second call, and reads the rest.
fn first_chunk_before_the_end(s: &Server, request: RequestBuilder, name: &str, tag: &str) {
    let mut resp = request.send().expect("request");
    assert_eq!(resp.status(), StatusCode::CREATED, "{name}");
    let headers = resp.headers().clone();
    assert_eq!(headers["x-stream"], tag, "{name}: {headers:?}");
    assert_eq!(headers["content-type"], "text/plain", "{name}");
    assert_eq!(headers["set-cookie"], "s=1", "{name}");
    assert!(
        headers.get("content-length").is_none(),
        "{name}: a streamed body has no length: {headers:?}"
    );
    // The handler is blocked until the call below: the first chunk came before its end.
    assert_eq!(read_until(&mut resp, "first;"), "first;", "{name}");
    let release = s.invoke(name, r#"{"release": true}"#);
    assert_eq!(release.status, StatusCode::OK, "{name}: {}", release.body);
    let mut rest = String::new();
    resp.read_to_string(&mut rest).expect("the rest of the body");
    assert_eq!(rest, "second", "{name}");
}

#[test]
fn the_first_chunk_reaches_a_function_url_client_before_the_handler_ends() {
    let s = Server::start();
    let client = Client::builder().timeout(DEADLINE).build().expect("client");
    for (name, tag) in deploy_all(&s) {
        let request = client.get(format!("{}/fn/{name}/?wait=1", s.url));
        first_chunk_before_the_end(&s, request, name, tag);
    }
}

#[test]
fn a_direct_invoke_that_asks_for_a_stream_gets_the_first_chunk_before_the_end() {
    let s = Server::start();
    let client = Client::builder().timeout(DEADLINE).build().expect("client");
    for (name, tag) in deploy_all(&s) {
        let request = client
            .post(format!("{}/v1/functions/{name}/invoke", s.url))
            .header("x-ignis-invocation-type", "ResponseStream")
            .body(r#"{"wait": true}"#);
        first_chunk_before_the_end(&s, request, name, tag);
    }
}

#[test]
fn a_direct_invoke_of_a_streaming_function_gets_the_whole_body_with_its_head() {
    let s = Server::start();
    for (name, tag) in deploy_all(&s) {
        let a = s.invoke(name, "{}");
        assert_eq!(a.status, StatusCode::CREATED, "{name}: {}", a.body);
        assert_eq!(a.header("x-stream"), tag, "{name}");
        assert_eq!(a.header("content-type"), "text/plain", "{name}");
        assert_eq!(a.body, "first;second", "{name}");
        // A call that only releases answers a value (Python), a streamed body (TypeScript)
        // or a Response with a text body (the fetch handler).
        let released = s.invoke(name, r#"{"release": true}"#);
        let expected = if name == "stream-py" {
            r#"{"released":true}"#
        } else {
            "released"
        };
        assert_eq!(released.body.replace(' ', ""), expected, "{name}");
    }
}

#[test]
fn a_failure_after_the_first_chunk_cuts_the_function_urls_body() {
    let s = Server::start();
    let client = Client::builder().timeout(DEADLINE).build().expect("client");
    for (name, _) in deploy_all(&s) {
        if name == "stream-fetch" {
            continue; // its failure mid-stream is in runtimes/tests/test_streaming.py
        }
        let mut resp = client
            .get(format!("{}/fn/{name}/?fail=1", s.url))
            .send()
            .expect("request");
        assert_eq!(resp.status(), StatusCode::OK, "{name}: the default head");
        let id = resp.headers()["x-ignis-invocation-id"]
            .to_str()
            .expect("an id")
            .to_owned();
        let mut body = Vec::new();
        let read = resp.read_to_end(&mut body);
        assert!(
            read.is_err(),
            "{name}: the body must not end cleanly; got {body:?}"
        );
        assert!(
            String::from_utf8_lossy(&body).starts_with("before;"),
            "{name}: {body:?}"
        );
        // The call is recorded as the function error it was (records are written in
        // batches: wait for it).
        let mut record = Value::Null;
        wait_until("the record of the cut call", DEADLINE, || {
            let a = s.get(&format!("/v1/invocations/{id}"));
            record = if a.status == StatusCode::OK {
                a.json()
            } else {
                Value::Null
            };
            !record.is_null()
        });
        assert_eq!(record["status"], "function_error", "{name}: {record}");
        assert!(
            record.to_string().contains("broke mid-stream"),
            "{name}: {record}"
        );
        // A direct invoke of the same failure is a function error naming it.
        let a = s.invoke(name, r#"{"fail": true}"#);
        assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{name}: {}", a.body);
        assert_eq!(a.json()["error"]["code"], "function_error", "{name}");
        assert!(a.body.contains("broke mid-stream"), "{name}: {}", a.body);
    }
}
