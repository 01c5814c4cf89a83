//! Cron schedules: parsing a function's `schedules` and computing fire times.
//!
//! Expressions have 5 fields (minute hour day-of-month month day-of-week) or 6 (a leading
//! seconds field), with `*`, lists, ranges, steps, names and `@hourly`-style aliases
//! (the `croner` crate, which follows POSIX/Vixie cron). A year field (7 fields) is refused,
//! and so is an expression no date matches (`0 0 31 2 *`). Times are computed in the
//! schedule's IANA timezone (the `chrono-tz` database, built in).
//!
//! Daylight saving. A schedule whose second, minute and hour fields are plain values (numbers,
//! lists and ranges of them: `30 2 * * *`, `0 8,20 * * *`, `@daily`) keeps to the wall clock,
//! as Vixie cron does:
//! - a time that does not exist on a spring-forward day (02:30 in Europe/Paris on the last
//!   Sunday of March, when 02:00 becomes 03:00) fires once, at the instant the clocks jumped
//!   (03:00 local); several such times (`0,30 2 * * *`) fire once between them;
//! - a time that happens twice on a fall-back day (02:30 in Europe/Paris on the last Sunday
//!   of October) fires once, at its first occurrence.
//!
//! A schedule with `*` or a step in any of those fields (`*/20 * * * *`, `0 * * * *`,
//! `*/5 9-17 * * *`) follows elapsed time instead: wall times that do not exist never come,
//! a repeated hour runs again, and fire times are never repeated and always ascending.
//!
//! croner gives the second rule to every pattern that is not a single time of day, so that
//! `30 2,14 * * *` would miss 02:30 on a spring-forward day and run it twice on a fall-back
//! day; the first rule is therefore computed here, with croner matching the wall clock (in
//! UTC, which has no daylight saving) and the zone's offsets placing each match in time.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::limits::MAX_EVENT_DEPTH;
use crate::nesting::value_depth;
use crate::spec::SpecError;

/// Most schedules one function may have.
pub const MAX_SCHEDULES: usize = 20;
/// The event key Ignis sets to the firing's time.
pub const SCHEDULED_TIME: &str = "scheduled_time";
/// The aliases an expression may be instead of its fields.
const ALIASES: [&str; 6] = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly"];
/// Longest run of wall clock time a zone has skipped: Pacific/Apia left out 2011-12-30.
const MAX_GAP_MINUTES: u32 = 2 * 24 * 60;

/// What happens to runs missed while the server was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// They are skipped.
    #[default]
    Skip,
    /// The latest of them runs once.
    One,
}

/// One schedule of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub cron: String,
    pub timezone: String,
    pub event: Map<String, Value>,
    pub enabled: bool,
    pub catch_up: CatchUp,
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// A schedule ready to compute with: its expression, its zone and its daylight-saving rule.
struct Compiled {
    cron: Cron,
    tz: Tz,
    /// Plain second, minute and hour fields: the wall clock rule (see the module doc).
    wall_clock: bool,
}

impl Compiled {
    fn new(cron: &str, timezone: &str) -> Option<Compiled> {
        let cron = parser().parse(cron).ok()?;
        let p = &cron.pattern;
        let wall_clock = [&p.seconds, &p.minutes, &p.hours]
            .iter()
            .all(|c| !c.from_wildcard && c.step == 1);
        Some(Compiled {
            cron,
            tz: timezone.parse().ok()?,
            wall_clock,
        })
    }

    /// The first fire time strictly after `after`.
    fn next(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Fire times are whole seconds: the first after a fraction of a second is the first
        // after the whole second before it.
        let after = after.with_nanosecond(0)?;
        let found = if self.wall_clock {
            self.next_on_wall_clock(after)?
        } else {
            // croner walks the zone's wall clock and orders the two instants of a repeated
            // time itself: elapsed time.
            let start = after.with_timezone(&self.tz);
            self.cron
                .find_next_occurrence(&start, false)
                .ok()?
                .with_timezone(&Utc)
        };
        // Strictly after: never the same time twice, whatever a search did.
        (found > after).then_some(found)
    }

    fn next_on_wall_clock(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // A wall time stands in a `DateTime<Utc>` for croner, which then sees no daylight
        // saving. Wall times up to `after`'s own are behind it whatever the zone does.
        let mut from = Utc.from_utc_datetime(&after.with_timezone(&self.tz).naive_local());
        // One pass, or two when `after` is in the second run of a repeated hour.
        for _ in 0..3 {
            let wall = self.cron.find_next_occurrence(&from, false).ok()?;
            let at = resolve(self.tz, wall.naive_utc())?;
            if at > after {
                return Some(at);
            }
            // `wall` is repeated and its first occurrence is behind `after`, which is in the
            // second run: the next candidate is a wall time whose first occurrence (at the
            // offset of that run) is past `after`.
            let offset = TimeDelta::seconds(i64::from(
                at.with_timezone(&self.tz).offset().fix().local_minus_utc(),
            ));
            let past = Utc.from_utc_datetime(&after.naive_utc().checked_add_signed(offset)?);
            from = past.max(wall);
        }
        None
    }
}

