//! Asynchronous invocations, idempotency keys and schedule state in a real SQLite file.

use ignis_store::{AsyncSource, AsyncStatus, AttemptRow, DeadReason, Enqueued, Finish, KeyKind, NewAsync};

use crate::{open, t};

fn new(id: &str, at: i64) -> NewAsync {
    NewAsync {
        id: id.to_owned(),
        function: "f".to_owned(),
        event: r#"{"n":1}"#.to_owned(),
        source: AsyncSource::Api,
        created_at: t(at),
        redrive_of: None,
        hops: 0,
    }
}

fn attempt(n: u32) -> AttemptRow {
    AttemptRow {
        attempt: n,
        execution_id: format!("exec-{n}"),
        version: 1,
        started_at: t(2_000),
        duration_ms: 3.0,
        status: "function_error".to_owned(),
        error_json: Some(r#"{"message":"no"}"#.to_owned()),
    }
}

#[test]
fn a_key_returns_the_first_invocation_until_it_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    assert_eq!(
        store
            .enqueue_async(&new("a", 1_000), Some("k"), t(0))
            .expect("ok"),
        Enqueued::New
    );
    match store
        .enqueue_async(&new("b", 2_000), Some("k"), t(0))
        .expect("ok")
    {
        Enqueued::Existing(first) => {
            assert_eq!((first.invocation_id.as_str(), first.kind), ("a", KeyKind::Async))
        }
        other => panic!("expected the first invocation, got {other:?}"),
    }
    assert!(
        store.get_async("b").expect("read").is_none(),
        "nothing stored for the repeat"
    );
    // Past its lifetime the key is free again.
    assert_eq!(
        store
            .enqueue_async(&new("c", 3_000), Some("k"), t(1_000))
            .expect("ok"),
        Enqueued::New
    );
}

#[test]
fn a_kill_mid_attempt_puts_the_invocation_back_and_attempts_add_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        store.enqueue_async(&new("a", 1_000), None, t(0)).expect("ok");
        let row = store.begin_attempt("a").expect("ok").expect("open");
        assert_eq!(row.status, AsyncStatus::Running);
        assert!(
            store.begin_attempt("a").expect("ok").is_none(),
            "running twice is refused"
        );
    }
    let store = open(dir.path());
    let open_rows = store.recover_async().expect("recover");
    assert_eq!(open_rows.len(), 1);
    assert_eq!(open_rows[0].0, "a");
    store.begin_attempt("a").expect("ok").expect("open again");
    store
        .finish_attempt(
            "a",
            1,
            Some(&attempt(1)),
            &Finish::Retry { at: t(5_000) },
            t(2_100),
            None,
        )
        .expect("retry");
    store.begin_attempt("a").expect("ok").expect("open");
    store
        .finish_attempt(
            "a",
            2,
            Some(&attempt(2)),
            &Finish::Dead {
                reason: DeadReason::RetriesExhausted,
                dead_letter: true,
            },
            t(6_000),
            None,
        )
        .expect("dead");
    let (row, attempts) = store.get_async("a").expect("read").expect("exists");
    assert_eq!(
        (row.status, row.attempts, row.dead_letter, row.dead_reason),
        (AsyncStatus::Dead, 2, true, Some(DeadReason::RetriesExhausted))
    );
    assert_eq!(attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(store.dead_letters("f", 10).expect("list").len(), 1);
    assert!(store.redrive("f", "a", &new("a2", 7_000)).expect("redrive"));
    assert!(
        !store.redrive("f", "a", &new("a3", 7_000)).expect("redrive"),
        "once"
    );
    assert!(store.dead_letters("f", 10).expect("list").is_empty());
    assert_eq!(
        store.recover_async().expect("recover").len(),
        1,
        "the redrive is open"
    );
}

