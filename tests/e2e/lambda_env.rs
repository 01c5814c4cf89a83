//! Lambda's environment variables in every instance (Python and Bun), the names a function
//! cannot set, the server's region, and the per-function log settings.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::Server;

const NAMES: [&str; 11] = [
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "LAMBDA_TASK_ROOT",
    "_HANDLER",
    "TZ",
    "AWS_LAMBDA_LOG_FORMAT",
];

fn check(env: &Value, name: &str, version: &str, handler: &str) {
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], name, "{env}");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], version, "{env}");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256", "{env}");
    assert_eq!(
        env["AWS_LAMBDA_LOG_GROUP_NAME"],
        format!("/aws/lambda/{name}"),
        "{env}"
    );
    let stream = env["AWS_LAMBDA_LOG_STREAM_NAME"].as_str().expect("a stream");
    let (date, rest) = stream.split_at(11);
    let parts: Vec<&str> = date.split('/').collect();
    assert!(
        parts.len() == 4
            && parts[..3]
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "YYYY/MM/DD/: {stream}"
    );
    let id = rest
        .strip_prefix(&format!("[{version}]"))
        .expect("the version in brackets");
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{stream}"
    );
    assert_eq!(env["AWS_REGION"], "eu-central-1");
    assert_eq!(env["AWS_DEFAULT_REGION"], "eu-central-1");
    assert_eq!(env["LAMBDA_TASK_ROOT"], "/code");
    assert_eq!(env["_HANDLER"], handler);
    assert_eq!(env["TZ"], ":UTC");
}

#[test]
fn instances_get_lambdas_variables_and_functions_cannot_set_them() {
    let s = Server::start_with(None, &["--region", "eu-central-1"]);
    let names = serde_json::to_string(&NAMES).expect("json");
    let py = format!("import os\n\ndef lambda_handler(event, context):\n    return {{n: os.environ.get(n) for n in {names}}}\n");
    let a = s.create(
        &json!({"name": "pyenv", "runtime": "python", "handler": "app.lambda_handler",
                             "memory_mb": 256, "files": {"app.py": py}}),
    );
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    check(
        &s.invoke("pyenv", "{}").json(),
        "pyenv",
        "1",
        "app.lambda_handler",
    );
    let a = s.update(
        "pyenv",
        &json!({"runtime": "python", "handler": "app.lambda_handler", "memory_mb": 256,
                                      "log_format": "json", "log_level": "WARN"}),
    );
    assert_eq!(a.json()["active_version"], 2, "{}", a.body);
    let env = s.invoke("pyenv", "{}").json();
    check(&env, "pyenv", "2", "app.lambda_handler");
    assert_eq!(env["AWS_LAMBDA_LOG_FORMAT"], "JSON");

    let js = format!(
        "export const handler = async () => Object.fromEntries({names}.map((n) => [n, process.env[n]]));\n"
    );
    let a = s.create(
        &json!({"name": "jsenv", "runtime": "javascript", "handler": "index.handler",
                             "memory_mb": 256, "files": {"index.mjs": js}}),
    );
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    let env = s.invoke("jsenv", "{}").json();
    check(&env, "jsenv", "1", "index.handler");
    assert!(
        env.get("AWS_LAMBDA_LOG_FORMAT").is_none_or(Value::is_null),
        "text logs: {env}"
    );

    let a = s.create(
        &json!({"name": "sneaky", "runtime": "python", "code": "def handler(e):\n    return 1\n",
                             "env": {"AWS_LAMBDA_FUNCTION_NAME": "other"}}),
    );
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert_eq!(a.error_code(), "reserved_env");
    assert_eq!(a.json()["error"]["field"], "env.AWS_LAMBDA_FUNCTION_NAME");
    let a = s.create(&json!({"name": "paris", "runtime": "python", "code": "import os\ndef handler(e):\n    return os.environ['TZ']\n",
                             "env": {"TZ": "Europe/Paris"}}));
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    assert_eq!(
        s.invoke("paris", "{}").json(),
        "Europe/Paris",
        "TZ is the function's to set"
    );
}

#[test]
fn a_region_that_is_not_one_is_refused_at_start() {
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(tempfile::tempdir().expect("tempdir").path())
        .args(["--region", "Not A Region"])
        .output()
        .expect("run ignis");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--region"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