/// The instant a wall time fires at: its only one, the first of two when the clocks went
/// back, or the moment the clocks jumped over it.
fn resolve(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
        LocalResult::None => gap_end(tz, wall),
    }
}

/// The instant the clocks jumped over `wall`: that of the first wall time after it that
/// exists. Found by minutes, then back by seconds (old offsets had seconds).
fn gap_end(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    let mut probe = wall;
    for _ in 0..MAX_GAP_MINUTES {
        probe = probe.checked_add_signed(TimeDelta::minutes(1))?;
        let Some(mut first) = tz.from_local_datetime(&probe).earliest() else {
            continue;
        };
        for _ in 0..59 {
            probe = probe.checked_sub_signed(TimeDelta::seconds(1))?;
            match tz.from_local_datetime(&probe).earliest() {
                Some(t) => first = t,
                None => break,
            }
        }
        return Some(first.with_timezone(&Utc));
    }
    None
}

fn to_chrono(t: OffsetDateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond())
}

fn to_time(t: DateTime<Utc>) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.timestamp())
        .ok()?
        .replace_nanosecond(t.timestamp_subsec_nanos())
        .ok()
}

impl Schedule {
    fn compiled(&self) -> Option<Compiled> {
        Compiled::new(&self.cron, &self.timezone)
    }

    /// The first fire time strictly after `after` (`None` if the expression never fires
    /// again, or this schedule did not come from [`parse_schedules`] and is not valid).
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let c = self.compiled()?;
        to_time(c.next(to_chrono(after)?)?)
    }

    /// Fire times in (after, until], oldest first, at most `limit`.
    pub fn fire_times(
        &self,
        after: OffsetDateTime,
        until: OffsetDateTime,
        limit: usize,
    ) -> Vec<OffsetDateTime> {
        let (Some(c), Some(mut cursor), Some(until)) = (self.compiled(), to_chrono(after), to_chrono(until))
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while out.len() < limit {
            match c.next(cursor) {
                Some(t) if t <= until => {
                    let Some(at) = to_time(t) else { break };
                    out.push(at);
                    cursor = t;
                }
                _ => break,
            }
        }
        out
    }

    /// Names this schedule at `index` of its function's list for stored state: another
    /// expression or timezone is another schedule.
    pub fn key(&self, index: usize) -> String {
        format!("{index}:{}@{}", self.cron, self.timezone)
    }

    /// The event of a firing at `at`: the configured one plus `scheduled_time`, in UTC
    /// (`2026-03-29T01:00:00Z`).
    pub fn event_at(&self, at: OffsetDateTime) -> Value {
        let mut event = self.event.clone();
        let utc = at.to_offset(time::UtcOffset::UTC);
        event.insert(
            SCHEDULED_TIME.to_owned(),
            Value::String(utc.format(&Rfc3339).unwrap_or_default()),
        );
        Value::Object(event)
    }
}

/// What each field of a 5- or 6-field expression holds, for messages.
const FIELD_RULES: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L, W"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT (0 and 7 are Sunday), L, #"),
];

/// Checks an expression: its shape, each field (naming the one at fault with the parser's
/// reason) and that some date matches it.
fn check_cron(at: &str, cron: &str) -> Result<(), SpecError> {
    let fields: Vec<&str> = cron.split_whitespace().collect();
    let shape = "use 5 fields (minute hour day-of-month month day-of-week), 6 (seconds first) \
                 or one of @yearly, @annually, @monthly, @weekly, @daily, @hourly";
    if cron.starts_with('@') {
        if fields.len() != 1 || !ALIASES.contains(&cron.to_ascii_lowercase().as_str()) {
            return Err(SpecError::invalid(
                at,
                format!("cron {cron:?} is not a known alias; {shape}"),
            ));
        }
    } else if fields.len() == 7 {
        return Err(SpecError::invalid(
            at,
            format!("cron {cron:?} has 7 fields: a year field is not supported; {shape}"),
        ));
    } else if !(5..=6).contains(&fields.len()) {
        return Err(SpecError::invalid(
            at,
            format!(
                "cron {cron:?} has {} field{}; {shape}",
                fields.len(),
                if fields.len() == 1 { "" } else { "s" }
            ),
        ));
    }
    let parsed = parser()
        .parse(cron)
        .map_err(|e| SpecError::invalid(at, cron_error(cron, &fields, &e)))?;
    // Any expression without a year repeats within 400 years (the Gregorian cycle).
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    if parsed.find_next_occurrence(&epoch, false).is_err() {
        return Err(SpecError::invalid(
            at,
            format!(
                "cron {cron:?} never fires: no date matches its day-of-month, month and \
                 day-of-week fields together"
            ),
        ));
    }
    Ok(())
}

