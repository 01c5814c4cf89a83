//! Schedules and the clock they follow (a manual one in tests).

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::answers::{ts, ClockView, Schedules};
use crate::error::errors;
use crate::error::internal;
use crate::{json_body, read_body, ApiError, AppState, NoParams, Query};

/// Every function's schedules, with their next fire times.
#[utoipa::path(get, operation_id = "list_schedules", path = "/v1/schedules", tag = "events",
    responses((status = 200, body = Schedules), errors::BadQuery, errors::Unauthorized))]
pub(crate) async fn schedules(State(s): State<AppState>, _: Query<NoParams>) -> Result<Response, ApiError> {
    let schedules = s.platform.schedules().await.map_err(|e| internal(&e))?;
    Ok(Json(Schedules { schedules }).into_response())
}

/// The time schedules follow.
#[utoipa::path(get, operation_id = "get_clock", path = "/v1/clock", tag = "events",
    responses((status = 200, body = ClockView), errors::BadQuery, errors::Unauthorized))]
pub(crate) async fn get_clock(State(s): State<AppState>, _: Query<NoParams>) -> Json<ClockView> {
    let manual = matches!(s.platform.clock(), ignis_control::Clock::Manual(_));
    Json(ClockView {
        now: ts(s.platform.clock().now()),
        manual,
    })
}

/// The body of `PUT /v1/clock`.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct SetClock {
    /// RFC 3339.
    #[schema(format = DateTime, example = "2026-03-29T00:30:00Z")]
    now: String,
}

/// `PUT /v1/clock {"now": "<RFC 3339>"}`: moves the manual clock (servers started with
/// `--manual-clock`, for tests).
#[utoipa::path(put, operation_id = "set_clock", path = "/v1/clock", tag = "events",
    request_body = SetClock,
    responses(
        (status = 200, body = ClockView),
        errors::BadQuery, errors::Unauthorized, errors::Conflict, errors::TooLarge, errors::Invalid,
    ))]
pub(crate) async fn set_clock(
    State(s): State<AppState>,
    _: Query<NoParams>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, 4096, "clock body").await?;
    let v = json_body(&body)?;
    let Value::Object(fields) = &v else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body must be a JSON object such as {\"now\": \"2026-03-29T00:30:00Z\"}",
        ));
    };
    if let Some(unknown) = fields.keys().find(|k| k.as_str() != "now") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_field",
            format!("unknown field {unknown:?}; the only field is now"),
        )
        .with("field", unknown.clone()));
    }
    let now = v["now"]
        .as_str()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_value",
                "now must be an RFC 3339 time such as 2026-03-29T00:30:00Z",
            )
            .with("field", "now")
        })?;
    if !s.platform.clock().set(now) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "clock_not_manual",
            "this server follows the system clock; start it with --manual-clock to set the time",
        ));
    }
    Ok(Json(ClockView {
        now: ts(now),
        manual: true,
    })
    .into_response())
}
