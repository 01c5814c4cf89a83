//! Maps a handler's return value to an HTTP response, the way AWS Lambda function URLs do.

use base64::Engine;
use serde_json::Value;

use crate::limits::MAX_RESPONSE_BYTES;

/// An HTTP response made from a handler's return value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedResponse {
    pub status: u16,
    /// Header names are lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a return value could not become a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("the function returned statusCode {0}; a function answers with a final HTTP status (200-599)")]
    BadStatus(i64),
    #[error("the function returned isBase64Encoded with a body that is not valid base64")]
    BadBase64,
    #[error("the function returned a header {0:?} that is not a valid HTTP header")]
    BadHeader(String),
    #[error("the response body is {0} bytes; the limit is {MAX_RESPONSE_BYTES} bytes")]
    TooLarge(usize),
}

const JSON: &str = "application/json";

/// Headers that frame the HTTP message or steer the connection. The server frames every
/// response itself: a handler's value for one of these is dropped, so that it can never
/// make the rest of its body be read as the next answer on a keep-alive connection.
pub const FRAMING_HEADERS: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

/// Headers whose names start with this belong to the platform (invocation id, cold start,
/// timings, idempotent replay): a handler's are dropped.
pub const PLATFORM_HEADER_PREFIX: &str = "x-ignis-";

/// Whether a handler may not set the header `name` (any case): it frames the response,
/// steers the connection or is the platform's. Such headers are dropped from its answer.
pub fn is_reserved_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    FRAMING_HEADERS.contains(&lower.as_str()) || lower.starts_with(PLATFORM_HEADER_PREFIX)
}

/// Maps a return value: an object with an integer `statusCode` is an HTTP response
/// (`headers`, `body`, `isBase64Encoded`, `cookies`); anything else is a 200 JSON body.
/// As for Lambda function URLs (payload 2.0), `multiValueHeaders` is read only for functions
/// whose answers are API Gateway REST's (`rest`, payload 1.0), as API Gateway does: each
/// of its values is a header of its own, after `headers`. Informational
/// statuses (1xx) are refused: they are not answers. Headers that [`is_reserved_header`]
/// are dropped, whichever way the handler supplied them (`headers` or `cookies`).
pub fn map_return_value(value: &Value, rest: bool) -> Result<MappedResponse, MapError> {
    let response = match value {
        Value::Object(obj) if obj.get("statusCode").is_some_and(Value::is_i64) => {
            let status = answer_status(obj["statusCode"].as_i64().expect("checked is_i64"))?;
            let mut headers = Vec::new();
            if let Some(Value::Object(h)) = obj.get("headers") {
                for (name, v) in h {
                    headers.push((name.to_ascii_lowercase(), header_text(v)));
                }
            }
            if let (true, Some(Value::Object(multi))) = (rest, obj.get("multiValueHeaders")) {
                for (name, values) in multi {
                    let name = name.to_ascii_lowercase();
                    match values {
                        Value::Array(values) => {
                            for v in values {
                                headers.push((name.clone(), header_text(v)));
                            }
                        }
                        other @ (Value::Null
                        | Value::Bool(_)
                        | Value::Number(_)
                        | Value::String(_)
                        | Value::Object(_)) => headers.push((name, header_text(other))),
                    }
                }
            }
            if let Some(Value::Array(cookies)) = obj.get("cookies") {
                for c in cookies {
                    headers.push(("set-cookie".to_owned(), header_text(c)));
                }
            }
            let base64 = obj.get("isBase64Encoded") == Some(&Value::Bool(true));
            let body = match obj.get("body") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) if base64 => base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|_| MapError::BadBase64)?,
                Some(Value::String(s)) => s.clone().into_bytes(),
                Some(other) => other.to_string().into_bytes(),
            };
            MappedResponse {
                status,
                headers: checked_headers(headers, JSON)?,
                body,
            }
        }
        // Every other value, objects without an integer `statusCode` included.
        other @ (Value::Null
        | Value::Bool(_)
        | Value::Number(_)
        | Value::String(_)
        | Value::Array(_)
        | Value::Object(_)) => MappedResponse {
            status: 200,
            headers: vec![("content-type".to_owned(), JSON.to_owned())],
            body: other.to_string().into_bytes(),
        },
    };
    if response.body.len() > MAX_RESPONSE_BYTES {
        return Err(MapError::TooLarge(response.body.len()));
    }
    Ok(response)
}

/// The status and headers of a streamed answer (its `head` frame), by the same rules as a
/// returned response: a status in 200..=599, header names lower-cased, reserved headers
/// dropped, values checked; `application/octet-stream` when it names no content type (as
/// Lambda's response streaming does). The body follows in chunks.
pub fn stream_head(
    status: i64,
    headers: &serde_json::Map<String, Value>,
    cookies: &[Value],
) -> Result<MappedResponse, MapError> {
    let status = answer_status(status)?;
    let headers = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), header_text(v)))
        .chain(cookies.iter().map(|c| ("set-cookie".to_owned(), header_text(c))))
        .collect();
    Ok(MappedResponse {
        status,
        headers: checked_headers(headers, "application/octet-stream")?,
        body: Vec::new(),
    })
}

/// A handler's status: an answer's (200 to 599), never an informational one.
fn answer_status(status: i64) -> Result<u16, MapError> {
    match u16::try_from(status) {
        Ok(s) if (200..=599).contains(&s) => Ok(s),
        _ => Err(MapError::BadStatus(status)),
    }
}

