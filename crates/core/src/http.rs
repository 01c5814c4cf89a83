//! Function URLs (`ANY /fn/{name}/{*path}`): a function's `http` settings (who may call
//! it, CORS), and the event a request becomes, in the shape of the AWS Lambda function URL
//! (API Gateway HTTP API v2) payload so that existing Lambda HTTP handlers run unchanged.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::spec::SpecError;

/// Who may call a function's URL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpAuth {
    /// The server's token, when it has one (the default).
    #[default]
    Token,
    /// Anyone: webhooks and public endpoints.
    None,
}

/// A function's CORS rules, answered by Ignis itself (preflight) and added to responses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cors {
    /// Origins allowed (`"*"` for any).
    pub allow_origins: Vec<String>,
    /// Methods a preflight may ask for (`"*"` for any); empty means the simple ones.
    pub allow_methods: Vec<String>,
    /// Request headers a preflight may ask for (`"*"` for any), lower-case.
    pub allow_headers: Vec<String>,
    /// Response headers the browser may show to scripts, lower-case.
    pub expose_headers: Vec<String>,
    /// How long a browser may cache a preflight answer (0 = not said).
    pub max_age_secs: u32,
    pub allow_credentials: bool,
}

/// A function's `http` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSettings {
    #[serde(default)]
    pub auth: HttpAuth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// The event its HTTP requests arrive as: `2.0` (function URL / HTTP API, the default)
    /// or `1.0` (API Gateway REST).
    #[serde(default, skip_serializing_if = "PayloadFormat::is_default")]
    pub payload_format_version: PayloadFormat,
    /// Routes (`"GET /users/{id}"`): when given, a request must match one (else 404), and
    /// its key and path parameters go into the event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<routes::Route>,
}

/// The shape of HTTP events (and which answer fields are read), as API Gateway names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayloadFormat {
    /// API Gateway REST: `httpMethod`, `path`, `multiValueHeaders`, …; answers may use
    /// `multiValueHeaders`.
    #[serde(rename = "1.0")]
    V1,
    /// Function URLs and HTTP APIs: `rawPath`, `requestContext.http`, `cookies`, ….
    #[default]
    #[serde(rename = "2.0")]
    V2,
}

impl PayloadFormat {
    fn is_default(&self) -> bool {
        *self == PayloadFormat::V2
    }
}

const HTTP_FIELDS: [&str; 4] = ["auth", "cors", "payload_format_version", "routes"];
const CORS_FIELDS: [&str; 6] = [
    "allow_origins",
    "allow_methods",
    "allow_headers",
    "expose_headers",
    "max_age_secs",
    "allow_credentials",
];
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
];
/// Longest preflight cache a browser honours anywhere (Firefox: one day).
const MAX_AGE_LIMIT: u32 = 86_400;

fn type_error(field: &str, message: impl Into<String>) -> SpecError {
    SpecError::malformed("invalid_type", field, message.into())
}

fn value_error(field: &str, message: impl Into<String>) -> SpecError {
    SpecError::invalid(field, message.into())
}

