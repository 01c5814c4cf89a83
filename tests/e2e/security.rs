//! The API token and the refusal to listen openly without one.

use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Server, BIN};

#[test]
fn with_a_token_every_v1_call_needs_it() {
    let s = Server::start_with(Some("s3cret-token"), &[]);
    s.deploy(
        "guarded",
        "python",
        "def handler(e):\n    return 'in'\n",
        json!({}),
    );
    assert_eq!(s.invoke("guarded", "{}").body, r#""in""#);
    let http = reqwest::blocking::Client::new();
    let url = format!("{}/v1/functions/guarded/invoke", s.url);
    let none = http.post(&url).send().expect("send");
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = none.json().expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("needs a token")),
        "{body}"
    );
    let wrong = http.post(&url).bearer_auth("s3cret-tokem").send().expect("send");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = wrong.json().expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(
        body["error"]["message"],
        "the token sent is not this server's token"
    );
    let list = http.get(format!("{}/v1/functions", s.url)).send().expect("send");
    assert_eq!(list.status(), StatusCode::UNAUTHORIZED);
    let health = http.get(format!("{}/healthz", s.url)).send().expect("send");
    assert_eq!(health.status(), StatusCode::OK, "health needs no token");
}

#[test]
fn without_a_token_the_api_is_open_on_loopback() {
    let s = Server::start();
    assert_eq!(
        s.send(s.request(Method::GET, "/v1/functions")).status,
        StatusCode::OK
    );
    let rt = s.get("/v1/runtimes").json();
    let runtimes = rt["runtimes"].as_array().expect("list");
    assert_eq!(runtimes.len(), 3);
    for r in runtimes {
        assert_eq!(r["available"], true, "{r}");
        assert!(r["version"].as_str().is_some_and(|v| !v.is_empty()));
        assert!(r["path"].as_str().is_some_and(|p| p.starts_with('/')));
    }
}

#[test]
fn listening_openly_without_a_token_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(dir.path())
        .env_remove("IGNIS_TOKEN")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--token") && err.contains("IGNIS_TOKEN"), "{err}");
}

#[test]
fn a_missing_runtime_is_a_clear_error_at_deploy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, url) = crate::harness::spawn(
        dir.path(),
        &["--tools-dir", "/nonexistent"],
        &[("IGNIS_BUN", "/nonexistent/bun")],
    );
    let http = reqwest::blocking::Client::new();
    let body = json!({"name": "nobun", "runtime": "javascript", "code": "export const handler = () => 1;"});
    let resp = http
        .post(format!("{url}/v1/functions"))
        .body(body.to_string())
        .send()
        .expect("send");
    let status = resp.status();
    let v: serde_json::Value = resp.json().expect("json");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["code"], "runtime_unavailable");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("message")
            .contains("IGNIS_BUN"),
        "{v}"
    );
}

#[test]
fn insecure_mode_is_opt_in_and_says_so_everywhere() {
    let s = Server::start_with(None, &["--insecure-no-sandbox"]);
    let health = s.get("/healthz").json();
    assert_eq!(health["sandbox"]["enabled"], false);
    assert!(
        health["sandbox"]["warning"]
            .as_str()
            .is_some_and(|w| w.contains("no isolation")),
        "{health}"
    );
    let runtimes = s.get("/v1/runtimes").json();
    assert_eq!(runtimes["sandbox"]["enabled"], false);
    s.deploy(
        "plain",
        "python",
        "import os\ndef handler(e):\n    return os.getpid() != 1 and os.getpid() != 2\n",
        json!({}),
    );
    assert_eq!(
        s.invoke("plain", "{}").body,
        "true",
        "without the sandbox the runtime is a host process"
    );

    let sandboxed = Server::start();
    assert_eq!(
        sandboxed.get("/healthz").json()["sandbox"]["enabled"],
        true,
        "the sandbox is on by default"
    );
}
