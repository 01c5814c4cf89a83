//! Scaling against the real server: provisioned instances, concurrency, scale to zero,
//! pre-warmed sandboxes, no instance shared between functions, host memory capacity and
//! eviction.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{wait_until, Server};

const WAIT: Duration = Duration::from_secs(30);

/// Each instance's private /tmp remembers which function first ran in it.
const OWNER_PY: &str = "import os\ndef handler(e, ctx):\n    path = '/tmp/owner'\n    if not os.path.exists(path):\n        open(path, 'w').write(ctx.function_name)\n    return open(path).read()\n";
const OWNER_JS: &str = "import fs from 'node:fs';\nexport function handler(e, ctx) {\n  const path = '/tmp/owner';\n  if (!fs.existsSync(path)) fs.writeFileSync(path, ctx.functionName);\n  return fs.readFileSync(path, 'utf8');\n}\n";

/// A call with `{"wait": true}` returns once a call with `{"release": true}` ran in the
/// same instance (they share its /tmp); with one call per instance it would never return.
const GATE_PY: &str = "import asyncio, os\nasync def handler(e):\n    flag = '/tmp/released'\n    if e.get('ping'):\n        return 'pong'\n    if e.get('release'):\n        open(flag, 'w').close()\n        return 'released'\n    while not os.path.exists(flag):\n        await asyncio.sleep(0.005)\n    return 'waited'\n";
const GATE_JS: &str = "import fs from 'node:fs';\nexport async function handler(e) {\n  const flag = '/tmp/released';\n  if (e.release) { fs.writeFileSync(flag, ''); return 'released'; }\n  while (!fs.existsSync(flag)) await Bun.sleep(5);\n  return 'waited';\n}\n";

const SLOW_PY: &str = "import time\ndef handler(e):\n    time.sleep(e.get('secs', 0))\n    return 'done'\n";

fn instances(s: &Server, name: &str) -> (u64, u64, u64) {
    let i = &s.function(name)["instances"];
    let n = |k: &str| i[k].as_u64().expect("a count");
    (n("starting"), n("idle"), n("busy"))
}

fn prewarmed(s: &Server, runtime: &str) -> f64 {
    s.metric(&format!("ignis_prewarmed_instances{{runtime=\"{runtime}\"}}"))
        .expect("the pre-warmed gauge")
}

