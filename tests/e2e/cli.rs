//! The CLI against a real server: create, invoke, list, get, logs, update, rm, runtimes.

use std::process::{Command, Output};

use crate::harness::{Server, BIN};

fn ignis(s: &Server, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--url")
        .arg(&s.url)
        .args(args)
        .env_remove("IGNIS_TOKEN")
        .output()
        .expect("run ignis")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn cli_round_trip() {
    let s = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("greet.py");
    std::fs::write(&file, "import os\ndef handler(e):\n    print('greeting', e.get('name'))\n    return {'hi': e.get('name'), 'env': os.environ.get('MOOD')}\n")
        .expect("write");
    let file = file.to_str().expect("utf-8 path");

    let o = ignis(
        &s,
        &[
            "fn",
            "create",
            "greet",
            "--runtime",
            "python",
            "--file",
            file,
            "--env",
            "MOOD=glad",
            "--memory",
            "256",
            "--min-instances",
            "1",
            "--concurrency",
            "3",
            "--idle-timeout",
            "0",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("greet v1 ready"), "{}", stdout(&o));
    let f = s.function("greet");
    assert_eq!(
        (&f["min_instances"], &f["concurrency"], &f["idle_timeout_secs"]),
        (
            &serde_json::json!(1),
            &serde_json::json!(3),
            &serde_json::json!(0)
        )
    );

    let o = ignis(&s, &["fn", "invoke", "greet", "--data", r#"{"name": "Ada"}"#]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    assert_eq!(v, serde_json::json!({"hi": "Ada", "env": "glad"}));

    let event = dir.path().join("event.json");
    std::fs::write(&event, r#"{"name": "Bo"}"#).expect("write");
    let o = ignis(
        &s,
        &[
            "fn",
            "invoke",
            "greet",
            "--data",
            &format!("@{}", event.display()),
        ],
    );
    assert!(stdout(&o).contains("Bo"), "{}", stdout(&o));

    let o = ignis(&s, &["fn", "ls"]);
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with("greet") && l.contains("python") && l.contains("ready")),
        "{}",
        stdout(&o)
    );

    let o = ignis(&s, &["fn", "get", "greet"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["memory_mb"], 256);

    let o = ignis(&s, &["fn", "logs", "greet"]);
    assert!(
        stdout(&o).contains("greeting Ada") && stdout(&o).contains("greeting Bo"),
        "{}",
        stdout(&o)
    );

    let o = ignis(&s, &["fn", "invoke", "greet", "--data", "{oops"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid_json"), "{}", stderr(&o));

    let broken = dir.path().join("broken.py");
    std::fs::write(&broken, "def handler(e)\n").expect("write");
    let o = ignis(
        &s,
        &[
            "fn",
            "update",
            "greet",
            "--runtime",
            "python",
            "--file",
            broken.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "a failed update fails the command");
    assert!(stderr(&o).contains("version 2"), "{}", stderr(&o));

    let o = ignis(&s, &["runtimes"]);
    assert!(
        stdout(&o).contains("python") && stdout(&o).contains("typescript"),
        "{}",
        stdout(&o)
    );

    let o = ignis(&s, &["fn", "rm", "greet"]);
    assert!(o.status.success());
    let o = ignis(&s, &["fn", "invoke", "greet"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not_found"), "{}", stderr(&o));
}

#[test]
fn cli_reports_an_unreachable_server() {
    let o = Command::new(BIN)
        .args(["--url", "http://127.0.0.1:9", "fn", "ls"])
        .output()
        .expect("run");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot reach"), "{}", stderr(&o));
}
