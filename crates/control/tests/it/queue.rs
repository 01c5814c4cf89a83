//! Asynchronous invocations: retries with backoff ending in a dead letter, redrive, a
//! throttled attempt put back without counting, and destinations.

use ignis_control::metrics::{render, Format};
use ignis_store::{AsyncSource, AsyncStatus, DeadReason};
use serde_json::json;
use tokio::time::Instant;

use crate::{wait_for, World, RETRY_BASE};

#[tokio::test(start_paused = true)]
async fn failing_attempts_are_retried_with_backoff_then_end_as_a_dead_letter() {
    let w = World::new(10).await;
    w.create("flaky", json!({}), json!({"retry": {"max_retries": 2}}))
        .await;
    let began = Instant::now();
    let id = w.accept("flaky", json!({"fail": "boom"})).await;
    let (row, attempts) = w.ended(&id).await;
    assert_eq!(row.status, AsyncStatus::Dead);
    assert_eq!(row.dead_reason, Some(DeadReason::RetriesExhausted));
    assert!(row.dead_letter, "{row:?}");
    assert_eq!(
        attempts.len(),
        3,
        "the first attempt and two retries: {attempts:?}"
    );
    assert!(
        attempts.iter().all(|a| a.status == "function_error"),
        "{attempts:?}"
    );
    // Waits of at least half of base and of 2 × base.
    let least = RETRY_BASE / 2 + RETRY_BASE;
    assert!(began.elapsed() >= least, "retried after {:?}", began.elapsed());
    let dead = w
        .platform
        .store()
        .dead_letters("flaky", 10)
        .expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0.id, id);
}

#[tokio::test(start_paused = true)]
async fn a_redriven_dead_letter_runs_again_as_a_new_invocation() {
    let w = World::new(10).await;
    w.create(
        "fixme",
        json!({"fail": "broken"}),
        json!({"retry": {"max_retries": 0}}),
    )
    .await;
    let id = w.accept("fixme", json!({"n": 1})).await;
    let (row, _) = w.ended(&id).await;
    assert_eq!(row.status, AsyncStatus::Dead);
    // A version that works, then the dead letter again.
    let fixed = crate::spec("fixme", &json!({}), json!({"retry": {"max_retries": 0}}));
    w.platform
        .update(fixed, ignis_control::DeployWait::UntilDone)
        .await
        .expect("update");
    let again = w
        .platform
        .redrive("fixme", &id)
        .await
        .expect("redrive")
        .expect("it was a dead letter");
    assert_ne!(again, id);
    let (row, attempts) = w.ended(&again).await;
    assert_eq!(row.status, AsyncStatus::Succeeded, "{row:?} {attempts:?}");
    assert_eq!(row.source, AsyncSource::Redrive);
    assert_eq!(row.redrive_of.as_deref(), Some(id.as_str()));
    assert_eq!(row.event, json!({"n": 1}).to_string());
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].version, 2);
    let (old, _) = w.row(&id);
    assert_eq!(old.redriven_as.as_deref(), Some(again.as_str()));
    assert!(w
        .platform
        .store()
        .dead_letters("fixme", 10)
        .expect("dead letters")
        .is_empty());
    // Not a dead letter any more: a second redrive finds nothing.
    assert_eq!(w.platform.redrive("fixme", &id).await.expect("redrive"), None);
}

