//! Deploys that race: a function deleted while its deploy runs, and an older version's
//! deploy ending after a newer one's.

use std::time::Duration;

use ignis_control::{ControlError, DeployWait};
use ignis_core::FunctionState;
use serde_json::{json, value::RawValue};

use crate::{spec, wait_for, World};

fn event() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("JSON")
}

#[tokio::test(start_paused = true)]
async fn a_function_deleted_during_its_deploy_does_not_come_back() {
    let w = World::new(10).await;
    let slow = spec("gone", &json!({"start_ms": 5000}), json!({}));
    let view = w.platform.create(slow, DeployWait::No).await.expect("create");
    assert_eq!(view.state, FunctionState::Deploying);
    wait_for("the deploy to start an instance", || {
        (w.starter.starts() == 1).then_some(())
    })
    .await;
    w.platform.delete("gone").await.expect("delete");
    // The deploy's instance comes up after the delete, and is stopped.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(w.starter.live(), 0, "the instance of a deleted function stopped");
    assert!(w.platform.get("gone").is_none());
    assert!(w.platform.list().is_empty());
    assert!(matches!(
        w.platform.invoke("gone", event()).await,
        Err(ignis_control::InvokeError::NotFound(_))
    ));
    assert!(w.platform.store().list_functions().expect("list").is_empty());
    // The name is free again.
    w.create("gone", json!({}), json!({})).await;
    assert_eq!(
        w.platform.get("gone").expect("created").state,
        FunctionState::Ready
    );
    assert!(matches!(
        w.platform.delete("nothing").await,
        Err(ControlError::NotFound(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn an_older_deploy_ending_after_a_newer_one_does_not_replace_it() {
    let w = World::new(10).await;
    w.create("racy", json!({}), json!({})).await;
    // Version 2 takes 5 s to start, version 3 only 10 ms.
    let slow = spec("racy", &json!({"start_ms": 5000}), json!({}));
    w.platform
        .update(slow, DeployWait::No)
        .await
        .expect("update to 2");
    let fast = spec("racy", &json!({}), json!({}));
    let view = w
        .platform
        .update(fast, DeployWait::UntilDone)
        .await
        .expect("update to 3");
    assert_eq!(view.version, 3);
    assert_eq!(view.active_version, Some(3));
    assert_eq!(view.state, FunctionState::Ready);
    // Version 2's deploy ends now, after version 3's.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let view = w.platform.get("racy").expect("the function");
    assert_eq!(view.active_version, Some(3), "{view:?}");
    assert_eq!(view.state, FunctionState::Ready);
    assert_eq!(view.state_reason, None);
    let inv = w.platform.invoke("racy", event()).await.expect("invoke");
    assert_eq!(inv.version, 3);
    let versions: Vec<u32> = w
        .starter
        .calls()
        .iter()
        .filter(|c| c.function == "racy")
        .map(|c| c.version)
        .collect();
    assert_eq!(versions, [3]);
    // Version 2's instance was retired; versions 1 and 3 may still be warm, not 2.
    assert_eq!(w.starter.starts(), 3);
    wait_for("version 1's and 2's instances to stop", || {
        (w.starter.live() == 1).then_some(())
    })
    .await;
}

/// The hash a view shows is the newest version's, kept with the status (computed once per
/// version, not per request): after a create, after an update, in the list and the get.
#[tokio::test(start_paused = true)]
async fn views_show_the_newest_versions_code_hash() {
    use sha2::{Digest, Sha256};
    let w = World::new(10).await;
    let sha = |code: &str| {
        Sha256::digest(code.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    w.create("hashed", json!({"v": 1}), json!({})).await;
    let first = w.platform.get("hashed").expect("created");
    assert_eq!(first.code_sha256, sha(&json!({"v": 1}).to_string()));
    w.platform
        .update(spec("hashed", &json!({"v": 2}), json!({})), DeployWait::UntilDone)
        .await
        .expect("update");
    let second = w.platform.get("hashed").expect("updated");
    assert_eq!(second.code_sha256, sha(&json!({"v": 2}).to_string()));
    let listed = w.platform.list();
    let listed = listed.iter().find(|f| f.name == "hashed").expect("listed");
    assert_eq!(listed.code_sha256, second.code_sha256);
}
