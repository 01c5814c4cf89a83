//! `/v1/functions`: create, list, get, update, delete.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ignis_control::DeployWait;
use ignis_core::{parse_spec, FunctionName};

use crate::answers::FunctionList;
use crate::openapi::errors;
use crate::params::Wait;
use crate::{read_body, ApiError, AppState, NoParams, Path, Query};

/// The largest function body: 5 MiB of code, which JSON escaping can double, plus config.
pub(crate) const MAX_FUNCTION_BODY: usize = 12 * 1024 * 1024;

/// A function's spec, as create and update take it (`name`, `runtime` and `code` are needed;
/// every other field has a default). Unknown fields are refused with `unknown_field`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct FunctionSpec {
    /// 1 to 64 lower-case letters, digits and `-`, starting with a letter. On update,
    /// the path's name (it may be left out).
    #[schema(example = "hello")]
    name: String,
    /// `python` or `bun`.
    #[schema(example = "python")]
    runtime: String,
    /// The handler's source, at most 5 MiB.
    #[schema(example = "def handler(event, context):\n    return {'ok': True}\n")]
    code: String,
    /// `module.function` (default `main.handler` for Python, `index.handler` for Bun).
    #[schema(required = false)]
    handler: String,
    #[schema(required = false, minimum = 1, maximum = 300)]
    timeout_secs: u32,
    #[schema(required = false, minimum = 128, maximum = 3072)]
    memory_mb: u32,
    #[schema(required = false, minimum = 1, maximum = 32)]
    vcpus: u32,
    #[schema(required = false, minimum = 1, maximum = 1000)]
    max_instances: u32,
    #[schema(required = false, minimum = 0, maximum = 1000)]
    min_instances: u32,
    #[schema(required = false, minimum = 1, maximum = 1000)]
    concurrency: u32,
    #[schema(required = false, minimum = 0, maximum = 86400)]
    idle_timeout_secs: u32,
    /// Environment variables (4 KiB in all).
    #[schema(required = false)]
    env: std::collections::BTreeMap<String, String>,
    /// `none` (the default) or `outbound`.
    #[schema(required = false)]
    network: String,
    /// Who may call the function's URL, and its CORS rules.
    #[schema(required = false, value_type = ignis_control::schema::HttpSettings)]
    http: (),
    /// How failed asynchronous attempts are retried.
    #[schema(required = false, value_type = ignis_control::schema::RetrySettings)]
    retry: (),
    /// A function invoked asynchronously with the result of each successful async call.
    #[schema(required = false)]
    on_success: String,
    /// A function invoked asynchronously with each async call that failed for good.
    #[schema(required = false)]
    on_failure: String,
    #[schema(required = false, minimum = 1, maximum = 1000)]
    max_async_concurrency: u32,
    /// Cron schedules, each firing an asynchronous invocation.
    #[schema(required = false, value_type = Vec<Object>)]
    schedules: (),
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

/// Creates a function; it deploys in the background unless `wait` is given.
#[utoipa::path(post, operation_id = "create_function", path = "/v1/functions", tag = "functions", params(Query<Wait>),
    request_body(content = FunctionSpec, description = "The function's spec"),
    responses(
        (status = 201, description = "Created", body = ignis_control::FunctionView),
        errors::BadQuery, errors::Unauthorized, errors::Conflict, errors::TooLarge, errors::Invalid,
        errors::DiskFull,
    ))]
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

/// Replaces a function's spec with a new version; it deploys in the background unless
/// `wait` is given, and calls keep going to the active version until then.
#[utoipa::path(put, operation_id = "update_function", path = "/v1/functions/{name}", tag = "functions", params(("name" = String, Path, description = "The function's name", example = "hello"), Query<Wait>),
    request_body(content = FunctionSpec, description = "The function's whole new spec"),
    responses(
        (status = 200, description = "Updated", body = ignis_control::FunctionView),
        errors::BadQuery, errors::Unauthorized, errors::NotFound, errors::TooLarge, errors::Invalid,
        errors::DiskFull,
    ))]
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

/// Every function, by name, without its code.
#[utoipa::path(get, operation_id = "list_functions", path = "/v1/functions", tag = "functions",
    responses((status = 200, body = FunctionList), errors::BadQuery, errors::Unauthorized))]
pub(crate) async fn list(State(s): State<AppState>, _: Query<NoParams>) -> Json<FunctionList> {
    Json(FunctionList {
        functions: s.platform.list(),
    })
}

/// A function, with its code.
#[utoipa::path(get, operation_id = "get_function", path = "/v1/functions/{name}", tag = "functions", params(("name" = String, Path, description = "The function's name", example = "hello")),
    responses(
        (status = 200, body = ignis_control::FunctionView),
        errors::BadQuery, errors::Unauthorized, errors::NotFound,
    ))]
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

/// Deletes a function, its instances and its records.
#[utoipa::path(delete, operation_id = "delete_function", path = "/v1/functions/{name}", tag = "functions", params(("name" = String, Path, description = "The function's name", example = "hello")),
    responses(
        (status = 204, description = "Deleted"),
        errors::BadQuery, errors::Unauthorized, errors::NotFound,
    ))]
pub(crate) async fn delete(
    State(s): State<AppState>,
    Path(name): Path<String>,
    _: Query<NoParams>,
) -> Result<StatusCode, ApiError> {
    let name = path_name(&name)?;
    s.platform.delete(name.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}
