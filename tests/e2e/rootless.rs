//! The sandbox when the server is not root: a user namespace instead of root's privileges,
//! cgroups delegated by root (cgroup v1, as on CI), and the same containment.

use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::{json, Value};

pub(crate) const NOBODY: u32 = 65534;
const HOSTILE_PY: &str = include_str!("fixtures/hostile/hostile.py");
const HOSTILE_JS: &str = include_str!("fixtures/hostile/hostile.js");

/// What root does once for a non-root server on cgroup v1: a subtree it may manage.
pub(crate) fn delegate_cgroups(uid: u32) {
    let own = std::fs::read_to_string("/proc/self/cgroup").expect("cgroup");
    assert!(
        own.lines().any(|l| l
            .split(':')
            .nth(1)
            .is_some_and(|c| c.split(',').any(|c| c == "memory"))),
        "this test delegates cgroup v1 hierarchies; this host is cgroup v2 only"
    );
    for controller in ["memory", "cpu", "pids"] {
        let path = own
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|c| c == controller))
            })
            .and_then(|l| l.splitn(3, ':').nth(2))
            .expect("controller path");
        let dir = PathBuf::from(format!(
            "/sys/fs/cgroup/{controller}{}",
            path.trim_end_matches('/')
        ))
        .join(format!("ignis-{uid}"));
        std::fs::create_dir_all(&dir).expect("create the delegated cgroup");
        for entry in std::iter::once(dir.clone())
            .chain(std::fs::read_dir(&dir).expect("list").flatten().map(|e| e.path()))
        {
            std::os::unix::fs::chown(&entry, Some(uid), Some(uid)).expect("chown");
        }
    }
}

#[test]
fn a_non_root_server_sandboxes_with_a_user_namespace() {
    delegate_cgroups(NOBODY);
    let data = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::chown(data.path(), Some(NOBODY), Some(NOBODY)).expect("chown data");
    // pyenv's CPython lives under /root, which nobody cannot read; Debian's can be.
    let env = [("IGNIS_PYTHON", "/usr/bin/python3.11")];
    let (mut child, url) = crate::harness::spawn_as(data.path(), &[], &env, Some(NOBODY));
    let http = reqwest::blocking::Client::new();
    let deploy = |name: &str, runtime: &str, code: &str| -> Value {
        let body = json!({"name": name, "runtime": runtime, "code": code, "memory_mb": 128});
        http.post(format!("{url}/v1/functions?wait=true"))
            .body(body.to_string())
            .send()
            .expect("send")
            .json()
            .expect("json")
    };
    let invoke = |name: &str, event: Value| -> (StatusCode, Value) {
        let r = http
            .post(format!("{url}/v1/functions/{name}/invoke"))
            .body(event.to_string())
            .send()
            .expect("send");
        (r.status(), r.json().unwrap_or(Value::Null))
    };
    let health: Value = http
        .get(format!("{url}/healthz"))
        .send()
        .expect("send")
        .json()
        .expect("json");
    let py = deploy("hostile-py", "python", HOSTILE_PY);
    let js = deploy("hostile-js", "javascript", HOSTILE_JS);
    let identity = invoke("hostile-py", json!({"attack": "identity"}));
    let shadow = invoke("hostile-py", json!({"attack": "read", "path": "/etc/shadow"}));
    let syscalls = invoke("hostile-js", json!({"attack": "syscalls"}));
    let oom = invoke("hostile-js", json!({"attack": "memory", "mb": 400}));
    let api_port: u16 = url.rsplit(':').next().expect("port").parse().expect("port");
    let connect = invoke("hostile-py", json!({"attack": "connect", "port": api_port}));
    // Whether outbound networking can be had depends on /dev/net/tun being usable by
    // this user; either way the answer must be the truth, never a broken instance.
    let tun_usable = std::fs::metadata("/dev/net/tun").is_ok_and(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o006 == 0o006
    });
    let outbound = http
        .post(format!("{url}/v1/functions?wait=true"))
        .body(json!({"name": "out", "runtime": "python", "code": "def handler(e):\n    return 1\n", "network": "outbound"}).to_string())
        .send()
        .expect("send");
    let outbound = (outbound.status(), outbound.json::<Value>().expect("json"));
    let _ = child.kill();
    let _ = child.wait();

    assert_eq!(health["sandbox"]["enabled"], true, "{health}");
    assert_eq!(
        (py["state"].as_str(), js["state"].as_str()),
        (Some("ready"), Some("ready")),
        "{py} {js}"
    );
    let v = &identity.1;
    assert_eq!(v["pid"], 2, "{v}");
    assert_eq!(
        (&v["caps"], &v["bounding"], &v["no_new_privs"]),
        (
            &json!("0000000000000000"),
            &json!("0000000000000000"),
            &json!("1")
        )
    );
    assert_eq!(v["seccomp"], "2");
    assert!(shadow.1.get("data").is_none(), "{}", shadow.1);
    for (call, r) in syscalls.1.as_object().expect("syscalls") {
        assert_eq!(r["errno"], 1, "{call} must fail with EPERM: {}", syscalls.1);
    }
    assert_eq!(
        (oom.0, &oom.1["error"]["code"]),
        (StatusCode::BAD_GATEWAY, &json!("out_of_memory")),
        "{}",
        oom.1
    );
    assert!(connect.1.get("connected").is_none(), "{}", connect.1);
    if tun_usable {
        assert_eq!(
            (outbound.0, &outbound.1["state"]),
            (StatusCode::CREATED, &json!("ready")),
            "{}",
            outbound.1
        );
    } else {
        assert_eq!(outbound.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", outbound.1);
        assert_eq!(outbound.1["error"]["code"], "network_unavailable");
        assert!(outbound.1["error"]["message"]
            .as_str()
            .expect("message")
            .contains("/dev/net/tun"));
    }
}
