//! The API's OpenAPI 3.1 document, generated from the handlers' annotations and the answer
//! types, served at `GET /v1/openapi.json` and kept in `docs/openapi.json`.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{errors, ErrorBody, ErrorDetail};
use crate::{
    async_invocations, builds, functions, invocations, layers, playground, schedules, stats, test_events,
    usage,
};
use crate::{NoParams, Query};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ignis",
        description = "The HTTP API of Ignis, a self-hosted serverless platform. Every error \
            answer is `{\"error\": {\"code\", \"message\", \"field\"?, ...}}` with a stable \
            `code`. Every `/v1` route and `/metrics` need `Authorization: Bearer <token>` when \
            the server has a token. Function URLs (`/fn/{name}`) are not described: each \
            function answers them as its handler decides.",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        crate::healthz,
        crate::metrics,
        crate::runtimes,
        document,
        functions::list,
        functions::create,
        functions::get,
        functions::code,
        builds::get,
        layers::create,
        layers::list,
        layers::get,
        layers::delete,
        functions::update,
        functions::delete,
        invocations::invoke,
        invocations::list,
        invocations::get,
        invocations::logs,
        async_invocations::dead_letters,
        async_invocations::dead_letter,
        async_invocations::delete_dead_letter,
        async_invocations::redrive,
        schedules::schedules,
        schedules::get_clock,
        schedules::set_clock,
        usage::usage,
        stats::all_stats,
        stats::function_stats,
        playground::run,
        test_events::list,
        test_events::put,
        test_events::delete,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerToken),
    security(("token" = [])),
    tags(
        (name = "server", description = "The server itself"),
        (name = "functions", description = "Creating, reading, updating and deleting functions"),
        (name = "invocations", description = "Invoking functions and reading what happened"),
        (name = "events", description = "Dead letters, schedules and the manual clock"),
        (name = "activity", description = "Usage and statistics"),
        (name = "console", description = "What the web console uses"),
    ),
)]
pub(crate) struct ApiDoc;

/// The `token` security scheme every operation needs unless it says otherwise.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The server's token (`--token-file`, `IGNIS_TOKEN`); a server started \
                         without one takes every request",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as served and kept in `docs/openapi.json`: pretty JSON ending in a newline.
pub fn document_text() -> String {
    let mut doc = serde_json::to_value(ApiDoc::openapi())
        .expect("the document is built from types that always serialize");
    camel_case_links(&mut doc);
    let mut text =
        serde_json::to_string_pretty(&doc).expect("the document is built from types that always serialize");
    text.push('\n');
    text
}

/// utoipa 5 writes a response link's fields in snake case (`operation_id`); OpenAPI names
/// them in camel case (`operationId`), and tools that follow links need that spelling.
fn camel_case_links(doc: &mut serde_json::Value) {
    let operations = doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|methods| methods.values_mut());
    for operation in operations {
        let responses = operation["responses"]
            .as_object_mut()
            .into_iter()
            .flat_map(|r| r.values_mut());
        for response in responses {
            let Some(links) = response
                .get_mut("links")
                .and_then(serde_json::Value::as_object_mut)
            else {
                continue;
            };
            for link in links.values_mut().filter_map(serde_json::Value::as_object_mut) {
                for (snake, camel) in [
                    ("operation_id", "operationId"),
                    ("operation_ref", "operationRef"),
                    ("request_body", "requestBody"),
                ] {
                    if let Some(v) = link.remove(snake) {
                        link.insert(camel.to_owned(), v);
                    }
                }
            }
        }
    }
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, operation_id = "openapi_document", path = "/v1/openapi.json", tag = "server",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object),
        errors::BadQuery, errors::Unauthorized,
    ))]
pub(crate) async fn document(_: Query<NoParams>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document_text()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

    /// `docs/openapi.json` is the document the server serves. Rewrite it with
    /// `IGNIS_WRITE_OPENAPI=1 cargo nextest run -p ignis-api openapi`.
    #[test]
    fn the_document_in_docs_is_the_one_served() {
        let served = document_text();
        if std::env::var_os("IGNIS_WRITE_OPENAPI").is_some() {
            std::fs::write(KEPT, &served).expect("write docs/openapi.json");
        }
        let kept = std::fs::read_to_string(KEPT).unwrap_or_default();
        assert!(
            kept == served,
            "docs/openapi.json differs from the document the server serves: rewrite it with \
             `IGNIS_WRITE_OPENAPI=1 cargo nextest run -p ignis-api openapi` and commit it"
        );
    }

    #[test]
    fn links_name_their_operation_as_openapi_spells_it() {
        let doc: serde_json::Value = serde_json::from_str(&document_text()).expect("JSON");
        let link = &doc["paths"]["/v1/functions"]["post"]["responses"]["201"]["links"]["get"];
        assert_eq!(link["operationId"], "get_function", "{link}");
        assert!(link.get("operation_id").is_none(), "{link}");
        let ids: Vec<&str> = doc["paths"]
            .as_object()
            .expect("paths")
            .values()
            .flat_map(|p| p.as_object().expect("methods").values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        let target = link["operationId"].as_str().expect("an id");
        assert!(ids.contains(&target), "{target} names an operation");
    }

    #[test]
    fn every_route_of_the_router_is_described() {
        let doc: serde_json::Value = serde_json::from_str(&document_text()).expect("the document is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        let source = include_str!("lib.rs");
        // Every `.route("/x", ...)` of the router, under `/v1` unless it is one of the
        // routes mounted at the root.
        let mut routed = Vec::new();
        let lines: Vec<&str> = source.lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(rest) = line.strip_prefix(".route(") else {
                continue;
            };
            // `.route("/x", ...)` on one line, or `.route(` with the path on the next.
            let quoted = if rest.is_empty() { lines[i + 1] } else { rest };
            let path = quoted.split('"').nth(1).expect("a quoted path");
            if path.starts_with("/fn/") {
                continue;
            }
            if path == "/healthz" || path == "/metrics" {
                routed.push(path.to_owned());
            } else {
                routed.push(format!("/v1{path}"));
            }
        }
        assert!(routed.len() > 20, "{routed:?}");
        for path in &routed {
            assert!(
                paths.contains_key(path),
                "{path} is routed but not in the document"
            );
        }
        for path in paths.keys() {
            assert!(routed.contains(path), "{path} is in the document but not routed");
        }
    }
}