#[test]
fn min_instances_start_at_deploy_and_outlive_the_idle_timeout() {
    let s = Server::start();
    s.deploy(
        "provisioned",
        "python",
        SLOW_PY,
        json!({"min_instances": 2, "max_instances": 3, "idle_timeout_secs": 1}),
    );
    wait_until("two instances are up", WAIT, || {
        instances(&s, "provisioned") == (0, 2, 0)
    });
    let first = s.invoke("provisioned", "{}");
    assert_eq!(first.status, StatusCode::OK);
    assert!(!first.cold(), "the first call finds a provisioned instance");
    // Three at once need a third instance, which goes again after a second of idleness;
    // the two provisioned ones stay.
    std::thread::scope(|scope| {
        let calls: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| s.invoke("provisioned", r#"{"secs": 0.5}"#)))
            .collect();
        for c in calls {
            assert_eq!(c.join().expect("thread").status, StatusCode::OK);
        }
    });
    let counted = s.metric(r#"ignis_cold_starts_total{function="provisioned",reason="scale_out"}"#);
    assert_eq!(counted, Some(1.0), "one instance was added for the third call");
    wait_until("the extra instance is stopped", WAIT, || {
        instances(&s, "provisioned") == (0, 2, 0)
    });
}

#[test]
fn one_instance_runs_concurrent_calls_up_to_its_concurrency() {
    let s = Server::start();
    for (name, runtime, code) in [("gate-py", "python", GATE_PY), ("gate-js", "javascript", GATE_JS)] {
        s.deploy(
            name,
            runtime,
            code,
            json!({"concurrency": 4, "max_instances": 1, "timeout_secs": 20}),
        );
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| s.invoke(name, r#"{"wait": true}"#));
            wait_until("the first call is in flight", WAIT, || instances(&s, name).2 == 1);
            let release = s.invoke(name, r#"{"release": true}"#);
            assert_eq!(release.status, StatusCode::OK, "{}", release.body);
            assert!(
                !release.cold(),
                "{name}: the second call joined the busy instance"
            );
            let waited = waiting.join().expect("thread");
            assert_eq!(waited.status, StatusCode::OK, "{}", waited.body);
            assert_eq!(waited.json(), json!("waited"));
        });
        assert_eq!(instances(&s, name).1, 1, "{name}: one instance did it all");
    }
}

#[test]
fn an_idle_timeout_of_zero_stops_the_instance_after_each_call() {
    let s = Server::start();
    let code = "n = 0\ndef handler(e):\n    global n\n    n += 1\n    return n\n";
    s.deploy("ephemeral", "python", code, json!({"idle_timeout_secs": 0}));
    wait_until("the deploy check instance is gone", WAIT, || {
        instances(&s, "ephemeral") == (0, 0, 0)
    });
    for _ in 0..3 {
        let a = s.invoke("ephemeral", "{}");
        assert!(a.cold(), "every call starts an instance");
        assert_eq!(a.json(), json!(1), "in a fresh interpreter");
        wait_until("the instance is stopped", WAIT, || {
            instances(&s, "ephemeral") == (0, 0, 0)
        });
    }
}

#[test]
fn cold_starts_take_a_pre_warmed_sandbox_and_the_pool_refills() {
    let s = Server::start();
    for (name, runtime, label, code) in [
        ("warmed-py", "python", "python", OWNER_PY),
        ("warmed-js", "javascript", "bun", OWNER_JS),
    ] {
        wait_until("the pool is full", WAIT, || prewarmed(&s, label) == 2.0);
        s.deploy(name, runtime, code, json!({"idle_timeout_secs": 0}));
        wait_until("the pool refilled after the deploy", WAIT, || {
            prewarmed(&s, label) == 2.0
        });
        let a = s.invoke(name, "{}");
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(a.cold());
        let init = s.invocation(a.header("x-ignis-invocation-id"))["init"].clone();
        assert_eq!(init["reason"], "first_call", "{init}");
        assert_eq!(
            (init["sandbox_ms"].as_f64(), init["runtime_ms"].as_f64()),
            (Some(0.0), Some(0.0)),
            "{name}: sandbox and interpreter were already up: {init}"
        );
        assert!(init["load_ms"].as_f64().expect("load_ms") > 0.0, "{init}");
        wait_until("the pool refilled after the cold start", WAIT, || {
            prewarmed(&s, label) == 2.0
        });
    }
    // Without the pool, a cold start makes its sandbox and starts its interpreter.
    let s = Server::start_with(None, &["--prewarm", "0"]);
    assert_eq!(prewarmed(&s, "python"), 0.0);
    s.deploy("fresh", "python", OWNER_PY, json!({"idle_timeout_secs": 0}));
    let a = s.invoke("fresh", "{}");
    let init = s.invocation(a.header("x-ignis-invocation-id"))["init"].clone();
    assert!(init["sandbox_ms"].as_f64().expect("sandbox_ms") > 0.0, "{init}");
    assert!(init["runtime_ms"].as_f64().expect("runtime_ms") > 0.0, "{init}");
}

#[test]
fn an_instance_only_ever_serves_the_function_that_loaded_it() {
    let s = Server::start();
    // Ephemeral ones draw every instance from the shared pre-warmed pool; warm ones are
    // reused. Either way, an instance's /tmp only ever names its own function.
    for (suffix, idle) in [("ephemeral", 0), ("warm", 300)] {
        for (runtime, code) in [("python", OWNER_PY), ("javascript", OWNER_JS)] {
            let names = [format!("a-{runtime}-{suffix}"), format!("b-{runtime}-{suffix}")];
            for n in &names {
                s.deploy(n, runtime, code, json!({"idle_timeout_secs": idle}));
            }
            for _ in 0..3 {
                for n in &names {
                    let a = s.invoke(n, "{}");
                    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
                    assert_eq!(a.json(), json!(n), "{n} ran in another function's instance");
                }
            }
        }
    }
}

#[test]
fn full_capacity_evicts_the_least_recently_used_idle_instance_then_refuses() {
    // Room for two 256 MB instances.
    let s = Server::start_with(None, &["--memory-capacity", "512", "--prewarm", "0"]);
    let big = json!({"memory_mb": 256, "concurrency": 2, "max_instances": 1, "timeout_secs": 20});
    s.deploy("first", "python", GATE_PY, big.clone());
    s.deploy("second", "python", GATE_PY, big.clone());
    assert_eq!(
        s.metric("ignis_memory_reserved_bytes"),
        Some(512.0 * 1024.0 * 1024.0)
    );
    // Used again, "first" is now more recent than "second".
    assert!(!s.invoke("first", r#"{"ping": true}"#).cold());
    // Idle again in its pool's eyes (the release reaches the pool after the answer).
    wait_until("first is idle again", WAIT, || {
        instances(&s, "first") == (0, 1, 0)
    });
    s.deploy("third", "python", GATE_PY, big.clone());
    assert_eq!(instances(&s, "second"), (0, 0, 0), "the least recently used went");
    assert_eq!(instances(&s, "first").1, 1, "the more recent one stayed");
    assert_eq!(s.metric(r#"ignis_evictions_total{function="second"}"#), Some(1.0));
    assert_eq!(s.metric(r#"ignis_evictions_total{function="first"}"#), Some(0.0));

    // With "first" and "third" busy, "second" finds nothing it may evict.
    std::thread::scope(|scope| {
        let held = scope.spawn(|| s.invoke("third", r#"{"wait": true}"#));
        let held_first = scope.spawn(|| s.invoke("first", r#"{"wait": true}"#));
        wait_until("both instances are busy", WAIT, || {
            instances(&s, "third").2 == 1 && instances(&s, "first").2 == 1
        });
        let refused = s.invoke("second", "{}");
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{}", refused.body);
        assert_eq!(refused.error_code(), "capacity_exhausted");
        let throttled = r#"ignis_throttles_total{function="second",reason="capacity_exhausted"}"#;
        assert_eq!(s.metric(throttled), Some(1.0));
        // The held calls still end normally: "third" first, so that it is idle longer.
        assert_eq!(s.invoke("third", r#"{"release": true}"#).status, StatusCode::OK);
        assert_eq!(held.join().expect("thread").json(), json!("waited"));
        wait_until("third is idle", WAIT, || instances(&s, "third") == (0, 1, 0));
        assert_eq!(s.invoke("first", r#"{"release": true}"#).status, StatusCode::OK);
        let first = held_first.join().expect("thread");
        assert_eq!(first.json(), json!("waited"), "{}", first.body);
    });
    // Once "third" is idle again it can be evicted for "second".
    let a = s.invoke("second", r#"{"ping": true}"#);
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.cold());
    let value: Value = s.metric(r#"ignis_evictions_total{function="third"}"#).into();
    assert_eq!(value, json!(1.0));
}