/// Parses and checks a function's `http` field.
pub fn parse_http_settings(value: &Value) -> Result<HttpSettings, SpecError> {
    let Value::Object(map) = value else {
        return Err(type_error(
            "http",
            "http must be an object: {\"auth\": \"token\" | \"none\", \"cors\": {...}}",
        ));
    };
    unknown(map, &HTTP_FIELDS, "http")?;
    let auth = match map.get("auth") {
        None | Some(Value::Null) => HttpAuth::Token,
        Some(Value::String(s)) if s == "token" => HttpAuth::Token,
        Some(Value::String(s)) if s == "none" => HttpAuth::None,
        Some(Value::String(s)) => {
            return Err(value_error(
                "http.auth",
                format!("http.auth {s:?} is not one of token, none"),
            ))
        }
        Some(_) => {
            return Err(type_error(
                "http.auth",
                "http.auth must be a string: token or none",
            ))
        }
    };
    let cors = match map.get("cors") {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) => Some(parse_cors(c)?),
        Some(_) => return Err(type_error("http.cors", "http.cors must be an object")),
    };
    let payload_format_version = match map.get("payload_format_version") {
        None | Some(Value::Null) => PayloadFormat::V2,
        Some(Value::String(s)) if s == "2.0" => PayloadFormat::V2,
        Some(Value::String(s)) if s == "1.0" => PayloadFormat::V1,
        Some(other) => {
            return Err(value_error(
                "http.payload_format_version",
                format!("http.payload_format_version {other} is not \"1.0\" (API Gateway REST) or \"2.0\" (function URLs, HTTP APIs)"),
            ))
        }
    };
    let routes = match map.get("routes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= routes::MAX_ROUTES => items
            .iter()
            .map(|r| match r {
                Value::String(s) => routes::Route::parse(s).map_err(|m| value_error("http.routes", m)),
                Value::Null | Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_) => {
                    Err(type_error(
                        "http.routes",
                        "each route is a string such as \"GET /users/{id}\"",
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Array(_)) => {
            return Err(value_error(
                "http.routes",
                format!("a function declares at most {} routes", routes::MAX_ROUTES),
            ))
        }
        Some(_) => {
            return Err(type_error(
                "http.routes",
                "http.routes must be a list of \"METHOD /path\"",
            ))
        }
    };
    Ok(HttpSettings {
        auth,
        cors,
        payload_format_version,
        routes,
    })
}

fn unknown(map: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), SpecError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(SpecError::malformed(
            "unknown_field",
            &format!("{at}.{k}"),
            format!(
                "unknown field {k:?} in {at}; known fields are {}",
                known.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn parse_cors(c: &Map<String, Value>) -> Result<Cors, SpecError> {
    unknown(c, &CORS_FIELDS, "http.cors")?;
    let allow_origins = strings(c, "allow_origins", |field, s| {
        if s == "*" || is_origin(s) {
            Ok(s.to_owned())
        } else {
            Err(value_error(
                field,
                format!("{s:?} is not an origin: \"*\" or scheme://host[:port], e.g. https://example.com"),
            ))
        }
    })?;
    let allow_methods = strings(c, "allow_methods", |field, s| {
        let upper = s.to_ascii_uppercase();
        if upper == "*" || METHODS.contains(&upper.as_str()) {
            Ok(upper)
        } else {
            Err(value_error(
                field,
                format!("{s:?} is not an HTTP method (or \"*\")"),
            ))
        }
    })?;
    let header = |field: &str, s: &str| {
        if s == "*" || (!s.is_empty() && s.bytes().all(is_token_byte)) {
            Ok(s.to_ascii_lowercase())
        } else {
            Err(value_error(
                field,
                format!("{s:?} is not a header name (or \"*\")"),
            ))
        }
    };
    let allow_headers = strings(c, "allow_headers", header)?;
    let expose_headers = strings(c, "expose_headers", header)?;
    let max_age_secs = match c.get("max_age_secs") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v <= u64::from(MAX_AGE_LIMIT) => u32::try_from(v).unwrap_or(MAX_AGE_LIMIT),
            _ => {
                return Err(value_error(
                    "http.cors.max_age_secs",
                    format!("http.cors.max_age_secs must be between 0 and {MAX_AGE_LIMIT}, got {n}"),
                ))
            }
        },
        Some(_) => {
            return Err(type_error(
                "http.cors.max_age_secs",
                "http.cors.max_age_secs must be an integer",
            ))
        }
    };
    let allow_credentials = match c.get("allow_credentials") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(type_error(
                "http.cors.allow_credentials",
                "http.cors.allow_credentials must be true or false",
            ))
        }
    };
    if allow_credentials && allow_origins.iter().any(|o| o == "*") {
        return Err(value_error(
            "http.cors.allow_origins",
            "browsers refuse credentials with any origin (\"*\"): list the origins, or drop allow_credentials",
        ));
    }
    Ok(Cors {
        allow_origins,
        allow_methods,
        allow_headers,
        expose_headers,
        max_age_secs,
        allow_credentials,
    })
}

fn strings(
    c: &Map<String, Value>,
    name: &str,
    check: impl Fn(&str, &str) -> Result<String, SpecError>,
) -> Result<Vec<String>, SpecError> {
    let field = format!("http.cors.{name}");
    match c.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let at = format!("{field}[{i}]");
                v.as_str().map_or_else(
                    || Err(type_error(&at, format!("{field} must be a list of strings"))),
                    |s| check(&at, s),
                )
            })
            .collect(),
        Some(_) => Err(type_error(&field, format!("{field} must be a list of strings"))),
    }
}

