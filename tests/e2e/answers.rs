//! What a handler returns can never frame the HTTP answer, steer the connection, pose as
//! the platform or take down its instance; events nested too deeply are refused at the API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::Server;

/// Answers with what the event asks for: `{"respond": <return value>}`.
const RESPOND_PY: &str = "def handler(event):\n    return event['respond']\n";
const RESPOND_JS: &str = "export const handler = (event) => event.respond;";

/// Both runtimes, each with a function named after it.
fn both(s: &Server, prefix: &str, py: &str, js: &str, extra: &Value) -> [String; 2] {
    [("py", "python", py), ("js", "javascript", js)].map(|(suffix, runtime, code)| {
        let name = format!("{prefix}-{suffix}");
        s.deploy(&name, runtime, code, extra.clone());
        name
    })
}

/// One HTTP/1.1 answer read off a raw connection.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    /// Lower-cased names, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A keep-alive client on one TCP connection, reading answers as any HTTP/1.1 client
/// would: the framing the server sends decides where each answer ends.
struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(s: &Server) -> Connection {
        let addr = s.url.strip_prefix("http://").expect("an http:// url");
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("read timeout");
        Connection {
            reader: BufReader::new(stream),
        }
    }

    fn write(&mut self, method: &str, path: &str, body: &str) {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        self.reader
            .get_mut()
            .write_all(request.as_bytes())
            .expect("write the request");
    }

    fn read(&mut self) -> RawAnswer {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read the status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP status line: {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("read a header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').expect("a header line");
            headers.push((n.to_ascii_lowercase(), v.trim().to_owned()));
        }
        let mut answer = RawAnswer {
            status,
            headers,
            body: Vec::new(),
        };
        if answer.header("transfer-encoding") == Some("chunked") {
            loop {
                let mut size = String::new();
                self.reader.read_line(&mut size).expect("chunk size");
                let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk).expect("chunk");
                if size == 0 {
                    break;
                }
                answer.body.extend_from_slice(&chunk[..size]);
            }
        } else {
            let len: usize = answer
                .header("content-length")
                .expect("a content-length or a chunked body")
                .parse()
                .expect("a number");
            answer.body = vec![0; len];
            self.reader.read_exact(&mut answer.body).expect("body");
        }
        answer
    }
}

/// Framing and connection headers in every case a handler might write them.
fn framing_headers() -> Value {
    json!({
        "Content-Length": "2",
        "transfer-encoding": "identity",
        "CONNECTION": "close",
        "Keep-Alive": "timeout=1",
        "upgrade": "websocket",
        "TE": "trailers",
        "Trailer": "x-late",
        "proxy-connection": "close",
        "x-kept": "yes",
    })
}

#[test]
fn a_handlers_content_length_cannot_forge_the_next_answer_on_a_keep_alive_connection() {
    let s = Server::start();
    let names = both(&s, "forge", RESPOND_PY, RESPOND_JS, &json!({}));
    // What a handler would write to make the rest of its body read as the next answer.
    let forged_tail = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged";
    let body = format!("ok{forged_tail}");
    for name in &names {
        let event = json!({"respond": {"statusCode": 200, "headers": framing_headers(), "body": body}});
        let mut conn = Connection::open(&s);
        // Pipelined: both requests are on the wire before the first answer is read.
        conn.write(
            "POST",
            &format!("/v1/functions/{name}/invoke"),
            &event.to_string(),
        );
        conn.write("GET", "/healthz", "");
        let first = conn.read();
        assert_eq!(first.status, 200, "{name}: {first:?}");
        assert_eq!(
            first.body,
            body.as_bytes(),
            "{name}: the whole body is the first answer's"
        );
        assert_eq!(
            first.header("content-length"),
            Some(body.len().to_string().as_str())
        );
        assert_eq!(first.header("x-kept"), Some("yes"));
        for n in [
            "transfer-encoding",
            "connection",
            "keep-alive",
            "upgrade",
            "te",
            "trailer",
            "proxy-connection",
        ] {
            assert_eq!(first.header(n), None, "{name}: {n} was passed through: {first:?}");
        }
        let second = conn.read();
        assert_eq!(second.status, 200, "{name}: {second:?}");
        assert_ne!(
            second.body, b"forged",
            "{name}: the handler forged the next answer"
        );
        assert_eq!(second.json()["status"], "ok", "{name}: {second:?}");
        // The connection is still the server's: one more call on it is answered.
        conn.write(
            "POST",
            &format!("/v1/functions/{name}/invoke"),
            &event.to_string(),
        );
        assert_eq!(conn.read().body, body.as_bytes(), "{name}");
    }
}

