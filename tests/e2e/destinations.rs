//! Destinations cannot multiply work forever: a cycle of destinations is refused at create
//! and update (422 `destination_cycle`, naming it), and a chain is cut after 16 hops at run
//! time, the cut recorded on the invocation that was not run.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{wait_until, Server};

const OK: &str = "def handler(event, context):\n    return 'ok'\n";

fn spec(name: &str, extra: Value) -> Value {
    let mut body = json!({"name": name, "runtime": "python", "code": OK});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            body[k] = v;
        }
    }
    body
}

/// Asserts `a` refuses a cycle: 422 `destination_cycle` on `field`, naming `cycle`.
fn assert_cycle(a: &crate::harness::Answer, field: &str, cycle: &[&str]) {
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    let e = &a.json()["error"];
    assert_eq!(e["code"], "destination_cycle", "{e}");
    assert_eq!(e["field"], field, "{e}");
    assert_eq!(e["cycle"], json!(cycle), "{e}");
    let message = e["message"].as_str().expect("message");
    assert!(message.contains(&cycle.join(" → ")), "{message}");
}

#[test]
fn a_destination_cycle_is_refused_at_create_and_update_naming_it() {
    let s = Server::start();
    // A destination may name a function that does not exist yet.
    s.deploy("a", "python", OK, json!({"on_success": "b"}));

    let refused = s.create(&spec("b", json!({"on_success": "a"})));
    assert_cycle(&refused, "on_success", &["b", "a", "b"]);
    assert_eq!(
        s.get("/v1/functions/b").status,
        StatusCode::NOT_FOUND,
        "nothing was created"
    );

    s.deploy("b", "python", OK, json!({}));
    // on_failure leads back just as well (a fails into b, b succeeds into a, ...).
    let refused = s.update("b", &spec("b", json!({"on_failure": "a"})));
    assert_cycle(&refused, "on_failure", &["b", "a", "b"]);
    assert_eq!(
        s.function("b")["version"],
        1,
        "the refused update made no version"
    );

    // Three functions: the cycle is found through the whole graph.
    s.deploy("c", "python", OK, json!({"on_success": "a"}));
    let refused = s.update("b", &spec("b", json!({"on_success": "c"})));
    assert_cycle(&refused, "on_success", &["b", "c", "a", "b"]);

    // Once a no longer leads to b, the same destination is fine; then a cannot close it.
    let a = s.update("a", &spec("a", json!({})));
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let b = s.update("b", &spec("b", json!({"on_success": "c"})));
    assert_eq!(b.status, StatusCode::OK, "{}", b.body);
    let refused = s.update("a", &spec("a", json!({"on_failure": "b"})));
    assert_cycle(&refused, "on_failure", &["a", "b", "c", "a"]);
    // A chain without a way back is accepted.
    let d = s.create(&spec("d", json!({"on_success": "b", "on_failure": "a"})));
    assert_eq!(d.status, StatusCode::CREATED, "{}", d.body);
}

/// The create-time check sees the whole graph, so no cycle can be built through the API;
/// a chain of 18 distinct functions is as long as a loop's first 17 hops, and shows the cut.
#[test]
fn a_chain_of_destinations_is_cut_after_16_hops() {
    let s = Server::start();
    let names: Vec<String> = (0..18).map(|i| format!("hop{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let next = names.get(i + 1).map_or(Value::Null, |n| json!(n));
        s.deploy(name, "python", OK, json!({"on_success": next}));
    }
    let a = s.invoke_async("hop0", "{}");
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let first = s.wait_for_status(a.json()["invocation_id"].as_str().expect("id"), "succeeded");
    assert_eq!(first["hops"], 0, "{first}");

    let mut dead = Vec::new();
    wait_until("hop 17 is cut", Duration::from_secs(120), || {
        dead = s.get("/v1/functions/hop17/dead-letters").json()["dead_letters"]
            .as_array()
            .expect("dead_letters")
            .clone();
        !dead.is_empty()
    });
    assert_eq!(dead.len(), 1);
    let cut = s.invocation(dead[0]["id"].as_str().expect("id"));
    assert_eq!(
        (
            &cut["status"],
            &cut["dead_reason"],
            &cut["hops"],
            &cut["source"],
            &cut["attempt_count"]
        ),
        (
            &json!("dead"),
            &json!("destination_hops_exceeded"),
            &json!(17),
            &json!("destination"),
            &json!(0)
        ),
        "{cut}"
    );
    // Hop 16 ran; hop 17 did not.
    let runs = |name: &str| {
        s.get(&format!("/v1/functions/{name}/invocations")).json()["invocations"]
            .as_array()
            .expect("invocations")
            .len()
    };
    assert_eq!((runs("hop16"), runs("hop17")), (1, 0));
    assert_eq!(cut["event"]["function"], "hop16", "{cut}");
}

/// A cycle the create-time check cannot see: one stored by a server without the check (here
/// written into the store directly, as such a server would have). After a restart, one
/// asynchronous call goes round ping → pong → ping ... and is cut at hop 17.
#[test]
fn a_loop_restored_from_an_older_store_is_cut_after_16_hops() {
    let mut s = Server::start();
    s.deploy("ping", "python", OK, json!({"on_success": "pong"}));
    s.deploy("pong", "python", OK, json!({}));
    {
        let store = ignis_store::Store::open(&s.data_dir()).expect("open the store");
        let v1 = store.get_version("pong", 1).expect("read").expect("version 1");
        let mut spec: Value = serde_json::from_str(&v1.spec_json).expect("a spec");
        spec["on_success"] = json!("ping");
        store
            .add_version(&ignis_store::NewVersion {
                function: v1.function,
                version: 2,
                runtime: v1.runtime,
                handler: v1.handler,
                code: v1.code,
                code_sha256: v1.code_sha256,
                spec_json: spec.to_string(),
                created_at: time::OffsetDateTime::now_utc(),
                package: None,
                layers: Vec::new(),
            })
            .expect("store pong v2");
    }
    s.restart();
    wait_until("both functions are ready again", Duration::from_secs(30), || {
        ["ping", "pong"].iter().all(|f| {
            let f = s.get(&format!("/v1/functions/{f}")).json();
            f["state"] == "ready" && f["active_version"] == f["version"]
        })
    });
    assert_eq!(s.function("pong")["on_success"], "ping");
    // The check still sees the cycle: pong cannot be updated without breaking it.
    let refused = s.update("pong", &spec("pong", json!({"on_success": "ping"})));
    assert_cycle(&refused, "on_success", &["pong", "ping", "pong"]);

    let a = s.invoke_async("ping", "{}");
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let mut dead = Vec::new();
    wait_until("the loop is cut", Duration::from_secs(120), || {
        dead = s.get("/v1/functions/pong/dead-letters").json()["dead_letters"]
            .as_array()
            .expect("dead_letters")
            .clone();
        !dead.is_empty()
    });
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (
            &dead[0]["dead_reason"],
            &dead[0]["hops"],
            &dead[0]["attempt_count"]
        ),
        (&json!("destination_hops_exceeded"), &json!(17), &json!(0)),
        "{}",
        dead[0]
    );
    // Hops 0 to 16 ran: ping at the even ones (9), pong at the odd ones (8); nothing after.
    let runs = |name: &str| {
        s.get(&format!("/v1/functions/{name}/invocations")).json()["invocations"]
            .as_array()
            .expect("invocations")
            .len()
    };
    assert_eq!((runs("ping"), runs("pong")), (9, 8));
}
