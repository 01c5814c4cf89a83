//! `ignis deploy`: each function of a manifest is created, updated or left alone. What
//! would change is found by reading the manifest's body with the server's own parser
//! (`ignis_core`) and comparing the result with the function's `spec` and `package_sha256`
//! as the server shows them: a function whose settings and package are the same gets no
//! new version.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::api::{not_found, Api};
use crate::follow::{send_and_follow, Send};
use crate::manifest::{self, ManifestFunction};
use crate::pack::{pack_dir, Packed};
use crate::{failure, ManifestArgs};

/// What deploying one function does.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    Create,
    Unchanged,
    Update {
        /// The settings whose value changes, by the spec's names.
        settings: Vec<String>,
        code: bool,
    },
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Plan::Create => f.write_str("create"),
            Plan::Unchanged => f.write_str("unchanged"),
            Plan::Update { settings, code } => {
                let code = if *code { "changed" } else { "unchanged" };
                if settings.is_empty() {
                    write!(f, "update (code {code})")
                } else {
                    write!(f, "update (settings: {}; code {code})", settings.join(", "))
                }
            }
        }
    }
}

pub fn run(api: &Api<'_>, args: &ManifestArgs) -> anyhow::Result<ExitCode> {
    let manifest = manifest::read(&args.file)?;
    let file = args.file.display().to_string();
    let mut failed = Vec::new();
    for function in &manifest.functions {
        let context = format!("{file}: function {:?}", function.name);
        match deploy_one(api, function, &context, args.dry_run) {
            Ok(true) => {}
            Ok(false) => failed.push(function.name.as_str()),
            Err(e) => {
                eprintln!("{context}: {e:#}");
                failed.push(function.name.as_str());
            }
        }
    }
    if args.dry_run {
        println!("dry run: nothing was changed");
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("failed: {}", failed.join(", "));
        Ok(failure())
    }
}

/// Plans one function and, unless `dry_run`, carries the plan out. Answers whether it went
/// well.
fn deploy_one(
    api: &Api<'_>,
    function: &ManifestFunction,
    context: &str,
    dry_run: bool,
) -> anyhow::Result<bool> {
    let packed = pack(&function.dir)?;
    let zip = base64::engine::general_purpose::STANDARD.encode(packed.zip()?);
    let mut body = function.settings.clone();
    body.insert("name".to_owned(), json!(function.name));
    let path = format!("/v1/functions/{}", function.name);
    let resp = api.send(api.req(Method::GET, &path))?;
    let plan = if not_found(&resp) {
        Plan::Create
    } else if resp.status().is_success() {
        let current: Value = resp.json().context("the server's answer is not JSON")?;
        plan_update(&body, &zip, &packed, &current)
    } else {
        anyhow::bail!("cannot read the function from the server: {}", resp.status());
    };
    println!("{}: {plan}", function.name);
    if dry_run {
        return Ok(true);
    }
    let (method, path) = match &plan {
        Plan::Unchanged => return Ok(true),
        Plan::Create => {
            body.insert("zip".to_owned(), json!(zip));
            (Method::POST, "/v1/functions".to_owned())
        }
        Plan::Update { code, .. } => {
            // Settings alone: the server keeps the code, nothing is uploaded again.
            if *code {
                body.insert("zip".to_owned(), json!(zip));
            }
            (Method::PUT, path)
        }
    };
    let code = send_and_follow(
        api,
        Send {
            method,
            path,
            body: &Value::Object(body),
            context,
        },
    )?;
    Ok(code == ExitCode::SUCCESS)
}

fn pack(dir: &Path) -> anyhow::Result<Packed> {
    pack_dir(dir).map_err(|e| anyhow::anyhow!("field `dir`: {e:#}"))
}

/// What changes from `current` (the server's view of the function) to the manifest's
/// `body` with the package `packed`.
fn plan_update(body: &Map<String, Value>, zip: &str, packed: &Packed, current: &Value) -> Plan {
    let code = current["package_sha256"].as_str() != Some(packed.sha256());
    let empty = Map::new();
    let server = current["spec"].as_object().unwrap_or(&empty);
    let raw_changed = |k: &str| body.get(k) != server.get(k);
    let settings = match local_spec(body, zip) {
        Some((local, unknown)) => {
            let mut settings = changed(&local, server);
            settings.retain(|k| !unknown.contains(k));
            // Fields this CLI's parser does not know (a newer server may take them) or
            // refuses (the server will say why) are compared as they are given.
            settings.extend(unknown.into_iter().filter(|k| raw_changed(k)));
            settings.sort();
            settings
        }
        // The local parser refused the body as a whole: the fields given are compared as
        // they are, and the server has the last word on the update.
        None => body
            .keys()
            .filter(|k| k.as_str() != "name" && raw_changed(k))
            .cloned()
            .collect(),
    };
    if settings.is_empty() && !code {
        Plan::Unchanged
    } else {
        Plan::Update { settings, code }
    }
}

