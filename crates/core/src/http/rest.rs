//! The API Gateway REST (payload format 1.0) event for an HTTP request: what handlers
//! written for REST APIs read (`httpMethod`, `path`, `resource`, `pathParameters`,
//! `headers` with `multiValueHeaders`, `queryStringParameters` with
//! `multiValueQueryStringParameters`, `requestContext`, `isBase64Encoded`).

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{json, Value};

use super::{is_binary_type, lambda_time, HttpRequest};

/// The payload 1.0 event for `req`. A function's URL is one greedy resource: its root is
/// `/`, every other path `/{proxy+}` with `pathParameters.proxy` the rest of the path.
pub fn http_event_v1(req: &HttpRequest<'_>) -> Value {
    // REST APIs give each header's last value in `headers` and all of them in order in
    // `multiValueHeaders`; query parameters likewise.
    let mut multi_headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &req.headers {
        multi_headers
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(value.clone());
    }
    let headers: BTreeMap<&String, &String> = multi_headers
        .iter()
        .filter_map(|(k, v)| Some((k, v.last()?)))
        .collect();
    let mut multi_query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(req.raw_query.as_bytes()) {
        multi_query
            .entry(k.into_owned())
            .or_default()
            .push(v.into_owned());
    }
    let query: BTreeMap<&String, &String> = multi_query
        .iter()
        .filter_map(|(k, v)| Some((k, v.last()?)))
        .collect();
    let content_type = headers.get(&"content-type".to_owned()).map(|s| s.as_str());
    let (body, base64) = match std::str::from_utf8(req.body) {
        _ if req.body.is_empty() => (Value::Null, false),
        Ok(text) if !is_binary_type(content_type) => (Value::String(text.to_owned()), false),
        _ => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(req.body)),
            true,
        ),
    };
    let (resource, path_parameters) = match (&req.route, req.path.strip_prefix('/')) {
        (Some(route), _) if route.params.is_empty() => (route.resource.as_str(), Value::Null),
        (Some(route), _) => (route.resource.as_str(), json!(route.params)),
        (None, Some("") | None) => ("/", Value::Null),
        (None, Some(rest)) => ("/{proxy+}", json!({ "proxy": rest })),
    };
    let host = headers
        .get(&"host".to_owned())
        .map(|s| s.as_str())
        .unwrap_or_default();
    let user_agent = headers
        .get(&"user-agent".to_owned())
        .map(|s| s.as_str())
        .unwrap_or_default();
    let null_if_empty = |v: Value| {
        if v.as_object().is_some_and(|m| m.is_empty()) {
            Value::Null
        } else {
            v
        }
    };
    json!({
        "version": "1.0",
        "resource": resource,
        "path": req.path,
        "httpMethod": req.method,
        "headers": null_if_empty(json!(headers)),
        "multiValueHeaders": null_if_empty(json!(multi_headers)),
        "queryStringParameters": null_if_empty(json!(query)),
        "multiValueQueryStringParameters": null_if_empty(json!(multi_query)),
        "pathParameters": path_parameters,
        "stageVariables": null,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": req.function,
            "domainName": host,
            "domainPrefix": req.function,
            "extendedRequestId": req.request_id,
            "httpMethod": req.method,
            "identity": {"sourceIp": req.source_ip, "userAgent": user_agent},
            "path": req.path,
            "protocol": "HTTP/1.1",
            "requestId": req.request_id,
            "requestTime": lambda_time(req.time_ms),
            "requestTimeEpoch": req.time_ms,
            "resourceId": resource,
            "resourcePath": resource,
            "stage": "$default",
        },
        "body": body,
        "isBase64Encoded": base64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(path: &'a str, query: &'a str, body: &'a [u8]) -> HttpRequest<'a> {
        HttpRequest {
            method: "POST",
            path,
            raw_query: query,
            headers: vec![
                ("Host".to_owned(), "example.test".to_owned()),
                ("X-Multi".to_owned(), "a".to_owned()),
                ("x-multi".to_owned(), "b".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            body,
            source_ip: "203.0.113.7".to_owned(),
            request_id: "r-1",
            function: "shop",
            time_ms: 1_780_000_000_000,
            route: None,
        }
    }

    #[test]
    fn a_rest_event_has_multi_values_and_a_greedy_resource() {
        let e = http_event_v1(&request("/users/42", "a=1&a=2&b=x%20y", br#"{"k":1}"#));
        assert_eq!(e["httpMethod"], "POST");
        assert_eq!(e["resource"], "/{proxy+}");
        assert_eq!(e["pathParameters"], json!({"proxy": "users/42"}));
        assert_eq!(e["headers"]["x-multi"], "b");
        assert_eq!(e["multiValueHeaders"]["x-multi"], json!(["a", "b"]));
        assert_eq!(e["queryStringParameters"], json!({"a": "2", "b": "x y"}));
        assert_eq!(e["multiValueQueryStringParameters"]["a"], json!(["1", "2"]));
        assert_eq!(e["requestContext"]["identity"]["sourceIp"], "203.0.113.7");
        assert_eq!(e["body"], r#"{"k":1}"#);
        assert_eq!(e["isBase64Encoded"], false);
        let root = http_event_v1(&request("/", "", b""));
        assert_eq!(root["resource"], "/");
        assert!(root["pathParameters"].is_null() && root["queryStringParameters"].is_null());
        assert!(root["body"].is_null());
    }
}
