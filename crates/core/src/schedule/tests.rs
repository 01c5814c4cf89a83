use serde_json::json;
use time::macros::datetime;

use super::*;

fn sched(cron: &str, tz: &str) -> Schedule {
    parse_schedules(&json!([{"cron": cron, "timezone": tz}]))
        .expect("valid")
        .remove(0)
}

fn err(v: Value) -> SpecError {
    parse_schedules(&v).expect_err("invalid")
}

#[test]
fn five_and_six_fields_in_utc() {
    let s = sched("*/15 * * * *", "UTC");
    assert_eq!(
        s.next_after(datetime!(2026-01-01 10:07:13 UTC)),
        Some(datetime!(2026-01-01 10:15 UTC))
    );
    let s = sched("*/2 * * * * *", "UTC");
    assert_eq!(
        s.next_after(datetime!(2026-01-01 10:07:13.5 UTC)),
        Some(datetime!(2026-01-01 10:07:14 UTC))
    );
    // Strictly after.
    assert_eq!(
        s.next_after(datetime!(2026-01-01 10:07:14 UTC)),
        Some(datetime!(2026-01-01 10:07:16 UTC))
    );
}

#[test]
fn lists_ranges_and_steps() {
    let s = sched("0 9-17/4 * * 1,3", "UTC");
    // 2026-01-05 is a Monday.
    let got = s.fire_times(
        datetime!(2026-01-04 00:00 UTC),
        datetime!(2026-01-08 00:00 UTC),
        100,
    );
    assert_eq!(
        got,
        [
            datetime!(2026-01-05 09:00 UTC),
            datetime!(2026-01-05 13:00 UTC),
            datetime!(2026-01-05 17:00 UTC),
            datetime!(2026-01-07 09:00 UTC),
            datetime!(2026-01-07 13:00 UTC),
            datetime!(2026-01-07 17:00 UTC),
        ]
    );
    assert_eq!(got.len(), 6);
    let limited = s.fire_times(
        datetime!(2026-01-04 00:00 UTC),
        datetime!(2026-01-08 00:00 UTC),
        2,
    );
    assert_eq!(limited, got[..2]);
}

#[test]
fn a_timezone_moves_the_utc_instant_with_daylight_saving() {
    let s = sched("0 9 * * *", "America/New_York");
    assert_eq!(
        s.next_after(datetime!(2026-01-10 00:00 UTC)),
        Some(datetime!(2026-01-10 14:00 UTC)),
        "EST is UTC-5"
    );
    assert_eq!(
        s.next_after(datetime!(2026-07-10 00:00 UTC)),
        Some(datetime!(2026-07-10 13:00 UTC)),
        "EDT is UTC-4"
    );
}

#[test]
fn a_time_skipped_by_spring_forward_fires_once_after_the_gap() {
    // Europe/Paris, 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
    let s = sched("30 2 * * *", "Europe/Paris");
    let day = s.fire_times(
        datetime!(2026-03-28 23:00 UTC),
        datetime!(2026-03-29 22:00 UTC),
        10,
    );
    assert_eq!(day, [datetime!(2026-03-29 01:00 UTC)], "once, at 03:00 CEST");
    // The next day is normal again: 02:30 CEST.
    assert_eq!(s.next_after(day[0]), Some(datetime!(2026-03-30 00:30 UTC)));
}

#[test]
fn a_time_repeated_by_fall_back_fires_once() {
    // Europe/Paris, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    let s = sched("30 2 * * *", "Europe/Paris");
    let day = s.fire_times(
        datetime!(2026-10-24 22:00 UTC),
        datetime!(2026-10-25 22:00 UTC),
        10,
    );
    assert_eq!(
        day,
        [datetime!(2026-10-25 00:30 UTC)],
        "once, the first 02:30 (CEST)"
    );
}

