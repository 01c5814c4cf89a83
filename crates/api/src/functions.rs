//! `/v1/functions`: create, list, get, update, delete.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ignis_control::DeployWait;
use ignis_core::{parse_spec, FunctionName};
use serde_json::json;

use crate::params::Wait;
use crate::{read_body, ApiError, AppState, NoParams, Path, Query};

/// The largest function body: 5 MiB of code, which JSON escaping can double, plus config.
pub(crate) const MAX_FUNCTION_BODY: usize = 12 * 1024 * 1024;

pub(crate) fn path_name(name: &str) -> Result<FunctionName, ApiError> {
    // A name that is not valid cannot name a stored function: not found, saying why.
    FunctionName::parse(name).map_err(|why| {
        ApiError::not_found(format!("function {name:?} cannot exist: {why}")).with("field", "name")
    })
}

fn wait(Wait(wait): Wait) -> DeployWait {
    if wait {
        DeployWait::UntilDone
    } else {
        DeployWait::No
    }
}

pub(crate) async fn create(
    State(s): State<AppState>,
    Query(w): Query<Wait>,
    body: Body,
) -> Result<Response, ApiError> {
    let wait = wait(w);
    let body = read_body(body, MAX_FUNCTION_BODY, "function body").await?;
    let spec = parse_spec(&body, None)?;
    let view = s.platform.create(spec, wait).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub(crate) async fn update(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(w): Query<Wait>,
    body: Body,
) -> Result<Response, ApiError> {
    let wait = wait(w);
    let name = path_name(&name)?;
    let body = read_body(body, MAX_FUNCTION_BODY, "function body").await?;
    let spec = parse_spec(&body, Some(&name))?;
    let view = s.platform.update(spec, wait).await?;
    Ok(Json(view).into_response())
}

pub(crate) async fn list(State(s): State<AppState>, _: Query<NoParams>) -> Json<serde_json::Value> {
    Json(json!({ "functions": s.platform.list() }))
}

pub(crate) async fn get(
    State(s): State<AppState>,
    Path(name): Path<String>,
    _: Query<NoParams>,
) -> Result<Response, ApiError> {
    let name = path_name(&name)?;
    let view = s
        .platform
        .get(name.as_str())
        .ok_or_else(|| ApiError::not_found(format!("function {:?} does not exist", name.as_str())))?;
    Ok(Json(view).into_response())
}

pub(crate) async fn delete(
    State(s): State<AppState>,
    Path(name): Path<String>,
    _: Query<NoParams>,
) -> Result<StatusCode, ApiError> {
    let name = path_name(&name)?;
    s.platform.delete(name.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}
