//! cgroup v2, for real: the real `ignis` binary serves inside the guest, whose kernel gives
//! a cgroup v2 machine (the CI host is v1/hybrid). A driver script (`fixtures/
//! cgroup_v2_driver.py`) runs there as root: it starts the server as root, then as nobody
//! inside a cgroup root delegated to it, and reports what each did with its instances'
//! cgroups (setup, limits, peak memory, OOM detection, removal).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{share, Boot, Guest};

const DRIVER: &str = include_str!("fixtures/cgroup_v2_driver.py");

/// The workspace's `ignis` binary (`make test` builds it before the tests run).
fn ignis_bin() -> PathBuf {
    let bin = std::env::var_os("IGNIS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/ignis"));
    assert!(
        bin.is_file(),
        "no ignis binary at {}: run `cargo build --locked --bin ignis` first (or set IGNIS_BIN)",
        bin.display()
    );
    bin
}

/// A share holding `code/ignis` and `code/driver.py`.
fn code_share() -> tempfile::TempDir {
    let share = tempfile::tempdir().expect("share dir");
    let code = share.path().join("code");
    std::fs::create_dir(&code).expect("mkdir code");
    let bin = ignis_bin();
    // A hard link costs no disk; another file system needs a copy.
    if std::fs::hard_link(&bin, code.join("ignis")).is_err() {
        std::fs::copy(&bin, code.join("ignis")).expect("copy the ignis binary");
    }
    std::fs::write(code.join("driver.py"), DRIVER).expect("write the driver");
    share
}

/// What one server did: it was sandboxed on cgroup v2 with its instances' cgroups under
/// `parent`, limited as the function asked, measured and OOM-detected, and removed.
fn assert_served(report: &Value, phase: &str, parent: &str, uid: u64) {
    let p = &report[phase];
    let context = || format!("{phase}: {}", serde_json::to_string_pretty(p).unwrap_or_default());
    assert_eq!(p["uid"], uid, "{}", context());
    assert_eq!(
        p["server_cgroup"],
        format!("0::{parent}/ignis-server"),
        "the server moved itself into a leaf of its own cgroup: {}",
        context()
    );
    assert_eq!(p["health"]["status"], "ok", "{}", context());
    assert_eq!(p["health"]["sandbox"], json!({"enabled": true}), "{}", context());
    assert_eq!(
        p["deploy"],
        json!({"status": 201, "state": "ready"}),
        "{}",
        context()
    );
    assert_eq!(p["small"]["status"], 200, "{}", context());
    assert_eq!(p["small"]["body"], json!({"len": 32 << 20}), "{}", context());
    let peak = p["small"]["peak_memory_mb"].as_u64();
    assert!(
        peak.is_some_and(|mb| mb >= 32),
        "the instance allocated 32 MiB; its record's peak is {peak:?}: {}",
        context()
    );
    let cgroup = p["instance_cgroup"].as_str().unwrap_or_default();
    let layout = format!("{parent}/ignis/s-");
    assert!(
        cgroup.starts_with(&layout) && cgroup.rsplit('/').next().is_some_and(|i| i.starts_with("i-")),
        "the live instance's cgroup is {cgroup:?}, not {layout}N/i-ID: {}",
        context()
    );
    assert_eq!(p["memory.max"], (128u64 << 20).to_string(), "{}", context());
    assert_eq!(p["cpu.max"], "100000 100000", "1 vCPU: {}", context());
    assert_eq!(p["pids.max"], "256", "{}", context());
    assert!(
        p["memory.peak"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|b| b >= 32 << 20),
        "memory.peak of the live instance: {}",
        context()
    );
    assert_eq!(
        p["big"],
        json!({"status": 502, "code": "out_of_memory", "record_status": "out_of_memory"}),
        "400 MiB in a 128 MiB instance: {}",
        context()
    );
    assert_eq!(p["exit_code"], 0, "the server stops on SIGTERM: {}", context());
    assert_eq!(
        p["instance_cgroups_left"],
        json!([]),
        "the stopped server's instance cgroups are removed: {}",
        context()
    );
    assert_eq!(
        p["parent_left"],
        false,
        "so is its parent cgroup {layout}N: {}",
        context()
    );
}

#[test]
fn the_server_limits_measures_and_removes_instance_cgroups_on_cgroup_v2_as_root_and_delegated() {
    let started = Instant::now();
    let share_dir = code_share();
    let extra = share("share", share_dir.path(), "ignis.share");
    let mut guest = Guest::start(&Boot {
        extra: &extra,
        memory_mb: 1024,
        tmp_mb: 256,
        // The whole driver's run; it ends itself well before, reporting what it waited for.
        deadline: Duration::from_secs(300),
        ..Boot::default()
    });
    assert_eq!(
        guest.request(&json!({"op": "mount", "at": "/code", "dirs": ["code"]})),
        json!({"ok": true})
    );
    let answer = guest.request(&json!({"op": "exec", "program": "/usr/bin/python3",
        "args": ["/code/driver.py"], "env": {"PATH": "/usr/local/bin:/usr/bin:/bin"},
        "cwd": "/", "uid": 0, "gid": 0, "confine": false}));
    assert_eq!(answer["ok"], true, "{answer}");
    let ended = guest.end();
    eprintln!("driver's stderr:\n{}", ended.stderr);
    eprintln!("wall time: {:?}", started.elapsed());
    assert_eq!(
        ended.exit,
        json!({"event": "exit", "code": 0, "signal": null, "oom": true}),
        "the driver exits 0 (its OOM kill is the instance's): {}",
        ended.stderr
    );
    let report: Value = serde_json::from_str(ended.stdout.trim())
        .unwrap_or_else(|e| panic!("the driver's report is not JSON ({e}): {}", ended.stdout));
    let pretty = serde_json::to_string_pretty(&report).unwrap_or_default();
    eprintln!("report:\n{pretty}");
    assert_eq!(report["error"], Value::Null, "{pretty}");
    assert_eq!(report["step"], "done", "{pretty}");
    for controller in ["memory", "cpu", "pids"] {
        assert!(
            report["controllers"]
                .as_array()
                .is_some_and(|c| c.contains(&json!(controller))),
            "cgroup.controllers lacks {controller}: {pretty}"
        );
    }
    assert_served(&report, "root", "", 0);
    assert_served(&report, "delegated", "/deleg", 65534);
}