#[test]
fn informational_statuses_are_refused_and_the_connection_keeps_answering() {
    let s = Server::start();
    let names = both(&s, "info", RESPOND_PY, RESPOND_JS, &json!({}));
    for name in &names {
        let mut conn = Connection::open(&s);
        for status in [100, 101, 102, 103, 199] {
            let event = json!({"respond": {
                "statusCode": status,
                "headers": {"upgrade": "websocket", "connection": "upgrade"},
                "body": "switching",
            }});
            conn.write(
                "POST",
                &format!("/v1/functions/{name}/invoke"),
                &event.to_string(),
            );
            let a = conn.read();
            assert_eq!(a.status, 502, "{name} {status}: {a:?}");
            let e = a.json();
            assert_eq!(e["error"]["code"], "invalid_response", "{name} {status}: {e}");
            assert!(
                e["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains(&status.to_string()),
                "{name}: {e}"
            );
            assert!(a.header("x-ignis-invocation-id").is_some_and(|v| !v.is_empty()));
            conn.write("GET", "/healthz", "");
            assert_eq!(
                conn.read().json()["status"],
                "ok",
                "{name} {status}: the connection answers"
            );
        }
        let ok = json!({"respond": {"statusCode": 200, "body": "fine"}});
        conn.write("POST", &format!("/v1/functions/{name}/invoke"), &ok.to_string());
        assert_eq!(conn.read().body, b"fine");
    }
}

/// Every `x-ignis-*` header the platform sets, and one it does not, as a handler would
/// forge them (headers, mixed case).
fn forged_platform_headers() -> Value {
    json!({
        "X-Ignis-Invocation-Id": "forged",
        "x-ignis-cold-start": "forged",
        "x-ignis-init-ms": "forged",
        "x-ignis-duration-ms": "forged",
        "x-ignis-version": "forged",
        "X-IGNIS-IDEMPOTENT-REPLAY": "forged",
        "x-ignis-anything": "forged",
        "x-kept": "yes",
    })
}

/// No `x-ignis-*` header of `headers` says "forged"; the handler's own header came through.
fn assert_platform_headers_are_the_platforms(what: &str, headers: &reqwest::header::HeaderMap) {
    for (n, v) in headers {
        if n.as_str().starts_with("x-ignis-") {
            assert_ne!(v, "forged", "{what}: {n} was set by the handler");
        }
    }
    assert_eq!(headers.get("x-ignis-anything"), None, "{what}");
    assert_eq!(
        headers.get("x-kept").and_then(|v| v.to_str().ok()),
        Some("yes"),
        "{what}"
    );
    let id = headers.get("x-ignis-invocation-id").expect("an invocation id");
    assert!(!id.is_empty(), "{what}");
    assert_eq!(
        headers.get("x-ignis-version").and_then(|v| v.to_str().ok()),
        Some("1"),
        "{what}"
    );
}

#[test]
fn a_handler_cannot_set_x_ignis_headers_on_any_path() {
    let s = Server::start();
    let forged = forged_platform_headers();
    let event = json!({"respond": {"statusCode": 200, "headers": forged, "body": "hi"}}).to_string();
    // Sync and cold: with no idle time, every call starts its instance.
    for name in both(
        &s,
        "plat-cold",
        RESPOND_PY,
        RESPOND_JS,
        &json!({"idle_timeout_secs": 0}),
    ) {
        let cold = s.invoke(&name, &event);
        assert_eq!(
            (cold.status, cold.body.as_str()),
            (StatusCode::OK, "hi"),
            "{name}"
        );
        assert_platform_headers_are_the_platforms(&format!("{name} cold"), &cold.headers);
        assert_eq!(cold.header("x-ignis-cold-start"), "true", "{name}");
        assert!(cold.header("x-ignis-init-ms").parse::<f64>().is_ok(), "{name}");
        assert_eq!(cold.header("x-ignis-idempotent-replay"), "", "{name}");
    }
    let names = both(&s, "plat", RESPOND_PY, RESPOND_JS, &json!({}));
    for name in &names {
        // Sync and warm (the deploy's instance is kept).
        let warm = s.invoke(name, &event);
        assert_platform_headers_are_the_platforms(&format!("{name} warm"), &warm.headers);
        assert_eq!(warm.header("x-ignis-cold-start"), "false", "{name}");
        assert_eq!(
            warm.header("x-ignis-init-ms"),
            "",
            "{name}: only a cold start has one"
        );

        // An idempotent call, then its replay.
        let keyed = || {
            s.send(
                s.request(Method::POST, &format!("/v1/functions/{name}/invoke"))
                    .header("idempotency-key", "once")
                    .body(event.clone()),
            )
        };
        let first = keyed();
        assert_platform_headers_are_the_platforms(&format!("{name} keyed"), &first.headers);
        assert_eq!(first.header("x-ignis-idempotent-replay"), "", "{name}");
        let replay = keyed();
        assert_eq!(replay.body, "hi", "{name}");
        assert_platform_headers_are_the_platforms(&format!("{name} replay"), &replay.headers);
        assert_eq!(replay.header("x-ignis-idempotent-replay"), "true", "{name}");
        assert_eq!(
            replay.header("x-ignis-invocation-id"),
            first.header("x-ignis-invocation-id"),
            "{name}: the replay is the first call's answer"
        );
    }
    // Function URLs with handlers that return the forged headers whatever the request.
    let py = format!("FORGED = {forged}\ndef handler(event):\n    return {{'statusCode': 200, 'headers': FORGED, 'body': 'hi'}}\n");
    let js = format!("const FORGED = {forged};\nexport const handler = () => ({{ statusCode: 200, headers: FORGED, body: 'hi' }});");
    for (round, idle) in [("cold", 0), ("warm", 300)] {
        let extra = json!({"http": {"auth": "none"}, "idle_timeout_secs": idle});
        for name in both(&s, &format!("plat-url-{round}"), &py, &js, &extra) {
            let a = Client::new()
                .get(format!("{}/fn/{name}/any/path", s.url))
                .send()
                .expect("function URL answers");
            assert_eq!(a.status(), StatusCode::OK, "{name}");
            let headers = a.headers().clone();
            assert_eq!(a.text().expect("body"), "hi");
            assert_platform_headers_are_the_platforms(&format!("{name} URL"), &headers);
            let cold = headers.get("x-ignis-cold-start").and_then(|v| v.to_str().ok());
            assert_eq!(cold, Some(if idle == 0 { "true" } else { "false" }), "{name}");
        }
    }
}

/// `ping` answers at once; `slow` waits until a `deep` call has run beside it on the same
/// instance; `deep` waits for a `slow` call to be in flight, lets it go and returns a value
/// nested `levels` deep (the server's JSON reader stops at 128).
const DEEP_PY: &str = r#"
import threading
started = threading.Event()
released = threading.Event()
def handler(event):
    kind = event["kind"]
    if kind == "slow":
        started.set()
        if not released.wait(30):
            raise TimeoutError("no deep call came")
        return "slow done"
    if kind == "deep":
        if not started.wait(30):
            raise TimeoutError("no slow call in flight")
        value = "bottom"
        for _ in range(event["levels"]):
            value = [value]
        released.set()
        return value
    return "pong"
"#;
const DEEP_JS: &str = r#"
let started = false;
let released = false;
async function until(what, cond) {
  const end = Date.now() + 30000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(what);
    await Bun.sleep(5);
  }
}
export async function handler(event) {
  if (event.kind === "slow") {
    started = true;
    await until("no deep call came", () => released);
    return "slow done";
  }
  if (event.kind === "deep") {
    await until("no slow call in flight", () => started);
    let value = "bottom";
    for (let i = 0; i < event.levels; i++) value = [value];
    released = true;
    return value;
  }
  return "pong";
}
"#;

