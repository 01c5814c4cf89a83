//! The OpenAPI document: served at `GET /v1/openapi.json`, the same as `docs/openapi.json`,
//! and describing every route and method of the router.

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::Server;

const KEPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

#[test]
fn the_served_document_is_the_one_in_docs() {
    let s = Server::start();
    let a = s.get("/v1/openapi.json");
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.header("content-type"), "application/json");
    let kept = std::fs::read_to_string(KEPT).expect("docs/openapi.json");
    assert!(
        a.body == kept,
        "docs/openapi.json differs from the document the server serves: rewrite it with \
         `IGNIS_WRITE_OPENAPI=1 cargo nextest run -p ignis-api openapi` and commit it"
    );
    let doc = a.json();
    assert_eq!(doc["openapi"], "3.1.0");
}

#[test]
fn the_document_describes_every_route_and_method_and_needs_the_token() {
    let s = Server::start();
    let doc = s.get("/v1/openapi.json").json();
    let paths = doc["paths"].as_object().expect("paths");
    let mut described = 0;
    for (method, path) in crate::bad_input::declared_routes() {
        let op = &paths
            .get(&path)
            .unwrap_or_else(|| panic!("{path} is not in the document"))[method.to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {path} is not in the document");
        assert!(
            op["responses"].as_object().is_some_and(|r| r.contains_key("400")),
            "{method} {path}: a refused parameter is described"
        );
        described += 1;
    }
    let operations: usize = paths.values().map(|p| p.as_object().map_or(0, |o| o.len())).sum();
    assert_eq!(
        operations, described,
        "the document describes no more than is routed"
    );
    // Every operation needs the token except /healthz.
    assert_eq!(doc["security"], serde_json::json!([{"token": []}]));
    assert_eq!(paths["/healthz"]["get"]["security"], serde_json::json!([{}]));
    let scheme: &Value = &doc["components"]["securitySchemes"]["token"];
    assert_eq!(
        (scheme["type"].as_str(), scheme["scheme"].as_str()),
        (Some("http"), Some("bearer"))
    );
}
