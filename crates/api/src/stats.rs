//! Activity over the last minutes, for the console's list and charts.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ignis_store::Activity;
use time::OffsetDateTime;

use crate::answers::ts;
use crate::answers::{AllStats, FunctionStats, FunctionSummary, MinuteStats, StatsTotals};
use crate::error::errors;
use crate::functions::path_name;
use crate::params::{Pairs, Params};
use crate::{blocking, exists};
use crate::{ApiError, AppState, Path, Query};

/// The longest period asked for: a day.
const MAX_MINUTES: usize = 1440;

/// `?minutes=`: 1 to a day, an hour by default.
pub(crate) struct Minutes(i64);

impl Params for Minutes {
    const NAMES: &'static [&'static str] = &["minutes"];

    fn read(q: &Pairs) -> Result<Minutes, ApiError> {
        let minutes = q.int("minutes", 60, MAX_MINUTES)?;
        Ok(Minutes(i64::try_from(minutes).unwrap_or(60)))
    }
}

/// The period: `minutes` whole minutes ending with the current one.
fn period(Minutes(minutes): Minutes) -> (i64, OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc().unix_timestamp().div_euclid(60) + 1;
    let at =
        |minute: i64| OffsetDateTime::from_unix_timestamp(minute * 60).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    (minutes, at(now - minutes), at(now))
}

impl crate::params::Described for Minutes {
    fn describe() -> Vec<utoipa::openapi::path::Parameter> {
        vec![crate::params::query_param(
            "minutes",
            "The period: this many whole minutes up to now (1 to 1440, 60 by default)",
            crate::params::int_schema(1, MAX_MINUTES, 60),
            false,
        )]
    }
}

/// The value at `p` (0–1) of sorted `values`, by the nearest-rank rule.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank - 1).copied()
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// `GET /v1/functions/{name}/stats?minutes=60`: totals with duration percentiles, and a
/// series by minute (every minute of the period, oldest first).
#[utoipa::path(get, operation_id = "function_stats", path = "/v1/functions/{name}/stats", tag = "activity",
    params(("name" = String, Path, description = "The function's name", example = "hello"), Query<Minutes>),
    responses((status = 200, body = FunctionStats), errors::BadQuery, errors::Unauthorized, errors::NotFound))]
pub(crate) async fn function_stats(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(m): Query<Minutes>,
) -> Result<Response, ApiError> {
    let name = path_name(&name)?;
    let (minutes, since, until) = period(m);
    exists(&s, name.as_str())?;
    let store = s.platform.store().clone();
    let function = name.as_str().to_owned();
    let activity: Activity = blocking(move || store.activity(Some(&function), since, until)).await?;
    let by_minute: BTreeMap<i64, _> = activity.minutes.iter().map(|m| (m.minute, m)).collect();
    let first = since.unix_timestamp() / 60;
    let series = (first..first + minutes)
        .map(|minute| {
            let at = ts(OffsetDateTime::from_unix_timestamp(minute * 60).unwrap_or(since));
            match by_minute.get(&minute) {
                Some(m) => MinuteStats {
                    at,
                    invocations: m.invocations,
                    errors: m.errors,
                    cold_starts: m.cold_starts,
                    avg_ms: Some(round3(m.billed_ms as f64 / m.invocations.max(1) as f64)),
                },
                None => MinuteStats {
                    at,
                    invocations: 0,
                    errors: 0,
                    cold_starts: 0,
                    avg_ms: None,
                },
            }
        })
        .collect();
    let mut durations: Vec<f64> = activity.durations.iter().map(|(_, d)| *d).collect();
    durations.sort_by(f64::total_cmp);
    let sum = |f: fn(&ignis_store::MinuteUsage) -> u64| activity.minutes.iter().map(f).sum::<u64>();
    Ok(Json(FunctionStats {
        since: ts(since),
        until: ts(until),
        minutes,
        totals: StatsTotals {
            invocations: sum(|m| m.invocations),
            errors: sum(|m| m.errors),
            cold_starts: sum(|m| m.cold_starts),
            p50_ms: percentile(&durations, 0.5).map(round3),
            p95_ms: percentile(&durations, 0.95).map(round3),
        },
        series,
    })
    .into_response())
}

/// `GET /v1/stats?minutes=60`: per function with invocations in the period, its
/// invocations, errors, cold starts and median duration.
#[utoipa::path(get, operation_id = "all_stats", path = "/v1/stats", tag = "activity", params(Query<Minutes>),
    responses((status = 200, body = AllStats), errors::BadQuery, errors::Unauthorized))]
pub(crate) async fn all_stats(
    State(s): State<AppState>,
    Query(m): Query<Minutes>,
) -> Result<Response, ApiError> {
    let (minutes, since, until) = period(m);
    let store = s.platform.store().clone();
    let activity: Activity = blocking(move || store.activity(None, since, until)).await?;
    let mut durations: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (f, d) in &activity.durations {
        durations.entry(f.as_str()).or_default().push(*d);
    }
    let mut functions: BTreeMap<String, FunctionSummary> = BTreeMap::new();
    for m in &activity.minutes {
        let entry = functions.entry(m.function.clone()).or_default();
        entry.invocations += m.invocations;
        entry.errors += m.errors;
        entry.cold_starts += m.cold_starts;
    }
    for (f, mut d) in durations {
        d.sort_by(f64::total_cmp);
        if let Some(entry) = functions.get_mut(f) {
            entry.p50_ms = percentile(&d, 0.5).map(round3);
        }
    }
    Ok(Json(AllStats {
        since: ts(since),
        until: ts(until),
        minutes,
        functions,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_follow_the_nearest_rank_rule() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert_eq!(percentile(&v, 0.5), Some(3.0));
        assert_eq!(percentile(&v, 0.95), Some(10.0));
        assert_eq!(percentile(&v[..4], 0.5), Some(2.0));
        assert_eq!(percentile(&[7.0], 0.5), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
