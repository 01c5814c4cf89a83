//! Lambda's Python handler contract end to end: the whole context, `logging` records in the
//! call's logs (level, time, request id), per call with several in flight, and return
//! values JSON cannot hold failing with a message that says what was returned.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::Server;

/// (stream, line) of each log line of an invocation record.
fn lines(invocation: &Value) -> Vec<(String, String)> {
    invocation["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| {
            let text = |k: &str| l[k].as_str().expect("a string").to_owned();
            (text("stream"), text("line"))
        })
        .collect()
}

/// (stream, level, request id, message) of each line in Lambda's text format
/// `[LEVEL]\t<ISO time>Z\t<request id>\t<message>`.
fn records(invocation: &Value) -> Vec<(String, String, String, String)> {
    lines(invocation)
        .into_iter()
        .filter_map(|(stream, line)| {
            let mut parts = line.splitn(4, '\t');
            let level = parts.next()?.strip_prefix('[')?.strip_suffix(']')?.to_owned();
            let time = parts.next()?;
            let id = parts.next()?.to_owned();
            let message = parts.next()?.to_owned();
            let iso = time.len() == 24 && time.ends_with('Z') && time.as_bytes()[19] == b'.';
            assert!(iso, "an ISO time with milliseconds: {line}");
            Some((stream, level, id, message))
        })
        .collect()
}

fn record(stream: &str, level: &str, id: &str, message: &str) -> (String, String, String, String) {
    (stream.into(), level.into(), id.into(), message.into())
}

const CONTEXT: &str = r#"
NAMES = ["aws_request_id", "request_id", "function_name", "function_version", "invoked_function_arn",
         "memory_limit_in_mb", "memory_limit_mb", "log_group_name", "log_stream_name", "identity",
         "client_context"]
def handler(event, context):
    for name in NAMES:
        print("%s=%s" % (name, getattr(context, name)))
    out = {name: getattr(context, name) for name in NAMES}
    out["remaining"] = context.get_remaining_time_in_millis()
    out["remaining_ms"] = context.get_remaining_time_ms()
    return out
"#;

#[test]
fn the_context_has_every_attribute_and_method_of_lambdas() {
    let s = Server::start();
    let f = s.deploy(
        "ctx-py",
        "python",
        CONTEXT,
        json!({"timeout_secs": 30, "memory_mb": 256}),
    );
    let version = f["version"].to_string();
    let mut streams = Vec::new();
    for _ in 0..2 {
        let a = s.invoke("ctx-py", "{}");
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let id = a.header("x-ignis-invocation-id").to_owned();
        let mut v = a.json();
        for key in ["remaining", "remaining_ms"] {
            let left = v[key].as_i64().expect("an integer");
            assert!(0 < left && left <= 30_000, "{key}: {left}");
            v.as_object_mut().expect("an object").remove(key);
        }
        let stream = v["log_stream_name"].as_str().expect("a stream").to_owned();
        let (day, tail) = stream.split_at(11);
        let hex = tail.strip_prefix(&format!("[{version}]")).unwrap_or("");
        assert!(
            day.len() == 11 && day.matches('/').count() == 3 && hex.len() == 32,
            "YYYY/MM/DD/[version]<32 hex>: {stream}"
        );
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{stream}");
        streams.push(stream);
        assert_eq!(
            v,
            json!({
                "aws_request_id": id, "request_id": id, "function_name": "ctx-py",
                "function_version": version,
                "invoked_function_arn": "arn:aws:lambda:us-east-1:000000000000:function:ctx-py",
                "memory_limit_in_mb": 256, "memory_limit_mb": 256,
                "log_group_name": "/aws/lambda/ctx-py", "log_stream_name": streams.last(),
                "identity": null, "client_context": null,
            })
        );
        let printed = lines(&s.invocation(&id));
        for expected in [
            format!("aws_request_id={id}"),
            "function_name=ctx-py".into(),
            "identity=None".into(),
        ] {
            assert!(
                printed.contains(&("stdout".into(), expected.clone())),
                "{expected} in {printed:?}"
            );
        }
    }
    assert_eq!(streams[0], streams[1], "one log stream per instance");
}

const LOGGING: &str = r#"
import logging
logging.basicConfig(level=logging.DEBUG, format="%(message)s")  # a no-op, as on Lambda
log = logging.getLogger(__name__)
def handler(event):
    logging.getLogger().info("root info %s", event["n"])
    log.warning("module logger warning")
    log.debug("below the default level")
    try:
        {}["missing"]
    except KeyError:
        log.exception("lookup failed")
    return "ok"
