//! `/v1/layers`: publishing layer versions, listing, reading and deleting them.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ignis_control::LayerView;
use ignis_core::LayerName;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::errors;
use crate::functions::MAX_PACKAGE_BODY;
use crate::{read_body, ApiError, AppState, NoParams, Path, Query};

/// A `POST /v1/layers` body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct NewLayerBody {
    /// 1 to 64 letters, digits, `-` or `_`; a new name starts at version 1, a known one
    /// gets its next version.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", example = "shared")]
    name: String,
    /// The runtimes whose functions may list it.
    #[schema(value_type = Vec<crate::functions::RuntimeName>, min_items = 1)]
    runtimes: (),
    /// Its files: relative path → UTF-8 text, laid out as on Lambda (`python/…`,
    /// `nodejs/node_modules/…`). A `requirements.txt` at the root is installed into
    /// `python/`, a `package.json` into `nodejs/` (the answer waits for the install).
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    files: (),
    /// The same as a zip archive in base64 (at most 50 MiB zipped, 250 MiB unpacked).
    #[schema(format = Byte)]
    zip: Option<String>,
    description: Option<String>,
}

/// `GET /v1/layers`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LayerList {
    pub layers: Vec<LayerView>,
}

/// Publishes the next version of a layer: 201 with it. Its dependencies, if it names any,
/// are installed before the answer; a failed install is 422 `layer_build_failed` with the
/// installer's output, and nothing is stored.
#[utoipa::path(post, operation_id = "create_layer", path = "/v1/layers", tag = "functions",
    request_body(content = NewLayerBody),
    responses(
        (status = 201, description = "Published", body = LayerView, links(
            ("get" = (operation_id = "get_layer", parameters(("name" = "$response.body#/name"), ("version" = "$response.body#/version")))),
            ("delete" = (operation_id = "delete_layer", parameters(("name" = "$response.body#/name"), ("version" = "$response.body#/version")))),
        )),
        errors::BadQuery, errors::Unauthorized, errors::TooLarge, errors::Invalid, errors::DiskFull,
    ))]
pub(crate) async fn create(
    State(s): State<AppState>,
    Query(NoParams): Query<NoParams>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, MAX_PACKAGE_BODY, "layer body").await?;
    let new = tokio::task::spawn_blocking(move || ignis_core::parse_layer(&body))
        .await
        .map_err(|e| crate::error::internal(&e))??;
    let view = s.platform.create_layer(new).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Every layer version, by name then version.
#[utoipa::path(get, operation_id = "list_layers", path = "/v1/layers", tag = "functions",
    responses((status = 200, body = LayerList), errors::BadQuery, errors::Unauthorized))]
pub(crate) async fn list(
    State(s): State<AppState>,
    Query(NoParams): Query<NoParams>,
) -> Result<Json<LayerList>, ApiError> {
    Ok(Json(LayerList {
        layers: s.platform.list_layers().await?,
    }))
}

/// One layer version with its files.
#[utoipa::path(get, operation_id = "get_layer", path = "/v1/layers/{name}/versions/{version}", tag = "functions",
    params(
        ("name" = String, Path, description = "The layer's name", example = "shared"),
        ("version" = String, Path, description = "The version (1, 2, …)", example = "1"),
    ),
    responses((status = 200, body = LayerView), errors::BadQuery, errors::Unauthorized, errors::NotFound))]
pub(crate) async fn get(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    Query(NoParams): Query<NoParams>,
) -> Result<Json<LayerView>, ApiError> {
    let (name, version) = layer_version(&name, &version)?;
    Ok(Json(s.platform.get_layer(name.as_str(), version).await?))
}

/// Deletes a layer version: 204, or 409 `layer_in_use` naming the functions whose newest
/// or serving version lists it.
#[utoipa::path(delete, operation_id = "delete_layer", path = "/v1/layers/{name}/versions/{version}", tag = "functions",
    params(
        ("name" = String, Path, description = "The layer's name", example = "shared"),
        ("version" = String, Path, description = "The version (1, 2, …)", example = "1"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        errors::BadQuery, errors::Unauthorized, errors::NotFound, errors::Conflict,
    ))]
pub(crate) async fn delete(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    Query(NoParams): Query<NoParams>,
) -> Result<StatusCode, ApiError> {
    let (name, version) = layer_version(&name, &version)?;
    s.platform.delete_layer(name.as_str(), version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A layer name and version from the path; one that cannot exist is 404 saying why.
fn layer_version(name: &str, version: &str) -> Result<(LayerName, u32), ApiError> {
    let not_found = |why: String| ApiError::new(StatusCode::NOT_FOUND, "layer_not_found", why);
    let name =
        LayerName::parse(name).map_err(|why| not_found(format!("layer {name:?} cannot exist: {why}")))?;
    let version = version.parse::<u32>().ok().filter(|v| *v > 0).ok_or_else(|| {
        not_found(format!(
            "version {version:?} cannot exist: versions are numbered 1, 2, …"
        ))
    })?;
    Ok((name, version))
}
