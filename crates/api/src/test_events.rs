//! Test events saved per function, for the console's invoke panel.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ignis_store::{Saved, TestEvent};
use serde_json::value::RawValue;

use crate::answers::ts;
use crate::answers::{TestEventView, TestEvents};
use crate::error::errors;
use crate::error::internal;
use crate::functions::path_name;
use crate::{blocking, exists};
use crate::{read_body, ApiError, AppState, NoParams, Path, Query};

/// Test events kept per function.
pub(crate) const MAX_TEST_EVENTS: usize = 50;
/// The largest test event, in bytes.
pub(crate) const MAX_TEST_EVENT_BYTES: usize = 256 * 1024;

/// 1 to 64 letters, digits, spaces, `-`, `_` or `.`, not starting or ending with a space.
fn event_name(name: &str) -> Result<&str, ApiError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
        && !name.starts_with(' ')
        && !name.ends_with(' ');
    if ok {
        Ok(name)
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_name",
            format!(
                "test event name {name:?} is not valid: use 1 to 64 letters, digits, spaces, '-', '_' \
                 or '.', not starting or ending with a space"
            ),
        )
        .with("field", "name"))
    }
}

/// A stored event as the API shows it; the event's JSON text is passed through as is.
fn event_view(e: &TestEvent) -> Result<TestEventView, ApiError> {
    let event = RawValue::from_string(e.event.clone()).map_err(|err| internal(&err))?;
    Ok(TestEventView {
        name: e.name.clone(),
        event,
        updated_at: ts(e.updated_at),
    })
}

/// `GET /v1/functions/{name}/test-events`
#[utoipa::path(get, operation_id = "list_test_events", path = "/v1/functions/{name}/test-events", tag = "console",
    params(("name" = String, Path, description = "The function's name", example = "hello")),
    responses((status = 200, body = TestEvents), errors::BadQuery, errors::Unauthorized, errors::NotFound))]
pub(crate) async fn list(
    State(s): State<AppState>,
    Path(name): Path<String>,
    _: Query<NoParams>,
) -> Result<Response, ApiError> {
    let name = path_name(&name)?;
    exists(&s, name.as_str())?;
    let store = s.platform.store().clone();
    let events = blocking(move || store.list_test_events(name.as_str())).await?;
    let test_events = events.iter().map(event_view).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(TestEvents { test_events }).into_response())
}

/// `PUT /v1/functions/{name}/test-events/{event}`: the body is the event (JSON).
#[utoipa::path(put, operation_id = "put_test_event", path = "/v1/functions/{name}/test-events/{event}", tag = "console",
    params(("name" = String, Path, description = "The function's name", example = "hello"), ("event" = String, Path, description = "The test event's name: 1 to 64 letters, digits, spaces, `-`, `_` or `.`, not starting or ending with a space", pattern = "^[A-Za-z0-9._-]([A-Za-z0-9 ._-]{0,62}[A-Za-z0-9._-])?$", example = "sample")),
    request_body(content = Value, description = "The event: any JSON", content_type = "application/json"),
    responses(
        (status = 200, description = "Replaced", body = TestEventView),
        (status = 201, description = "Saved", body = TestEventView, links(
            ("delete" = (operation_id = "delete_test_event", parameters(
                ("name" = "$request.path.name"), ("event" = "$response.body#/name")))),
        )),
        errors::BadQuery, errors::Unauthorized, errors::NotFound, errors::Conflict, errors::TooLarge,
        errors::DiskFull,
    ))]
pub(crate) async fn put(
    State(s): State<AppState>,
    Path((name, event)): Path<(String, String)>,
    _: Query<NoParams>,
    body: Body,
) -> Result<Response, ApiError> {
    let name = path_name(&name)?;
    let event = event_name(&event)?.to_owned();
    exists(&s, name.as_str())?;
    let body = read_body(body, MAX_TEST_EVENT_BYTES, "test event").await?;
    let text = std::str::from_utf8(&body).map_err(|_| invalid_json("the test event is not UTF-8"))?;
    let raw: Box<RawValue> = serde_json::from_str(text)
        .map_err(|e| invalid_json(&format!("the test event is not valid JSON: {e}")))?;
    crate::invocations::check_event_depth(raw.get().as_bytes(), "the test event")?;
    let saved = TestEvent {
        name: event,
        event: raw.get().to_owned(),
        updated_at: ignis_control::now_ms(),
    };
    let store = s.platform.store().clone();
    let function = name.as_str().to_owned();
    let row = saved.clone();
    let outcome = blocking(move || store.put_test_event(&function, &row, MAX_TEST_EVENTS)).await;
    match outcome {
        Ok(Saved::Full) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_test_events",
            format!(
                "function {:?} already has {MAX_TEST_EVENTS} test events; delete one first",
                name.as_str()
            ),
        )),
        Ok(Saved::Created) => Ok((StatusCode::CREATED, Json(event_view(&saved)?)).into_response()),
        Ok(Saved::Replaced) => Ok(Json(event_view(&saved)?).into_response()),
        Err(e) => Err(e),
    }
}

/// `DELETE /v1/functions/{name}/test-events/{event}`
#[utoipa::path(delete, operation_id = "delete_test_event", path = "/v1/functions/{name}/test-events/{event}", tag = "console",
    params(("name" = String, Path, description = "The function's name", example = "hello"), ("event" = String, Path, description = "The test event's name: 1 to 64 letters, digits, spaces, `-`, `_` or `.`, not starting or ending with a space", pattern = "^[A-Za-z0-9._-]([A-Za-z0-9 ._-]{0,62}[A-Za-z0-9._-])?$", example = "sample")),
    responses(
        (status = 204, description = "Deleted"),
        errors::BadQuery, errors::Unauthorized, errors::NotFound,
    ))]
pub(crate) async fn delete(
    State(s): State<AppState>,
    Path((name, event)): Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<Response, ApiError> {
    let name = path_name(&name)?;
    let event = event_name(&event)?.to_owned();
    exists(&s, name.as_str())?;
    let store = s.platform.store().clone();
    let function = name.as_str().to_owned();
    let shown = event.clone();
    if blocking(move || store.delete_test_event(&function, &event)).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "function {:?} has no test event {shown:?}",
            name.as_str()
        )))
    }
}

fn invalid_json(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message)
}

#[cfg(test)]
mod tests {
    use super::event_name;

    #[test]
    fn event_names_are_checked() {
        for ok in ["a", "hello world", "v1.2_test-event", &"x".repeat(64)] {
            assert!(event_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", " lead", "trail ", "slash/no", "emoji🙂", &"x".repeat(65)] {
            assert!(event_name(bad).is_err(), "{bad}");
        }
    }
}
