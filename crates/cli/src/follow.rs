//! Following one deploy from the terminal: the body uploads behind a progress bar (on a
//! terminal only), the build log streams live, then the function's state is polled until
//! the version is ready or failed.

use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::blocking::Body;
use reqwest::Method;
use serde_json::Value;

use crate::api::{not_found, report_in, Api};
use crate::failure;

/// How long a deploy (build and check) may take before the command stops waiting: a
/// build's own limit is 10 minutes by default.
const DEPLOY_DEADLINE: Duration = Duration::from_secs(15 * 60);
/// Between two looks at a deploying function's state.
const POLL: Duration = Duration::from_millis(200);

/// What a create or update sends and where.
pub struct Send<'a> {
    pub method: Method,
    pub path: String,
    pub body: &'a Value,
    /// Where the body came from, put before the server's errors (`ignis.yaml: function
    /// "hello"`); empty for a command's flags.
    pub context: &'a str,
}

/// Sends a create or update, follows its build and deploy, prints the final state; fails
/// when the new version did not become the serving one.
pub fn send_and_follow(api: &Api<'_>, send: Send<'_>) -> anyhow::Result<ExitCode> {
    let bytes = serde_json::to_vec(send.body).context("cannot encode the request body")?;
    let resp = api.send(
        api.req(send.method, &send.path)
            .header("content-type", "application/json")
            .body(upload_body(bytes)),
    )?;
    if !resp.status().is_success() {
        return Ok(report_in(resp, send.context));
    }
    let f: Value = resp.json().context("the server's answer is not JSON")?;
    let name = f["name"].as_str().unwrap_or("").to_owned();
    let Some(version) = f["version"].as_u64() else {
        anyhow::bail!("the server's answer names no version");
    };
    follow_build(api, &name, version)?;
    let f = wait_deployed(api, &name)?;
    Ok(print_outcome(&f, version))
}

/// The body as a reader that moves a progress bar, when stderr is a terminal.
fn upload_body(bytes: Vec<u8>) -> Body {
    let len = bytes.len() as u64;
    if !std::io::stderr().is_terminal() {
        return Body::from(bytes);
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "uploading {bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Body::sized(
        Progress {
            inner: std::io::Cursor::new(bytes),
            bar,
        },
        len,
    )
}

struct Progress {
    inner: std::io::Cursor<Vec<u8>>,
    bar: ProgressBar,
}

impl Read for Progress {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        if n == 0 {
            self.bar.finish_and_clear();
        }
        Ok(n)
    }
}

/// Streams version `version`'s build log to stderr until the build ends. A server without
/// builds (404 on the route) or a version with nothing to install prints nothing.
fn follow_build(api: &Api<'_>, name: &str, version: u64) -> anyhow::Result<()> {
    let path = format!("/v1/functions/{name}/versions/{version}/build?follow=true");
    let resp = api.send(
        api.req(Method::GET, &path)
            .header("accept", "text/event-stream")
            .timeout(DEPLOY_DEADLINE),
    )?;
    if not_found(&resp) {
        return Ok(());
    }
    if !resp.status().is_success() {
        anyhow::bail!("cannot follow the build of {name} v{version}: {}", resp.status());
    }
    let mut events = Events::new(BufReader::new(resp));
    while let Some((event, data)) = events.next_event().context("reading the build log")? {
        match event.as_str() {
            "log" => eprintln!("  | {data}"),
            "end" => {
                let end: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                match end["status"].as_str() {
                    Some("none") | None => {}
                    Some(status) => {
                        let installer = end["installer"].as_str().unwrap_or("installer");
                        eprintln!("build {status} ({installer})");
                        if let Some(error) = end["error"].as_str() {
                            eprintln!("build error: {error}");
                        }
                    }
                }
                break;
            }
            // Other events (comments, keep-alives) carry nothing to show.
            _ => {}
        }
    }
    Ok(())
}

/// Server-Sent Events read from a stream: each `(event, data)` in turn.
struct Events<R> {
    lines: R,
}

impl<R: BufRead> Events<R> {
    fn new(lines: R) -> Events<R> {
        Events { lines }
    }

    /// The next event, or `None` once the stream ends.
    fn next_event(&mut self) -> std::io::Result<Option<(String, String)>> {
        let mut event = String::new();
        let mut data: Vec<String> = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if self.lines.read_line(&mut line)? == 0 {
                return Ok((!data.is_empty()).then(|| (kind(event), data.join("\n"))));
            }
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !data.is_empty() || !event.is_empty() {
                    return Ok(Some((kind(event), data.join("\n"))));
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event = value.to_owned(),
                "data" => data.push(value.to_owned()),
                _ => {}
            }
        }
    }
}

/// An event without a name is a `message`, as the SSE standard says.
fn kind(event: String) -> String {
    if event.is_empty() {
        "message".to_owned()
    } else {
        event
    }
}

/// Polls the function until no version is building or deploying.
fn wait_deployed(api: &Api<'_>, name: &str) -> anyhow::Result<Value> {
    let start = Instant::now();
    loop {
        let resp = api.send(api.req(Method::GET, &format!("/v1/functions/{name}")))?;
        if !resp.status().is_success() {
            anyhow::bail!("cannot read the state of {name}: {}", resp.status());
        }
        let f: Value = resp.json().context("the server's answer is not JSON")?;
        let state = f["state"].as_str().unwrap_or("");
        if !matches!(state, "creating" | "building" | "deploying") {
            return Ok(f);
        }
        if start.elapsed() > DEPLOY_DEADLINE {
            anyhow::bail!(
                "{name} is still {state} after {} s; see `ignis fn get {name}`",
                DEPLOY_DEADLINE.as_secs()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// Prints `name vN state` and the reason; a version that did not become the serving one
/// fails (a failed update keeps the previous version serving, state `ready`).
fn print_outcome(f: &Value, version: u64) -> ExitCode {
    let state = f["state"].as_str().unwrap_or("");
    let name = f["name"].as_str().unwrap_or("");
    let serving = f["active_version"].as_u64() == Some(version) && state == "ready";
    if serving {
        println!("{name} v{version} {state}");
    } else {
        let active = match f["active_version"].as_u64() {
            Some(v) => format!("v{v} serving"),
            None => "no version serving".to_owned(),
        };
        println!("{name} v{version} failed (state {state}, {active})");
    }
    if let Some(reason) = f["state_reason"].as_str() {
        eprintln!("{reason}");
    }
    if serving {
        ExitCode::SUCCESS
    } else {
        failure()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_as_the_standard_says() {
        let stream = "event: log\ndata: Resolved 3 packages\n\n: keep-alive\n\nevent: log\ndata:two\ndata: lines\n\nevent: end\ndata: {\"status\":\"succeeded\"}\n\n";
        let mut events = Events::new(stream.as_bytes());
        let mut seen = Vec::new();
        while let Some(e) = events.next_event().expect("reads") {
            seen.push(e);
        }
        assert_eq!(
            seen,
            [
                ("log".to_owned(), "Resolved 3 packages".to_owned()),
                ("log".to_owned(), "two\nlines".to_owned()),
                ("end".to_owned(), "{\"status\":\"succeeded\"}".to_owned()),
            ]
        );
    }
}
