//! `isolation`: the process tier by default, shown and round-tripped through `spec`; the
//! tiers this host has on `/v1/runtimes` and `/healthz`; the microvm tier refused with
//! `isolation_unavailable` and its reason wherever the server says it is unavailable.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{Server, BIN};

const CODE: &str = "def handler(event, context):\n    return {'ok': True}\n";

/// The `isolation` object of `/v1/runtimes`, checked to be the same on `/healthz`.
fn tiers(s: &Server) -> Value {
    let runtimes = s.get("/v1/runtimes");
    assert_eq!(runtimes.status, StatusCode::OK, "{}", runtimes.body);
    let isolation = runtimes.json()["isolation"].clone();
    let health = s.get("/healthz");
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    assert_eq!(
        health.json()["isolation"],
        isolation,
        "/healthz and /v1/runtimes agree"
    );
    assert_eq!(isolation["process"], json!({"available": true}), "{isolation}");
    isolation
}

/// Asserts what the server says of its microvm tier holds: unavailable with a reason and
/// a create refused naming it, or available with its facts and a create that deploys.
fn microvm_matches_what_the_server_says(s: &Server) {
    let vm = tiers(s)["microvm"].clone();
    let body = json!({"name": "vm", "runtime": "python", "code": CODE, "isolation": "microvm"});
    let created = s.create(&body);
    match vm["available"].as_bool() {
        Some(false) => {
            let reason = vm["reason"].as_str().expect("a reason when unavailable");
            assert!(!reason.is_empty(), "{vm}");
            for absent in ["accelerator", "guest_kernel", "snapshots"] {
                assert!(vm.get(absent).is_none(), "{absent} only when available: {vm}");
            }
            assert_eq!(
                created.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{}",
                created.body
            );
            let error = &created.json()["error"];
            assert_eq!(
                (&error["code"], &error["field"]),
                (&json!("isolation_unavailable"), &json!("isolation")),
                "{error}"
            );
            assert_eq!(
                error["message"],
                format!("the microvm tier is unavailable on this host: {reason}")
            );
            assert_eq!(
                s.get("/v1/functions/vm").status,
                StatusCode::NOT_FOUND,
                "nothing stored"
            );
        }
        Some(true) => {
            assert!(vm.get("reason").is_none(), "{vm}");
            assert!(
                ["kvm", "tcg"].contains(&vm["accelerator"].as_str().unwrap_or("")),
                "{vm}"
            );
            assert!(!vm["guest_kernel"].as_str().unwrap_or("").is_empty(), "{vm}");
            assert!(vm["snapshots"].is_boolean(), "{vm}");
            assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
            let view = created.json();
            assert_eq!(
                (&view["isolation"], &view["state"]),
                (&json!("microvm"), &json!("ready"))
            );
            assert_eq!(view["spec"]["isolation"], "microvm", "{view}");
        }
        None => panic!("microvm.available is a boolean: {vm}"),
    }
}

#[test]
fn the_microvm_tier_is_refused_exactly_where_the_server_says_it_is_unavailable() {
    let s = Server::start();
    microvm_matches_what_the_server_says(&s);
    let bad = s.create(&json!({"name": "bad", "runtime": "python", "code": CODE, "isolation": "vm"}));
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    let error = &bad.json()["error"];
    assert_eq!(
        (&error["code"], &error["field"], &error["message"]),
        (
            &json!("invalid_value"),
            &json!("isolation"),
            &json!("isolation \"vm\" is not one of process, microvm")
        )
    );
}

#[test]
fn ignis_runtimes_lists_the_isolation_tiers() {
    let s = Server::start();
    let vm = tiers(&s)["microvm"].clone();
    let o = std::process::Command::new(BIN)
        .args(["--url", &s.url, "runtimes"])
        .output()
        .expect("run ignis runtimes");
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    let line = |tier: &str| {
        out.lines()
            .find(|l| l.starts_with(tier))
            .unwrap_or_else(|| panic!("a {tier} line in {out}"))
            .to_owned()
    };
    assert!(out.contains("ISOLATION"), "{out}");
    assert!(line("process").contains("true"), "{out}");
    let microvm = line("microvm");
    match vm["reason"].as_str() {
        Some(reason) => assert!(microvm.contains("false") && microvm.contains(reason), "{out}"),
        None => assert!(
            microvm.contains("true")
                && microvm.contains(vm["accelerator"].as_str().unwrap_or("?"))
                && microvm.contains(&format!("restored ahead per kind {}", vm["pool"])),
            "{out}"
        ),
    }
}

#[test]
fn without_the_sandbox_the_microvm_tier_is_unavailable() {
    let s = Server::start_with(None, &["--insecure-no-sandbox"]);
    assert_eq!(tiers(&s)["microvm"]["available"], false);
    microvm_matches_what_the_server_says(&s);
}

#[test]
fn functions_run_in_the_process_tier_by_default_and_keep_it_through_their_spec() {
    let s = Server::start();
    let created = s.deploy("plain", "python", CODE, json!({"idle_timeout_secs": 0}));
    assert_eq!(created["isolation"], "process", "{created}");
    assert_eq!(created["spec"]["isolation"], "process", "{created}");
    let listed = s.get("/v1/functions").json();
    assert_eq!(listed["functions"][0]["isolation"], "process", "{listed}");

    let cold = s.invoke("plain", "{}");
    assert_eq!(cold.status, StatusCode::OK, "{}", cold.body);
    assert!(cold.cold());
    let init = s.invocation(cold.header("x-ignis-invocation-id"))["init"].clone();
    assert_eq!(init["reason"], "first_call", "{init}");
    for vm_part in ["boot_ms", "restore_ms"] {
        assert!(init.get(vm_part).is_none(), "a process has no {vm_part}: {init}");
    }

    // The settings sent back as they came make a version in the same tier; so does an
    // update that leaves the field out (its default).
    let view = s.function("plain");
    let back = s.update("plain", &view["spec"]);
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    let back = back.json();
    assert_eq!(
        (&back["version"], &back["isolation"]),
        (&json!(2), &json!("process"))
    );
    let mut without = view["spec"].clone();
    without.as_object_mut().expect("an object").remove("isolation");
    let again = s.update("plain", &without);
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.json()["spec"]["isolation"], "process");
    let to_vm = s.update("plain", &json!({"runtime": "python", "isolation": "microvm"}));
    if tiers(&s)["microvm"]["available"] == true {
        assert_eq!(to_vm.status, StatusCode::OK, "{}", to_vm.body);
        assert_eq!(to_vm.json()["isolation"], "microvm", "{}", to_vm.body);
    } else {
        assert_eq!(to_vm.error_code(), "isolation_unavailable", "{}", to_vm.body);
        assert_eq!(
            s.function("plain")["version"],
            3,
            "a refused update makes no version"
        );
    }
}
