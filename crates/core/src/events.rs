//! A function's asynchronous settings: retries of failed attempts, destinations, and how
//! many of its queued invocations run at once. Pure rules: parsing and the retry delay.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::{FunctionName, SpecError};

/// How failed attempts of an asynchronous invocation are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrySettings {
    /// Attempts after the first one (so `max_retries + 1` in all).
    pub max_retries: u32,
    /// An invocation older than this is not attempted again: it becomes a dead letter.
    pub max_event_age_secs: u32,
}

/// `max_retries`: (min, max, default).
pub const MAX_RETRIES: (u32, u32, u32) = (0, 5, 2);
/// `max_event_age_secs`: one second to six hours, six hours by default.
pub const MAX_EVENT_AGE_SECS: (u32, u32, u32) = (1, 21_600, 21_600);
/// `max_async_concurrency`: (min, max); the default depends on `max_instances`.
pub const MAX_ASYNC_CONCURRENCY: (u32, u32) = (1, 1000);
/// Longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_retries: MAX_RETRIES.2,
            max_event_age_secs: MAX_EVENT_AGE_SECS.2,
        }
    }
}

impl RetrySettings {
    pub fn max_attempts(&self) -> u32 {
        self.max_retries + 1
    }
}

/// The wait before attempt `failed + 1`, after `failed` failed attempts: exponential
/// (`base`, 2×, 4× …, capped at [`MAX_RETRY_DELAY`]) with "equal jitter": half of it fixed,
/// the other half scaled by `jitter` in [0, 1), so retries of many invocations spread out
/// but never come sooner than half the exponential delay.
pub fn retry_delay(base: Duration, failed: u32, jitter: f64) -> Duration {
    let exp = base
        .saturating_mul(1u32 << failed.saturating_sub(1).min(20))
        .min(MAX_RETRY_DELAY);
    let half = exp / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// How many of a function's asynchronous invocations run at once when it does not say:
/// half its instances (at least one), so queued work leaves room for synchronous calls.
pub fn default_async_concurrency(max_instances: u32, concurrency: u32) -> u32 {
    (max_instances.saturating_mul(concurrency) / 2).max(1)
}

pub(crate) fn parse_retry(value: Option<&Value>) -> Result<RetrySettings, SpecError> {
    let map = match value {
        None | Some(Value::Null) => return Ok(RetrySettings::default()),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(SpecError::malformed(
                "invalid_type",
                "retry",
                "retry must be an object: {\"max_retries\": 0-5, \"max_event_age_secs\": 1-21600}".to_owned(),
            ))
        }
    };
    const KNOWN: [&str; 2] = ["max_retries", "max_event_age_secs"];
    if let Some(k) = map.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(SpecError::malformed(
            "unknown_field",
            &format!("retry.{k}"),
            format!(
                "unknown field {k:?} in retry; known fields are {}",
                KNOWN.join(", ")
            ),
        ));
    }
    let field = |name: &str, (min, max, default): (u32, u32, u32)| -> Result<u32, SpecError> {
        let path = format!("retry.{name}");
        match map.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) if v >= i64::from(min) && v <= i64::from(max) => {
                    Ok(u32::try_from(v).expect("within u32 bounds checked above"))
                }
                Some(v) => Err(SpecError::invalid(
                    &path,
                    format!("{path} must be between {min} and {max}, got {v}"),
                )),
                None => Err(SpecError::malformed(
                    "invalid_type",
                    &path,
                    format!("{path} must be an integer"),
                )),
            },
            Some(_) => Err(SpecError::malformed(
                "invalid_type",
                &path,
                format!("{path} must be an integer"),
            )),
        }
    };
    Ok(RetrySettings {
        max_retries: field("max_retries", MAX_RETRIES)?,
        max_event_age_secs: field("max_event_age_secs", MAX_EVENT_AGE_SECS)?,
    })
}

/// A destination (`on_success`, `on_failure`): another function's name.
pub(crate) fn parse_destination(
    field: &str,
    value: Option<&Value>,
    own: &FunctionName,
) -> Result<Option<FunctionName>, SpecError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let name =
                FunctionName::parse(s).map_err(|m| SpecError::invalid(field, format!("{field}: {m}")))?;
            if &name == own {
                return Err(SpecError::invalid(
                    field,
                    format!("{field} names the function itself; a destination must be another function"),
                ));
            }
            Ok(Some(name))
        }
        Some(_) => Err(SpecError::malformed(
            "invalid_type",
            field,
            format!("{field} must be a function name (a string)"),
        )),
    }
}

