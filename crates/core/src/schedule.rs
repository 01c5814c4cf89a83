//! Cron schedules: parsing a function's `schedules` and computing fire times.
//!
//! Expressions have 5 fields (minute hour day-of-month month day-of-week) or 6 (a leading
//! seconds field), with `*`, lists, ranges, steps, names and `@hourly`-style aliases
//! (the `croner` crate, which follows POSIX/Vixie cron). Times are computed in the
//! schedule's IANA timezone (the `chrono-tz` database, built in).
//!
//! Daylight saving, as croner implements the Open Cron Pattern Specification: a fixed
//! time that does not exist on a spring-forward day (02:30 in Europe/Paris on the last
//! Sunday of March) fires once, at the first real instant after the gap (03:00 local); a
//! fixed time that happens twice on a fall-back day fires once, at its first occurrence.
//! Interval patterns (`*/20 * * * *`) follow real elapsed time through both transitions.

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::spec::SpecError;

/// Most schedules one function may have.
pub const MAX_SCHEDULES: usize = 20;
/// The event key Ignis sets to the firing's time.
pub const SCHEDULED_TIME: &str = "scheduled_time";

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

fn to_time(t: chrono::DateTime<Tz>) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.timestamp_nanos_opt()?)).ok()
}

impl Schedule {
    fn compiled(&self) -> Option<(Cron, Tz)> {
        Some((parser().parse(&self.cron).ok()?, self.timezone.parse().ok()?))
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let (cron, tz) = self.compiled()?;
        next(&cron, tz, after)
    }

    /// Fire times in (after, until], oldest first, at most `limit`.
    pub fn fire_times(
        &self,
        after: OffsetDateTime,
        until: OffsetDateTime,
        limit: usize,
    ) -> Vec<OffsetDateTime> {
        let Some((cron, tz)) = self.compiled() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut cursor = after;
        while out.len() < limit {
            match next(&cron, tz, cursor) {
                Some(t) if t <= until && t > cursor => {
                    out.push(t);
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

    /// The event of a firing at `at`: the configured one plus `scheduled_time`.
    pub fn event_at(&self, at: OffsetDateTime) -> Value {
        let mut event = self.event.clone();
        event.insert(
            SCHEDULED_TIME.to_owned(),
            Value::String(at.format(&Rfc3339).unwrap_or_default()),
        );
        Value::Object(event)
    }
}

fn next(cron: &Cron, tz: Tz, after: OffsetDateTime) -> Option<OffsetDateTime> {
    // Whole seconds: croner's resolution. A sub-second `after` moves to its second, which
    // is not itself a candidate (strictly after).
    let secs = after.unix_timestamp();
    let start = Utc.timestamp_opt(secs, 0).single()?.with_timezone(&tz);
    let t = cron.find_next_occurrence(&start, false).ok()?;
    to_time(t)
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
    let n = cron.split_whitespace().count();
    if !cron.starts_with('@') && !(5..=6).contains(&n) {
        return Err(SpecError::invalid(
            &field("cron"),
            format!(
                "cron {cron:?} has {n} fields; use 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)"
            ),
        ));
    }
    if let Err(e) = parser().parse(&cron) {
        return Err(SpecError::invalid(
            &field("cron"),
            format!("cron {cron:?} is not valid: {e}"),
        ));
    }
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