#[test]
fn a_schedule_time_is_stored_once_with_its_firing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let fire = [new("fire-1", 60_000)];
    assert_eq!(
        store
            .schedule_advance("f", "0:* * * * *@UTC", t(60_000), &fire)
            .expect("ok"),
        ["fire-1"]
    );
    // The same firing again (a retry after a crash) stores nothing new.
    assert!(store
        .schedule_advance("f", "0:* * * * *@UTC", t(60_000), &fire)
        .expect("ok")
        .is_empty());
    // The state never moves back.
    store
        .schedule_advance("f", "0:* * * * *@UTC", t(1_000), &[])
        .expect("ok");
    assert_eq!(
        store.schedule_state("f").expect("read")["0:* * * * *@UTC"],
        t(60_000)
    );
    store.prune_schedule_state("f", &[]).expect("prune");
    assert!(store.schedule_state("f").expect("read").is_empty());
}

#[test]
fn a_destination_event_keeps_its_hop_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.enqueue_async(&new("a", 1_000), None, t(0)).expect("ok");
    let row = store.begin_attempt("a").expect("ok").expect("open");
    assert_eq!(row.hops, 0, "a caller's invocation is hop 0");
    let then = NewAsync {
        source: AsyncSource::Destination,
        hops: row.hops + 1,
        ..new("b", 2_000)
    };
    store
        .finish_attempt(
            "a",
            1,
            Some(&attempt(1)),
            &Finish::Succeeded {
                result: "1".to_owned(),
            },
            t(2_000),
            Some(&then),
        )
        .expect("succeeded");
    let (b, _) = store.get_async("b").expect("read").expect("exists");
    assert_eq!((b.source, b.hops), (AsyncSource::Destination, 1));
}

#[test]
fn every_stored_text_of_the_queue_round_trips_and_nothing_else_parses() {
    fn check<T: Copy + PartialEq + std::fmt::Debug>(
        all: &[T],
        text: fn(T) -> &'static str,
        parse: fn(&str) -> Result<T, ignis_store::StoreError>,
    ) {
        for v in all {
            assert_eq!(parse(text(*v)).expect("parses"), *v);
        }
        let err = parse("gone").expect_err("unknown text");
        assert!(err.to_string().contains("\"gone\""), "{err}");
    }
    check(AsyncStatus::ALL, AsyncStatus::as_str, AsyncStatus::parse);
    check(DeadReason::ALL, DeadReason::as_str, DeadReason::parse);
    check(AsyncSource::ALL, AsyncSource::as_str, AsyncSource::parse);
    check(KeyKind::ALL, KeyKind::as_str, KeyKind::parse);
    assert_eq!(AsyncStatus::ALL.len(), 5);
    assert_eq!(DeadReason::ALL.len(), 4);
    assert_eq!(AsyncSource::ALL.len(), 4);
    assert_eq!(KeyKind::ALL.len(), 2);
}

#[test]
fn the_database_refuses_a_status_source_reason_or_key_kind_the_code_does_not_know() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .enqueue_async(&new("a", 1_000), Some("k"), t(0))
        .expect("ok");
    let db = crate::raw(dir.path());
    for (sql, column) in [
        ("UPDATE async_invocations SET status = 'paused'", "status"),
        ("UPDATE async_invocations SET source = 'cron'", "source"),
        (
            "UPDATE async_invocations SET dead_reason = 'bored'",
            "dead_reason",
        ),
        ("UPDATE async_invocations SET dead_letter = 2", "dead_letter"),
        ("UPDATE idempotency_keys SET kind = 'maybe'", "kind"),
    ] {
        let err = db.execute(sql, []).expect_err(sql);
        assert!(
            err.to_string().contains("CHECK constraint failed"),
            "{sql}: {err}"
        );
        assert!(err.to_string().contains(column), "{sql}: {err}");
    }
    // A value that got in anyway (a hand edit without the CHECK) is reported, not guessed.
    db.execute_batch("PRAGMA ignore_check_constraints = ON; UPDATE async_invocations SET status = 'paused';")
        .expect("forced");
    let err = store.get_async("a").expect_err("unknown status");
    assert!(err.to_string().contains("\"paused\""), "{err}");
}
