//! Cron schedules: a manual clock drives the firing (daylight saving, restarts, catch-up),
//! and one real 6-field schedule fires within seconds on the system clock.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{wait_until, Server};

const PRINT_EVENT: &str =
    "import json\ndef handler(event, context):\n    print(json.dumps(event, sort_keys=True))\n    return 'ok'\n";

fn set_clock(s: &Server, now: &str) {
    let a = s.send(
        s.request(Method::PUT, "/v1/clock")
            .body(json!({ "now": now }).to_string()),
    );
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

/// The events the function printed, oldest first.
fn fired(s: &Server, name: &str) -> Vec<Value> {
    s.get(&format!("/v1/functions/{name}/logs")).json()["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .filter_map(|l| serde_json::from_str(l["line"].as_str()?).ok())
        .collect()
}

fn wait_fired(s: &Server, name: &str, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    wait_until(
        &format!("{name} fired {n} times"),
        Duration::from_secs(60),
        || {
            got = fired(s, name);
            got.len() >= n
        },
    );
    got
}

/// Waits until the scheduler has seen every schedule of the server (and stored it).
fn wait_checked(s: &Server, count: usize) {
    wait_until("the scheduler saw the schedules", Duration::from_secs(30), || {
        let list = s.get("/v1/schedules").json();
        let list = list["schedules"].as_array().cloned().unwrap_or_default();
        list.len() == count && list.iter().all(|x| x["checked_until"].is_string())
    });
}

fn wait_ready(s: &Server, name: &str) {
    wait_until(&format!("{name} is ready"), Duration::from_secs(60), || {
        s.function(name)["state"] == "ready"
    });
}

#[test]
fn a_schedule_fires_once_per_time_across_daylight_saving_and_restarts() {
    let mut s = Server::start_with(None, &["--manual-clock", "2026-03-28T12:00:00Z"]);
    s.deploy(
        "nightly",
        "python",
        PRINT_EVENT,
        json!({"schedules": [{"cron": "30 2 * * *", "timezone": "Europe/Paris", "event": {"job": "nightly"}}]}),
    );
    // 02:30 does not exist in Paris on 2026-03-29: it fires at 03:00 CEST (01:00 UTC).
    let f = s.function("nightly");
    assert_eq!(f["schedules"][0]["next_fire_at"], "2026-03-29T01:00:00Z", "{f}");
    assert_eq!(f["schedules"][0]["catch_up"], "skip");
    wait_checked(&s, 1);
    set_clock(&s, "2026-03-29T01:00:30Z");
    let got = wait_fired(&s, "nightly", 1);
    assert_eq!(
        got,
        [json!({"job": "nightly", "scheduled_time": "2026-03-29T01:00:00Z"})]
    );
    let f = s.function("nightly");
    assert_eq!(
        f["schedules"][0]["next_fire_at"], "2026-03-30T00:30:00Z",
        "02:30 CEST"
    );

    // Killed and started again later the same day: nothing is due, nothing fires twice.
    s.restart_with(&["--manual-clock", "2026-03-29T01:00:45Z"]);
    wait_ready(&s, "nightly");
    set_clock(&s, "2026-03-30T00:31:00Z");
    let got = wait_fired(&s, "nightly", 2);
    let times: Vec<&Value> = got.iter().map(|e| &e["scheduled_time"]).collect();
    assert_eq!(
        times,
        [&json!("2026-03-29T01:00:00Z"), &json!("2026-03-30T00:30:00Z")]
    );
    let list = s.get("/v1/schedules").json();
    assert_eq!(list["schedules"][0]["function"], "nightly");
    assert_eq!(list["schedules"][0]["checked_until"], "2026-03-30T00:30:00Z");
}

#[test]
fn runs_missed_while_down_are_skipped_or_caught_up_once() {
    let mut s = Server::start_with(None, &["--manual-clock", "2026-06-01T00:30:00Z"]);
    s.deploy(
        "hourly",
        "python",
        PRINT_EVENT,
        json!({"schedules": [
            {"cron": "0 * * * *", "event": {"s": "skip"}},
            {"cron": "0 * * * *", "event": {"s": "one"}, "catch_up": "one"},
        ]}),
    );
    wait_checked(&s, 2);
    // Down from 00:30 to 03:30: 01:00, 02:00 and 03:00 were missed.
    s.restart_with(&["--manual-clock", "2026-06-01T03:30:00Z"]);
    let got = wait_fired(&s, "hourly", 1);
    assert_eq!(
        got,
        [json!({"s": "one", "scheduled_time": "2026-06-01T03:00:00Z"})]
    );
    set_clock(&s, "2026-06-01T04:00:00Z");
    let mut got = wait_fired(&s, "hourly", 3);
    got.sort_by_key(|e| (e["scheduled_time"].to_string(), e["s"].to_string()));
    assert_eq!(
        got,
        [
            json!({"s": "one", "scheduled_time": "2026-06-01T03:00:00Z"}),
            json!({"s": "one", "scheduled_time": "2026-06-01T04:00:00Z"}),
            json!({"s": "skip", "scheduled_time": "2026-06-01T04:00:00Z"}),
        ]
    );
}

#[test]
fn a_real_six_field_schedule_fires_within_seconds() {
    let s = Server::start();
    s.deploy(
        "ticker",
        "python",
        PRINT_EVENT,
        json!({"schedules": [{"cron": "*/2 * * * * *", "event": {"tick": true}}]}),
    );
    let got = wait_fired(&s, "ticker", 1);
    let at = got[0]["scheduled_time"].as_str().expect("scheduled_time");
    let secs: u32 = at[17..19].parse().expect("seconds");
    assert_eq!(secs % 2, 0, "fires on even seconds: {at}");
    assert_eq!(got[0]["tick"], true);
    let list = s.get("/v1/schedules").json();
    assert!(list["schedules"][0]["next_fire_at"].is_string(), "{list}");
    // The system clock cannot be set.
    let a = s.send(
        s.request(Method::PUT, "/v1/clock")
            .body(r#"{"now": "2030-01-01T00:00:00Z"}"#),
    );
    assert_eq!(
        (a.status, a.error_code()),
        (StatusCode::CONFLICT, "clock_not_manual".to_owned())
    );
}

#[test]
fn bad_schedules_and_event_settings_are_422_naming_the_field() {
    let s = Server::start();
    let cases = [
        (
            json!({"schedules": [{"cron": "61 * * * *"}]}),
            "schedules[0].cron",
            "is not valid",
        ),
        (
            json!({"schedules": [{"cron": "0 * * * *", "timezone": "Mars/Olympus"}]}),
            "schedules[0].timezone",
            "Mars/Olympus",
        ),
        (
            json!({"retry": {"max_retries": 6}}),
            "retry.max_retries",
            "between 0 and 5",
        ),
        (
            json!({"retry": {"max_event_age_secs": 0}}),
            "retry.max_event_age_secs",
            "between 1 and 21600",
        ),
        (json!({"on_success": "bad"}), "on_success", "itself"),
        (
            json!({"max_async_concurrency": 0}),
            "max_async_concurrency",
            "between 1 and 1000",
        ),
    ];
    for (extra, field, words) in cases {
        let mut body = json!({"name": "bad", "runtime": "python", "code": PRINT_EVENT});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let a = s.create(&body);
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{extra}: {}", a.body);
        let e = a.json();
        assert_eq!(e["error"]["field"], field, "{e}");
        assert!(
            e["error"]["message"].as_str().is_some_and(|m| m.contains(words)),
            "{e}"
        );
    }
}

#[test]
fn a_schedule_enabled_again_fires_from_then_on_not_for_the_time_it_was_off() {
    let s = Server::start_with(None, &["--manual-clock", "2026-06-01T00:30:00Z"]);
    let body = |enabled: bool| {
        json!({"runtime": "python", "code": PRINT_EVENT,
               "schedules": [{"cron": "0 * * * *", "enabled": enabled}]})
    };
    let mut create = body(false);
    create["name"] = json!("paused");
    assert_eq!(s.create(&create).status, StatusCode::CREATED);
    wait_checked(&s, 1);
    assert_eq!(s.function("paused")["schedules"][0]["next_fire_at"], Value::Null);
    set_clock(&s, "2026-06-01T03:30:00Z");
    // The off schedule moves past 01:00-03:00 without firing.
    wait_until("the scheduler passed 03:00", Duration::from_secs(30), || {
        s.get("/v1/schedules").json()["schedules"][0]["checked_until"] == "2026-06-01T03:00:00Z"
    });
    let a = s.update("paused", &body(true));
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    set_clock(&s, "2026-06-01T04:00:00Z");
    let got = wait_fired(&s, "paused", 1);
    assert_eq!(got, [json!({"scheduled_time": "2026-06-01T04:00:00Z"})]);
    // A later firing shows nothing else was queued for 01:00-03:00.
    set_clock(&s, "2026-06-01T05:00:00Z");
    let got = wait_fired(&s, "paused", 2);
    let times: Vec<&Value> = got.iter().map(|e| &e["scheduled_time"]).collect();
    assert_eq!(
        times,
        [&json!("2026-06-01T04:00:00Z"), &json!("2026-06-01T05:00:00Z")]
    );
}
