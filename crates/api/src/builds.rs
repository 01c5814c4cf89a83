//! A version's dependency build: its status and the installer's output, at once or
//! followed live as Server-Sent Events.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ignis_control::{BuildFollow, BuildView, LiveBuild};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

use crate::error::errors;
use crate::functions::path_name;
use crate::params::{Pairs, Params};
use crate::{ApiError, AppState, Path, Query};

/// The build of one version of a function: `none` when it had nothing to install, else how
/// its installer (uv or Bun) ran and what it printed. With `follow`, a Server-Sent Events
/// stream: one `log` event per line (the data is the line's text), then one `end` event
/// whose data is the build as JSON without its log; the stream then closes.
#[utoipa::path(get, operation_id = "get_build", path = "/v1/functions/{name}/versions/{version}/build", tag = "functions",
    params(
        ("name" = String, Path, description = "The function's name", example = "hello"),
        ("version" = String, Path, description = "The version (1, 2, …)", example = "1"),
        Query<BuildParams>,
    ),
    responses(
        (status = 200, content((BuildView = "application/json"), (BuildEvent = "text/event-stream"))),
        errors::BadQuery, errors::Unauthorized, errors::NotFound,
    ))]
pub(crate) async fn get(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    Query(BuildParams { follow }): Query<BuildParams>,
) -> Result<Response, ApiError> {
    let name = path_name(&name)?;
    let version = version_number(&version)?;
    if !follow {
        return Ok(Json(s.platform.build(name.as_str(), version).await?).into_response());
    }
    Ok(match s.platform.follow_build(name.as_str(), version).await? {
        BuildFollow::Done(view) => {
            let lines: Vec<String> = view
                .log
                .as_deref()
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect();
            crate::event_stream(futures::stream::iter(events(lines, Some(view.without_log()))))
        }
        BuildFollow::Live(live) => crate::event_stream(live_events(live)),
    })
}

/// `?follow=true`: stream the log as the build runs.
pub(crate) struct BuildParams {
    follow: bool,
}

impl Params for BuildParams {
    const NAMES: &'static [&'static str] = &["follow"];

    fn read(q: &Pairs) -> Result<BuildParams, ApiError> {
        Ok(BuildParams {
            follow: q.flag("follow")?,
        })
    }
}

impl crate::params::Described for BuildParams {
    fn describe() -> Vec<utoipa::openapi::path::Parameter> {
        vec![crate::params::query_param(
            "follow",
            "Stream the log as Server-Sent Events (`log` per line, then `end`) while the build runs",
            crate::params::flag_schema(),
            false,
        )]
    }
}

/// One Server-Sent Event of a followed build, for the document (axum writes the events).
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct BuildEvent {
    /// `log` (one line of output) or `end` (the build ended).
    #[schema(value_type = BuildEventKind)]
    pub event: String,
    /// The line's text for `log`; the `BuildView` as JSON, without `log`, for `end`.
    pub data: String,
}

/// The kinds of events a build stream sends.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BuildEventKind {
    Log,
    End,
}

/// A version number from the path: a positive integer, else no such version.
fn version_number(raw: &str) -> Result<u32, ApiError> {
    match raw.parse::<u32>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "version_not_found",
            format!("version {raw:?} cannot exist: versions are numbered 1, 2, …"),
        )
        .with("field", "version")),
    }
}

type Event = Result<axum::response::sse::Event, axum::Error>;

fn events(lines: Vec<String>, end: Option<BuildView>) -> Vec<Event> {
    use axum::response::sse::Event;
    let mut out: Vec<Result<Event, axum::Error>> = lines
        .into_iter()
        // An SSE data field cannot hold a line break; a line never has one.
        .map(|l| Ok(Event::default().event("log").data(l)))
        .collect();
    if let Some(view) = end {
        out.push(Event::default().event("end").json_data(view));
    }
    out
}

/// The lines of a running build as they come, then its end.
fn live_events(live: Arc<LiveBuild>) -> impl futures::Stream<Item = Event> {
    use futures::StreamExt;
    let changes = live.subscribe();
    futures::stream::unfold(Some((live, changes, 0usize)), |state| async move {
        let (live, mut changes, from) = state?;
        loop {
            let (lines, end) = live.read(from);
            let next = from + lines.len();
            if end.is_some() {
                return Some((futures::stream::iter(events(lines, end)), None));
            }
            if !lines.is_empty() {
                return Some((
                    futures::stream::iter(events(lines, None)),
                    Some((live, changes, next)),
                ));
            }
            if changes.changed().await.is_err() {
                // The build was dropped without an end (the server is stopping).
                return None;
            }
        }
    })
    .flatten()
}
