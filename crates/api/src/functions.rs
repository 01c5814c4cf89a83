//! `/v1/functions`: create, list, get, update, delete.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ignis_control::DeployWait;
use ignis_core::{parse_spec, parse_update, FunctionName, SpecUpdate};

use crate::answers::FunctionList;
use crate::error::errors;
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
async fn parse(body: bytes::Bytes) -> Result<ignis_core::FunctionSpec, ApiError> {
    off_async_threads(body, move |body| parse_spec(body, None)).await
}

/// Parses an update body off the async threads; with no code, it keeps the function's.
async fn parse_changes(body: bytes::Bytes, name: FunctionName) -> Result<SpecUpdate, ApiError> {
    off_async_threads(body, move |body| parse_update(body, &name)).await
}

/// Runs `parse` on a large body on a blocking thread (a small one at once).
async fn off_async_threads<T: Send + 'static>(
    body: bytes::Bytes,
    parse: impl FnOnce(&[u8]) -> Result<T, ignis_core::SpecError> + Send + 'static,
) -> Result<T, ApiError> {
    if body.len() <= 64 * 1024 {
        return Ok(parse(&body)?);
    }
    tokio::task::spawn_blocking(move || parse(&body))
        .await
        .map_err(|e| crate::error::internal(&e))?
        .map_err(ApiError::from)
}

/// A function's spec, as create and update take it (`runtime` is needed, `name` on create,
/// and one of `code`, `files` or `zip` on create; an update without any of them keeps the
/// function's code; every other field may be left out or null for its default). Some rules are not in the
/// schema: `min_instances` at most `max_instances`, cron expressions and time zones that
/// parse, destinations that form no cycle, 4 KiB of environment in all.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct FunctionSpec {
    /// Needed on create; on update, the path's name (it may be left out).
    #[schema(pattern = "^[a-z][a-z0-9-]{0,62}$", example = "hello")]
    name: Option<String>,
    #[schema(value_type = RuntimeName)]
    runtime: String,
    /// A one-file function's source, at most 5 MiB, not only white space. One of `code`,
    /// `files` and `zip` is given on create, and at most one on update (none: the newest
    /// version's code is kept).
    #[schema(
        max_length = 5242880,
        example = "def handler(event, context):\n    return {'ok': True}\n"
    )]
    code: Option<String>,
    /// A package of several files: relative path → UTF-8 text. Paths are relative, `/`
    /// separated, without `.` or `..` parts; at most 10,000 files and 250 MiB in all.
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    files: (),
    /// A package as a zip archive, in base64 (as Lambda's `ZipFile`): at most 50 MiB
    /// zipped and 250 MiB unpacked, regular files only (no links or devices).
    #[schema(format = Byte)]
    zip: Option<String>,
    /// For `code`: the handler function's name in it (default `handler`). For `files` or
    /// `zip` (needed): Lambda's `path/module.function` (`app.lambda_handler`,
    /// `hello_world/app.lambda_handler`, `src/lambda.handler`).
    #[schema(max_length = 1152, example = "handler")]
    handler: Option<String>,
    #[schema(minimum = 1, maximum = 300)]
    timeout_secs: Option<u32>,
    #[schema(minimum = 128, maximum = 3072)]
    memory_mb: Option<u32>,
    #[schema(minimum = 1, maximum = 32)]
    vcpus: Option<u32>,
    #[schema(minimum = 1, maximum = 1000)]
    max_instances: Option<u32>,
    #[schema(minimum = 0, maximum = 1000)]
    min_instances: Option<u32>,
    #[schema(minimum = 1, maximum = 1000)]
    concurrency: Option<u32>,
    #[schema(minimum = 0, maximum = 86400)]
    idle_timeout_secs: Option<u32>,
    /// Environment variables: names match `[A-Za-z_][A-Za-z0-9_]*`, values hold no NUL.
    env: Option<std::collections::BTreeMap<String, String>>,
    /// `none` (the default) or `outbound`.
    #[schema(value_type = Option<NetworkName>)]
    network: Option<String>,
    /// `process` (the default: a process in the sandbox) or `microvm` (each instance in its
    /// own virtual machine; `GET /v1/runtimes` says whether this host has the tier).
    #[schema(value_type = Option<IsolationName>)]
    isolation: Option<String>,
    /// Who may call the function's URL, and its CORS rules.
    #[schema(value_type = Option<Object>)]
    http: (),
    /// How failed asynchronous attempts are retried (`max_retries`, `max_event_age_secs`).
    #[schema(value_type = Option<Object>)]
    retry: (),
    /// A function invoked asynchronously with the result of each successful async call.
    #[schema(pattern = "^[a-z][a-z0-9-]{0,62}$")]
    on_success: Option<String>,
    /// A function invoked asynchronously with each async call that failed for good.
    #[schema(pattern = "^[a-z][a-z0-9-]{0,62}$")]
    on_failure: Option<String>,
    #[schema(minimum = 1, maximum = 1000)]
    max_async_concurrency: Option<u32>,
    /// Cron schedules (`cron`, `timezone`, `event`, `enabled`, `catch_up`), each firing an
    /// asynchronous invocation.
    #[schema(value_type = Option<Vec<Object>>)]
    schedules: (),
    /// Up to 5 layer versions as `name:version`, shown read-only under `/opt` in Lambda's
    /// layout (a later one's files win); each must exist and be for the function's runtime.
    #[schema(max_items = 5, example = json!(["shared:1"]))]
    layers: Option<Vec<String>>,
    /// How the runtime writes log records: `text` (Lambda's default) or `json` (one object
    /// per record, with its level and request id).
    #[schema(value_type = Option<LogFormatName>)]
    log_format: Option<String>,
    /// With `json` only: the lowest level of application records kept (`INFO` if not set).
    #[schema(value_type = Option<LogLevelName>)]
    log_level: Option<String>,
    /// The handler's calling convention: `lambda` (the default) or `openfaas` (OpenFaaS's
    /// python3-http template, `handle(event, context)`; Python only).
    #[schema(value_type = Option<HandlerStyleName>)]
    handler_style: Option<String>,
}

