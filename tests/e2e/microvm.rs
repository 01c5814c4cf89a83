//! The microvm tier end to end: functions whose instances are virtual machines (QEMU's
//! microvm machine, the guest `make microvm` built, QEMU inside the sandbox) answer from a
//! kernel that is not the host's; cold starts restore snapshots (or boot, without them);
//! timeouts, out-of-memory and crashes end cleanly; a killed server leaves no QEMU; code
//! packages, layers and outbound networking reach the guest; hostile functions stay inside.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::containment::descendants;
use crate::harness::{wait_until, Server};

const KERNEL_PY: &str = r#"
import os, platform

def handler(event, context):
    return {"kernel": platform.release(), "uid": os.getuid(), "event": event,
            "interfaces": sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:])}
"#;

const KERNEL_TS: &str = r#"
import os from "node:os";

export const handler = async (event: { n: number }): Promise<object> => ({
  kernel: os.release(),
  doubled: event.n * 2,
});
"#;

/// A server whose microvm tier must be available (the guest comes from `make microvm`).
fn server(args: &[&str]) -> Server {
    let s = Server::start_with(None, args);
    let tier = s.get("/v1/runtimes").json()["isolation"]["microvm"].clone();
    assert_eq!(
        tier["available"], true,
        "the microvm tier must be available for these tests (run `make microvm`): {tier}"
    );
    s
}

fn host_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .expect("osrelease")
        .trim()
        .to_owned()
}

fn vm(extra: Value) -> Value {
    let mut body = json!({"isolation": "microvm"});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            body[k] = v;
        }
    }
    body
}

/// Waits until `name` has no instance, then calls it: a cold start; returns the answer and
/// the cold start's record.
fn cold_call(s: &Server, name: &str, event: &str) -> (Value, Value) {
    wait_until(
        &format!("{name} has no instance"),
        Duration::from_secs(30),
        || s.function(name)["instances"] == json!({"starting": 0, "idle": 0, "busy": 0}),
    );
    let a = s.invoke(name, event);
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.cold(), "the call after the idle instance stopped is cold");
    let record = s.invocation(a.header("x-ignis-invocation-id"));
    (a.json(), record["init"].clone())
}

/// Guests of `interpreter` (`python`, `bun`) restored ahead of time and waiting.
fn pre_restored(s: &Server, interpreter: &str) -> f64 {
    s.metric(&format!(
        "ignis_microvm_pre_restored_guests{{runtime=\"{interpreter}\"}}"
    ))
    .expect("the pre-restored guests' gauge")
}

fn wait_for_pre_restored(s: &Server, interpreter: &str, n: f64) {
    wait_until(
        &format!("{n} {interpreter} guest(s) restored ahead of time"),
        Duration::from_secs(60),
        || pre_restored(s, interpreter) == n,
    );
}

