//! The seed document's examples, deployed unchanged, give the seed's answers.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::Server;

const HELLO_PY: &str = include_str!("fixtures/hello.py");
const HELLO_JS: &str = include_str!("fixtures/hello.js");
const HELLO_TS: &str = include_str!("fixtures/hello.ts");
const CALCULATOR: &str = include_str!("fixtures/calculator.py");

#[test]
fn hello_in_every_runtime() {
    let s = Server::start();
    for (name, runtime, code, spacing) in [
        ("hello-py", "python", HELLO_PY, " "),
        ("hello-js", "javascript", HELLO_JS, ""),
        ("hello-ts", "typescript", HELLO_TS, ""),
    ] {
        s.deploy(name, runtime, code, json!({}));
        let a = s.invoke(name, r#"{"name": "Ada"}"#);
        assert_eq!(a.status, StatusCode::OK, "{name}: {}", a.body);
        assert_eq!(a.header("content-type"), "application/json");
        assert_eq!(
            a.body,
            format!(r#"{{"message":{spacing}"Hello, Ada!"}}"#),
            "{name}"
        );
        let a = s.invoke(name, "");
        assert_eq!(
            a.body,
            format!(r#"{{"message":{spacing}"Hello, World!"}}"#),
            "{name}"
        );
    }
}

#[test]
fn calculator_gives_the_seed_answers() {
    let s = Server::start();
    s.deploy("calculator", "python", CALCULATOR, json!({}));
    let a = s.invoke("calculator", r#"{"operation":"add","a":10,"b":5}"#);
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, r#"{"result": 15.0}"#);
    assert_eq!(a.json(), json!({"result": 15.0}));
    let a = s.invoke("calculator", r#"{"operation":"divide","a":10,"b":4}"#);
    assert_eq!(a.body, r#"{"result": 2.5}"#);
    let a = s.invoke("calculator", r#"{"operation":"multiply","a":3,"b":"4"}"#);
    assert_eq!(a.body, r#"{"result": 12.0}"#);
    let a = s.invoke("calculator", r#"{"operation":"pow","a":1,"b":2}"#);
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json(), json!({"error": "Invalid operation"}));
}
