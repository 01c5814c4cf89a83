//! Layers: files shared by functions (and the dependencies a layer installs), published as
//! numbered versions and listed by a function as `name:version`, shown read-only under
//! `/opt` in Lambda's layout (`/opt/python` on Python's path, `/opt/nodejs/node_modules`
//! resolvable from JavaScript).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::source::parse_source;
use super::{parse_object, Fields, SpecError};
use crate::package::Package;
use crate::Runtime;

/// Layers one function may list, as on Lambda.
pub const MAX_FUNCTION_LAYERS: usize = 5;

/// A layer's name: 1 to 64 letters, digits, `-` or `_`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct LayerName(String);

impl LayerName {
    pub fn parse(s: &str) -> Result<LayerName, String> {
        let ok = (1..=64).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(LayerName(s.to_owned()))
        } else {
            Err(format!(
                "layer name {s:?} is not valid: use 1 to 64 letters, digits, '-' or '_', starting with a letter or digit"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One layer version a function lists: `name:version`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LayerRef {
    pub name: LayerName,
    pub version: u32,
}

impl fmt::Display for LayerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name.0, self.version)
    }
}

impl From<LayerRef> for String {
    fn from(r: LayerRef) -> String {
        r.to_string()
    }
}

impl TryFrom<String> for LayerRef {
    type Error = String;

    fn try_from(s: String) -> Result<LayerRef, String> {
        let (name, version) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("layer {s:?} is not name:version (such as shared:1)"))?;
        let name = LayerName::parse(name)?;
        let version = version
            .parse::<u32>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("layer {s:?}: the version must be a positive integer"))?;
        Ok(LayerRef { name, version })
    }
}

/// A function's `layers`: at most five `name:version`, each once.
pub(super) fn parse_layers(value: Option<&Value>) -> Result<Vec<LayerRef>, SpecError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(SpecError::malformed(
                "invalid_type",
                "layers",
                "layers must be a list of \"name:version\" strings".to_owned(),
            ))
        }
    };
    if items.len() > MAX_FUNCTION_LAYERS {
        return Err(SpecError::invalid(
            "layers",
            format!(
                "a function lists at most {MAX_FUNCTION_LAYERS} layers, not {}",
                items.len()
            ),
        ));
    }
    let mut out: Vec<LayerRef> = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(s) = item else {
            return Err(SpecError::malformed(
                "invalid_type",
                "layers",
                "layers must be a list of \"name:version\" strings".to_owned(),
            ));
        };
        let r = LayerRef::try_from(s.clone()).map_err(|m| SpecError::invalid("layers", m))?;
        if out.iter().any(|o| o.name == r.name) {
            return Err(SpecError::invalid(
                "layers",
                format!("layer {:?} is listed twice", r.name.as_str()),
            ));
        }
        out.push(r);
    }
    Ok(out)
}

/// A `POST /v1/layers` body: a new version of layer `name`.
#[derive(Debug, Clone)]
pub struct NewLayer {
    pub name: LayerName,
    /// The runtimes whose functions may list it.
    pub runtimes: Vec<Runtime>,
    pub package: Arc<Package>,
}

const LAYER_FIELDS: [&str; 5] = ["name", "runtimes", "files", "zip", "description"];

/// Parses and validates a `POST /v1/layers` body: `name`, `runtimes` (a non-empty list of
/// python, javascript, typescript) and exactly one of `files` and `zip`.
pub fn parse_layer(body: &[u8]) -> Result<NewLayer, SpecError> {
    let map = parse_object(body, &LAYER_FIELDS)?;
    let fields = Fields(&map);
    let name = fields.string("name")?.ok_or_else(|| {
        SpecError::malformed("missing_field", "name", "field \"name\" is required".to_owned())
    })?;
    let name = LayerName::parse(name).map_err(|m| SpecError::invalid("name", m))?;
    let runtimes = match fields.0.get("runtimes") {
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut runtimes = Vec::new();
            for item in items {
                let runtime = item.as_str().and_then(Runtime::parse).ok_or_else(|| {
                    SpecError::invalid(
                        "runtimes",
                        format!("runtime {item} is not one of python, javascript, typescript"),
                    )
                })?;
                if !runtimes.contains(&runtime) {
                    runtimes.push(runtime);
                }
            }
            runtimes
        }
        None | Some(Value::Null) => {
            return Err(SpecError::malformed(
                "missing_field",
                "runtimes",
                "field \"runtimes\" is required: the runtimes whose functions may use the layer".to_owned(),
            ))
        }
        Some(_) => {
            return Err(SpecError::invalid(
                "runtimes",
                "runtimes must be a non-empty list of python, javascript, typescript".to_owned(),
            ))
        }
    };
    if let Some(d) = fields.0.get("description") {
        if !d.is_string() && !d.is_null() {
            return Err(SpecError::malformed(
                "invalid_type",
                "description",
                "description must be a string".to_owned(),
            ));
        }
    }
    let package = match parse_source(&fields)? {
        Some((_, Some(package))) => package,
        Some((_, None)) | None => {
            return Err(SpecError::malformed(
                "missing_field",
                "files",
                "a layer needs exactly one of files or zip".to_owned(),
            ))
        }
    };
    Ok(NewLayer {
        name,
        runtimes,
        package,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn layer_references_are_name_colon_version() {
        let r = LayerRef::try_from("shared-libs:3".to_owned()).expect("valid");
        assert_eq!((r.name.as_str(), r.version), ("shared-libs", 3));
        assert_eq!(r.to_string(), "shared-libs:3");
        for bad in ["shared", "shared:0", "shared:x", ":1", "a b:1", "-x:1"] {
            assert!(LayerRef::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        let many = json!(["a:1", "b:1", "c:1", "d:1", "e:1", "f:1"]);
        assert_eq!(parse_layers(Some(&many)).expect_err("six").code, "invalid_value");
        let twice = json!(["a:1", "a:2"]);
        assert!(parse_layers(Some(&twice))
            .expect_err("twice")
            .message
            .contains("twice"));
        assert_eq!(
            parse_layers(Some(&json!("a:1"))).expect_err("a string").code,
            "invalid_type"
        );
    }

    #[test]
    fn a_layer_body_needs_a_name_runtimes_and_files() {
        let ok = json!({"name": "shared", "runtimes": ["python"], "files": {"python/util.py": "X = 1\n"}});
        let l = parse_layer(ok.to_string().as_bytes()).expect("valid");
        assert_eq!(l.runtimes, vec![Runtime::Python]);
        assert_eq!(l.package.files().len(), 1);
        let no_runtimes = json!({"name": "shared", "files": {"a": "b"}});
        assert_eq!(
            parse_layer(no_runtimes.to_string().as_bytes())
                .expect_err("no runtimes")
                .field
                .as_deref(),
            Some("runtimes")
        );
        let code = json!({"name": "shared", "runtimes": ["python"], "code": "x"});
        assert!(parse_layer(code.to_string().as_bytes()).is_err());
        let bad_runtime = json!({"name": "shared", "runtimes": ["ruby"], "files": {"a": "b"}});
        assert_eq!(
            parse_layer(bad_runtime.to_string().as_bytes())
                .expect_err("ruby")
                .code,
            "invalid_value"
        );
        let unknown = json!({"name": "shared", "runtimes": ["python"], "files": {"a": "b"}, "x": 1});
        assert_eq!(
            parse_layer(unknown.to_string().as_bytes())
                .expect_err("unknown")
                .code,
            "unknown_field"
        );
    }
}
