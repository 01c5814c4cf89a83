//! The scaling rules, with instances that are tasks rather than processes and with tokio's
//! clock paused: time moves only when every task waits, so each test is deterministic.

use futures::future::join_all;
use ignis_core::{Network, Outcome, Runtime};
use serde_json::value::RawValue;

use super::*;
use crate::testing::FakeStarter;

fn spec(function: &str) -> LaunchSpec {
    LaunchSpec {
        package: None,
        layers: Vec::new(),
        handler_style: ignis_core::HandlerStyle::Lambda,
        rest_answers: false,
        runtime: Runtime::Python,
        code: Arc::from(""),
        handler: "handler".to_owned(),
        env: Default::default(),
        function: function.to_owned(),
        version: 1,
        memory_mb: 128,
        vcpus: 1,
        network: Network::None,
        isolation: ignis_core::Isolation::Process,
        timeout: Duration::from_secs(30),
        log_limit: 1024,
        concurrency: 1,
    }
}

fn limits(min: usize, max: usize, concurrency: usize, idle_secs: u64) -> PoolLimits {
    PoolLimits {
        min_instances: min,
        max_instances: max,
        concurrency,
        idle_timeout: Duration::from_secs(idle_secs),
    }
}

async fn deploy(
    starter: &Arc<FakeStarter>,
    capacity: &Arc<Capacity>,
    name: &str,
    l: PoolLimits,
) -> VersionPool {
    let mut s = spec(name);
    s.concurrency = u32::try_from(l.concurrency).expect("small");
    let starter: Arc<dyn Starter> = starter.clone();
    VersionPool::deploy(starter, capacity.clone(), s, l, Arc::default())
        .await
        .expect("fake deploys succeed")
}

