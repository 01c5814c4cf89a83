//! Tests of function URL settings, CORS and the Lambda function URL event.

use serde_json::json;

use super::*;

fn request<'a>(
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: &[(&str, &str)],
    body: &'a [u8],
) -> HttpRequest<'a> {
    HttpRequest {
        method,
        path,
        raw_query: query,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        body,
        source_ip: "127.0.0.1".to_owned(),
        request_id: "req-1",
        function: "hook",
        time_ms: 1_795_430_472_000,
        route: None,
    }
}

#[test]
fn a_request_becomes_a_lambda_function_url_event() {
    let e = http_event(&request(
        "POST",
        "/orders/7",
        "a=1&b=two%20words&a=3&plus=x+y&bad=%zz",
        &[
            ("Content-Type", "application/json"),
            ("X-Multi", "1"),
            ("x-multi", "2"),
            ("Cookie", "s=1; t=2"),
            ("User-Agent", "curl/8"),
            ("Host", "localhost:8080"),
        ],
        br#"{"id": 7}"#,
    ));
    assert_eq!(e["version"], "2.0");
    assert_eq!(e["rawPath"], "/orders/7");
    assert_eq!(e["rawQueryString"], "a=1&b=two%20words&a=3&plus=x+y&bad=%zz");
    assert_eq!(
        e["queryStringParameters"],
        json!({"a": "1,3", "b": "two words", "plus": "x y", "bad": "%zz"})
    );
    assert_eq!(e["headers"]["content-type"], "application/json");
    assert_eq!(e["headers"]["x-multi"], "1,2", "repeated headers are joined");
    assert!(
        e["headers"].get("cookie").is_none(),
        "cookies go to their own list"
    );
    assert_eq!(e["cookies"], json!(["s=1", "t=2"]));
    assert_eq!(e["requestContext"]["http"]["method"], "POST");
    assert_eq!(e["requestContext"]["http"]["path"], "/orders/7");
    assert_eq!(e["requestContext"]["http"]["sourceIp"], "127.0.0.1");
    assert_eq!(e["requestContext"]["http"]["userAgent"], "curl/8");
    assert_eq!(e["requestContext"]["requestId"], "req-1");
    assert_eq!(e["requestContext"]["timeEpoch"], 1_795_430_472_000i64);
    assert_eq!(e["requestContext"]["time"], "23/Nov/2026:10:41:12 +0000");
    assert_eq!(e["body"], r#"{"id": 7}"#);
    assert_eq!(e["isBase64Encoded"], false);
}

#[test]
fn binary_or_non_utf8_bodies_are_base64_and_empty_ones_absent() {
    let png = http_event(&request(
        "POST",
        "/",
        "",
        &[("content-type", "image/png")],
        b"\x89PNG",
    ));
    assert_eq!(png["isBase64Encoded"], true);
    assert_eq!(png["body"], "iVBORw==");
    let bytes = http_event(&request("POST", "/", "", &[], b"\xff\xfe"));
    assert_eq!(bytes["isBase64Encoded"], true, "not UTF-8");
    assert_eq!(bytes["body"], "//4=");
    let form = http_event(&request(
        "POST",
        "/",
        "",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"a=1",
    ));
    assert_eq!(form["body"], "a=1");
    assert_eq!(form["isBase64Encoded"], false);
    let empty = http_event(&request("GET", "/", "", &[], b""));
    assert!(empty.get("body").is_none());
    assert!(empty.get("queryStringParameters").is_none());
    assert!(empty.get("cookies").is_none());
}

#[test]
fn http_settings_default_to_token_and_are_checked() {
    assert_eq!(
        parse_http_settings(&json!({})).expect("ok"),
        HttpSettings::default()
    );
    assert_eq!(
        parse_http_settings(&json!({"auth": "none"})).expect("ok").auth,
        HttpAuth::None
    );
    let cases = [
        (json!("none"), "http"),
        (json!({"auth": "public"}), "http.auth"),
        (json!({"auth": 1}), "http.auth"),
        (
            json!({"cors": {"allow_origins": ["example.com"]}}),
            "http.cors.allow_origins[0]",
        ),
        (json!({"cors": {"allow_origins": "*"}}), "http.cors.allow_origins"),
        (
            json!({"cors": {"allow_methods": ["FETCH"]}}),
            "http.cors.allow_methods[0]",
        ),
        (
            json!({"cors": {"allow_headers": ["bad header"]}}),
            "http.cors.allow_headers[0]",
        ),
        (
            json!({"cors": {"max_age_secs": 100000}}),
            "http.cors.max_age_secs",
        ),
        (
            json!({"cors": {"allow_origins": ["*"], "allow_credentials": true}}),
            "http.cors.allow_origins",
        ),
        (json!({"cors": {"origins": []}}), "http.cors.origins"),
        (json!({"tls": true}), "http.tls"),
    ];
    for (value, field) in cases {
        let err = parse_http_settings(&value).expect_err(&value.to_string());
        assert_eq!(err.field.as_deref(), Some(field), "{value}: {}", err.message);
    }
}

fn cors(v: serde_json::Value) -> Cors {
    parse_http_settings(&json!({ "cors": v }))
        .expect("valid")
        .cors
        .expect("cors")
}

#[test]
fn preflight_allows_only_what_the_config_says() {
    let c = cors(json!({
        "allow_origins": ["https://app.example"],
        "allow_methods": ["put", "POST"],
        "allow_headers": ["Content-Type", "X-Token"],
        "max_age_secs": 600
    }));
    let ok = c
        .preflight("https://app.example", "PUT", "content-type, x-token")
        .expect("allowed");
    let get = |name: &str| ok.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(get("access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(get("access-control-allow-methods"), Some("PUT"));
    assert_eq!(get("access-control-allow-headers"), Some("content-type, x-token"));
    assert_eq!(get("access-control-max-age"), Some("600"));
    assert_eq!(get("vary"), Some("Origin"));
    assert!(c.preflight("https://evil.example", "PUT", "").is_none(), "origin");
    assert!(
        c.preflight("https://app.example", "DELETE", "").is_none(),
        "method"
    );
    assert!(
        c.preflight("https://app.example", "POST", "x-other").is_none(),
        "header"
    );
}

#[test]
fn any_origin_and_credentials() {
    let any = cors(
        json!({"allow_origins": ["*"], "allow_methods": ["*"], "allow_headers": ["*"], "expose_headers": ["X-Id"]}),
    );
    let pre = any
        .preflight("https://a.example", "DELETE", "x-anything")
        .expect("allowed");
    assert!(pre.contains(&("access-control-allow-origin".to_owned(), "*".to_owned())));
    let resp = any.response_headers("https://a.example");
    assert!(resp.contains(&("access-control-expose-headers".to_owned(), "x-id".to_owned())));
    let creds = cors(json!({"allow_origins": ["https://a.example"], "allow_credentials": true}));
    let resp = creds.response_headers("https://a.example");
    assert!(resp.contains(&(
        "access-control-allow-origin".to_owned(),
        "https://a.example".to_owned()
    )));
    assert!(resp.contains(&("access-control-allow-credentials".to_owned(), "true".to_owned())));
    assert!(creds.response_headers("https://b.example").is_empty());
    // Without allow_methods only the simple methods pass a preflight.
    assert!(creds.preflight("https://a.example", "POST", "").is_some());
    assert!(creds.preflight("https://a.example", "PUT", "").is_none());
}