#[test]
fn a_return_value_too_deep_fails_only_its_call_and_not_the_calls_beside_it() {
    let s = Server::start();
    let extra = json!({"concurrency": 2, "max_instances": 1, "timeout_secs": 60});
    for name in both(&s, "deep", DEEP_PY, DEEP_JS, &extra) {
        assert_eq!(s.invoke(&name, r#"{"kind": "ping"}"#).body, "\"pong\"", "{name}");
        let (slow, deep) = std::thread::scope(|scope| {
            let slow = scope.spawn(|| s.invoke(&name, r#"{"kind": "slow"}"#));
            let deep = scope.spawn(|| s.invoke(&name, r#"{"kind": "deep", "levels": 200}"#));
            (slow.join().expect("slow call"), deep.join().expect("deep call"))
        });
        assert_eq!(deep.status, StatusCode::BAD_GATEWAY, "{name}: {}", deep.body);
        assert_eq!(deep.error_code(), "invalid_response", "{name}");
        let message = deep.json()["error"]["message"].as_str().unwrap_or("").to_owned();
        assert!(
            message.contains("nested 200 levels deep") && message.contains("100 levels"),
            "{name}: {message}"
        );
        assert_eq!(
            (slow.status, slow.body.as_str()),
            (StatusCode::OK, "\"slow done\""),
            "{name}: the call beside the deep one"
        );
        let record = s.invocation(deep.header("x-ignis-invocation-id"));
        assert_eq!(record["status"], "invalid_response", "{name}: {record}");
        assert_eq!(record["error"]["code"], "invalid_response", "{name}: {record}");
        // The instance lives on: the next call is warm, and a value at the limit is read.
        let next = s.invoke(&name, r#"{"kind": "ping"}"#);
        assert_eq!((next.body.as_str(), next.cold()), ("\"pong\"", false), "{name}");
    }
}

/// `[[...]]` nested `levels` deep, with a string at the bottom.
fn nested(levels: usize) -> String {
    format!("{}\"x\"{}", "[".repeat(levels), "]".repeat(levels))
}

#[test]
fn an_event_too_deep_is_refused_at_every_way_in() {
    let s = Server::start();
    let ok_py = "def handler(event):\n    return 'ran'\n";
    let ok_js = "export const handler = () => 'ran';";
    let names = both(&s, "ev", ok_py, ok_js, &json!({"http": {"auth": "none"}}));
    let assert_too_deep = |what: &str, status: StatusCode, body: &str| {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        let e: Value = serde_json::from_str(body).expect("JSON error");
        assert_eq!(e["error"]["code"], "event_too_deep", "{what}: {e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("65 levels deep; the limit is 64"),
            "{what}: {e}"
        );
    };
    for name in &names {
        // At the limit, every way in runs the handler.
        let at_limit = nested(64);
        assert_eq!(s.invoke(name, &at_limit).body, "\"ran\"", "{name}");
        let queued = s.invoke_async(name, &at_limit);
        assert_eq!(queued.status, StatusCode::ACCEPTED, "{name}: {}", queued.body);
        s.wait_for_status(queued.json()["invocation_id"].as_str().expect("id"), "succeeded");
        let url = Client::new()
            .post(format!("{}/fn/{name}/hook", s.url))
            .body(at_limit.clone())
            .send()
            .expect("function URL");
        assert_eq!(url.status(), StatusCode::OK, "{name}");

        // One level more is refused before any handler runs.
        let too_deep = nested(65);
        let a = s.invoke(name, &too_deep);
        assert_too_deep(&format!("{name} sync"), a.status, &a.body);
        let a = s.invoke_async(name, &too_deep);
        assert_too_deep(&format!("{name} async"), a.status, &a.body);
        let url = Client::new()
            .post(format!("{}/fn/{name}/hook", s.url))
            .header("content-type", "application/json")
            .body(too_deep.clone())
            .send()
            .expect("function URL");
        let status = url.status();
        assert_too_deep(
            &format!("{name} function URL"),
            status,
            &url.text().expect("body"),
        );
        let saved = s.send(
            s.request(Method::PUT, &format!("/v1/functions/{name}/test-events/deep"))
                .body(too_deep.clone()),
        );
        assert_too_deep(&format!("{name} test event"), saved.status, &saved.body);

        // A body that is not JSON has no depth: brackets in a form or a file are data.
        let text = Client::new()
            .post(format!("{}/fn/{name}/hook", s.url))
            .body("[".repeat(1000))
            .send()
            .expect("function URL");
        assert_eq!(text.status(), StatusCode::OK, "{name}");
        // Far deeper than the reader allows: still the same precise 400, at once.
        let a = s.invoke(name, &nested(100_000));
        assert_eq!(a.error_code(), "event_too_deep", "{name}: {}", a.body);
    }
    // The playground's event too.
    let deep: Value = serde_json::from_str(&nested(65)).expect("JSON");
    let run = s.post(
        "/v1/playground/run",
        json!({"runtime": "python", "code": ok_py, "event": deep}).to_string(),
    );
    assert_too_deep("playground", run.status, &run.body);
    assert_eq!(run.json()["error"]["field"], "event", "{}", run.body);
    // A schedule's event in the spec is held to the same limit.
    let deep_event: Value = (1..65).fold(json!({}), |inner, _| json!({ "a": inner }));
    let a = s.create(&json!({
        "name": "cron-deep", "runtime": "python", "code": ok_py,
        "schedules": [{"cron": "0 * * * *", "event": deep_event}],
    }));
    assert_too_deep("schedule event", a.status, &a.body);
    assert_eq!(a.json()["error"]["field"], "schedules[0].event", "{}", a.body);
}