/// The throttles counted for `function`, from the metrics as Prometheus reads them.
fn throttles(w: &World, function: &str) -> f64 {
    let text = render(&w.platform, Format::Text).expect("metrics");
    text.lines()
        .filter(|l| l.starts_with("ignis_throttles") && l.contains(&format!("function=\"{function}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(start_paused = true)]
async fn a_throttled_attempt_is_put_back_without_counting_as_an_attempt() {
    let w = World::new(10).await;
    // One instance, one call at a time, a 1 s timeout; three attempts at once: the third
    // waits past its timeout for the instance and is throttled.
    w.create(
        "busy",
        json!({}),
        json!({"max_instances": 1, "concurrency": 1, "timeout_secs": 1, "max_async_concurrency": 3,
               "retry": {"max_retries": 0}}),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(w.accept("busy", json!({"work_ms": 900, "i": i})).await);
    }
    for id in &ids {
        let (row, attempts) = w.ended(id).await;
        // With no retries allowed, a throttle counted as an attempt would be a dead letter.
        assert_eq!(row.status, AsyncStatus::Succeeded, "{row:?} {attempts:?}");
        assert_eq!(row.attempts, 1, "{row:?}");
        assert_eq!(attempts.len(), 1, "{attempts:?}");
    }
    assert!(throttles(&w, "busy") >= 1.0, "an attempt was throttled");
}

#[tokio::test(start_paused = true)]
async fn results_and_failures_are_handed_to_the_destinations() {
    let w = World::new(10).await;
    w.create("done", json!({}), json!({})).await;
    w.create("failed", json!({}), json!({})).await;
    w.create(
        "job",
        json!({}),
        json!({"on_success": "done", "on_failure": "failed", "retry": {"max_retries": 1}}),
    )
    .await;
    let ok = w.accept("job", json!({"x": 1})).await;
    let bad = w.accept("job", json!({"fail": "nope"})).await;
    let (ok_row, _) = w.ended(&ok).await;
    let (bad_row, _) = w.ended(&bad).await;
    assert_eq!(ok_row.status, AsyncStatus::Succeeded);
    assert_eq!(bad_row.status, AsyncStatus::Dead);
    let handed = wait_for("both destinations to run", || {
        let calls = w.starter.calls();
        let of = |f: &str| calls.iter().find(|c| c.function == f).cloned();
        Some((of("done")?, of("failed")?))
    })
    .await;
    let (success, failure) = handed;
    assert_eq!(success.event["invocation_id"], json!(ok));
    assert_eq!(success.event["condition"], "success");
    assert_eq!(success.event["function"], "job");
    assert_eq!(success.event["event"], json!({"x": 1}));
    assert_eq!(success.event["attempts"], 1);
    assert!(
        success.event["result"].is_u64(),
        "the fake answers with its instance id: {}",
        success.event
    );
    assert_eq!(failure.event["invocation_id"], json!(bad));
    assert_eq!(failure.event["condition"], "failure");
    assert_eq!(failure.event["reason"], "retries_exhausted");
    assert_eq!(failure.event["attempts"], 2);
    assert_eq!(failure.event["error"]["message"], "nope", "{}", failure.event);
    // Each destination ran once, not once per attempt.
    let calls = w.starter.calls();
    assert_eq!(calls.iter().filter(|c| c.function == "done").count(), 1);
    assert_eq!(calls.iter().filter(|c| c.function == "failed").count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_schedule_fires_on_the_platform_clock_once_per_time() {
    let w = World::new(10).await;
    let began = Instant::now();
    w.create(
        "tick",
        json!({}),
        json!({"schedules": [{"cron": "*/10 * * * * *", "event": {"tick": true}}]}),
    )
    .await;
    let calls = wait_for("three firings", || {
        let calls: Vec<_> = w
            .starter
            .calls()
            .into_iter()
            .filter(|c| c.function == "tick")
            .collect();
        (calls.len() >= 3).then_some(calls)
    })
    .await;
    let mut times: Vec<String> = calls
        .iter()
        .map(|c| {
            c.event["scheduled_time"]
                .as_str()
                .expect("a scheduled time")
                .to_owned()
        })
        .collect();
    assert!(calls.iter().all(|c| c.event["tick"] == true), "{calls:?}");
    let n = times.len();
    times.dedup();
    assert_eq!(times.len(), n, "no time fired twice: {times:?}");
    for t in &times {
        assert!(t.ends_with("0Z"), "every ten seconds: {t}");
    }
    // Three firings ten seconds apart took at least twenty seconds of the clock.
    assert!(
        began.elapsed() >= std::time::Duration::from_secs(20),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn the_caller_the_record_and_an_attempt_get_one_code_and_message_for_a_failure() {
    let w = World::new(10).await;
    w.create("failing", json!({}), json!({"retry": {"max_retries": 0}}))
        .await;
    let event = serde_json::value::RawValue::from_string(r#"{"fail": "boom"}"#.to_owned()).expect("json");
    let inv = w.platform.invoke("failing", event).await.expect("ran");
    assert_eq!(inv.result.kind(), ignis_control::OutcomeKind::FunctionError);
    let answered = inv.result.error().expect("a function error is an error");
    assert_eq!(
        (answered.code, answered.message.as_str()),
        (ignis_control::ErrorCode::FunctionError, "boom")
    );
    let record = w
        .platform
        .store()
        .get_invocation(&inv.id)
        .expect("read")
        .expect("recorded before the caller is answered");
    assert_eq!(record.status, "function_error");
    let stored: serde_json::Value =
        serde_json::from_str(record.error_json.as_deref().expect("an error")).expect("json");
    assert_eq!(stored, answered.to_json());
    assert_eq!(stored, json!({"type": "Error", "message": "boom", "stack": ""}));
    // An asynchronous attempt keeps the same error.
    let id = w.accept("failing", json!({"fail": "boom"})).await;
    let (_, attempts) = w.ended(&id).await;
    assert_eq!(attempts[0].status, "function_error");
    let kept: serde_json::Value =
        serde_json::from_str(attempts[0].error_json.as_deref().expect("an error")).expect("json");
    assert_eq!(kept, stored);
}
