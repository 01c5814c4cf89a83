//! The client commands: each one HTTP request to the server, printed for people.

use std::process::ExitCode;

use anyhow::{bail, Context};
use reqwest::blocking::RequestBuilder;
use serde_json::{json, Map, Value};

use crate::api::{report, Api};
use crate::follow::{send_and_follow, Send};
use crate::pack::pack_dir;
use crate::{Cli, CodeArgs, Command, CreateArgs, FnCommand, SettingsArgs, UpdateArgs};

pub fn run_client(cli: &Cli) -> anyhow::Result<ExitCode> {
    let api = Api::new(&cli.url, cli.token.as_deref())?;
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
            print_isolation(&body["isolation"]);
            Ok(ExitCode::SUCCESS)
        }
        Command::Deploy(args) => crate::deploy::run(&api, args),
        Command::Usage { since, until } => usage(&api, since.as_deref(), until.as_deref()),
        Command::Fn(cmd) => match cmd {
            FnCommand::Create(args) => create(&api, args),
            FnCommand::Update(args) => update(&api, args),
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

fn create(api: &Api<'_>, args: &CreateArgs) -> anyhow::Result<ExitCode> {
    let mut body = Map::new();
    body.insert("name".to_owned(), json!(args.name));
    body.insert("runtime".to_owned(), json!(args.runtime));
    if !add_code(&mut body, &args.code)? {
        bail!("fn create needs the function's code: --file FILE or --dir FOLDER");
    }
    add_settings(&mut body, &args.settings)?;
    send_and_follow(
        api,
        Send {
            method: reqwest::Method::POST,
            path: "/v1/functions".to_owned(),
            body: &Value::Object(body),
            context: "",
        },
    )
}

/// An update starts from the function's settings as the server shows them (`spec`, the
/// shape an update takes) and changes what the flags give; without code it keeps the code.
fn update(api: &Api<'_>, args: &UpdateArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/functions/{}", args.name);
    let resp = api.send(api.req(reqwest::Method::GET, &path))?;
    if !resp.status().is_success() {
        return Ok(report(resp));
    }
    let current: Value = resp.json().context("the server's answer is not JSON")?;
    let Some(Value::Object(mut body)) = current.get("spec").cloned() else {
        bail!("the server did not show the settings of {} (`spec`)", args.name);
    };
    if let Some(runtime) = &args.runtime {
        body.insert("runtime".to_owned(), json!(runtime));
    }
    add_code(&mut body, &args.code)?;
    add_settings(&mut body, &args.settings)?;
    send_and_follow(
        api,
        Send {
            method: reqwest::Method::PUT,
            path,
            body: &Value::Object(body),
            context: "",
        },
    )
}

/// Puts the code the flags name into `body`: `code` for one file, `zip` for a folder.
/// Answers whether they named any.
fn add_code(body: &mut Map<String, Value>, code: &CodeArgs) -> anyhow::Result<bool> {
    use base64::Engine;
    if let Some(file) = &code.file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        body.insert("code".to_owned(), json!(text));
        return Ok(true);
    }
    if let Some(dir) = &code.dir {
        let packed = pack_dir(dir)?;
        let zip = base64::engine::general_purpose::STANDARD.encode(packed.zip()?);
        body.insert("zip".to_owned(), json!(zip));
        return Ok(true);
    }
    Ok(false)
}

/// The isolation tiers of `GET /v1/runtimes`: whether each is available, with the
/// microvm tier's accelerator and guest kernel, or why it is not.
fn print_isolation(tiers: &Value) {
    if !tiers.is_object() {
        return;
    }
    println!("\n{:<12} {:<10} DETAIL", "ISOLATION", "AVAILABLE");
    for name in ["process", "microvm"] {
        let tier = &tiers[name];
        let detail = match (tier["accelerator"].as_str(), tier["reason"].as_str()) {
            (Some(accel), _) => format!(
                "{accel}, guest kernel {}, snapshots {}, restored ahead per kind {}",
                tier["guest_kernel"].as_str().unwrap_or("-"),
                tier["snapshots"].as_bool().unwrap_or(false),
                tier["pool"].as_u64().map_or("-".to_owned(), |n| n.to_string())
            ),
            (None, Some(reason)) => reason.to_owned(),
            (None, None) => String::new(),
        };
        println!(
            "{name:<12} {:<10} {detail}",
            tier["available"].as_bool().unwrap_or(false)
        );
    }
}

fn add_settings(body: &mut Map<String, Value>, args: &SettingsArgs) -> anyhow::Result<()> {
    let optional = [
        ("handler", args.handler.as_ref().map(|h| json!(h))),
        ("timeout_secs", args.timeout.map(|v| json!(v))),
        ("memory_mb", args.memory.map(|v| json!(v))),
        ("max_instances", args.max_instances.map(|v| json!(v))),
        ("idle_timeout_secs", args.idle_timeout.map(|v| json!(v))),
        ("min_instances", args.min_instances.map(|v| json!(v))),
        ("concurrency", args.concurrency.map(|v| json!(v))),
        ("network", args.network.as_ref().map(|v| json!(v))),
        ("isolation", args.isolation.as_ref().map(|v| json!(v))),
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
    Ok(())
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