"#;

#[test]
fn logging_records_carry_their_level_time_and_request_id() {
    let s = Server::start();
    s.deploy("log-py", "python", LOGGING, json!({}));
    for n in [1, 2] {
        let a = s.invoke("log-py", &format!(r#"{{"n": {n}}}"#));
        assert_eq!(a.body, "\"ok\"");
        let id = a.header("x-ignis-invocation-id");
        let inv = s.invocation(id);
        assert_eq!(
            records(&inv),
            [
                record("stdout", "INFO", id, &format!("root info {n}")),
                record("stderr", "WARNING", id, "module logger warning"),
                record("stderr", "ERROR", id, "lookup failed"),
            ]
        );
        let all = lines(&inv);
        assert!(
            all.contains(&("stderr".into(), "KeyError: 'missing'".into())),
            "the exception's traceback follows its record: {all:?}"
        );
    }
}

const CONCURRENT: &str = r#"
import logging, threading
log = logging.getLogger("work")
both = threading.Barrier(2)
def handler(event):
    me = event["me"]
    log.info("start %s", me)
    both.wait(timeout=20)  # both calls are in flight on the one instance
    log.warning("middle %s", me)
    both.wait(timeout=20)
    log.error("end %s", me)
    return me
"#;

#[test]
fn two_calls_at_once_on_one_instance_each_get_only_their_own_records() {
    let s = Server::start();
    let extra = json!({"concurrency": 2, "max_instances": 1, "timeout_secs": 30});
    s.deploy("log-conc-py", "python", CONCURRENT, extra);
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| s.invoke("log-conc-py", r#"{"me": "a"}"#));
        let b = scope.spawn(|| s.invoke("log-conc-py", r#"{"me": "b"}"#));
        (a.join().expect("call a"), b.join().expect("call b"))
    });
    for (answer, me) in [(a, "a"), (b, "b")] {
        assert_eq!(answer.body, format!("\"{me}\""), "{}", answer.body);
        let id = answer.header("x-ignis-invocation-id");
        assert_eq!(
            records(&s.invocation(id)),
            [
                record("stdout", "INFO", id, &format!("start {me}")),
                record("stderr", "WARNING", id, &format!("middle {me}")),
                record("stderr", "ERROR", id, &format!("end {me}")),
            ]
        );
    }
}

const UNSERIALIZABLE: &str = r#"
import datetime, decimal
class Point:
    pass
def helper():
    pass
def handler(event):
    loop = []
    loop.append(loop)
    return {
        "function": helper, "instance": Point(), "set": {1, 2}, "bytes": b"raw",
        "cycle": loop, "nan": float("nan"), "datetime": datetime.date(2024, 1, 2),
        "decimal": {"price": decimal.Decimal("19.90")},
    }[event]
"#;

#[test]
fn return_values_json_cannot_hold_are_function_errors_naming_what_was_returned() {
    let s = Server::start();
    s.deploy("values-py", "python", UNSERIALIZABLE, json!({}));
    for (event, says) in [
        (
            "function",
            "the handler returned the function helper (a function is not a value",
        ),
        (
            "instance",
            "the handler returned an instance of main.Point (it has no JSON form",
        ),
        ("set", "the handler returned a set (JSON has no sets"),
        ("bytes", "the handler returned a bytes object (JSON has no bytes"),
        (
            "cycle",
            "the handler returned a list whose [0] is a list (it contains itself",
        ),
        (
            "nan",
            "the handler returned the float nan (JSON has no NaN or Infinity)",
        ),
        (
            "datetime",
            "the handler returned a datetime.date (JSON has no dates",
        ),
    ] {
        let a = s.invoke("values-py", &format!("\"{event}\""));
        assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{event}: {}", a.body);
        let e = a.json();
        assert_eq!(e["error"]["code"], "function_error", "{event}: {e}");
        assert_eq!(e["error"]["type"], "TypeError", "{event}: {e}");
        let message = e["error"]["message"].as_str().expect("a message");
        assert!(
            message.starts_with(&format!("the handler's return value is not JSON: {says}")),
            "{event}: {message}"
        );
        let record = s.invocation(a.header("x-ignis-invocation-id"));
        assert_eq!(record["status"], "function_error", "{event}: {record}");
    }
    let decimal = s.invoke("values-py", "\"decimal\"");
    assert_eq!(decimal.status, StatusCode::OK, "{}", decimal.body);
    assert_eq!(
        decimal.json(),
        json!({"price": 19.9}),
        "a Decimal is a number, as on Lambda"
    );
}