/// The manifest's body as the server would store it: parsed by the server's rules, then
/// shown as `GET` shows a spec (every setting, defaults filled in, no code). Fields the
/// parser does not know or refuses are left out of the parse and named in the second value.
fn local_spec(body: &Map<String, Value>, zip: &str) -> Option<(Map<String, Value>, Vec<String>)> {
    let mut body = body.clone();
    body.insert("zip".to_owned(), json!(zip));
    let mut unknown = Vec::new();
    let spec = loop {
        let bytes = serde_json::to_vec(&body).ok()?;
        match ignis_core::parse_spec(&bytes, None) {
            Ok(spec) => break spec,
            // A field the parser does not know or refuses is left to the server.
            Err(e) => {
                let field = e.field.filter(|f| f != "name" && f != "zip")?;
                body.remove(&field)?;
                unknown.push(field);
            }
        }
    };
    let Ok(Value::Object(mut shown)) = serde_json::to_value(&spec) else {
        return None;
    };
    shown.remove("package_sha256");
    Some((shown, unknown))
}

/// The names of the fields whose values differ, in order.
fn changed(local: &Map<String, Value>, server: &Map<String, Value>) -> Vec<String> {
    let mut keys: Vec<&String> = local.keys().chain(server.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| local.get(k.as_str()) != server.get(k.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed() -> (Packed, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("app.py"),
            "def lambda_handler(e, c):\n    return 1\n",
        )
        .expect("write");
        let packed = pack_dir(dir.path()).expect("packs");
        let zip = base64::engine::general_purpose::STANDARD.encode(packed.zip().expect("zips"));
        (packed, zip)
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    /// The server's view of a function made from `body` and `packed`, as GET shows it.
    fn server_view(body: &Map<String, Value>, zip: &str, packed: &Packed) -> Value {
        let (spec, unknown) = local_spec(body, zip).expect("valid");
        assert!(unknown.is_empty(), "{unknown:?}");
        json!({"package_sha256": packed.sha256(), "spec": spec})
    }

    #[test]
    fn the_same_settings_and_package_are_unchanged() {
        let (packed, zip) = packed();
        let b = body(
            json!({"name": "hello", "runtime": "python", "handler": "app.lambda_handler",
                            "memory_mb": 256, "retry": {"max_retries": 0}}),
        );
        let current = server_view(&b, &zip, &packed);
        assert_eq!(plan_update(&b, &zip, &packed, &current), Plan::Unchanged);
    }

    #[test]
    fn a_changed_or_removed_setting_and_new_code_are_named() {
        let (packed, zip) = packed();
        let before = body(
            json!({"name": "hello", "runtime": "python", "handler": "app.lambda_handler",
                                 "memory_mb": 256, "timeout_secs": 9}),
        );
        let mut current = server_view(&before, &zip, &packed);
        // memory_mb changes; timeout_secs is left out, so it goes back to its default.
        let after = body(
            json!({"name": "hello", "runtime": "python", "handler": "app.lambda_handler",
                                "memory_mb": 512}),
        );
        assert_eq!(
            plan_update(&after, &zip, &packed, &current),
            Plan::Update {
                settings: vec!["memory_mb".to_owned(), "timeout_secs".to_owned()],
                code: false
            }
        );
        current["package_sha256"] = json!("another");
        assert_eq!(
            plan_update(&before, &zip, &packed, &current),
            Plan::Update {
                settings: vec![],
                code: true
            }
        );
    }

    #[test]
    fn an_isolation_line_is_a_setting_like_any_other() {
        let (packed, zip) = packed();
        let process = body(json!({"name": "hello", "runtime": "python", "handler": "app.lambda_handler"}));
        let current = server_view(&process, &zip, &packed);
        assert_eq!(current["spec"]["isolation"], "process", "the default is shown");
        let mut said = process.clone();
        said.insert("isolation".to_owned(), json!("process"));
        assert_eq!(plan_update(&said, &zip, &packed, &current), Plan::Unchanged);
        let mut vm = process;
        vm.insert("isolation".to_owned(), json!("microvm"));
        assert_eq!(
            plan_update(&vm, &zip, &packed, &current),
            Plan::Update {
                settings: vec!["isolation".to_owned()],
                code: false
            }
        );
    }

    #[test]
    fn fields_the_parser_does_not_know_are_compared_as_given() {
        let (packed, zip) = packed();
        let b = body(
            json!({"name": "hello", "runtime": "python", "handler": "app.lambda_handler",
                            "retry": {"max_retries": 1}}),
        );
        let mut current = server_view(&b, &zip, &packed);
        let mut unknown = b.clone();
        unknown.insert("layers".to_owned(), json!(["deps:1"]));
        assert_eq!(
            plan_update(&unknown, &zip, &packed, &current),
            Plan::Update {
                settings: vec!["layers".to_owned()],
                code: false
            }
        );
        // A server that takes the field shows it in its spec: then it is unchanged.
        current["spec"]["layers"] = json!(["deps:1"]);
        assert_eq!(plan_update(&unknown, &zip, &packed, &current), Plan::Unchanged);
    }

    #[test]
    fn a_value_the_parser_refuses_is_compared_as_given() {
        let (packed, zip) = packed();
        let b = body(
            json!({"name": "hello", "runtime": "python", "handler": "app.lambda_handler",
                            "retry": {"max_retries": 1}}),
        );
        let current = server_view(&b, &zip, &packed);
        let mut bad = b.clone();
        bad.insert("memory_mb".to_owned(), json!(1));
        assert_eq!(
            plan_update(&bad, &zip, &packed, &current),
            Plan::Update {
                settings: vec!["memory_mb".to_owned()],
                code: false
            }
        );
    }
}