#[test]
fn python_and_typescript_answer_from_a_guest_kernel_restored_from_a_snapshot() {
    // Without guests restored ahead of time: every cold start restores its own.
    let s = server(&["--microvm-pool", "0"]);
    let guest_kernel = s.get("/v1/runtimes").json()["isolation"]["microvm"]["guest_kernel"].clone();
    let f = s.deploy("py", "python", KERNEL_PY, vm(json!({"idle_timeout_secs": 0})));
    assert_eq!(f["isolation"], "microvm");
    s.deploy("ts", "typescript", KERNEL_TS, vm(json!({"idle_timeout_secs": 0})));
    let host = host_kernel();

    let (py, init) = cold_call(&s, "py", r#"{"hello": "vm"}"#);
    assert_eq!(py["event"], json!({"hello": "vm"}));
    assert_ne!(
        py["kernel"],
        host.as_str(),
        "the guest's kernel is not the host's: {py}"
    );
    assert_eq!(py["kernel"], guest_kernel, "the kernel the server names: {py}");
    assert_ne!(py["uid"], 0, "the runtime is not root in its guest: {py}");
    let interfaces = crate::harness::strings(&py["interfaces"], "interfaces");
    assert!(interfaces.contains(&"lo"), "{py}");
    assert!(
        !interfaces.iter().any(|i| i.starts_with("eth")),
        "network none: no network card: {py}"
    );
    let restore = init["restore_ms"]
        .as_f64()
        .expect("a restored cold start has restore_ms");
    assert!(restore > 0.0, "{init}");
    assert!(init.get("boot_ms").is_none(), "restored, not booted: {init}");
    assert!(
        init["runtime_ms"].as_f64().expect("runtime_ms") >= restore,
        "the restore is part of the runtime's start: {init}"
    );

    let (ts, init) = cold_call(&s, "ts", r#"{"n": 21}"#);
    assert_eq!(ts["doubled"], 42);
    assert_ne!(ts["kernel"], host.as_str(), "{ts}");
    assert_eq!(ts["kernel"], guest_kernel, "{ts}");
    assert!(init["restore_ms"].as_f64().is_some(), "{init}");

    // A second cold start restores the same snapshot again.
    let (again, init) = cold_call(&s, "py", "{}");
    assert_eq!(again["kernel"], guest_kernel);
    assert!(init["restore_ms"].as_f64().is_some(), "{init}");
    assert_eq!(pre_restored(&s, "python"), 0.0, "--microvm-pool 0 keeps none");
    assert_eq!(s.get("/v1/runtimes").json()["isolation"]["microvm"]["pool"], 0);
}

/// The default: after an instance of a kind of guest (runtime and size) starts, one guest
/// of that kind is restored and warmed up ahead of time; the next cold start of the kind
/// takes it and only loads its function (no restore in its start), and the pool refills.
#[test]
fn cold_starts_take_guests_restored_and_warmed_up_ahead_of_time() {
    let s = server(&[]);
    assert_eq!(
        s.get("/v1/runtimes").json()["isolation"]["microvm"]["pool"],
        1,
        "one guest per kind by default"
    );
    let guest_kernel = s.get("/v1/runtimes").json()["isolation"]["microvm"]["guest_kernel"].clone();
    for (runtime, interpreter, code) in [("python", "python", KERNEL_PY), ("typescript", "bun", KERNEL_TS)] {
        assert_eq!(
            pre_restored(&s, interpreter),
            0.0,
            "none before an instance of the kind"
        );
        // The deploy starts the kind's first instance (restored on demand).
        s.deploy(runtime, runtime, code, vm(json!({"idle_timeout_secs": 0})));
        for _ in 0..2 {
            wait_for_pre_restored(&s, interpreter, 1.0);
            let (out, init) = cold_call(&s, runtime, r#"{"n": 21}"#);
            assert_eq!(out["kernel"], guest_kernel, "{out}");
            if runtime == "typescript" {
                assert_eq!(out["doubled"], 42, "{out}");
            } else {
                assert_eq!(out["event"], json!({"n": 21}), "{out}");
            }
            for part in ["restore_ms", "boot_ms"] {
                assert!(init.get(part).is_none(), "taken from the pool: no {part}: {init}");
            }
            assert_eq!(init["sandbox_ms"], 0.0, "{init}");
            assert_eq!(init["runtime_ms"], 0.0, "{init}");
            assert!(init["load_ms"].as_f64().expect("load_ms") > 0.0, "{init}");
        }
        // Another size is another kind, kept too.
        s.deploy(
            &format!("{runtime}-bigger"),
            runtime,
            code,
            vm(json!({"memory_mb": 256})),
        );
        wait_for_pre_restored(&s, interpreter, 2.0);
    }
}

#[test]
fn without_snapshots_a_cold_start_boots_its_guest() {
    let s = server(&["--no-microvm-snapshots"]);
    assert_eq!(
        s.get("/v1/runtimes").json()["isolation"]["microvm"]["snapshots"],
        false
    );
    s.deploy("py", "python", KERNEL_PY, vm(json!({"idle_timeout_secs": 0})));
    let (py, init) = cold_call(&s, "py", "{}");
    assert_ne!(py["kernel"], host_kernel().as_str());
    let boot = init["boot_ms"].as_f64().expect("a booted cold start has boot_ms");
    assert!(boot > 0.0, "{init}");
    assert!(init.get("restore_ms").is_none(), "{init}");
}

const FAILING_PY: &str = r#"
import os, signal

def handler(event, context):
    what = event["do"]
    if what == "spin":
        while True:
            pass
    if what == "memory":
        hog = []
        while True:
            hog.append(bytearray(16 << 20))
    if what == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    return {"ok": True}
"#;

const FAILING_JS: &str = r#"
export const handler = async (event) => {
  if (event.do === "spin") { for (;;) {} }
  if (event.do === "memory") { const hog = []; for (;;) hog.push(Buffer.alloc(16 << 20, 1)); }
  if (event.do === "crash") process.kill(process.pid, "SIGSEGV");
  return { ok: true };
};
"#;

#[test]
fn a_timeout_an_out_of_memory_and_a_crash_each_end_cleanly() {
    let s = server(&[]);
    // Filling 160 MiB takes a few seconds under software emulation: the spinning calls get
    // a short timeout of their own.
    for (name, runtime, code, timeout) in [
        ("py", "python", FAILING_PY, 60),
        ("js", "javascript", FAILING_JS, 60),
        ("py-spin", "python", FAILING_PY, 2),
        ("js-spin", "javascript", FAILING_JS, 2),
    ] {
        s.deploy(
            name,
            runtime,
            code,
            vm(json!({"memory_mb": 128, "timeout_secs": timeout})),
        );
    }
    for (name, what, status, code) in [
        ("py-spin", "spin", StatusCode::GATEWAY_TIMEOUT, "timeout"),
        ("js-spin", "spin", StatusCode::GATEWAY_TIMEOUT, "timeout"),
        ("py", "memory", StatusCode::BAD_GATEWAY, "out_of_memory"),
        ("js", "memory", StatusCode::BAD_GATEWAY, "out_of_memory"),
        ("py", "crash", StatusCode::BAD_GATEWAY, "instance_crashed"),
        ("js", "crash", StatusCode::BAD_GATEWAY, "instance_crashed"),
    ] {
        {
            let a = s.invoke(name, &json!({"do": what}).to_string());
            assert_eq!(
                (a.status, a.error_code().as_str()),
                (status, code),
                "{name} {what}: {}",
                a.body
            );
            let ok = s.invoke(name, r#"{"do": "nothing"}"#);
            assert_eq!(
                (ok.status, ok.json()),
                (StatusCode::OK, json!({"ok": true})),
                "{name} answers again after {what}: {}",
                ok.body
            );
        }
    }
}

/// The QEMU processes among a server's descendants.
fn qemus(server: u32) -> BTreeSet<u32> {
    descendants(server)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.starts_with("qemu-system"))
        })
        .collect()
}

#[test]
fn a_killed_server_leaves_no_qemu_behind() {
    let s = server(&[]);
    s.deploy("kept", "python", KERNEL_PY, vm(json!({"min_instances": 2})));
    // Two instances, and a guest restored ahead of time, waiting in the pool.
    wait_for_pre_restored(&s, "python", 1.0);
    let mut found = BTreeSet::new();
    wait_until("three guests run", Duration::from_secs(60), || {
        found = qemus(s.pid());
        found.len() == 3
    });
    crate::containment::kill_server_and_wait_for(
        s.pid(),
        &found,
        "the killed server's QEMU processes are gone",
    );
}

#[test]
fn packages_and_layers_reach_the_guest_read_only() {
    let s = server(&[]);
    let layer = s.post(
        "/v1/layers",
        json!({"name": "helpers", "runtimes": ["python"], "files": {
            "python/shared_util.py": "WHO = 'from the layer'\n",
        }})
        .to_string(),
    );
    assert_eq!(layer.status, StatusCode::CREATED, "{}", layer.body);
    let app = r#"
import os, shared_util
from lib import tools

def handler(event, context):
    try:
        open("/code/app.py", "a").close()
        wrote = True
    except OSError as e:
        wrote = type(e).__name__
    return {"who": shared_util.WHO, "tool": tools.NAME, "code": sorted(os.listdir("/code")),
            "layer_file": shared_util.__file__, "wrote": wrote}
"#;
    let a = s.create(&json!({
        "name": "pkg", "runtime": "python", "handler": "app.handler", "isolation": "microvm",
        "files": {"app.py": app, "lib/__init__.py": "", "lib/tools.py": "NAME = 'tools'\n"},
        "layers": ["helpers:1"],
    }));
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    let out = s.invoke("pkg", "{}").json();
    assert_eq!(out["who"], "from the layer", "{out}");
    assert_eq!(out["tool"], "tools", "{out}");
    assert_eq!(out["code"], json!(["app.py", "lib"]), "{out}");
    assert_eq!(out["layer_file"], "/opt/python/shared_util.py", "{out}");
    assert_eq!(
        out["wrote"], "OSError",
        "the package is read-only in the guest: {out}"
    );

    // A guest restored before this function existed is shown its package and layers
    // when a cold start takes it.
    let b = s.create(&json!({
        "name": "pkg2", "runtime": "python", "handler": "app.handler", "isolation": "microvm",
        "files": {"app.py": app, "lib/__init__.py": "", "lib/tools.py": "NAME = 'other tools'\n",
                  "extra.txt": "x"},
        "layers": ["helpers:1"], "idle_timeout_secs": 0,
    }));
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
    wait_for_pre_restored(&s, "python", 1.0);
    let (out, init) = cold_call(&s, "pkg2", "{}");
    assert!(init.get("restore_ms").is_none(), "taken from the pool: {init}");
    assert_eq!(out["who"], "from the layer", "{out}");
    assert_eq!(out["tool"], "other tools", "{out}");
    assert_eq!(out["code"], json!(["app.py", "extra.txt", "lib"]), "{out}");
    assert_eq!(out["wrote"], "OSError", "{out}");
}

#[test]
fn outbound_guests_reach_out_but_never_the_host() {
    let host = crate::network::TestHost::start();
    // Restored for the cold start, then restored ahead of time (a kind of its own: a guest
    // with a network card).
    for pooled in [false, true] {
        let s = server(if pooled { &[] } else { &["--microvm-pool", "0"] });
        let api_port = s.port();
        s.deploy(
            "out",
            "python",
            crate::network::FETCH,
            vm(json!({"network": "outbound", "idle_timeout_secs": 0})),
        );
        if pooled {
            wait_for_pre_restored(&s, "python", 1.0);
        }
        // 10.0.2.2, QEMU's user-mode gateway, leads to the loopback of QEMU's own
        // (sandboxed) namespace, as slirp4netns' leads to the process instance's.
        let event = crate::network::fetch_event(&host, api_port);
        let (out, init) = cold_call(&s, "out", &event.to_string());
        assert_eq!(init.get("restore_ms").is_none(), pooled, "{init}");
        assert!(init.get("boot_ms").is_none(), "restored, not booted: {init}");
        assert_eq!(out["fetched"], "hello from the test host", "{out}");
        assert_ne!(out["gateway_api"], "connected", "{out}");
        assert_ne!(out["own_loopback_api"], "connected", "{out}");
    }
}

const HOSTILE_PY: &str = include_str!("fixtures/hostile/hostile.py");
const HOSTILE_JS: &str = include_str!("fixtures/hostile/hostile.js");

/// The process tier's adversarial suite (`sandbox.rs`) against the microvm tier: the same
/// hostile functions, each attack contained by the guest and by the confinement the agent
/// gives the runtime inside it (the process tier's seccomp filters, no capabilities, the
/// same limits), and an innocent function answering throughout.
#[test]
fn hostile_functions_stay_inside_their_guest() {
    let s = Server::start_env(&[("IGNIS_HOST_SECRET", "do-not-leak-7f3a")]);
    let tier = s.get("/v1/runtimes").json()["isolation"]["microvm"].clone();
    assert_eq!(tier["available"], true, "run `make microvm`: {tier}");
    let settings = vm(json!({"memory_mb": 128, "timeout_secs": 20}));
    s.deploy("hostile-py", "python", HOSTILE_PY, settings.clone());
    s.deploy("hostile-js", "javascript", HOSTILE_JS, settings);
    s.deploy(
        "hostile-py-short",
        "python",
        HOSTILE_PY,
        vm(json!({"memory_mb": 128, "timeout_secs": 2})),
    );
    s.deploy(
        "innocent",
        "python",
        "def handler(e):\n    return {'sum': e['a'] + e['b']}\n",
        json!({}),
    );
    let innocent = || {
        let a = s.invoke("innocent", r#"{"a": 2, "b": 3}"#);
        assert_eq!((a.status, a.json()), (StatusCode::OK, json!({"sum": 5})));
    };
    let attack = |name: &str, event: Value| s.invoke(name, &event.to_string());
    let data = s.data_dir().display().to_string();
    let api_port = s.port();

    let v = attack("hostile-py", json!({"attack": "identity"})).json();
    assert!(
        !v["environ"].as_str().expect("environ").contains("do-not-leak"),
        "{v}"
    );
    assert!(
        !v["init_environ"].as_str().unwrap_or("").contains("do-not-leak"),
        "{v}"
    );
    assert_ne!(v["uid"], 0, "{v}");
    assert_ne!(v["gid"], 0, "{v}");
    assert_eq!(v["caps"], "0000000000000000", "{v}");
    assert_eq!(v["bounding"], "0000000000000000", "{v}");
    assert_eq!(v["no_new_privs"], "1", "{v}");
    assert_eq!(
        v["seccomp"], "2",
        "the process tier's filters, inside the guest: {v}"
    );
    assert_eq!(v["hostname"], "ignis", "{v}");
    assert_eq!(v["nofile"], json!([1024, 1024]), "{v}");
    assert_eq!(v["core"], json!([0, 0]), "{v}");

    for name in ["hostile-py", "hostile-js"] {
        let v = attack(name, json!({"attack": "syscalls"})).json();
        let calls = v.as_object().expect("object");
        assert!(calls.len() >= 8, "{name}: {v}");
        for (call, r) in calls {
            assert_eq!(r["ret"], -1, "{name}: {call} succeeded: {v}");
            assert_eq!(r["errno"], 1, "{name}: {call} must fail with EPERM: {v}");
        }
        for path in [data.as_str(), "/etc/shadow", "/proc/1/environ"] {
            let v = attack(name, json!({"attack": "read", "path": path})).json();
            assert!(v.get("data").is_none(), "{name} read {path}: {v}");
        }
        for path in [
            "/code/main.py",
            "/owned",
            "/usr/owned",
            "/ignis/bootstrap.py",
            "/dev/owned",
        ] {
            let v = attack(name, json!({"attack": "write", "path": path})).json();
            assert!(v.get("written").is_none(), "{name} wrote {path}: {v}");
        }
        let v = attack(name, json!({"attack": "write", "path": "/tmp/ok"})).json();
        assert_eq!(v["written"], true, "{name}: /tmp is writable");
        let v = attack(name, json!({"attack": "fill_tmp", "mb": 100})).json();
        assert!(
            v.get("written").is_none(),
            "{name} wrote 100 MB into a 64 MB /tmp: {v}"
        );
        let v = attack(name, json!({"attack": "connect", "port": api_port})).json();
        assert!(v.get("connected").is_none(), "{name} reached the API: {v}");
        innocent();

        let a = attack(name, json!({"attack": "memory", "mb": 400}));
        assert_eq!(
            (a.status, a.error_code().as_str()),
            (StatusCode::BAD_GATEWAY, "out_of_memory"),
            "{name}: {}",
            a.body
        );
        let a = attack(name, json!({"attack": "signal"}));
        assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{name}: {}", a.body);
        let a = attack(name, json!({"attack": "kill_all"}));
        assert!(
            a.status == StatusCode::OK || a.status == StatusCode::BAD_GATEWAY,
            "{name}: {}",
            a.body
        );
        let ok = attack(name, json!({"attack": "memory", "mb": 16}));
        assert_eq!(
            ok.json()["len"],
            16 << 20,
            "{name}: a new guest answers: {}",
            ok.body
        );
        innocent();
    }
    for what in ["fork_bomb", "spin"] {
        let a = attack("hostile-py-short", json!({"attack": what}));
        assert!(
            a.status == StatusCode::GATEWAY_TIMEOUT || a.error_code() == "out_of_memory",
            "{what}: {}",
            a.body
        );
        innocent();
        let next = attack("hostile-py-short", json!({"attack": "procs"}));
        assert_eq!(
            next.status,
            StatusCode::OK,
            "recovers after {what}: {}",
            next.body
        );
    }
}

#[test]
fn installed_dependencies_reach_the_guest_under_the_package() {
    let cache = crate::dependencies::shared_cache();
    let s = server(&["--deps-cache", &cache]);
    let app = r#"
import jwt

def handler(event, context):
    token = jwt.encode({"who": event["who"]}, "secret", algorithm="HS256")
    return {"decoded": jwt.decode(token, "secret", algorithms=["HS256"]), "from": jwt.__file__}
"#;
    let a = s.create(&json!({
        "name": "deps", "runtime": "python", "handler": "app.handler", "isolation": "microvm",
        "files": {"app.py": app, "requirements.txt": "pyjwt==2.9.0\n"},
    }));
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    let out = s.invoke("deps", r#"{"who": "guest"}"#).json();
    assert_eq!(out["decoded"], json!({"who": "guest"}), "{out}");
    assert_eq!(
        out["from"], "/code/jwt/__init__.py",
        "the installed set is shown under the package at /code: {out}"
    );
}

const RANDOM_PY: &str = r#"
import os, random, time, uuid

def handler(event, context):
    return {"random": random.random(), "urandom": os.urandom(16).hex(),
            "uuid": str(uuid.uuid4()), "time": time.time()}
"#;

const RANDOM_JS: &str = r#"
export const handler = async () => ({
  math: [Math.random(), Math.random()],
  uuid: crypto.randomUUID(),
  time: Date.now() / 1000,
});
"#;

/// Guests restored from one snapshot start from the same memory: what a restore re-seeds
/// (the kernel's generator, the clock; Bun's `Math.random`) differs between them, whether
/// restored for a cold start (`--microvm-pool 0`) or ahead of time (and waiting since).
#[test]
fn guests_restored_from_one_snapshot_draw_different_numbers_and_know_the_time() {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs_f64()
    };
    for pooled in [false, true] {
        let s = server(if pooled { &[] } else { &["--microvm-pool", "0"] });
        s.deploy("py", "python", RANDOM_PY, vm(json!({"idle_timeout_secs": 0})));
        s.deploy("js", "javascript", RANDOM_JS, vm(json!({"idle_timeout_secs": 0})));
        for (name, interpreter) in [("py", "python"), ("js", "bun")] {
            let mut answers = Vec::new();
            for _ in 0..2 {
                if pooled {
                    wait_for_pre_restored(&s, interpreter, 1.0);
                }
                let (answer, init) = cold_call(&s, name, "{}");
                assert_eq!(
                    init.get("restore_ms").is_none(),
                    pooled,
                    "{name}: restored ahead of time only with the pool: {init}"
                );
                answers.push(answer);
            }
            let [first, second] = &answers[..] else {
                unreachable!()
            };
            for key in ["random", "urandom", "uuid", "math"] {
                if first.get(key).is_some() {
                    assert_ne!(first[key], second[key], "{name}: {key} repeats across clones");
                }
            }
            for answer in &answers {
                let t = answer["time"].as_f64().expect("time");
                assert!(
                    (now() - t).abs() < 30.0,
                    "{name}: a restored guest's clock is the host's, not the snapshot's: {answer}"
                );
            }
        }
    }
}