fn event(work_ms: u64) -> Arc<RawValue> {
    Arc::from(RawValue::from_string(format!(r#"{{"work_ms":{work_ms}}}"#)).expect("json"))
}

/// Which instance ran the call.
fn ran_on(ran: &Ran) -> u64 {
    let Outcome::Ok(v) = &ran.result.outcome else {
        panic!("unexpected outcome {:?}", ran.result.outcome)
    };
    v.as_u64().expect("fake answers with the instance id")
}

async fn call(pool: &VersionPool, work_ms: u64) -> Result<Ran, AcquireError> {
    pool.invoke("id".to_owned(), event(work_ms), None).await
}

/// Lets every runnable task run (the clock stays where it is).
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

fn big() -> Arc<Capacity> {
    Capacity::new(1 << 30)
}

#[tokio::test(start_paused = true)]
async fn a_burst_starts_at_most_min_of_n_and_max_instances() {
    let starter = FakeStarter::new(100);
    // Idle timeout 0: the deploy check instance stops, so the burst meets no instance.
    let pool = deploy(&starter, &big(), "f", limits(0, 50, 1, 0)).await;
    settle().await;
    assert_eq!(pool.counts(), InstanceCounts::default());
    let results = join_all((0..20).map(|_| call(&pool, 10))).await;
    assert!(results.iter().all(Result::is_ok));
    // One start for the deploy check, then one per request (20 < 50).
    assert_eq!(starter.starts(), 1 + 20);

    let starter = FakeStarter::new(100);
    let pool = deploy(&starter, &big(), "g", limits(0, 5, 1, 0)).await;
    settle().await;
    let results = join_all((0..200).map(|_| call(&pool, 10))).await;
    assert!(results.iter().all(Result::is_ok), "no call fails in a burst");
    assert_eq!(starter.starts(), 1 + 5, "never more than max_instances");
}

#[tokio::test(start_paused = true)]
async fn a_waiting_call_takes_the_first_instance_that_frees_up() {
    // Starting takes 1 s; the call in flight takes 10 ms.
    let starter = FakeStarter::new(1000);
    let pool = deploy(&starter, &big(), "f", limits(0, 2, 1, 60)).await;
    let busy = tokio::spawn({
        let pool = pool.clone();
        async move { call(&pool, 10).await }
    });
    settle().await;
    let t0 = Instant::now();
    let second = call(&pool, 0).await.expect("served");
    let waited = t0.elapsed();
    let first = busy.await.expect("task").expect("served");
    assert_eq!(
        ran_on(&second),
        ran_on(&first),
        "served by the instance that freed up"
    );
    assert!(second.cold.is_none(), "the freed instance is warm");
    assert!(
        waited < Duration::from_millis(100),
        "did not wait for the new start: {waited:?}"
    );
    // The instance started for it still arrives and stays idle for the next call.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pool.counts().idle, 2);
    assert_eq!(starter.starts(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_cold_call_says_why() {
    let starter = FakeStarter::new(50);
    let pool = deploy(&starter, &big(), "f", limits(0, 3, 1, 0)).await;
    settle().await;
    let first = call(&pool, 0).await.expect("served");
    let cold = first.cold.expect("no instance was left after the deploy check");
    assert_eq!(cold.reason, ColdReason::FirstCall);
    assert_eq!(cold.timings.total(), Duration::from_millis(50));
    settle().await;
    let again = call(&pool, 0).await.expect("served");
    assert_eq!(again.cold.map(|c| c.reason), Some(ColdReason::AfterIdle));

    let pool = deploy(&starter, &big(), "g", limits(0, 3, 1, 60)).await;
    let (a, b) = tokio::join!(call(&pool, 100), call(&pool, 100));
    let reasons: Vec<Option<ColdReason>> = [a, b]
        .iter()
        .map(|r| r.as_ref().expect("ok").cold.map(|c| c.reason))
        .collect();
    assert!(
        reasons.contains(&None),
        "one call took the deploy's instance: {reasons:?}"
    );
    assert!(reasons.contains(&Some(ColdReason::ScaleOut)), "{reasons:?}");

    let mut s = spec("h");
    s.version = 2;
    let dyn_starter: Arc<dyn Starter> = starter.clone();
    let pool = VersionPool::deploy(dyn_starter, big(), s, limits(0, 3, 1, 0), Arc::default())
        .await
        .expect("deploy");
    settle().await;
    let first = call(&pool, 0).await.expect("served");
    assert_eq!(first.cold.map(|c| c.reason), Some(ColdReason::NewVersion));
}

#[tokio::test(start_paused = true)]
async fn min_instances_start_at_deploy_and_are_never_scaled_away() {
    let starter = FakeStarter::new(20);
    let pool = deploy(&starter, &big(), "f", limits(3, 10, 1, 1)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pool.counts().idle, 3);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(pool.counts().idle, 3, "kept through an hour of idleness");
    assert_eq!(starter.starts(), 3);
    // A burst above the minimum scales out, then back down to the minimum.
    let results = join_all((0..6).map(|_| call(&pool, 500))).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(starter.starts(), 6);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(pool.counts().idle, 3);
}

#[tokio::test(start_paused = true)]
async fn idle_instances_stop_after_the_idle_timeout() {
    let starter = FakeStarter::new(10);
    let pool = deploy(&starter, &big(), "f", limits(0, 10, 1, 30)).await;
    let results = join_all((0..4).map(|_| call(&pool, 100))).await;
    assert!(results.iter().all(Result::is_ok));
    // The last releases reach the pool task once it runs.
    settle().await;
    assert_eq!(pool.counts().idle, 4);
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(pool.counts().idle, 4, "not before the timeout");
    // The most recently used instance is the one reused, so the others age out.
    call(&pool, 0).await.expect("served");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pool.counts().idle, 1, "the three unused ones are gone");
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(pool.counts(), InstanceCounts::default(), "scaled to zero");
}

#[tokio::test(start_paused = true)]
async fn concurrency_packs_calls_onto_one_instance() {
    let starter = FakeStarter::new(10);
    let pool = deploy(&starter, &big(), "f", limits(0, 10, 4, 60)).await;
    let results = join_all((0..8).map(|_| call(&pool, 100))).await;
    let on: std::collections::HashSet<u64> =
        results.iter().map(|r| ran_on(r.as_ref().expect("ok"))).collect();
    assert_eq!(on.len(), 2, "8 calls at 4 per instance need 2 instances");
    assert_eq!(starter.starts(), 2);
}

#[tokio::test(start_paused = true)]
async fn capacity_evicts_the_least_recently_used_idle_instance_of_another_function() {
    let starter = FakeStarter::new(10);
    let capacity = Capacity::new(3 * 128);
    let a = deploy(&starter, &capacity, "a", limits(0, 5, 1, 600)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b = deploy(&starter, &capacity, "b", limits(0, 5, 1, 600)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c = deploy(&starter, &capacity, "c", limits(0, 5, 1, 600)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // a is used again: b is now the least recently used.
    call(&a, 0).await.expect("served");
    settle().await;
    assert_eq!(capacity.used_mb(), 3 * 128);

    let d = deploy(&starter, &capacity, "d", limits(0, 5, 1, 600)).await;
    settle().await;
    assert_eq!(b.counts().idle, 0, "b's instance was evicted");
    assert_eq!(b.shared.evictions.load(Ordering::SeqCst), 1);
    assert_eq!((a.counts().idle, c.counts().idle, d.counts().idle), (1, 1, 1));
    assert_eq!(capacity.used_mb(), 3 * 128);

    // The next one goes too: c is now the oldest.
    let e = deploy(&starter, &capacity, "e", limits(0, 5, 1, 600)).await;
    settle().await;
    assert_eq!((a.counts().idle, c.counts().idle, e.counts().idle), (1, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn capacity_exhausted_when_nothing_can_be_evicted() {
    let starter = FakeStarter::new(10);
    let capacity = Capacity::new(128);
    let a = deploy(&starter, &capacity, "a", limits(0, 5, 1, 600)).await;
    let busy = tokio::spawn({
        let a = a.clone();
        async move { call(&a, 10_000).await }
    });
    settle().await;
    // b's deploy check runs but cannot be kept; its call finds no room anywhere.
    let b = deploy(&starter, &capacity, "b", limits(0, 5, 1, 600)).await;
    settle().await;
    assert!(matches!(call(&b, 0).await, Err(AcquireError::CapacityExhausted)));
    // a's own queue still works: its call waits for its busy instance.
    let next = tokio::spawn({
        let a = a.clone();
        async move { call(&a, 0).await }
    });
    busy.await.expect("task").expect("served");
    next.await.expect("task").expect("served after the first");
    // min_instances reserve too: an instance kept by min_instances is never evicted.
    let capacity = Capacity::new(128);
    let pinned = deploy(&starter, &capacity, "p", limits(1, 1, 1, 600)).await;
    let other = deploy(&starter, &capacity, "q", limits(0, 1, 1, 600)).await;
    settle().await;
    assert_eq!(pinned.counts().idle, 1);
    assert!(matches!(
        call(&other, 0).await,
        Err(AcquireError::CapacityExhausted)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_burst_cannot_push_out_another_functions_warm_instance() {
    let starter = FakeStarter::new(10);
    let capacity = Capacity::new(4 * 128);
    let warm = deploy(&starter, &capacity, "warm", limits(0, 5, 1, 600)).await;
    let bursty = deploy(&starter, &capacity, "bursty", limits(0, 50, 1, 600)).await;
    settle().await;
    let burst = tokio::spawn({
        let bursty = bursty.clone();
        async move { join_all((0..100).map(|_| call(&bursty, 100))).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The burst holds the three instances the capacity leaves it, and not warm's one.
    assert_eq!(bursty.counts().busy, 3);
    for _ in 0..20 {
        let ran = call(&warm, 1).await.expect("warm traffic is served");
        assert!(ran.cold.is_none(), "and stays warm");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let results = burst.await.expect("task");
    assert!(
        results.iter().all(Result::is_ok),
        "the burst is served too, by its 3 instances"
    );
    assert_eq!(warm.shared.evictions.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_function_over_its_share_gives_way_to_one_under_it() {
    let starter = FakeStarter::new(10);
    let capacity = Capacity::new(4 * 128);
    let big_user = deploy(&starter, &capacity, "big", limits(0, 4, 1, 600)).await;
    let results = join_all((0..4).map(|_| call(&big_user, 10))).await;
    assert!(results.iter().all(Result::is_ok));
    settle().await;
    assert_eq!(big_user.counts().idle, 4, "big holds the whole capacity, idle");
    // A newcomer is under its share (half): it may evict big's least recently used.
    let small = deploy(&starter, &capacity, "small", limits(0, 4, 1, 600)).await;
    settle().await;
    assert_eq!(small.counts().idle, 1);
    assert_eq!(big_user.counts().idle, 3);
}

#[tokio::test(start_paused = true)]
async fn an_instance_serves_only_its_own_pool_even_after_retirement() {
    let starter = FakeStarter::new(10);
    let capacity = big();
    let a = deploy(&starter, &capacity, "a", limits(0, 3, 1, 600)).await;
    let b = deploy(&starter, &capacity, "b", limits(0, 3, 1, 600)).await;
    let on_a: Vec<u64> = join_all((0..3).map(|_| call(&a, 10)))
        .await
        .iter()
        .map(|r| ran_on(r.as_ref().expect("ok")))
        .collect();
    a.retire();
    settle().await;
    assert!(matches!(call(&a, 0).await, Err(AcquireError::Retired)));
    let on_b: Vec<u64> = join_all((0..3).map(|_| call(&b, 10)))
        .await
        .iter()
        .map(|r| ran_on(r.as_ref().expect("ok")))
        .collect();
    assert!(on_a.iter().all(|i| !on_b.contains(i)), "{on_a:?} vs {on_b:?}");
    assert_eq!(
        capacity.used_mb(),
        3 * 128,
        "a's instances gave their memory back"
    );
}

#[tokio::test(start_paused = true)]
async fn the_queue_is_bounded() {
    let starter = FakeStarter::new(10);
    let pool = deploy(&starter, &big(), "f", limits(0, 1, 1, 600)).await;
    let waiting: Vec<_> = (0..MAX_QUEUED_PER_FUNCTION + 1)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { call(&pool, 1).await })
        })
        .collect();
    settle().await;
    assert_eq!(pool.queue_depth(), MAX_QUEUED_PER_FUNCTION);
    assert!(matches!(call(&pool, 0).await, Err(AcquireError::QueueFull)));
    for w in waiting {
        w.await
            .expect("task")
            .expect("every queued call is served in turn");
    }
}
