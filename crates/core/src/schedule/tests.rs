//! Tests of cron schedules: validation, fire times across time zones and daylight-saving days, events.

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

/// The fire times of `s` in the local day of Europe/Paris that starts at `start` and lasts
/// `hours` real hours.
fn day(s: &Schedule, start: OffsetDateTime, hours: i64) -> Vec<OffsetDateTime> {
    s.fire_times(start, start + time::Duration::hours(hours), 1000)
}

#[test]
fn listed_times_keep_to_the_wall_clock_on_daylight_saving_days() {
    // croner alone would skip 02:30 in the gap and run it twice in the overlap.
    let s = sched("30 2,14 * * *", "Europe/Paris");
    // 2026-03-29 local is 23 hours long, from 2026-03-28 23:00 UTC.
    assert_eq!(
        day(&s, datetime!(2026-03-28 23:00 UTC), 23),
        [
            datetime!(2026-03-29 01:00 UTC), // 03:00 CEST, when the clocks jumped
            datetime!(2026-03-29 12:30 UTC), // 14:30 CEST
        ]
    );
    // 2026-10-25 local is 25 hours long, from 2026-10-24 22:00 UTC.
    assert_eq!(
        day(&s, datetime!(2026-10-24 22:00 UTC), 25),
        [
            datetime!(2026-10-25 00:30 UTC), // the first 02:30 (CEST)
            datetime!(2026-10-25 13:30 UTC), // 14:30 CET
        ]
    );
    // Two skipped times fire once between them.
    let s = sched("0,30 2 * * *", "Europe/Paris");
    assert_eq!(
        day(&s, datetime!(2026-03-28 23:00 UTC), 23),
        [datetime!(2026-03-29 01:00 UTC)]
    );
    assert_eq!(
        day(&s, datetime!(2026-10-24 22:00 UTC), 25),
        [datetime!(2026-10-25 00:00 UTC), datetime!(2026-10-25 00:30 UTC)]
    );
    // The days around are ordinary.
    assert_eq!(day(&s, datetime!(2026-03-29 22:00 UTC), 24).len(), 2);
    assert_eq!(day(&s, datetime!(2026-10-25 23:00 UTC), 24).len(), 2);
}

#[test]
fn a_repeated_time_does_not_fire_again_from_inside_the_repeat() {
    let s = sched("30 2 * * *", "Europe/Paris");
    // 02:15 CET, the second run of the hour: the 02:30 of this day has been.
    assert_eq!(
        s.next_after(datetime!(2026-10-25 01:15 UTC)),
        Some(datetime!(2026-10-26 01:30 UTC))
    );
    // 02:15 CEST, the first run: 02:30 CEST is still to come.
    assert_eq!(
        s.next_after(datetime!(2026-10-25 00:15 UTC)),
        Some(datetime!(2026-10-25 00:30 UTC))
    );
    // 02:45 CEST, past the first 02:30: not the second one.
    assert_eq!(
        s.next_after(datetime!(2026-10-25 00:45 UTC)),
        Some(datetime!(2026-10-26 01:30 UTC))
    );
    // And across the gap: after the shifted run, the next day's.
    assert_eq!(
        s.next_after(datetime!(2026-03-29 01:00 UTC)),
        Some(datetime!(2026-03-30 00:30 UTC))
    );
}

#[test]
fn hourly_and_interval_schedules_follow_elapsed_time_through_both_transitions() {
    let hourly = sched("0 * * * *", "Europe/Paris");
    let spring = day(&hourly, datetime!(2026-03-28 23:00 UTC), 23);
    assert_eq!(spring.len(), 23, "a 23-hour day: {spring:?}");
    let fall = day(&hourly, datetime!(2026-10-24 22:00 UTC), 25);
    assert_eq!(fall.len(), 25, "a 25-hour day, 02:00 twice: {fall:?}");
    for got in [spring, fall] {
        assert!(
            got.windows(2).all(|w| w[1] - w[0] == time::Duration::hours(1)),
            "one real hour apart: {got:?}"
        );
    }
    let every20 = sched("*/20 * * * *", "Europe/Paris");
    for start in [datetime!(2026-03-28 23:50 UTC), datetime!(2026-10-24 23:50 UTC)] {
        let got = every20.fire_times(start, start + time::Duration::hours(3), 100);
        assert_eq!(got.len(), 9, "{got:?}");
        assert!(
            got.windows(2).all(|w| w[1] - w[0] == time::Duration::minutes(20)),
            "{got:?}"
        );
    }
    // From inside the repeated hour, the next mark is 20 real minutes on.
    assert_eq!(
        every20.next_after(datetime!(2026-10-25 01:10 UTC)),
        Some(datetime!(2026-10-25 01:20 UTC))
    );
}