fn is_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    (scheme == "http" || scheme == "https")
        && !rest.is_empty()
        && !rest.contains('/')
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl Cors {
    fn origin_allowed(&self, origin: &str) -> bool {
        self.allow_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    /// The `access-control-allow-origin` value for `origin`, if it is allowed.
    fn allow_origin_value(&self, origin: &str) -> Option<String> {
        if !self.origin_allowed(origin) {
            return None;
        }
        // With credentials the origin itself must be named; "*" is refused by browsers.
        let any = self.allow_origins.iter().any(|o| o == "*") && !self.allow_credentials;
        Some(if any { "*".to_owned() } else { origin.to_owned() })
    }

    /// The answer to a preflight (`OPTIONS` with `access-control-request-method`): the
    /// headers to send with a 204, or `None` when the origin or method is not allowed
    /// (then the answer has no CORS headers and the browser blocks the call).
    pub fn preflight(
        &self,
        origin: &str,
        method: &str,
        request_headers: &str,
    ) -> Option<Vec<(String, String)>> {
        let allow_origin = self.allow_origin_value(origin)?;
        let method = method.trim().to_ascii_uppercase();
        let simple = ["GET", "HEAD", "POST"].contains(&method.as_str());
        let any_method = self.allow_methods.iter().any(|m| m == "*");
        if !(any_method || self.allow_methods.contains(&method) || (self.allow_methods.is_empty() && simple))
        {
            return None;
        }
        let asked: Vec<String> = request_headers
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let any_header = self.allow_headers.iter().any(|h| h == "*");
        if !any_header && !asked.iter().all(|h| self.allow_headers.contains(h)) {
            return None;
        }
        let mut headers = vec![
            ("access-control-allow-origin".to_owned(), allow_origin),
            ("access-control-allow-methods".to_owned(), method),
        ];
        if !asked.is_empty() {
            headers.push(("access-control-allow-headers".to_owned(), asked.join(", ")));
        }
        if self.max_age_secs > 0 {
            headers.push(("access-control-max-age".to_owned(), self.max_age_secs.to_string()));
        }
        self.common(&mut headers);
        Some(headers)
    }

    /// CORS headers for an actual (non-preflight) response to a request from `origin`.
    pub fn response_headers(&self, origin: &str) -> Vec<(String, String)> {
        let Some(allow_origin) = self.allow_origin_value(origin) else {
            return Vec::new();
        };
        let mut headers = vec![("access-control-allow-origin".to_owned(), allow_origin)];
        if !self.expose_headers.is_empty() {
            headers.push((
                "access-control-expose-headers".to_owned(),
                self.expose_headers.join(", "),
            ));
        }
        self.common(&mut headers);
        headers
    }

    fn common(&self, headers: &mut Vec<(String, String)>) {
        if self.allow_credentials {
            headers.push(("access-control-allow-credentials".to_owned(), "true".to_owned()));
        }
        // The answer depends on the Origin header: shared caches must keep them apart.
        headers.push(("vary".to_owned(), "Origin".to_owned()));
    }
}

/// What the API knows of one request to a function URL.
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// The path after `/fn/{name}`, starting with `/` (`/` when there is none).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub raw_query: &'a str,
    /// Header names and values as received (values that are not text are left out).
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
    pub source_ip: String,
    pub request_id: &'a str,
    pub function: &'a str,
    /// Unix milliseconds.
    pub time_ms: i64,
    /// The route the request matched, when the function declares routes.
    pub route: Option<routes::Matched>,
}

/// The Lambda function URL (payload format 2.0) event for `req`.
pub fn http_event(req: &HttpRequest<'_>) -> Value {
    // Names lower-case; repeated headers joined with commas, cookies apart (as Lambda does).
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies: Vec<String> = Vec::new();
    for (name, value) in &req.headers {
        let name = name.to_ascii_lowercase();
        if name == "cookie" {
            cookies.extend(
                value
                    .split(';')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty()),
            );
            continue;
        }
        headers
            .entry(name)
            .and_modify(|v| {
                v.push(',');
                v.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(req.raw_query.as_bytes()) {
        query
            .entry(k.into_owned())
            .and_modify(|old| {
                old.push(',');
                old.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    let (body, base64) = match std::str::from_utf8(req.body) {
        _ if req.body.is_empty() => (Value::Null, false),
        Ok(text) if !is_binary_type(headers.get("content-type").map(String::as_str)) => {
            (Value::String(text.to_owned()), false)
        }
        _ => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(req.body)),
            true,
        ),
    };
    let user_agent = headers.get("user-agent").cloned().unwrap_or_default();
    let host = headers.get("host").cloned().unwrap_or_default();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": req.path,
        "rawQueryString": req.raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": req.function,
            "domainName": host,
            "domainPrefix": req.function,
            "http": {
                "method": req.method,
                "path": req.path,
                "protocol": "HTTP/1.1",
                "sourceIp": req.source_ip,
                "userAgent": user_agent,
            },
            "requestId": req.request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": lambda_time(req.time_ms),
            "timeEpoch": req.time_ms,
        },
        "isBase64Encoded": base64,
    });
    if let Some(route) = &req.route {
        event["routeKey"] = json!(route.key);
        event["requestContext"]["routeKey"] = json!(route.key);
        if !route.params.is_empty() {
            event["pathParameters"] = json!(route.params);
        }
    }
    if !query.is_empty() {
        event["queryStringParameters"] = json!(query);
    }
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !body.is_null() {
        event["body"] = body;
    }
    event
}

/// Text types come as text; everything else (and anything not UTF-8) as base64.
pub(crate) fn is_binary_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let ct = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    !(ct.is_empty()
        || ct.starts_with("text/")
        || ct.ends_with("json")
        || ct.ends_with("xml")
        || ct == "application/x-www-form-urlencoded"
        || ct == "application/javascript"
        || ct == "application/graphql")
}

/// Lambda's `requestContext.time`: `23/Nov/2026:10:41:12 +0000`.
pub(crate) fn lambda_time(ms: i64) -> String {
    let format =
        time::macros::format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

mod rest;
pub mod routes;
pub use rest::http_event_v1;

#[cfg(test)]
mod tests;
