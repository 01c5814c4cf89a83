//! The connection to an Ignis server: requests with the token, and the API's errors
//! printed for people.

use std::process::ExitCode;

use anyhow::Context;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;

use crate::failure;

pub(crate) struct Api<'a> {
    http: Client,
    url: &'a str,
    token: Option<&'a str>,
}

impl Api<'_> {
    pub(crate) fn new<'a>(url: &'a str, token: Option<&'a str>) -> anyhow::Result<Api<'a>> {
        Ok(Api {
            http: Client::builder()
                .timeout(std::time::Duration::from_secs(600))
                .build()?,
            url,
            token,
        })
    }

    pub(crate) fn req(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let r = self
            .http
            .request(method, format!("{}{path}", self.url.trim_end_matches('/')));
        match self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub(crate) fn send(&self, r: RequestBuilder) -> anyhow::Result<Response> {
        r.send()
            .with_context(|| format!("cannot reach the Ignis server at {}", self.url))
    }
}

/// Prints the API's error and returns the failing exit code.
pub(crate) fn report(resp: Response) -> ExitCode {
    report_in(resp, "")
}

/// Prints the API's error after `context` (what the request came from), naming the field
/// the server blames, and returns the failing exit code.
pub(crate) fn report_in(resp: Response, context: &str) -> ExitCode {
    let status = resp.status();
    let body: Value = resp.json().unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("error");
    let message = body["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| status.to_string());
    let field = match body["error"]["field"].as_str() {
        Some(f) => format!("field `{f}`: "),
        None => String::new(),
    };
    if context.is_empty() {
        eprintln!("error: {field}{code}: {message}");
    } else {
        eprintln!("{context}: error: {field}{code}: {message}");
    }
    if let Some(stack) = body["error"]["stack"].as_str().filter(|s| !s.is_empty()) {
        eprintln!("{stack}");
    }
    failure()
}

/// Whether the server answered 404 (the function, version or route does not exist).
pub(crate) fn not_found(resp: &Response) -> bool {
    resp.status().as_u16() == 404
}