/// Destination hops one asynchronous invocation may start: the invocation a caller (the
/// API, a schedule, a redrive) made is hop 0, the one its destination receives hop 1, and so
/// on. Hop 17 is not run (AWS Lambda stops recursive loops after 16 hops too).
pub const MAX_DESTINATION_HOPS: u32 = 16;

/// The shortest cycle of destinations (`on_success` and `on_failure` alike: either can lead
/// back) that goes through `start`, as the names along it from `start` back to `start`; None
/// when there is none. `destinations` gives a function's destinations in the graph being
/// checked (for `start`, those of its new spec).
pub fn destination_cycle(
    start: &FunctionName,
    destinations: impl Fn(&FunctionName) -> Vec<FunctionName>,
) -> Option<Vec<FunctionName>> {
    // Breadth-first from `start`, remembering how each function was reached.
    let mut reached_from: HashMap<FunctionName, FunctionName> = HashMap::new();
    let mut next = VecDeque::from([start.clone()]);
    while let Some(f) = next.pop_front() {
        for d in destinations(&f) {
            if &d == start {
                let mut cycle = vec![start.clone(), f.clone()];
                let mut at = f;
                while let Some(prev) = reached_from.get(&at) {
                    cycle.push(prev.clone());
                    at = prev.clone();
                }
                cycle.reverse();
                return Some(cycle);
            }
            if !reached_from.contains_key(&d) {
                reached_from.insert(d.clone(), f.clone());
                next.push_back(d);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> FunctionName {
        FunctionName::parse(s).expect("a valid name")
    }

    fn graph<'a>(edges: &'a [(&'a str, &'a str)]) -> impl Fn(&FunctionName) -> Vec<FunctionName> + 'a {
        move |f| {
            edges
                .iter()
                .filter(|(from, _)| *from == f.as_str())
                .map(|(_, to)| name(to))
                .collect()
        }
    }

    fn cycle(start: &str, edges: &[(&str, &str)]) -> Option<Vec<String>> {
        destination_cycle(&name(start), graph(edges))
            .map(|c| c.iter().map(|n| n.as_str().to_owned()).collect())
    }

    #[test]
    fn a_destination_cycle_is_found_and_named_from_the_changed_function() {
        assert_eq!(
            cycle("a", &[("a", "b"), ("b", "a")]),
            Some(vec!["a".into(), "b".into(), "a".into()])
        );
        assert_eq!(
            cycle("b", &[("a", "b"), ("b", "c"), ("c", "a")]),
            Some(vec!["b".into(), "c".into(), "a".into(), "b".into()])
        );
        // The shortest one when there are several.
        assert_eq!(
            cycle("a", &[("a", "b"), ("b", "c"), ("c", "d"), ("d", "a"), ("b", "a")]),
            Some(vec!["a".into(), "b".into(), "a".into()])
        );
    }

    #[test]
    fn chains_and_cycles_elsewhere_are_not_cycles_through_the_function() {
        assert_eq!(cycle("a", &[("a", "b"), ("b", "c"), ("a", "c")]), None);
        // A cycle the function leads into but is not part of (an older store's) is not its.
        assert_eq!(cycle("a", &[("a", "b"), ("b", "c"), ("c", "b")]), None);
        assert_eq!(cycle("a", &[]), None);
    }

    #[test]
    fn retry_delays_double_with_half_of_each_jittered() {
        let base = Duration::from_secs(1);
        assert_eq!(retry_delay(base, 1, 0.0), Duration::from_millis(500));
        assert_eq!(
            retry_delay(base, 1, 0.999_999),
            Duration::from_micros(999_999) + Duration::from_nanos(500)
        );
        assert_eq!(retry_delay(base, 2, 0.0), Duration::from_secs(1));
        assert_eq!(retry_delay(base, 3, 0.5), Duration::from_secs(3));
        assert_eq!(retry_delay(base, 40, 1.0), MAX_RETRY_DELAY);
    }

    #[test]
    fn the_default_async_concurrency_leaves_room() {
        assert_eq!(default_async_concurrency(10, 1), 5);
        assert_eq!(default_async_concurrency(1, 1), 1);
        assert_eq!(default_async_concurrency(3, 4), 6);
    }
}
