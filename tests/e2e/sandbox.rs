//! The adversarial suite: hostile functions in Python and JavaScript attack the host, the
//! server and each other. Each test asserts the attack is contained AND that an innocent
//! function keeps answering correctly during and after it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{log_lines, wait_until, Answer, Server};

const HOSTILE_PY: &str = include_str!("fixtures/hostile/hostile.py");
const HOSTILE_JS: &str = include_str!("fixtures/hostile/hostile.js");
const INNOCENT: &str = "def handler(e):\n    return {'sum': e['a'] + e['b']}\n";
const HOSTILE: [&str; 2] = ["hostile-py", "hostile-js"];

/// A server with both hostile functions and the innocent one deployed.
fn arena(extra: Value) -> Server {
    let s = Server::start_env(&[("IGNIS_HOST_SECRET", "do-not-leak-7f3a")]);
    s.deploy("hostile-py", "python", HOSTILE_PY, extra.clone());
    s.deploy("hostile-js", "javascript", HOSTILE_JS, extra);
    s.deploy("innocent", "python", INNOCENT, json!({}));
    s
}

fn innocent_answers(s: &Server) {
    let a = s.invoke("innocent", r#"{"a": 2, "b": 3}"#);
    assert_eq!(
        (a.status, a.json()),
        (StatusCode::OK, json!({"sum": 5})),
        "the innocent function must keep working"
    );
}

/// Runs `attack` while the innocent function is called, then checks it once more after.
fn contained<T: Send>(s: &Server, attack: impl FnOnce() -> T + Send) -> T {
    let result = std::thread::scope(|scope| {
        let attack = scope.spawn(attack);
        while !attack.is_finished() {
            innocent_answers(s);
        }
        attack.join().expect("attack thread")
    });
    innocent_answers(s);
    result
}

fn attack(s: &Server, name: &str, event: Value) -> Answer {
    s.invoke(name, &event.to_string())
}

#[test]
fn host_files_are_out_of_reach() {
    let s = arena(json!({}));
    let data = s.data_dir();
    s.deploy(
        "other",
        "python",
        "SECRET = 'other-code'\ndef handler(e):\n    return 1\n",
        json!({}),
    );
    let db = data.join("ignis.db").display().to_string();
    // Another function's code exists only in the store (attacked below) and in its own
    // instances' memory: the host keeps no code files.
    assert!(!data.join("code").exists(), "no code copies on the host's disk");
    for name in HOSTILE {
        for path in [
            "/etc/shadow",
            "/etc/passwd",
            db.as_str(),
            "/root/.cargo/env",
            "/proc/1/root/etc/shadow",
        ] {
            let v = contained(&s, || attack(&s, name, json!({"attack": "read", "path": path}))).json();
            assert!(v.get("data").is_none(), "{name} read {path}: {v}");
        }
        let v = attack(
            &s,
            name,
            json!({"attack": "list", "path": data.display().to_string()}),
        )
        .json();
        assert!(v.get("entries").is_none(), "{name} listed the data dir: {v}");
        let v = attack(&s, name, json!({"attack": "list", "path": "/"})).json();
        let entries = crate::harness::strings(&v["entries"], "entries");
        for absent in ["etc", "home", "var", "sys", "boot", "srv"] {
            assert!(!entries.contains(&absent), "{name} sees /{absent}: {entries:?}");
        }
        // /opt is where layers appear: the sandbox's own, empty without layers (never
        // the host's /opt).
        let v = attack(&s, name, json!({"attack": "list", "path": "/opt"})).json();
        assert_eq!(
            v["entries"],
            json!([]),
            "{name}: /opt holds nothing of the host: {v}"
        );
        let v = attack(&s, name, json!({"attack": "list", "path": "/root"})).json();
        let entries = v["entries"].as_array().cloned().unwrap_or_default();
        assert!(
            entries.iter().all(|e| e == ".pyenv"),
            "{name}: only the interpreter is under /root: {v}"
        );
        let v = attack(&s, name, json!({"attack": "list", "path": "/code"})).json();
        assert_eq!(
            v["entries"].as_array().map(Vec::len),
            Some(0),
            "{name}'s code came in memory: its code directory is empty: {v}"
        );
    }
}

#[test]
fn the_host_environment_and_processes_are_invisible() {
    let s = arena(json!({}));
    let v = attack(&s, "hostile-py", json!({"attack": "identity"})).json();
    assert!(
        !v["environ"].as_str().expect("environ").contains("do-not-leak"),
        "{v}"
    );
    assert_eq!(v["pid"], 2, "own PID namespace, under a reaper as PID 1: {v}");
    assert_ne!(v["uid"], 0);
    assert_ne!(v["gid"], 0);
    assert_eq!(v["caps"], "0000000000000000");
    assert_eq!(v["bounding"], "0000000000000000");
    assert_eq!(v["no_new_privs"], "1");
    assert_eq!(v["seccomp"], "2", "a seccomp filter is installed");
    assert_eq!(v["hostname"], "ignis");
    assert_eq!(v["nofile"], json!([1024, 1024]), "open files are limited");
    assert_eq!(v["core"], json!([0, 0]), "no core dumps");
    for name in HOSTILE {
        let v = attack(&s, name, json!({"attack": "procs"})).json();
        let pids = v["pids"].as_array().expect("pids");
        assert!(
            pids.len() <= 3 && pids.contains(&json!(1)),
            "{name} sees host processes: {v}"
        );
        let a = contained(&s, || attack(&s, name, json!({"attack": "kill_all"})));
        assert!(
            a.status == StatusCode::OK || a.status == StatusCode::BAD_GATEWAY,
            "{name}: {}",
            a.body
        );
    }
}

#[test]
fn writes_outside_tmp_fail_and_tmp_is_capped() {
    let s = arena(json!({}));
    for name in HOSTILE {
        for path in [
            "/code/main.py",
            "/owned",
            "/usr/owned",
            "/ignis/bootstrap.py",
            "/dev/owned",
        ] {
            let v = attack(&s, name, json!({"attack": "write", "path": path})).json();
            assert!(v.get("written").is_none(), "{name} wrote {path}: {v}");
        }
        let v = attack(&s, name, json!({"attack": "write", "path": "/tmp/ok"})).json();
        assert_eq!(v["written"], true, "{name}: /tmp is writable");
        let v = contained(&s, || attack(&s, name, json!({"attack": "fill_tmp", "mb": 100}))).json();
        assert!(
            v.get("written").is_none(),
            "{name} wrote 100 MB into a 64 MB /tmp: {v}"
        );
    }
}

#[test]
fn no_network_reaches_the_host() {
    let s = arena(json!({}));
    let api_port = s.port();
    let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let other_port = other.local_addr().expect("addr").port();
    for name in HOSTILE {
        for port in [api_port, other_port] {
            let v = contained(&s, || {
                attack(&s, name, json!({"attack": "connect", "port": port}))
            })
            .json();
            assert!(
                v.get("connected").is_none(),
                "{name} reached 127.0.0.1:{port}: {v}"
            );
        }
    }
    other.set_nonblocking(true).expect("nonblocking");
    assert!(
        other.accept().is_err(),
        "nothing connected to the host's listener"
    );
}

#[test]
fn privileged_system_calls_fail_with_eperm() {
    let s = arena(json!({}));
    for name in HOSTILE {
        let v = attack(&s, name, json!({"attack": "syscalls"})).json();
        let calls = v.as_object().expect("object");
        assert!(calls.len() >= 8, "{name}: {v}");
        for (call, r) in calls {
            assert_eq!(r["ret"], -1, "{name}: {call} succeeded: {v}");
            assert_eq!(r["errno"], 1, "{name}: {call} must fail with EPERM: {v}");
        }
        innocent_answers(&s);
    }
}

#[test]
fn fork_bombs_and_cpu_spinners_stay_inside() {
    let s = arena(json!({"timeout_secs": 2}));
    for name in HOSTILE {
        for what in ["fork_bomb", "spin"] {
            let a = contained(&s, || attack(&s, name, json!({"attack": what})));
            // Contained either way: the deadline kills it, or the memory limit does first.
            assert!(
                a.status == StatusCode::GATEWAY_TIMEOUT || a.error_code() == "out_of_memory",
                "{name} {what}: {}",
                a.body
            );
            let next = attack(&s, name, json!({"attack": "procs"}));
            assert_eq!(next.status, StatusCode::OK, "{name} recovers after {what}");
        }
    }
}

#[test]
fn memory_past_the_limit_is_an_out_of_memory_error() {
    let s = arena(json!({"memory_mb": 128}));
    for name in HOSTILE {
        let a = contained(&s, || attack(&s, name, json!({"attack": "memory", "mb": 400})));
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (StatusCode::BAD_GATEWAY, "out_of_memory"),
            "{name}: {}",
            a.body
        );
        let record = s.invocation(a.header("x-ignis-invocation-id"));
        assert_eq!(record["status"], "out_of_memory");
        let ok = attack(&s, name, json!({"attack": "memory", "mb": 16}));
        assert_eq!(
            ok.json()["len"],
            16 << 20,
            "{name}: the instance was replaced and works"
        );
    }
}