#[test]
fn a_day_the_zone_skipped_still_fires_once() {
    // Pacific/Apia went from UTC-10 to UTC+14 at the end of 2011-12-29: no 2011-12-30.
    let s = sched("0 12 * * *", "Pacific/Apia");
    assert_eq!(
        s.fire_times(
            datetime!(2011-12-29 00:00 UTC),
            datetime!(2011-12-31 00:00 UTC),
            10
        ),
        [
            datetime!(2011-12-29 22:00 UTC), // 12:00 on the 29th, UTC-10
            datetime!(2011-12-30 10:00 UTC), // the jump, for the 30th
            datetime!(2011-12-30 22:00 UTC), // 12:00 on the 31st, UTC+14
        ]
    );
}

#[test]
fn names_aliases_and_fractions_of_a_second() {
    // 2026-01-05 is a Monday.
    let s = sched("0 9 * jan mon-fri", "UTC");
    assert_eq!(
        s.next_after(datetime!(2026-01-03 00:00 UTC)),
        Some(datetime!(2026-01-05 09:00 UTC))
    );
    let s = sched("@daily", "Europe/Paris");
    assert_eq!(
        s.next_after(datetime!(2026-01-01 12:00 UTC)),
        Some(datetime!(2026-01-01 23:00 UTC))
    );
    let s = sched("0 9 * * *", "UTC");
    assert_eq!(
        s.next_after(datetime!(2026-01-05 08:59:59.999 UTC)),
        Some(datetime!(2026-01-05 09:00 UTC))
    );
    assert_eq!(
        s.next_after(datetime!(2026-01-05 09:00:00.001 UTC)),
        Some(datetime!(2026-01-06 09:00 UTC))
    );
    // A schedule that never went through parse_schedules fires never, quietly.
    let mut bad = s.clone();
    bad.timezone = "Nowhere/Else".to_owned();
    assert_eq!(bad.next_after(datetime!(2026-01-05 00:00 UTC)), None);
    assert!(bad
        .fire_times(
            datetime!(2026-01-05 00:00 UTC),
            datetime!(2026-01-09 00:00 UTC),
            10
        )
        .is_empty());
}

#[test]
fn fire_times_is_bounded_on_both_ends() {
    let s = sched("0 * * * *", "UTC");
    let got = s.fire_times(
        datetime!(2026-01-01 10:00 UTC),
        datetime!(2026-01-01 13:00 UTC),
        100,
    );
    // After is excluded, until included.
    assert_eq!(
        got,
        [
            datetime!(2026-01-01 11:00 UTC),
            datetime!(2026-01-01 12:00 UTC),
            datetime!(2026-01-01 13:00 UTC),
        ]
    );
    assert!(s
        .fire_times(
            datetime!(2026-01-01 10:00 UTC),
            datetime!(2026-01-01 10:59 UTC),
            100
        )
        .is_empty());
    assert!(s
        .fire_times(
            datetime!(2026-01-01 10:00 UTC),
            datetime!(2026-01-01 13:00 UTC),
            0
        )
        .is_empty());
}

#[test]
fn cron_errors_name_the_field_and_give_the_parsers_reason() {
    let reason = |pattern: &str| {
        parser()
            .parse(pattern)
            .expect_err("croner refuses it")
            .to_string()
    };
    let e = err(json!([{"cron": "61 * * * *"}]));
    assert!(
        e.message.contains(&reason("61 * * * *")) && e.message.contains("minute field is \"61\""),
        "{}",
        e.message
    );
    assert!(e.message.contains("0-59"), "{}", e.message);
    let e = err(json!([{"cron": "0 0 24 * * *"}]));
    assert!(e.message.contains("hour field is \"24\""), "{}", e.message);
    assert!(e.message.contains(&reason("0 0 24 * * *")), "{}", e.message);
    let e = err(json!([{"cron": "*/0 * * * *"}]));
    assert!(e.message.contains("Step cannot be zero"), "{}", e.message);
    let e = err(json!([{"cron": "0 0 * * * * 2027"}]));
    assert_eq!(e.code, "invalid_value");
    assert!(e.message.contains("year field is not supported"), "{}", e.message);
    for shape in ["", "* * *", "@every 5m", "@fortnightly"] {
        let e = err(json!([{ "cron": shape }]));
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid_value", Some("schedules[0].cron")),
            "{shape:?}"
        );
        assert!(e.message.contains("use 5 fields"), "{}", e.message);
    }
    let e = err(json!([{"cron": "0 0 31 2 *"}]));
    assert!(e.message.contains("never fires"), "{}", e.message);
    // A rare one is not refused: 29 February that is a Monday.
    assert!(parse_schedules(&json!([{"cron": "0 0 29 2 +1"}])).is_ok());
}

#[test]
fn the_second_entry_is_named_and_types_are_checked() {
    let e = err(json!([{"cron": "0 * * * *"}, {"cron": 5}]));
    assert_eq!(
        (e.code, e.field.as_deref()),
        ("invalid_type", Some("schedules[1].cron"))
    );
    for (field, bad) in [
        ("timezone", json!(1)),
        ("enabled", json!("yes")),
        ("catch_up", json!(true)),
    ] {
        let mut entry = json!({"cron": "0 * * * *"});
        entry[field] = bad;
        let e = err(json!([entry]));
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid_type", Some(format!("schedules[0].{field}").as_str()))
        );
    }
    // Twenty is allowed, and an empty list.
    let twenty: Vec<Value> = (0..20).map(|_| json!({"cron": "0 * * * *"})).collect();
    assert_eq!(parse_schedules(&Value::Array(twenty)).expect("valid").len(), 20);
    assert!(parse_schedules(&json!([])).expect("valid").is_empty());
}