/// A handler's calling convention.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum HandlerStyleName {
    Lambda,
    Openfaas,
}

/// How a function's log records are written.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum LogFormatName {
    Text,
    Json,
}

/// The lowest level of log records kept.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "UPPERCASE")]
#[allow(dead_code)]
pub(crate) enum LogLevelName {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

/// A runtime's name.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum RuntimeName {
    Python,
    Javascript,
    Typescript,
}

/// What a function's instances may reach: nothing, or the internet.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum NetworkName {
    None,
    Outbound,
}

/// Where a function's instances run.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum IsolationName {
    Process,
    Microvm,
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
        (status = 201, description = "Created", body = ignis_control::FunctionView, links(
            ("get" = (operation_id = "get_function", parameters(("name" = "$response.body#/name")))),
            ("update" = (operation_id = "update_function", parameters(("name" = "$response.body#/name")))),
            ("delete" = (operation_id = "delete_function", parameters(("name" = "$response.body#/name")))),
            ("invoke" = (operation_id = "invoke_function", parameters(("name" = "$response.body#/name")))),
            ("invocations" = (operation_id = "list_invocations", parameters(("name" = "$response.body#/name")))),
            ("logs" = (operation_id = "function_logs", parameters(("name" = "$response.body#/name")))),
            ("stats" = (operation_id = "function_stats", parameters(("name" = "$response.body#/name")))),
            ("test_events" = (operation_id = "list_test_events", parameters(("name" = "$response.body#/name")))),
            ("dead_letters" = (operation_id = "list_dead_letters", parameters(("name" = "$response.body#/name")))),
        )),
        errors::BadQuery, errors::Unauthorized, errors::Conflict, errors::TooLarge, errors::Invalid,
        errors::DiskFull,
    ))]
pub(crate) async fn create(
    State(s): State<AppState>,
    Query(w): Query<Wait>,
    body: Body,
) -> Result<Response, ApiError> {
    let wait = wait(w);
    let body = read_body(body, MAX_PACKAGE_BODY, "function body").await?;
    let spec = parse(body).await?;
    let view = s.platform.create(spec, wait).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Replaces a function's spec with a new version; it deploys in the background unless
/// `wait` is given, and calls keep going to the active version until then. An update
/// that gives no code keeps the function's code and changes only its settings.
#[utoipa::path(put, operation_id = "update_function", path = "/v1/functions/{name}", tag = "functions", params(("name" = String, Path, description = "The function's name", example = "hello"), Query<Wait>),
    request_body(content = FunctionSpec, description = "The function's whole new spec. With none of `code`, `files` and `zip`, the new version keeps the code of the newest one (as Lambda's UpdateFunctionConfiguration): the same one file, or the same package (same `package_sha256`, not uploaded again), its `handler` checked against that package's files (422 `invalid_value` on `handler` when it names no file of it; 400 `missing_field` when a package function's update names none). Two of them are refused (422 `invalid_value`)."),
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
    let body = read_body(body, MAX_PACKAGE_BODY, "function body").await?;
    let update = parse_changes(body, name).await?;
    let view = s.platform.update(update, wait).await?;
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
    let mut view = s
        .platform
        .get(name.as_str())
        .ok_or_else(|| ApiError::not_found(format!("function {:?} does not exist", name.as_str())))?;
    if view.package_sha256.is_some() {
        view.files = s.platform.package_files(name.as_str()).await?;
    }
    Ok(Json(view).into_response())
}

/// The newest version's code as a zip archive: its package's files, or its one file
/// (`main.py`, `index.js` or `index.ts`).
#[utoipa::path(get, operation_id = "get_function_code", path = "/v1/functions/{name}/code", tag = "functions", params(("name" = String, Path, description = "The function's name", example = "hello")),
    responses(
        (status = 200, description = "A zip archive", content_type = "application/zip", body = Vec<u8>),
        errors::BadQuery, errors::Unauthorized, errors::NotFound,
    ))]
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