#[test]
fn floods_and_huge_answers_are_capped() {
    // Enough memory to build a 100 MB answer, so the response cap is what stops it.
    let s = arena(json!({"memory_mb": 1024}));
    for name in HOSTILE {
        let a = contained(&s, || attack(&s, name, json!({"attack": "stdout_flood"})));
        assert_eq!(a.status, StatusCode::OK, "{name}: {}", a.body);
        let lines = log_lines(&s.invocation(a.header("x-ignis-invocation-id")));
        assert!(
            lines.iter().map(String::len).sum::<usize>() <= 256 * 1024 + 100,
            "{name}: logs are capped"
        );
        assert!(
            lines
                .last()
                .is_some_and(|l| l.starts_with("[ignis] log output truncated")),
            "{name}"
        );
        let a = contained(&s, || attack(&s, name, json!({"attack": "big_response"})));
        assert_eq!(a.error_code(), "response_too_large", "{name}");
    }
}

#[test]
fn a_signal_death_is_a_crash_and_the_next_call_recovers() {
    let s = arena(json!({}));
    for name in HOSTILE {
        let a = contained(&s, || attack(&s, name, json!({"attack": "signal"})));
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (StatusCode::BAD_GATEWAY, "instance_crashed"),
            "{name}: {}",
            a.body
        );
        assert_eq!(
            attack(&s, name, json!({"attack": "procs"})).status,
            StatusCode::OK
        );
    }
}

