//! The client commands: each one HTTP request to the server, printed for people.

use std::process::ExitCode;

use anyhow::{bail, Context};
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{json, Map, Value};

use crate::{failure, Cli, Command, DeployArgs, FnCommand};

struct Api<'a> {
    http: Client,
    url: &'a str,
    token: Option<&'a str>,
}

impl Api<'_> {
    fn req(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let r = self
            .http
            .request(method, format!("{}{path}", self.url.trim_end_matches('/')));
        match self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    fn send(&self, r: RequestBuilder) -> anyhow::Result<Response> {
        r.send()
            .with_context(|| format!("cannot reach the Ignis server at {}", self.url))
    }
}

/// Prints the API's error and returns the failing exit code.
fn report(resp: Response) -> ExitCode {
    let status = resp.status();
    let body: Value = resp.json().unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("error");
    let message = body["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| status.to_string());
    eprintln!("error: {code}: {message}");
    if let Some(stack) = body["error"]["stack"].as_str().filter(|s| !s.is_empty()) {
        eprintln!("{stack}");
    }
    failure()
}

pub fn run_client(cli: &Cli) -> anyhow::Result<ExitCode> {
    let api = Api {
        http: Client::builder()
            .timeout(std::time::Duration::from_secs(600))
            .build()?,
        url: &cli.url,
        token: cli.token.as_deref(),
    };
    use reqwest::Method;
    match &cli.command {
        Command::Serve(_) => bail!("`serve` is not a client command"),
        Command::Runtimes => {
            let resp = api.send(api.req(Method::GET, "/v1/runtimes"))?;
            if !resp.status().is_success() {
                return Ok(report(resp));
            }
            let body: Value = resp.json()?;
            println!("{:<12} {:<10} {:<10} PATH", "RUNTIME", "AVAILABLE", "VERSION");
            for r in body["runtimes"].as_array().into_iter().flatten() {
                println!(
                    "{:<12} {:<10} {:<10} {}",
                    r["name"].as_str().unwrap_or(""),
                    r["available"].as_bool().unwrap_or(false),
                    r["version"].as_str().unwrap_or("-"),
                    r["path"].as_str().or(r["error"].as_str()).unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Usage { since, until } => usage(&api, since.as_deref(), until.as_deref()),
        Command::Fn(cmd) => match cmd {
            FnCommand::Create(args) => deploy(&api, Method::POST, "/v1/functions?wait=true".to_owned(), args),
            FnCommand::Update(args) => deploy(
                &api,
                Method::PUT,
                format!("/v1/functions/{}?wait=true", args.name),
                args,
            ),
            FnCommand::Invoke { name, data } => {
                let body = match data.as_deref() {
                    None => String::new(),
                    Some(d) => match d.strip_prefix('@') {
                        Some(path) => {
                            std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
                        }
                        None => d.to_owned(),
                    },
                };
                let resp = api.send(
                    api.req(Method::POST, &format!("/v1/functions/{name}/invoke"))
                        .header("content-type", "application/json")
                        .body(body),
                )?;
                if !resp.status().is_success() {
                    return Ok(report(resp));
                }
                let text = resp.text()?;
                println!("{text}");
                Ok(ExitCode::SUCCESS)
            }
            FnCommand::Ls => {
                let resp = api.send(api.req(Method::GET, "/v1/functions"))?;
                if !resp.status().is_success() {
                    return Ok(report(resp));
                }
                let body: Value = resp.json()?;
                println!("{:<32} {:<11} {:<8} STATE", "NAME", "RUNTIME", "VERSION");
                for f in body["functions"].as_array().into_iter().flatten() {
                    println!(
                        "{:<32} {:<11} {:<8} {}",
                        f["name"].as_str().unwrap_or(""),
                        f["runtime"].as_str().unwrap_or(""),
                        f["version"],
                        f["state"].as_str().unwrap_or("")
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            FnCommand::Get { name } => {
                print_json(&api, api.req(Method::GET, &format!("/v1/functions/{name}")))
            }
            FnCommand::Rm { name } => {
                let resp = api.send(api.req(Method::DELETE, &format!("/v1/functions/{name}")))?;
                if !resp.status().is_success() {
                    return Ok(report(resp));
                }
                println!("deleted {name}");
                Ok(ExitCode::SUCCESS)
            }
            FnCommand::Logs { name, limit } => {
                let resp =
                    api.send(api.req(Method::GET, &format!("/v1/functions/{name}/logs?limit={limit}")))?;
                if !resp.status().is_success() {
                    return Ok(report(resp));
                }
                let body: Value = resp.json()?;
                for l in body["logs"].as_array().into_iter().flatten() {
                    println!(
                        "{} {} {} {}",
                        l["ts"].as_str().unwrap_or(""),
                        l["stream"].as_str().unwrap_or(""),
                        l["invocation_id"].as_str().unwrap_or(""),
                        l["line"].as_str().unwrap_or("")
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
        },
    }
}

fn print_json(api: &Api<'_>, req: RequestBuilder) -> anyhow::Result<ExitCode> {
    let resp = api.send(req)?;
    if !resp.status().is_success() {
        return Ok(report(resp));
    }
    let body: Value = resp.json()?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(ExitCode::SUCCESS)
}

fn deploy(
    api: &Api<'_>,
    method: reqwest::Method,
    path: String,
    args: &DeployArgs,
) -> anyhow::Result<ExitCode> {
    let code = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let mut body = Map::new();
    body.insert("name".to_owned(), json!(args.name));
    body.insert("runtime".to_owned(), json!(args.runtime));
    body.insert("code".to_owned(), json!(code));
    let optional = [
        ("handler", args.handler.as_ref().map(|h| json!(h))),
        ("timeout_secs", args.timeout.map(|v| json!(v))),
        ("memory_mb", args.memory.map(|v| json!(v))),
        ("max_instances", args.max_instances.map(|v| json!(v))),
        ("idle_timeout_secs", args.idle_timeout.map(|v| json!(v))),
        ("min_instances", args.min_instances.map(|v| json!(v))),
        ("concurrency", args.concurrency.map(|v| json!(v))),
        ("network", args.network.as_ref().map(|v| json!(v))),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            body.insert(key.to_owned(), v);
        }
    }
    if !args.env.is_empty() {
        let mut env = Map::new();
        for pair in &args.env {
            let Some((k, v)) = pair.split_once('=') else {
                bail!("--env {pair:?} must be KEY=VALUE");
            };
            env.insert(k.to_owned(), json!(v));
        }
        body.insert("env".to_owned(), Value::Object(env));
    }
    let resp = api.send(api.req(method, &path).json(&Value::Object(body)))?;
    if !resp.status().is_success() {
        return Ok(report(resp));
    }
    let f: Value = resp.json()?;
    let state = f["state"].as_str().unwrap_or("");
    println!("{} v{} {}", f["name"].as_str().unwrap_or(""), f["version"], state);
    // A failed update keeps serving the old version (state ready) but still failed.
    if let Some(reason) = f["state_reason"].as_str() {
        eprintln!("{reason}");
        if state == "error" || f["active_version"] != f["version"] {
            return Ok(failure());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn usage(api: &Api<'_>, since: Option<&str>, until: Option<&str>) -> anyhow::Result<ExitCode> {
    use time::format_description::well_known::Rfc3339;
    let since = match since {
        Some(s) => s.to_owned(),
        None => (time::OffsetDateTime::now_utc() - time::Duration::days(1)).format(&Rfc3339)?,
    };
    // `+` of an offset must reach the server as such, not as a space.
    let mut path = format!("/v1/usage?since={}", since.replace('+', "%2B"));
    if let Some(u) = until {
        path.push_str(&format!("&until={}", u.replace('+', "%2B")));
    }
    let resp = api.send(api.req(reqwest::Method::GET, &path))?;
    if !resp.status().is_success() {
        return Ok(report(resp));
    }
    let body: Value = resp.json()?;
    println!(
        "usage from {} to {}",
        body["since"].as_str().unwrap_or("?"),
        body["until"].as_str().unwrap_or("now")
    );
    println!(
        "{:<32} {:>12} {:>8} {:>8} {:>14} {:>14}",
        "FUNCTION", "INVOCATIONS", "ERRORS", "COLD", "BILLED_MS", "GB_SECONDS"
    );
    let row = |name: &str, u: &Value| {
        println!(
            "{:<32} {:>12} {:>8} {:>8} {:>14} {:>14.6}",
            name,
            u["invocations"].as_u64().unwrap_or(0),
            u["errors"].as_u64().unwrap_or(0),
            u["cold_starts"].as_u64().unwrap_or(0),
            u["billed_ms"].as_u64().unwrap_or(0),
            u["gb_seconds"].as_f64().unwrap_or(0.0)
        );
    };
    for f in body["functions"].as_array().into_iter().flatten() {
        row(f["function"].as_str().unwrap_or(""), f);
    }
    row("TOTAL", &body["total"]);
    Ok(ExitCode::SUCCESS)
}