#[test]
fn intervals_follow_elapsed_time_through_the_overlap() {
    let s = sched("*/20 * * * *", "Europe/Paris");
    let got = s.fire_times(
        datetime!(2026-10-24 23:50 UTC),
        datetime!(2026-10-25 01:50 UTC),
        100,
    );
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "ascending, no repeats: {got:?}"
    );
    // Two real hours of 20-minute marks: 00:00 … 01:40 UTC.
    assert_eq!(got.len(), 6, "{got:?}");
}

#[test]
fn defaults_and_the_event_of_a_firing() {
    let s = parse_schedules(&json!([{"cron": "0 * * * *", "event": {"job": "report"}}]))
        .expect("valid")
        .remove(0);
    assert_eq!(
        (s.timezone.as_str(), s.enabled, s.catch_up),
        ("UTC", true, CatchUp::Skip)
    );
    assert_eq!(
        s.event_at(datetime!(2026-03-29 01:00 UTC)),
        json!({"job": "report", "scheduled_time": "2026-03-29T01:00:00Z"})
    );
    let s = parse_schedules(&json!([{"cron": "0 * * * *", "enabled": false, "catch_up": "one"}]))
        .expect("valid")
        .remove(0);
    assert_eq!((s.enabled, s.catch_up), (false, CatchUp::One));
}

#[test]
fn keys_change_with_the_expression_or_timezone() {
    let a = sched("0 * * * *", "UTC");
    let b = sched("0 * * * *", "Europe/Paris");
    let c = sched("5 * * * *", "UTC");
    assert_ne!(a.key(0), b.key(0));
    assert_ne!(a.key(0), c.key(0));
    assert_ne!(a.key(0), a.key(1));
    assert_eq!(a.key(0), sched("0 * * * *", "UTC").key(0));
}

#[test]
fn bad_schedules_are_refused_with_the_field_and_reason() {
    let e = err(json!({"cron": "* * * * *"}));
    assert_eq!((e.code, e.field.as_deref()), ("invalid_type", Some("schedules")));
    let e = err(json!(["* * * * *"]));
    assert_eq!(
        (e.code, e.field.as_deref()),
        ("invalid_type", Some("schedules[0]"))
    );
    let e = err(json!([{"timezone": "UTC"}]));
    assert_eq!(
        (e.code, e.field.as_deref()),
        ("missing_field", Some("schedules[0].cron"))
    );
    let e = err(json!([{"cron": "61 * * * *"}]));
    assert_eq!(
        (e.code, e.field.as_deref()),
        ("invalid_value", Some("schedules[0].cron"))
    );
    assert!(e.message.contains("is not valid: "), "{}", e.message);
    let e = err(json!([{"cron": "0 0 * * * * 2027"}]));
    assert!(e.message.contains("7 fields"), "{}", e.message);
    let e = err(json!([{"cron": "0 * * * *", "timezone": "Mars/Olympus"}]));
    assert_eq!(e.field.as_deref(), Some("schedules[0].timezone"));
    assert!(e.message.contains("Mars/Olympus"));
    let e = err(json!([{"cron": "0 * * * *", "event": [1]}]));
    assert_eq!(
        (e.code, e.field.as_deref()),
        ("invalid_type", Some("schedules[0].event"))
    );
    let e = err(json!([{"cron": "0 * * * *", "event": {"scheduled_time": "x"}}]));
    assert_eq!(e.field.as_deref(), Some("schedules[0].event.scheduled_time"));
    let e = err(json!([{"cron": "0 * * * *", "catch_up": "all"}]));
    assert_eq!(
        (e.code, e.field.as_deref()),
        ("invalid_value", Some("schedules[0].catch_up"))
    );
    let e = err(json!([{"cron": "0 * * * *", "when": 1}]));
    assert_eq!(
        (e.code, e.field.as_deref()),
        ("unknown_field", Some("schedules[0].when"))
    );
    let many: Vec<Value> = (0..21).map(|_| json!({"cron": "0 * * * *"})).collect();
    let e = err(Value::Array(many));
    assert_eq!((e.code, e.field.as_deref()), ("invalid_value", Some("schedules")));
}
