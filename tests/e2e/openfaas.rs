//! OpenFaaS's python3-http template, chosen with `handler_style: "openfaas"`: a handler
//! written for it runs unchanged through a function URL and a direct invoke.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::Server;

/// As OpenFaaS's python3-http template generates it (`handler.py`), reading every part of
/// the event.
const HANDLER: &str = r#"
import json

def handle(event, context):
    return {
        "statusCode": 201,
        "headers": {"X-From": "openfaas"},
        "body": {
            "method": event.method,
            "path": event.path,
            "query": event.query.get("q"),
            "agent": event.headers.get("X-Test"),
            "body": event.body.decode(),
            "hostname": bool(context.hostname),
        },
    }
"#;

#[test]
fn an_openfaas_python3_http_handler_runs_unchanged() {
    let s = Server::start();
    let a = s.create(
        &json!({"name": "faas", "runtime": "python", "handler": "handler.handle",
                             "handler_style": "openfaas", "http": {"auth": "none"},
                             "files": {"handler.py": HANDLER, "requirements.txt": ""}}),
    );
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    assert_eq!(a.json()["spec"]["handler_style"], "openfaas");
    let r = reqwest::blocking::Client::new()
        .put(format!("{}/fn/faas/items?q=7", s.url))
        .header("x-test", "yes")
        .body("raw text")
        .send()
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["x-from"], "openfaas");
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().expect("JSON");
    assert_eq!(
        body,
        json!({"method": "PUT", "path": "/items", "query": "7", "agent": "yes", "body": "raw text", "hostname": true})
    );
    // A direct invoke is a POST of the event as JSON.
    let a = s.invoke("faas", r#"{"k": 1}"#);
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.json()["method"], "POST");
    assert_eq!(a.json()["body"], r#"{"k": 1}"#);

    let js = s.create(
        &json!({"name": "jsfaas", "runtime": "javascript", "code": "export const handler = () => 1;",
                              "handler_style": "openfaas"}),
    );
    assert_eq!(js.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", js.body);
    assert_eq!(js.json()["error"]["field"], "handler_style");
}
