//! Idempotency keys: a repeat waits for the first call, then gets its answer; a key lives
//! one day (the same lifetime for synchronous calls and asynchronous invocations).

use std::time::Duration;

use ignis_control::{Accepted, Replay, SyncOnce};
use ignis_core::limits::IDEMPOTENCY_TTL_SECS;
use serde_json::json;

use crate::World;

/// The key's lifetime and a second more.
const PAST_THE_LIFETIME: Duration = Duration::from_secs(IDEMPOTENCY_TTL_SECS + 1);

async fn first(w: &World, name: &str, key: &str) -> ignis_control::FirstCall {
    match w.platform.invoke_once(name, key.to_owned()).await.expect("store") {
        SyncOnce::First(first) => first,
        SyncOnce::Replay(r) => panic!("the key {key:?} is new, yet {r:?} came back"),
    }
}

async fn replay(w: &World, name: &str, key: &str) -> Replay {
    match w.platform.invoke_once(name, key.to_owned()).await.expect("store") {
        SyncOnce::Replay(r) => r,
        SyncOnce::First(_) => panic!("the key {key:?} was used, yet this call is its first"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_repeat_waits_for_the_running_first_call_then_gets_its_answer() {
    let w = World::new(10).await;
    let lead = first(&w, "f", "k").await;
    let platform = w.platform.clone();
    let mut repeat = tokio::spawn(async move { platform.invoke_once("f", "k".to_owned()).await });
    // However long the first call runs, the repeat waits for it.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!repeat.is_finished(), "the repeat went ahead of the first call");
    lead.remember("inv-1", "the first answer".to_owned())
        .await
        .expect("remembered");
    let got = tokio::time::timeout(Duration::from_secs(1), &mut repeat)
        .await
        .expect("the repeat goes on once the first call is remembered")
        .expect("task")
        .expect("store");
    match got {
        SyncOnce::Replay(r) => assert_eq!(
            r,
            Replay::Sync {
                invocation_id: "inv-1".to_owned(),
                reply: "the first answer".to_owned()
            }
        ),
        SyncOnce::First(_) => panic!("the repeat ran again"),
    }
    // Keys are per function.
    drop(first(&w, "g", "k").await);
}

#[tokio::test(start_paused = true)]
async fn a_first_call_that_did_not_run_leaves_the_key_free() {
    let w = World::new(10).await;
    let lead = first(&w, "f", "k").await;
    let platform = w.platform.clone();
    let repeat = tokio::spawn(async move { platform.invoke_once("f", "k".to_owned()).await });
    drop(lead);
    match repeat.await.expect("task").expect("store") {
        SyncOnce::First(_) => {}
        SyncOnce::Replay(r) => panic!("nothing was remembered, yet {r:?} came back"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_synchronous_key_is_forgotten_after_a_day() {
    let w = World::new(10).await;
    first(&w, "f", "k")
        .await
        .remember("inv-1", "answer".to_owned())
        .await
        .expect("remembered");
    tokio::time::advance(Duration::from_secs(IDEMPOTENCY_TTL_SECS - 1)).await;
    assert!(matches!(replay(&w, "f", "k").await, Replay::Sync { .. }));
    tokio::time::advance(Duration::from_secs(2)).await;
    drop(first(&w, "f", "k").await);
}

#[tokio::test(start_paused = true)]
async fn an_asynchronous_key_answers_with_the_first_invocation_for_a_day_whichever_way_it_is_repeated() {
    let w = World::new(10).await;
    w.create("f", json!({}), json!({})).await;
    let accept = |key: &'static str| {
        let platform = w.platform.clone();
        async move {
            platform
                .accept_async("f", "{}".to_owned(), Some(key.to_owned()))
                .await
                .expect("accepted")
        }
    };
    let Accepted::New { id } = accept("k").await else {
        panic!("the key is new")
    };
    let (row, _) = w.ended(&id).await;
    match accept("k").await {
        Accepted::Existing(r) => assert_eq!(
            r,
            Replay::Async {
                invocation_id: id.clone(),
                status: Some(row.status)
            }
        ),
        Accepted::New { .. } => panic!("the key was used"),
    }
    // A synchronous call with the key gets the asynchronous invocation too.
    assert_eq!(
        replay(&w, "f", "k").await,
        Replay::Async {
            invocation_id: id.clone(),
            status: Some(row.status)
        }
    );
    tokio::time::advance(PAST_THE_LIFETIME).await;
    assert!(
        matches!(accept("k").await, Accepted::New { .. }),
        "the key lived a day"
    );
}

#[tokio::test(start_paused = true)]
async fn an_asynchronous_repeat_of_a_synchronous_key_gets_the_synchronous_answer() {
    let w = World::new(10).await;
    w.create("f", json!({}), json!({})).await;
    first(&w, "f", "k")
        .await
        .remember("inv-1", "answer".to_owned())
        .await
        .expect("remembered");
    let got = w
        .platform
        .accept_async("f", "{}".to_owned(), Some("k".to_owned()))
        .await
        .expect("accepted");
    match got {
        Accepted::Existing(r) => assert_eq!(
            r,
            Replay::Sync {
                invocation_id: "inv-1".to_owned(),
                reply: "answer".to_owned()
            }
        ),
        Accepted::New { id } => panic!("the key was used, yet {id} was queued"),
    }
}
