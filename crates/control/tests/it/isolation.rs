//! The isolation tier: refused where this host cannot give it, otherwise passed to the
//! launcher, and a virtual machine's boot and restore times recorded with the cold start.

use ignis_control::{ControlError, DeployWait, MicrovmFacts};
use ignis_core::Isolation;
use serde_json::{json, value::RawValue};

use crate::{spec, wait_for, World};

fn event() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("JSON")
}

fn tcg() -> MicrovmFacts {
    MicrovmFacts {
        accelerator: "tcg".to_owned(),
        guest_kernel: "6.1.0-ignis".to_owned(),
        snapshots: true,
        pool: 1,
    }
}

/// The reason `create` gave for refusing a microvm function.
async fn refused(w: &World) -> String {
    let vm = spec("vm", &json!({}), json!({"isolation": "microvm"}));
    match w.platform.create(vm, DeployWait::UntilDone).await {
        Err(e @ ControlError::IsolationUnavailable { .. }) => e.to_string(),
        other => panic!("expected isolation_unavailable, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_microvm_tier_is_refused_where_the_host_has_none_or_no_sandbox() {
    let w = World::new(10).await;
    assert_eq!(
        refused(&w).await,
        "the microvm tier is unavailable on this host: no virtual machines in these tests"
    );
    assert!(w.platform.get("vm").is_none(), "nothing was stored");
    assert_eq!(w.starter.starts(), 0);
    // An update to the tier is refused too, with or without code; the function keeps its
    // version.
    w.create("p", json!({}), json!({})).await;
    let to_vm = spec("p", &json!({}), json!({"isolation": "microvm"}));
    assert!(matches!(
        w.platform.update(to_vm, DeployWait::UntilDone).await,
        Err(ControlError::IsolationUnavailable { .. })
    ));
    let keep = ignis_core::parse_update(
        br#"{"runtime": "python", "isolation": "microvm"}"#,
        &ignis_core::FunctionName::parse("p").expect("a name"),
    )
    .expect("a valid update");
    assert!(matches!(
        w.platform.update(keep, DeployWait::UntilDone).await,
        Err(ControlError::IsolationUnavailable { .. })
    ));
    let view = w.platform.get("p").expect("kept");
    assert_eq!((view.version, view.isolation), (1, "process"));

    let unsandboxed = World::on_host(10, Ok(tcg()), false).await;
    assert_eq!(
        refused(&unsandboxed).await,
        "the microvm tier is unavailable on this host: the microvm tier runs its virtual \
         machines inside the sandbox, and the server was started with --insecure-no-sandbox"
    );
}

#[tokio::test(start_paused = true)]
async fn a_microvm_function_reaches_the_launcher_and_records_its_boot_and_restore() {
    let w = World::on_host(10, Ok(tcg()), true).await;
    // Instances stop as soon as they are idle, so each call below starts one (cold).
    let vm = json!({"isolation": "microvm", "idle_timeout_secs": 0});
    w.create("vm", json!({"restore_ms": 42}), vm.clone()).await;
    w.create("booted", json!({"boot_ms": 900}), vm).await;
    w.create("p", json!({}), json!({"idle_timeout_secs": 0})).await;
    wait_for("the deploy checks' instances to stop", || {
        (w.starter.live() == 0).then_some(())
    })
    .await;
    assert_eq!(w.platform.get("vm").expect("created").isolation, "microvm");
    assert_eq!(w.platform.get("p").expect("created").isolation, "process");
    for name in ["vm", "booted", "p"] {
        w.platform.invoke(name, event()).await.expect("invoke");
    }
    let tiers: Vec<(String, Isolation)> = w
        .starter
        .calls()
        .into_iter()
        .map(|c| (c.function, c.isolation))
        .collect();
    assert_eq!(
        tiers,
        [
            ("vm".to_owned(), Isolation::Microvm),
            ("booted".to_owned(), Isolation::Microvm),
            ("p".to_owned(), Isolation::Process)
        ]
    );
    let parts = |name: &str| {
        let records = w.platform.store().list_invocations(name, 10).expect("list");
        let init = records[0].init.as_ref().expect("a cold start");
        (init.boot_ms, init.restore_ms)
    };
    assert_eq!(parts("vm"), (None, Some(42.0)));
    assert_eq!(parts("booted"), (Some(900.0), None));
    assert_eq!(parts("p"), (None, None));
}