/// A handler's headers (names lower-cased) as answered: reserved ones dropped, the content
/// type defaulted, each name and value checked.
fn checked_headers(
    mut headers: Vec<(String, String)>,
    default_type: &str,
) -> Result<Vec<(String, String)>, MapError> {
    headers.retain(|(name, _)| !is_reserved_header(name));
    if !headers.iter().any(|(n, _)| n == "content-type") {
        headers.push(("content-type".to_owned(), default_type.to_owned()));
    }
    match headers.iter().find(|(n, v)| !valid_header(n, v)) {
        Some((name, _)) => Err(MapError::BadHeader(name.clone())),
        None => Ok(headers),
    }
}

fn header_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

fn valid_header(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && value.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map_return_value_v2(v: &serde_json::Value) -> Result<MappedResponse, MapError> {
        map_return_value(v, false)
    }

    #[test]
    fn rest_answers_may_give_multi_value_headers() {
        let v = json!({"statusCode": 200, "headers": {"x-a": "1"},
                       "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"], "x-ignis-x": ["no"]}, "body": ""});
        let r = map_return_value(&v, true).expect("maps");
        let cookies: Vec<&str> = r
            .headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert!(
            r.headers.iter().all(|(n, _)| n != "x-ignis-x"),
            "reserved headers are dropped here too"
        );
        let v2 = map_return_value(&v, false).expect("maps");
        assert!(
            v2.headers.iter().all(|(n, _)| n != "set-cookie"),
            "2.0 answers do not read them"
        );
    }

    fn header<'a>(r: &'a MappedResponse, name: &str) -> Option<&'a str> {
        r.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn status_code_object_is_a_response() {
        let r = map_return_value_v2(&json!({
            "statusCode": 201, "headers": {"Content-Type": "text/plain", "X-A": 1}, "body": "hi"
        }))
        .expect("maps");
        assert_eq!(r.status, 201);
        assert_eq!(r.body, b"hi");
        assert_eq!(header(&r, "content-type"), Some("text/plain"));
        assert_eq!(header(&r, "x-a"), Some("1"));
    }

    #[test]
    fn non_string_body_is_json_encoded() {
        let r = map_return_value_v2(&json!({"statusCode": 200, "body": {"a": [1, 2]}})).expect("maps");
        assert_eq!(r.body, br#"{"a":[1,2]}"#);
        assert_eq!(header(&r, "content-type"), Some(JSON));
    }

    #[test]
    fn base64_body_is_decoded() {
        let r = map_return_value_v2(&json!({"statusCode": 200, "body": "AAEC/w==", "isBase64Encoded": true}))
            .expect("maps");
        assert_eq!(r.body, vec![0, 1, 2, 255]);
        assert_eq!(
            map_return_value_v2(&json!({"statusCode": 200, "body": "%%%", "isBase64Encoded": true})),
            Err(MapError::BadBase64)
        );
    }

    #[test]
    fn plain_values_are_json() {
        for (v, body) in [
            (json!(null), "null"),
            (json!([1]), "[1]"),
            (json!("s"), "\"s\""),
            (json!({"statusCode": "200"}), r#"{"statusCode":"200"}"#),
        ] {
            let r = map_return_value_v2(&v).expect("maps");
            assert_eq!((r.status, r.body.as_slice()), (200, body.as_bytes()));
        }
    }

    #[test]
    fn bad_responses_are_errors() {
        for status in [99, 100, 101, 103, 199, 600] {
            assert_eq!(
                map_return_value_v2(&json!({"statusCode": status})),
                Err(MapError::BadStatus(status))
            );
        }
        assert!(matches!(
            map_return_value_v2(&json!({"statusCode": 200, "headers": {"a b": "x"}})),
            Err(MapError::BadHeader(_))
        ));
        let big = "x".repeat(MAX_RESPONSE_BYTES + 1);
        assert!(matches!(
            map_return_value_v2(&json!({"statusCode": 200, "body": big})),
            Err(MapError::TooLarge(_))
        ));
    }

    #[test]
    fn cookies_become_set_cookie() {
        let r = map_return_value_v2(&json!({"statusCode": 200, "cookies": ["a=1", "b=2"]})).expect("maps");
        let cookies: Vec<_> = r.headers.iter().filter(|(n, _)| n == "set-cookie").collect();
        assert_eq!(cookies.len(), 2);
    }

    #[test]
    fn framing_and_platform_headers_are_dropped_in_any_case() {
        let mut headers = serde_json::Map::new();
        for name in FRAMING_HEADERS {
            headers.insert(name.to_owned(), json!("x"));
            headers.insert(name.to_ascii_uppercase(), json!("x"));
        }
        headers.insert("Content-Length".to_owned(), json!(2));
        headers.insert("X-Ignis-Invocation-Id".to_owned(), json!("forged"));
        headers.insert("x-ignis-cold-start".to_owned(), json!("false"));
        headers.insert("x-kept".to_owned(), json!("yes"));
        let r = map_return_value_v2(&json!({
            "statusCode": 200, "headers": headers, "body": "hello, world",
            "multiValueHeaders": {"content-length": ["2"], "x-ignis-version": ["9"]},
        }))
        .expect("maps");
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-kept", "content-type"]);
        assert_eq!(r.body, b"hello, world");
    }

    #[test]
    fn reserved_headers_are_named_in_any_case() {
        for name in ["Transfer-Encoding", "TE", "Proxy-Connection", "X-IGNIS-anything"] {
            assert!(is_reserved_header(name), "{name}");
        }
        for name in ["content-type", "x-ignis", "tex", "x-ignisx-a", "set-cookie"] {
            assert!(!is_reserved_header(name), "{name}");
        }
    }
}
