//! Metering: what each function used over a period (`GET /v1/usage`).

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ignis_store::FunctionUsage;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::internal;
use crate::{ApiError, AppState, Query};

/// The rollup's granularity.
const MINUTE_NS: i128 = 60_000_000_000;

/// `GET /v1/usage?since=RFC3339[&until=RFC3339]`: per function, invocations, errors, cold
/// starts, billed time and GB-seconds (`memory_mb` / 1024 × billed seconds) of the
/// invocations that started in the period. Usage is kept by the minute: `since` is rounded
/// down and `until` up to a whole minute, and the answer says which period it covers.
/// Without `until`, everything since `since`.
pub(crate) async fn usage(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref(), &["since", "until"])?;
    let asked_since = match q.get("since") {
        Some(v) => time_param("since", &v)?,
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
            let until = time_param("until", &v)?;
            if until <= asked_since {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_parameter",
                    format!("until ({v}) must be after since"),
                )
                .with("field", "until"));
            }
            Some(ceil_minute(until))
        }
    };
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
    let mut total = FunctionUsage::default();
    for u in &rows {
        total.invocations += u.invocations;
        total.errors += u.errors;
        total.cold_starts += u.cold_starts;
        total.billed_ms += u.billed_ms;
        total.mb_ms += u.mb_ms;
    }
    let functions: Vec<Value> = rows
        .iter()
        .map(|u| {
            let mut v = usage_json(u);
            v["function"] = json!(u.function);
            v
        })
        .collect();
    Ok(Json(json!({
        "since": rfc3339(since),
        "until": until.map(rfc3339),
        "functions": functions,
        "total": usage_json(&total),
    }))
    .into_response())
}

fn usage_json(u: &FunctionUsage) -> Value {
    json!({
        "invocations": u.invocations,
        "errors": u.errors,
        "cold_starts": u.cold_starts,
        "billed_ms": u.billed_ms,
        "gb_seconds": gb_seconds(u.mb_ms),
    })
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

fn time_param(name: &str, raw: &str) -> Result<OffsetDateTime, ApiError> {
    let text = percent_decode(raw);
    OffsetDateTime::parse(&text, &Rfc3339).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("{name} must be an RFC 3339 time such as 2026-01-31T00:00:00Z, got {text:?}"),
        )
        .with("field", name)
    })
}

/// Query values as clients send them: `%2B` for the `+` of an offset. A literal `+` is
/// kept (a time has no spaces, so it cannot mean one).
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn percent_escapes_are_decoded_and_plus_is_kept() {
        assert_eq!(
            percent_decode("2026-11-23T10:00:00%2B01:00"),
            "2026-11-23T10:00:00+01:00"
        );
        assert_eq!(
            percent_decode("2026-11-23T10:00:00+01:00"),
            "2026-11-23T10:00:00+01:00"
        );
        assert_eq!(percent_decode("10%3A00"), "10:00");
        assert_eq!(percent_decode("bad%2"), "bad%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn gb_seconds_is_memory_in_gib_times_billed_seconds() {
        assert_eq!(gb_seconds(1024 * 1000), 1.0);
        assert_eq!(gb_seconds(128 * 3), 0.000_375);
    }
}
