//! The deploy manifest (`ignis.yaml`): `functions:` mapping each name to its `dir` and the
//! settings of its spec, by the spec's own field names. The settings are passed to the
//! server as they are: the server, not the CLI, knows what a spec may hold.

use std::path::{Path, PathBuf};

use anyhow::bail;
use ignis_core::FunctionName;
use serde_json::{Map, Value};

/// Fields of a function's entry that are not settings of its spec.
const DIR: &str = "dir";
/// Fields the manifest gives another way: the name is the entry's key, the code its `dir`.
const NOT_SETTINGS: [&str; 4] = ["name", "code", "files", "zip"];

/// A read manifest: its functions in name order.
#[derive(Debug)]
pub struct Manifest {
    pub functions: Vec<ManifestFunction>,
}

/// One function of a manifest.
#[derive(Debug)]
pub struct ManifestFunction {
    pub name: String,
    /// The folder of its code, resolved against the manifest's folder.
    pub dir: PathBuf,
    /// Every other field, as the spec names it.
    pub settings: Map<String, Value>,
}

/// Reads and checks the manifest at `path`; every error names the file, and the function
/// and the field it is about.
pub fn read(path: &Path) -> anyhow::Result<Manifest> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Parses a manifest's text; relative `dir`s are resolved against `base`.
fn parse(text: &str, base: &Path) -> anyhow::Result<Manifest> {
    let doc: Value = serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("not valid YAML: {e}"))?;
    let Value::Object(mut top) = doc else {
        bail!("the manifest must be a mapping with a `functions:` field");
    };
    let functions = top.remove("functions");
    if let Some(unknown) = top.keys().next() {
        bail!("unknown field `{unknown}`; the manifest holds `functions:`");
    }
    let Some(Value::Object(functions)) = functions else {
        bail!("field `functions` is missing or not a mapping of function names to their settings");
    };
    if functions.is_empty() {
        bail!("field `functions` names no function");
    }
    let mut out = Vec::with_capacity(functions.len());
    for (name, entry) in functions {
        let function = entry_of(&name, entry, base).map_err(|e| anyhow::anyhow!("function {name:?}: {e}"))?;
        out.push(function);
    }
    Ok(Manifest { functions: out })
}

fn entry_of(name: &str, entry: Value, base: &Path) -> anyhow::Result<ManifestFunction> {
    FunctionName::parse(name).map_err(|why| anyhow::anyhow!("field `name` (the key): {why}"))?;
    let Value::Object(mut settings) = entry else {
        bail!("must be a mapping of its settings (`runtime`, `dir`, `handler`, ...)");
    };
    let dir = match settings.remove(DIR) {
        Some(Value::String(dir)) if !dir.is_empty() => base.join(dir),
        Some(_) => bail!("field `{DIR}` must be the path of a folder, relative to the manifest"),
        None => {
            bail!("field `{DIR}` is missing: the folder of the function's code, relative to the manifest")
        }
    };
    if let Some(field) = NOT_SETTINGS.iter().find(|f| settings.contains_key(**f)) {
        bail!(
            "field `{field}` is not taken in a manifest: the name is the entry's key and the \
             code is the folder `{DIR}`"
        );
    }
    // The server may not take layers yet: an empty list says nothing, so it is not sent.
    if settings
        .get("layers")
        .is_some_and(|l| l.as_array().is_some_and(Vec::is_empty))
    {
        settings.remove("layers");
    }
    Ok(ManifestFunction {
        name: name.to_owned(),
        dir,
        settings,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parsed(text: &str) -> anyhow::Result<Manifest> {
        parse(text, Path::new("/project"))
    }

    fn error(text: &str) -> String {
        format!("{:#}", parsed(text).expect_err("refused"))
    }

    #[test]
    fn functions_with_their_settings_as_given() {
        let m = parsed(
            "functions:\n  hello:\n    runtime: python\n    dir: ./hello\n    handler: app.lambda_handler\n    memory_mb: 256\n    env: {STAGE: prod}\n    layers: []\n    retry: {max_retries: 0}\n  api:\n    runtime: typescript\n    dir: api\n    layers: [\"deps:1\"]\n",
        )
        .expect("valid");
        let names: Vec<&str> = m.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["api", "hello"]);
        let hello = &m.functions[1];
        assert_eq!(hello.dir, Path::new("/project/./hello"));
        assert_eq!(
            Value::Object(hello.settings.clone()),
            json!({"runtime": "python", "handler": "app.lambda_handler", "memory_mb": 256,
                   "env": {"STAGE": "prod"}, "retry": {"max_retries": 0}})
        );
        assert_eq!(m.functions[0].settings["layers"], json!(["deps:1"]));
    }

    #[test]
    fn errors_name_the_function_and_the_field() {
        let e = error("functions:\n  hello:\n    runtime: python\n");
        assert!(
            e.contains("function \"hello\"") && e.contains("field `dir` is missing"),
            "{e}"
        );
        let e = error("functions:\n  Hello:\n    runtime: python\n    dir: x\n");
        assert!(
            e.contains("function \"Hello\"") && e.contains("field `name`"),
            "{e}"
        );
        let e = error("functions:\n  hello:\n    dir: x\n    code: 'print(1)'\n");
        assert!(e.contains("field `code` is not taken"), "{e}");
        let e = error("functions:\n  hello:\n    dir: [x]\n");
        assert!(e.contains("field `dir` must be"), "{e}");
        let e = error("function:\n  hello: {dir: x}\n");
        assert!(e.contains("unknown field `function`"), "{e}");
        let e = error("functions: {}\n");
        assert!(e.contains("names no function"), "{e}");
        let e = error("functions:\n  hello: [\n");
        assert!(e.contains("not valid YAML"), "{e}");
    }
}