#[test]
fn concurrent_instances_do_not_share_tmp() {
    let s = arena(json!({}));
    for name in HOSTILE {
        let (holder, peer) = std::thread::scope(|scope| {
            let holder = scope.spawn(|| {
                attack(
                    &s,
                    name,
                    json!({"attack": "tmp_secret", "secret": "mine", "hold": 1.0}),
                )
            });
            // Once the holder's instance is busy, this call must get another one.
            wait_until("the holder's instance is busy", Duration::from_secs(10), || {
                s.function(name)["instances"]["busy"] == 1
            });
            let peer = attack(&s, name, json!({"attack": "list", "path": "/tmp"}));
            (holder.join().expect("holder"), peer)
        });
        let has_secret = |a: &Answer| {
            a.json()["entries"]
                .as_array()
                .expect("entries")
                .contains(&json!("secret"))
        };
        assert!(has_secret(&holder), "{name}: {}", holder.body);
        assert!(peer.cold(), "{name}: the second call ran on another instance");
        assert!(
            !has_secret(&peer),
            "{name}: another instance's /tmp is invisible: {}",
            peer.body
        );
        innocent_answers(&s);
    }
}

/// Regression: the sandbox's private /tmp was mounted over binds of host paths under /tmp,
/// hiding an interpreter (or a checkout) that lives there.
#[test]
fn an_interpreter_under_tmp_stays_visible() {
    let host_tmp = tempfile::tempdir_in("/tmp").expect("tempdir in /tmp");
    let bun = installed_bun();
    let copy = host_tmp.path().join("bun");
    if std::fs::hard_link(&bun, &copy).is_err() {
        std::fs::copy(&bun, &copy).expect("copy bun");
    }
    let data = tempfile::tempdir().expect("data");
    let copy_str = copy.to_str().expect("utf-8 path");
    let (mut child, url) = crate::harness::spawn(data.path(), &[], &[("IGNIS_BUN", copy_str)]);
    let http = reqwest::blocking::Client::new();
    let body = json!({"name": "tmpbun", "runtime": "javascript", "code": "export const handler = () => process.execPath;"});
    let created: Value = http
        .post(format!("{url}/v1/functions?wait=true"))
        .body(body.to_string())
        .send()
        .expect("send")
        .json()
        .expect("json");
    let answer = http
        .post(format!("{url}/v1/functions/tmpbun/invoke"))
        .send()
        .expect("send")
        .text()
        .expect("text");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(created["state"], "ready", "{created}");
    // The sandbox shows Bun at a fixed path, which names nothing of the host.
    assert_eq!(answer, json!("/usr/local/bin/bun").to_string());
}

/// The Bun that `make tools` installed, resolved to the real file.
fn installed_bun() -> std::path::PathBuf {
    let link = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/node_modules/.bin/bun");
    std::fs::canonicalize(&link).expect("make tools installed bun")
}
