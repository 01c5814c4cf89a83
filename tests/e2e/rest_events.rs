//! API Gateway REST (payload 1.0) events through a function's URL, answers with
//! `multiValueHeaders`, the URL's root with a trailing slash, and the forwarding headers
//! AWS sets.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::Server;

const ECHO: &str = r#"
import json

def handler(event, context):
    return {"statusCode": 200,
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"], "X-Seen": [event.get("httpMethod") or event["requestContext"]["http"]["method"]]},
            "body": json.dumps(event)}
"#;

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

#[test]
fn a_rest_function_gets_payload_1_0_events_and_answers_with_multi_value_headers() {
    let s = Server::start();
    let a = s.create(&json!({"name": "rest", "runtime": "python", "code": ECHO,
                             "http": {"auth": "none", "payload_format_version": "1.0"}}));
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    assert_eq!(a.json()["spec"]["http"]["payload_format_version"], "1.0");
    let r = client()
        .put(format!("{}/fn/rest/users/42?a=1&a=2&b=x", s.url))
        .header("x-forwarded-for", "198.51.100.1")
        .header("x-multi", "one")
        .body("{\"k\": 1}")
        .send()
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("text").to_owned())
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"], "multiValueHeaders are answered");
    assert_eq!(r.headers()["x-seen"], "PUT");
    let e: Value = r.json().expect("the event");
    assert_eq!(e["version"], "1.0");
    assert_eq!(e["httpMethod"], "PUT");
    assert_eq!(e["path"], "/users/42");
    assert_eq!(e["resource"], "/{proxy+}");
    assert_eq!(e["pathParameters"]["proxy"], "users/42");
    assert_eq!(e["queryStringParameters"]["a"], "2");
    assert_eq!(e["multiValueQueryStringParameters"]["a"], json!(["1", "2"]));
    assert_eq!(e["multiValueHeaders"]["x-multi"], json!(["one"]));
    assert_eq!(
        e["headers"]["x-forwarded-for"], "198.51.100.1, 127.0.0.1",
        "the client's address is appended"
    );
    assert_eq!(e["headers"]["x-forwarded-proto"], "http");
    assert_eq!(e["requestContext"]["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(e["body"], "{\"k\": 1}");

    // A 2.0 function (the default) does not read multiValueHeaders; its root takes a slash.
    let a = s.create(&json!({"name": "url", "runtime": "python", "code": ECHO, "http": {"auth": "none"}}));
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    for path in ["/fn/url", "/fn/url/"] {
        let r = client().get(format!("{}{path}", s.url)).send().expect("send");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(r.headers().get("set-cookie").is_none(), "{path}");
        let e: Value = r.json().expect("the event");
        assert_eq!(e["rawPath"], "/", "{path}");
        assert_eq!(e["requestContext"]["http"]["sourceIp"], "127.0.0.1");
        assert_eq!(e["headers"]["x-forwarded-for"], "127.0.0.1");
    }
    let bad = s.create(
        &json!({"name": "bad", "runtime": "python", "code": ECHO, "http": {"payload_format_version": "3.0"}}),
    );
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(bad.json()["error"]["field"], "http.payload_format_version");
}

#[test]
fn declared_routes_fill_path_parameters_and_refuse_other_paths() {
    let s = Server::start();
    let http = |format: &str| {
        json!({"auth": "none", "payload_format_version": format,
        "routes": ["GET /users/{id}", "GET /users/me", "ANY /files/{path+}"]})
    };
    for (name, format) in [("v2", "2.0"), ("v1", "1.0")] {
        let a = s.create(&json!({"name": name, "runtime": "python", "code": ECHO, "http": http(format)}));
        assert_eq!(a.json()["state"], "ready", "{}", a.body);
    }
    let get = |path: &str| client().get(format!("{}{path}", s.url)).send().expect("send");
    let e: Value = get("/fn/v2/users/42").json().expect("the event");
    assert_eq!(e["routeKey"], "GET /users/{id}");
    assert_eq!(e["pathParameters"], json!({"id": "42"}));
    let e: Value = get("/fn/v2/users/me").json().expect("the event");
    assert_eq!(e["routeKey"], "GET /users/me", "a literal route is preferred");
    assert!(e.get("pathParameters").is_none());
    let e: Value = get("/fn/v1/files/a/b.txt").json().expect("the event");
    assert_eq!(e["resource"], "/files/{path+}");
    assert_eq!(e["pathParameters"], json!({"path": "a/b.txt"}));
    let r = client()
        .post(format!("{}/fn/v2/users/42", s.url))
        .send()
        .expect("send");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "no POST route");
    let body: Value = r.json().expect("an error");
    assert_eq!(body["error"]["code"], "route_not_found");
    let bad = s.create(
        &json!({"name": "bad", "runtime": "python", "code": ECHO, "http": {"routes": ["GET /{a+}/b"]}}),
    );
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(bad.json()["error"]["field"], "http.routes");
}
