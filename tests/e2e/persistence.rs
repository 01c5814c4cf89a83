//! Kill -9 and restart: every function comes back, ready, with the same code and config,
//! and recorded invocations survive.

use std::time::Duration;

use serde_json::json;

use crate::harness::{log_lines, wait_until, Server};

#[test]
fn functions_and_records_survive_a_kill_and_restart() {
    let mut s = Server::start();
    let py = s.deploy(
        "keep-py",
        "python",
        "def handler(e):\n    print('kept')\n    return 'py'\n",
        json!({"memory_mb": 512}),
    );
    let js = s.deploy(
        "keep-js",
        "javascript",
        "export const handler = () => 'js';",
        json!({"env": {"K": "v"}}),
    );
    // A function whose update failed comes back on its last good version.
    s.update(
        "keep-py",
        &json!({"runtime": "python", "code": "def handler(e) return 1", "memory_mb": 512}),
    );
    let call = s.invoke("keep-py", "{}");
    let id = call.header("x-ignis-invocation-id").to_owned();
    // Records are written off the invocation path; wait until this one is committed (seen
    // through a second connection, which has no pending records) before the kill.
    let store = ignis_store::Store::open(&s.data_dir()).expect("open the store");
    wait_until("the record is committed", Duration::from_secs(10), || {
        store.get_invocation(&id).expect("read").is_some()
    });
    s.restart();
    wait_until("both functions are ready again", Duration::from_secs(30), || {
        let list = s.get("/v1/functions").json();
        list["functions"]
            .as_array()
            .is_some_and(|fs| fs.len() == 2 && fs.iter().all(|f| f["state"] == "ready"))
    });
    let py_after = s.function("keep-py");
    assert_eq!(py_after["version"], 2);
    assert_eq!(py_after["active_version"], 1);
    assert_eq!(py_after["memory_mb"], 512);
    assert!(
        py_after["state_reason"]
            .as_str()
            .is_some_and(|r| r.contains("version 2")),
        "{py_after}"
    );
    let js_after = s.function("keep-js");
    assert_eq!(js_after["code_sha256"], js["code_sha256"]);
    assert_eq!(js_after["env"], json!({"K": "v"}));
    assert_eq!(py_after["created_at"], py["created_at"]);
    assert_eq!(s.invoke("keep-py", "{}").body, r#""py""#);
    assert_eq!(s.invoke("keep-js", "{}").body, r#""js""#);
    assert_eq!(log_lines(&s.invocation(&id)), ["kept"]);
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| {
            let cmdline = std::fs::read(e.ok()?.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            text.contains(needle).then_some(text)
        })
        .collect()
}

/// Regression: pipes made without close-on-exec kept parked sandbox inits waiting forever,
/// and alive after their server was killed.
#[test]
fn a_killed_server_leaves_no_instance_or_parked_init_behind() {
    let mut s = Server::start();
    s.deploy(
        "lingering",
        "python",
        "def handler(e):\n    return 1\n",
        json!({}),
    );
    s.deploy(
        "lingering-js",
        "javascript",
        "export const handler = () => 1;",
        json!({}),
    );
    let server_cgroups = format!("i-{}-", s.pid());
    assert!(
        !processes_mentioning(&server_cgroups).is_empty(),
        "parked inits exist while the server runs"
    );
    s.restart();
    wait_until(
        "the old server's inits and instances are gone",
        Duration::from_secs(15),
        || processes_mentioning(&server_cgroups).is_empty(),
    );
}

/// This server's per-instance cgroups in the pids hierarchy (cgroup v1, as on CI) or the
/// unified one (v2).
pub(crate) fn instance_cgroups(server_pid: u32) -> usize {
    let own = std::fs::read_to_string("/proc/self/cgroup").expect("cgroup");
    let base = match own.lines().find(|l| {
        l.split(':')
            .nth(1)
            .is_some_and(|c| c.split(',').any(|c| c == "pids"))
    }) {
        Some(line) => format!(
            "/sys/fs/cgroup/pids{}/ignis",
            line.splitn(3, ':').nth(2).expect("path").trim_end_matches('/')
        ),
        None => format!(
            "/sys/fs/cgroup{}/ignis",
            own.lines()
                .find_map(|l| l.strip_prefix("0::"))
                .expect("v2 path")
                .trim_end_matches('/')
        ),
    };
    let prefix = format!("i-{server_pid}-");
    std::fs::read_dir(&base)
        .unwrap_or_else(|e| panic!("{base}: {e}"))
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        })
        .count()
}

/// Regression: a stopped instance's cgroup was removed while its killed process was still
/// exiting, failed as busy, and was never removed: thousands piled up.
#[test]
fn stopped_instances_leave_no_cgroups_behind() {
    // Without pre-warmed instances, whose cgroups rightly stay.
    let s = Server::start_with(None, &["--prewarm", "0"]);
    let pid = s.pid();
    for n in 0..4 {
        let name = format!("short-lived-{n}");
        s.deploy(&name, "python", "def handler(e):\n    return 1\n", json!({}));
        assert_eq!(s.invoke(&name, "{}").status, reqwest::StatusCode::OK);
        let gone = s.send(s.request(reqwest::Method::DELETE, &format!("/v1/functions/{name}")));
        assert_eq!(gone.status, reqwest::StatusCode::NO_CONTENT);
    }
    // Only the parked inits' cgroups remain (two).
    wait_until(
        "the stopped instances' cgroups are removed",
        Duration::from_secs(15),
        || instance_cgroups(pid) <= 2,
    );
}