#[test]
fn a_schedule_is_stored_as_plain_json_and_reads_back() {
    let s = parse_schedules(&json!([{
        "cron": "  30 2 * * *  ",
        "timezone": "Europe/Paris",
        "event": {"a": [1, 2]},
        "enabled": false,
        "catch_up": "one",
    }]))
    .expect("valid")
    .remove(0);
    assert_eq!(s.cron, "30 2 * * *", "trimmed");
    let stored = serde_json::to_value(&s).expect("json");
    assert_eq!(
        stored,
        json!({
            "cron": "30 2 * * *",
            "timezone": "Europe/Paris",
            "event": {"a": [1, 2]},
            "enabled": false,
            "catch_up": "one",
        })
    );
    assert_eq!(serde_json::from_value::<Schedule>(stored).expect("reads"), s);
    // The time of a firing is given in UTC whatever the offset it was computed in.
    assert_eq!(
        s.event_at(datetime!(2026-03-29 03:00 +02:00))["scheduled_time"],
        json!("2026-03-29T01:00:00Z")
    );
}

#[test]
fn a_year_in_zones_with_odd_transitions() {
    use chrono::TimeZone as _;
    use std::collections::BTreeMap;
    // Lord Howe moves by 30 minutes; Santiago and Havana at midnight (Santiago back into
    // the day before); New York and Paris as usual.
    let zones = [
        "Europe/Paris",
        "America/New_York",
        "Australia/Lord_Howe",
        "America/Santiago",
        "America/Havana",
    ];
    let (from, until) = (datetime!(2026-01-01 00:00 UTC), datetime!(2027-01-01 00:00 UTC));
    for zone in zones {
        let tz: Tz = zone.parse().expect("zone");
        let local_date = |t: OffsetDateTime| {
            tz.timestamp_opt(t.unix_timestamp(), 0)
                .single()
                .expect("instant")
                .date_naive()
        };
        // Wall clock schedules: each listed time once on every local date.
        for (cron, per_day) in [
            ("30 2 * * *", 1),
            ("0 0 * * *", 1),
            ("30 23 * * *", 1),
            ("0,30 1,2 * * *", 4),
            ("15 0,12 * * *", 2),
        ] {
            let got = sched(cron, zone).fire_times(from, until, 10_000);
            let mut by_date: BTreeMap<chrono::NaiveDate, usize> = BTreeMap::new();
            for t in &got {
                *by_date.entry(local_date(*t)).or_default() += 1;
            }
            // The dates at the ends are cut by the UTC range.
            let inner: Vec<_> = by_date.iter().skip(1).rev().skip(1).collect();
            assert!(inner.len() >= 360, "{cron} in {zone}: {}", inner.len());
            let odd: Vec<_> = inner.iter().filter(|(_, n)| **n != per_day).collect();
            if cron == "0,30 1,2 * * *"
                && ["Europe/Paris", "America/New_York", "Australia/Lord_Howe"].contains(&zone)
            {
                // 02:00 and 02:30 (Lord Howe: 02:00, and 02:30 that exists) fire once, at
                // the gap's end: three runs on the spring-forward date.
                assert!(odd.len() == 1 && *odd[0].1 == 3, "{cron} in {zone}: {odd:?}");
            } else {
                assert!(odd.is_empty(), "{cron} in {zone}: {odd:?}");
            }
            assert!(got.windows(2).all(|w| w[0] < w[1]), "{cron} in {zone}");
        }
        // Interval schedules: ascending, never twice, every real half hour.
        let got = sched("*/30 * * * *", zone).fire_times(from, until, 100_000);
        assert_eq!(got.len(), 365 * 48, "{zone}");
        assert!(
            got.windows(2).all(|w| w[1] - w[0] == time::Duration::minutes(30)),
            "{zone}"
        );
    }
}

#[test]
fn a_schedule_event_deeper_than_the_event_limit_is_refused() {
    fn nested(levels: usize) -> Value {
        (1..levels).fold(json!({}), |inner, _| json!({ "a": inner }))
    }
    assert!(parse_schedules(&json!([{"cron": "0 * * * *", "event": nested(MAX_EVENT_DEPTH)}])).is_ok());
    let e = err(json!([{"cron": "0 * * * *", "event": nested(MAX_EVENT_DEPTH + 1)}]));
    assert_eq!(e.code, "event_too_deep");
    assert_eq!(e.kind, crate::spec::SpecErrorKind::Malformed);
    assert_eq!(e.field.as_deref(), Some("schedules[0].event"));
    assert!(e.message.contains("65 levels deep"), "{}", e.message);
}
