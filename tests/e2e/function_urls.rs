//! Function URLs: `ANY /fn/{name}/{*path}` with Lambda function URL events, auth on and
//! off, CORS, binary bodies, query strings and headers, against the real server.

use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{wait_until, Server};

const TOKEN: &str = "s3cret-token";

/// Echoes the event it got as the JSON body of a 201, with a header and a cookie.
const ECHO_PY: &str = r#"
import json
def handler(event, context):
    return {"statusCode": 201, "headers": {"X-Echo": "yes", "Content-Type": "application/json"},
            "cookies": ["seen=1"], "body": json.dumps(event)}
"#;

/// Sends back the request body as it came (decoded), as a binary response.
const MIRROR_PY: &str = r#"
import base64
def handler(event, context):
    raw = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else (event.get("body") or "").encode()
    return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
            "isBase64Encoded": True, "body": base64.b64encode(raw[::-1]).decode()}
"#;

fn anonymous() -> Client {
    Client::new()
}

#[test]
fn a_public_webhook_gets_a_lambda_function_url_event() {
    let s = Server::start_with(Some(TOKEN), &[]);
    s.deploy("hook", "python", ECHO_PY, json!({"http": {"auth": "none"}}));
    let a = s.send(
        anonymous()
            .request(
                Method::POST,
                format!("{}/fn/hook/github/push?x=1&y=a%20b&x=2", s.url),
            )
            .header("X-Hub-Signature-256", "sha256=abc")
            .header("Content-Type", "application/json")
            .header("Cookie", "a=1; b=2")
            .header("User-Agent", "GitHub-Hookshot/1")
            .body(r#"{"ref": "refs/heads/main"}"#),
    );
    assert_eq!(a.status, StatusCode::CREATED, "no token needed: {}", a.body);
    assert_eq!(a.header("x-echo"), "yes");
    assert_eq!(a.header("set-cookie"), "seen=1");
    assert!(!a.header("x-ignis-invocation-id").is_empty());
    let e = a.json();
    assert_eq!(e["version"], "2.0");
    assert_eq!(e["rawPath"], "/github/push");
    assert_eq!(e["rawQueryString"], "x=1&y=a%20b&x=2");
    assert_eq!(e["queryStringParameters"], json!({"x": "1,2", "y": "a b"}));
    assert_eq!(e["headers"]["x-hub-signature-256"], "sha256=abc");
    assert_eq!(e["headers"]["content-type"], "application/json");
    assert_eq!(e["cookies"], json!(["a=1", "b=2"]));
    assert_eq!(e["requestContext"]["http"]["method"], "POST");
    assert_eq!(e["requestContext"]["http"]["path"], "/github/push");
    assert_eq!(e["requestContext"]["http"]["sourceIp"], "127.0.0.1");
    assert_eq!(e["requestContext"]["http"]["userAgent"], "GitHub-Hookshot/1");
    assert!(e["requestContext"]["requestId"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    assert_eq!(e["body"], r#"{"ref": "refs/heads/main"}"#);
    assert_eq!(e["isBase64Encoded"], false);

    // Without a path after the name, and with GET and no body.
    let root = s.send(anonymous().get(format!("{}/fn/hook", s.url)));
    assert_eq!(root.status, StatusCode::CREATED, "{}", root.body);
    let e = root.json();
    assert_eq!(e["rawPath"], "/");
    assert_eq!(e["requestContext"]["http"]["method"], "GET");
    assert!(e.get("body").is_none(), "{e}");
}

#[test]
fn binary_bodies_go_in_and_out_as_base64() {
    let s = Server::start();
    s.deploy("mirror", "python", MIRROR_PY, json!({"http": {"auth": "none"}}));
    let bytes: Vec<u8> = vec![0x00, 0xff, 0x10, 0x80, b'a'];
    let resp = anonymous()
        .post(format!("{}/fn/mirror/upload", s.url))
        .header("content-type", "application/octet-stream")
        .body(bytes.clone())
        .send()
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let back = resp.bytes().expect("body");
    let mut reversed = bytes.clone();
    reversed.reverse();
    assert_eq!(
        back.as_ref(),
        reversed.as_slice(),
        "the handler got the exact bytes"
    );
}

#[test]
fn function_urls_need_the_token_unless_the_function_says_none() {
    let mut s = Server::start_with(Some(TOKEN), &[]);
    // No http settings: the server's token is needed, as for the API.
    s.deploy("private", "python", ECHO_PY, json!({}));
    let denied = s.send(anonymous().post(format!("{}/fn/private/x", s.url)).body("{}"));
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert_eq!(denied.error_code(), "unauthorized");
    assert_eq!(denied.header("www-authenticate"), "Bearer");
    let wrong = s.send(
        anonymous()
            .post(format!("{}/fn/private/x", s.url))
            .bearer_auth("nope"),
    );
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let allowed = s.send(s.request(Method::POST, "/fn/private/x").body("{}"));
    assert_eq!(allowed.status, StatusCode::CREATED, "{}", allowed.body);
    // Only the allowed call ran.
    assert_eq!(
        s.get("/v1/functions/private/invocations").json()["invocations"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // Unknown functions are 404 whatever the auth.
    let missing = s.send(s.request(Method::GET, "/fn/nothing/here"));
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "not_found");
    // Switching to public takes effect with the update.
    let up = s.update(
        "private",
        &json!({"runtime": "python", "code": ECHO_PY, "http": {"auth": "none"}}),
    );
    assert!(up.status.is_success(), "{}", up.body);
    assert_eq!(s.function("private")["http"]["auth"], "none");
    let open = s.send(anonymous().post(format!("{}/fn/private/x", s.url)).body("{}"));
    assert_eq!(open.status, StatusCode::CREATED, "{}", open.body);
    // The setting is stored with the version: still public after a kill -9 and restart.
    s.restart();
    wait_until("the function is ready again", Duration::from_secs(30), || {
        s.function("private")["state"] == "ready"
    });
    let after = s.send(anonymous().post(format!("{}/fn/private/x", s.url)).body("{}"));
    assert_eq!(after.status, StatusCode::CREATED, "{}", after.body);
}

#[test]
fn cors_preflights_are_answered_from_the_config_and_responses_carry_the_headers() {
    let s = Server::start_with(Some(TOKEN), &[]);
    s.deploy(
        "api",
        "javascript",
        "export const handler = async (event) => ({ statusCode: 200, headers: { 'x-echo': event.rawPath }, body: event.requestContext.http.method });",
        json!({"http": {"cors": {
            "allow_origins": ["https://app.example"],
            "allow_methods": ["PUT"],
            "allow_headers": ["Content-Type", "Authorization"],
            "expose_headers": ["X-Echo"],
            "max_age_secs": 300
        }}}),
    );
    // The preflight carries no token and still gets its answer.
    let pre = s.send(
        anonymous()
            .request(Method::OPTIONS, format!("{}/fn/api/items/1", s.url))
            .header("Origin", "https://app.example")
            .header("Access-Control-Request-Method", "PUT")
            .header("Access-Control-Request-Headers", "content-type, authorization"),
    );
    assert_eq!(pre.status, StatusCode::NO_CONTENT, "{}", pre.body);
    assert_eq!(pre.header("access-control-allow-origin"), "https://app.example");
    assert_eq!(pre.header("access-control-allow-methods"), "PUT");
    assert_eq!(
        pre.header("access-control-allow-headers"),
        "content-type, authorization"
    );
    assert_eq!(pre.header("access-control-max-age"), "300");
    // Another origin or method: an answer without CORS headers, which the browser refuses.
    for (origin, method) in [("https://evil.example", "PUT"), ("https://app.example", "DELETE")] {
        let no = s.send(
            anonymous()
                .request(Method::OPTIONS, format!("{}/fn/api/items/1", s.url))
                .header("Origin", origin)
                .header("Access-Control-Request-Method", method),
        );
        assert_eq!(no.status, StatusCode::NO_CONTENT);
        assert_eq!(no.header("access-control-allow-origin"), "", "{origin} {method}");
    }
    // The actual call: token checked, CORS headers added to the function's response.
    let put = s.send(
        s.request(Method::PUT, "/fn/api/items/1")
            .header("Origin", "https://app.example")
            .header("Content-Type", "application/json")
            .body("{}"),
    );
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body, "PUT");
    assert_eq!(put.header("x-echo"), "/items/1");
    assert_eq!(put.header("access-control-allow-origin"), "https://app.example");
    assert_eq!(put.header("access-control-expose-headers"), "x-echo");
    // A refused token still tells the browser's script why (CORS headers on the 401).
    let denied = s.send(
        anonymous()
            .request(Method::PUT, format!("{}/fn/api/items/1", s.url))
            .header("Origin", "https://app.example"),
    );
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        denied.header("access-control-allow-origin"),
        "https://app.example"
    );
    // Preflights never ran the function: one invocation, the PUT.
    let list = s.get("/v1/functions/api/invocations").json();
    assert_eq!(list["invocations"].as_array().map(Vec::len), Some(1), "{list}");
}

#[test]
fn http_settings_are_validated_with_the_field_at_fault() {
    let s = Server::start();
    let cases: [(Value, &str, &str); 4] = [
        (json!({"auth": "public"}), "http.auth", "invalid_value"),
        (
            json!({"cors": {"allow_origins": ["app.example"]}}),
            "http.cors.allow_origins[0]",
            "invalid_value",
        ),
        (
            json!({"cors": {"allow_methods": "GET"}}),
            "http.cors.allow_methods",
            "invalid_type",
        ),
        (
            json!({"cors": {"origin": ["*"]}}),
            "http.cors.origin",
            "unknown_field",
        ),
    ];
    for (http, field, code) in cases {
        let a = s.create(&json!({"name": "v", "runtime": "python", "code": ECHO_PY, "http": http}));
        assert!(a.status.is_client_error(), "{http}: {}", a.body);
        let v = a.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert_eq!(v["error"]["field"], field, "{v}");
    }
    assert_eq!(
        s.get("/v1/functions/v").status,
        StatusCode::NOT_FOUND,
        "nothing was stored"
    );
}
