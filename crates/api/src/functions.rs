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

/// The largest body of a one-file playground run: 5 MiB of code, which JSON escaping can
/// double, plus config.
pub(crate) const MAX_FUNCTION_BODY: usize = 12 * 1024 * 1024;
/// The largest create or update body: a 50 MiB zip archive is 66.7 MiB in base64, plus
/// config (and the same room for `files`).
pub(crate) const MAX_PACKAGE_BODY: usize = 70 * 1024 * 1024;

/// Parses a create or update body off the async threads: a zip archive is inflated and
/// hashed, up to 250 MiB.
async fn parse(body: bytes::Bytes, name: Option<FunctionName>) -> Result<ignis_core::FunctionSpec, ApiError> {
    if body.len() <= 64 * 1024 {
        return Ok(parse_spec(&body, name.as_ref())?);
    }
    tokio::task::spawn_blocking(move || parse_spec(&body, name.as_ref()))
        .await
        .map_err(|e| crate::error::internal(&e))?
        .map_err(ApiError::from)
}

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
    let body = read_body(body, MAX_PACKAGE_BODY, "function body").await?;
    let spec = parse(body, None).await?;
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
    let body = read_body(body, MAX_PACKAGE_BODY, "function body").await?;
    let spec = parse(body, Some(name)).await?;
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
    let mut view = s
        .platform
        .get(name.as_str())
        .ok_or_else(|| ApiError::not_found(format!("function {:?} does not exist", name.as_str())))?;
    if view.package_sha256.is_some() {
        view.files = s.platform.package_files(name.as_str()).await?;
    }
    Ok(Json(view).into_response())
}

/// `GET /v1/functions/{name}/code`: the newest version's code as a zip archive (its
/// package, or its one file).
pub(crate) async fn code(
    State(s): State<AppState>,
    Path(name): Path<String>,
    _: Query<NoParams>,
) -> Result<Response, ApiError> {
    let name = path_name(&name)?;
    let zip = s.platform.code_zip(name.as_str()).await?;
    let disposition = format!("attachment; filename=\"{}.zip\"", name.as_str());
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/zip".to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        zip,
    )
        .into_response())
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