/// The message for an expression croner refused: the field at fault when one field alone
/// (the others `*`) is refused too.
fn cron_error(cron: &str, fields: &[&str], e: &CronError) -> String {
    let rules = &FIELD_RULES[6 - fields.len().clamp(5, 6)..];
    for (i, (field, (name, allowed))) in fields.iter().zip(rules).enumerate() {
        let alone: Vec<&str> = (0..fields.len())
            .map(|j| if j == i { *field } else { "*" })
            .collect();
        if let Err(e) = parser().parse(&alone.join(" ")) {
            return format!(
                "cron {cron:?} is not valid: {e} (the {name} field is {field:?}; it takes {allowed}, \
                 with lists, ranges and */steps)"
            );
        }
    }
    format!("cron {cron:?} is not valid: {e}")
}

fn type_error(field: &str, message: impl Into<String>) -> SpecError {
    SpecError::malformed("invalid_type", field, message.into())
}

const FIELDS: [&str; 5] = ["cron", "timezone", "event", "enabled", "catch_up"];

/// Parses and checks a function's `schedules` field.
pub fn parse_schedules(value: &Value) -> Result<Vec<Schedule>, SpecError> {
    let Value::Array(items) = value else {
        return Err(type_error(
            "schedules",
            "schedules must be an array of {\"cron\": \"...\", \"timezone\": \"...\", \"event\": {...}, \"enabled\": true, \"catch_up\": \"skip\"|\"one\"}",
        ));
    };
    if items.len() > MAX_SCHEDULES {
        return Err(SpecError::invalid(
            "schedules",
            format!(
                "a function has at most {MAX_SCHEDULES} schedules, got {}",
                items.len()
            ),
        ));
    }
    items.iter().enumerate().map(|(i, v)| parse_one(i, v)).collect()
}

fn parse_one(i: usize, value: &Value) -> Result<Schedule, SpecError> {
    let at = format!("schedules[{i}]");
    let Value::Object(map) = value else {
        return Err(type_error(&at, format!("{at} must be an object")));
    };
    if let Some(k) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(SpecError::malformed(
            "unknown_field",
            &format!("{at}.{k}"),
            format!(
                "unknown field {k:?} in {at}; known fields are {}",
                FIELDS.join(", ")
            ),
        ));
    }
    let field = |name: &str| format!("{at}.{name}");
    let cron = match map.get("cron") {
        Some(Value::String(s)) => s.trim().to_owned(),
        None | Some(Value::Null) => {
            return Err(SpecError::malformed(
                "missing_field",
                &field("cron"),
                format!("{} is required", field("cron")),
            ))
        }
        Some(_) => {
            return Err(type_error(
                &field("cron"),
                format!("{} must be a string", field("cron")),
            ))
        }
    };
    check_cron(&field("cron"), &cron)?;
    let timezone = match map.get("timezone") {
        None | Some(Value::Null) => "UTC".to_owned(),
        Some(Value::String(s)) => {
            if s.parse::<Tz>().is_err() {
                return Err(SpecError::invalid(
                    &field("timezone"),
                    format!("timezone {s:?} is not a known IANA timezone such as Europe/Paris or UTC"),
                ));
            }
            s.clone()
        }
        Some(_) => {
            return Err(type_error(
                &field("timezone"),
                format!("{} must be a string such as \"Europe/Paris\"", field("timezone")),
            ))
        }
    };
    let event = match map.get("event") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(e)) => {
            let depth = 1 + e.values().map(value_depth).max().unwrap_or(0);
            if depth > MAX_EVENT_DEPTH {
                return Err(SpecError::malformed(
                    "event_too_deep",
                    &field("event"),
                    format!(
                        "{} nests arrays and objects {depth} levels deep; the limit is {MAX_EVENT_DEPTH}",
                        field("event")
                    ),
                ));
            }
            if e.contains_key(SCHEDULED_TIME) {
                return Err(SpecError::invalid(
                    &format!("{at}.event.{SCHEDULED_TIME}"),
                    format!(
                        "{SCHEDULED_TIME} is set by Ignis to each firing's time; leave it out of the event"
                    ),
                ));
            }
            e.clone()
        }
        Some(_) => {
            return Err(type_error(
                &field("event"),
                format!("{} must be an object", field("event")),
            ))
        }
    };
    let enabled = match map.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(type_error(
                &field("enabled"),
                format!("{} must be true or false", field("enabled")),
            ))
        }
    };
    let catch_up = match map.get("catch_up") {
        None | Some(Value::Null) => CatchUp::Skip,
        Some(Value::String(s)) if s == "skip" => CatchUp::Skip,
        Some(Value::String(s)) if s == "one" => CatchUp::One,
        Some(Value::String(s)) => {
            return Err(SpecError::invalid(
                &field("catch_up"),
                format!("{} {s:?} is not one of skip, one", field("catch_up")),
            ))
        }
        Some(_) => {
            return Err(type_error(
                &field("catch_up"),
                format!("{} must be \"skip\" or \"one\"", field("catch_up")),
            ))
        }
    };
    Ok(Schedule {
        cron,
        timezone,
        event,
        enabled,
        catch_up,
    })
}

#[cfg(test)]
mod tests;
