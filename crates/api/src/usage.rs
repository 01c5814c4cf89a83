//! Metering: what each function used over a period (`GET /v1/usage`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::answers::{FunctionUsage, Usage, UsageTotals};
use crate::error::errors;
use crate::error::internal;
use crate::params::{query_param, Pairs, Params};
use crate::{ApiError, AppState, Query};

/// The rollup's granularity.
const MINUTE_NS: i128 = 60_000_000_000;

/// `GET /v1/usage?since=RFC3339[&until=RFC3339]`: per function, invocations, errors, cold
/// starts, billed time and GB-seconds (`memory_mb` / 1024 × billed seconds) of the
/// invocations that started in the period. Usage is kept by the minute: `since` is rounded
/// down and `until` up to a whole minute, and the answer says which period it covers.
/// Without `until`, everything since `since`.
#[utoipa::path(get, operation_id = "usage", path = "/v1/usage", tag = "activity", params(Query<Period>),
    responses((status = 200, body = Usage), errors::BadQuery, errors::Unauthorized))]
pub(crate) async fn usage(
    State(s): State<AppState>,
    Query(Period {
        since: asked_since,
        until,
    }): Query<Period>,
) -> Result<Response, ApiError> {
    let until = until.map(ceil_minute);
    let since = floor_minute(asked_since);
    let store = s.platform.store().clone();
    let rows = tokio::task::spawn_blocking(move || {
        store.usage(
            since,
            until.unwrap_or(OffsetDateTime::new_utc(time::Date::MAX, time::Time::MIDNIGHT)),
        )
    })
    .await
    .map_err(|e| internal(&e))?
    .map_err(|e| internal(&e))?;
    let mut total = ignis_store::FunctionUsage::default();
    for u in &rows {
        total.invocations += u.invocations;
        total.errors += u.errors;
        total.cold_starts += u.cold_starts;
        total.billed_ms += u.billed_ms;
        total.mb_ms += u.mb_ms;
    }
    let functions = rows
        .iter()
        .map(|u| FunctionUsage {
            function: u.function.clone(),
            usage: totals(u),
        })
        .collect();
    Ok(Json(Usage {
        since: rfc3339(since),
        until: until.map(rfc3339),
        functions,
        total: totals(&total),
    })
    .into_response())
}

/// `?since=` (required) and `?until=` (after `since`), RFC 3339 times.
pub(crate) struct Period {
    since: OffsetDateTime,
    until: Option<OffsetDateTime>,
}

impl Params for Period {
    const NAMES: &'static [&'static str] = &["since", "until"];

    fn read(q: &Pairs) -> Result<Period, ApiError> {
        let since = match q.get("since") {
            Some(v) => time_param("since", v)?,
            None => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "missing_parameter",
                    "since is required: an RFC 3339 time such as 2026-01-31T00:00:00Z",
                )
                .with("field", "since"))
            }
        };
        let until = match q.get("until") {
            None => None,
            Some(v) => {
                let until = time_param("until", v)?;
                if until <= since {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_parameter",
                        format!("until ({v}) must be after since"),
                    )
                    .with("field", "until"));
                }
                Some(until)
            }
        };
        Ok(Period { since, until })
    }
}

impl crate::params::Described for Period {
    fn describe() -> Vec<utoipa::openapi::path::Parameter> {
        let time = || {
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::Type::String)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::DateTime,
                )))
                .examples(["2026-01-31T00:00:00Z"])
                .build()
        };
        vec![
            query_param(
                "since",
                "The period's start (RFC 3339), rounded down to a minute",
                time(),
                true,
            ),
            query_param(
                "until",
                "The period's end (RFC 3339, after since), rounded up to a minute; open when left out",
                time(),
                false,
            ),
        ]
    }
}

fn totals(u: &ignis_store::FunctionUsage) -> UsageTotals {
    UsageTotals {
        invocations: u.invocations,
        errors: u.errors,
        cold_starts: u.cold_starts,
        billed_ms: u.billed_ms,
        gb_seconds: gb_seconds(u.mb_ms),
    }
}

/// MB·ms to GB·s, as Lambda bills it (1 GB = 1024 MB).
pub(crate) fn gb_seconds(mb_ms: u64) -> f64 {
    // Exact for any realistic total (below 2^53 MB·ms).
    mb_ms as f64 / 1024.0 / 1000.0
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// A time given as a decoded query value. A `+` sent unescaped (the offset's) arrives as a
/// space; a time has no spaces, so it is read back as the `+` it was.
fn time_param(name: &str, value: &str) -> Result<OffsetDateTime, ApiError> {
    let text = value.replace(' ', "+");
    OffsetDateTime::parse(&text, &Rfc3339).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("{name} must be an RFC 3339 time such as 2026-01-31T00:00:00Z, got {text:?}"),
        )
        .with("field", name)
    })
}

fn floor_minute(t: OffsetDateTime) -> OffsetDateTime {
    let ns = t.unix_timestamp_nanos();
    let floored = ns - ns.rem_euclid(MINUTE_NS);
    OffsetDateTime::from_unix_timestamp_nanos(floored).unwrap_or(t)
}

fn ceil_minute(t: OffsetDateTime) -> OffsetDateTime {
    let ns = t.unix_timestamp_nanos();
    let rem = ns.rem_euclid(MINUTE_NS);
    if rem == 0 {
        return t;
    }
    OffsetDateTime::from_unix_timestamp_nanos(ns - rem + MINUTE_NS).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_out_to_whole_minutes() {
        let t = OffsetDateTime::parse("2026-11-23T10:15:42.5+01:00", &Rfc3339).expect("valid");
        assert_eq!(rfc3339(floor_minute(t)), "2026-11-23T09:15:00Z");
        assert_eq!(rfc3339(ceil_minute(t)), "2026-11-23T09:16:00Z");
        let aligned = OffsetDateTime::parse("2026-11-23T10:15:00Z", &Rfc3339).expect("valid");
        assert_eq!(ceil_minute(aligned), aligned);
        assert_eq!(floor_minute(aligned), aligned);
    }

    #[test]
    fn an_unescaped_plus_of_an_offset_is_kept() {
        let t = time_param("since", "2026-11-23T10:00:00 01:00").expect("read back as +01:00");
        assert_eq!(rfc3339(t), "2026-11-23T09:00:00Z");
        assert_eq!(
            time_param("since", "yesterday").expect_err("bad").code,
            "invalid_parameter"
        );
    }

    #[test]
    fn gb_seconds_is_memory_in_gib_times_billed_seconds() {
        assert_eq!(gb_seconds(1024 * 1000), 1.0);
        assert_eq!(gb_seconds(128 * 3), 0.000_375);
    }
}
