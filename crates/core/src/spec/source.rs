//! A function's code in a create or update body: one file (`code`), or a package of
//! several (`files` or `zip`), at most one of them (none: an update keeps the code).

use std::sync::Arc;

use serde_json::Value;

use super::{Fields, SpecError};
use crate::limits;
use crate::package::{Package, PackageError};

/// Code given: one file's text (empty for a package), and the package of several files.
pub(super) type Source = (String, Option<Arc<Package>>);

/// The function's code: one of `code` (one file), `files` (path → text) or `zip` (base64
/// of a zip archive); `None` when the body gives none of them (two are refused).
pub(super) fn parse_source(fields: &Fields<'_>) -> Result<Option<Source>, SpecError> {
    let given: Vec<&str> = ["code", "files", "zip"]
        .into_iter()
        .filter(|f| fields.0.get(*f).is_some_and(|v| !v.is_null()))
        .collect();
    match given.as_slice() {
        [] => Ok(None),
        ["code"] => {
            let code = fields.string("code")?.unwrap_or_default();
            if code.trim().is_empty() {
                return Err(SpecError::invalid("code", "code must not be empty".to_owned()));
            }
            if code.len() > limits::MAX_CODE_BYTES {
                return Err(SpecError::invalid(
                    "code",
                    format!(
                        "code is {} bytes; the limit is {} bytes (5 MiB)",
                        code.len(),
                        limits::MAX_CODE_BYTES
                    ),
                ));
            }
            Ok(Some((code.to_owned(), None)))
        }
        ["files"] => {
            let Some(Value::Object(map)) = fields.0.get("files") else {
                return Err(SpecError::malformed(
                    "invalid_type",
                    "files",
                    "files must be an object mapping relative paths to UTF-8 text".to_owned(),
                ));
            };
            let mut files = Vec::with_capacity(map.len());
            for (path, content) in map {
                let Value::String(text) = content else {
                    return Err(SpecError::malformed(
                        "invalid_type",
                        &format!("files.{path}"),
                        format!("file {path:?} must be a string (its UTF-8 text)"),
                    ));
                };
                files.push((path.clone(), text.clone().into_bytes()));
            }
            let package = Package::new(files).map_err(|e| SpecError::package("files", e))?;
            Ok(Some((String::new(), Some(Arc::new(package)))))
        }
        ["zip"] => {
            let encoded = fields.string("zip")?.unwrap_or_default();
            // Checked before decoding: base64 is 4/3 of the bytes it holds.
            if encoded.len() / 4 * 3 > crate::package::MAX_ZIP_BYTES + 3 {
                return Err(SpecError::package(
                    "zip",
                    PackageError {
                        code: "package_too_large",
                        message: format!(
                            "the zip archive is over {} bytes (50 MiB)",
                            crate::package::MAX_ZIP_BYTES
                        ),
                    },
                ));
            }
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| {
                    SpecError::invalid("zip", format!("zip must be base64 (RFC 4648, with padding): {e}"))
                })?;
            let package = Package::from_zip(&bytes).map_err(|e| SpecError::package("zip", e))?;
            Ok(Some((String::new(), Some(Arc::new(package)))))
        }
        _ => Err(SpecError::invalid(
            given[1],
            format!(
                "give exactly one of code, files or zip, not {}",
                given.join(" and ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::spec::parse_spec;
    use crate::{FunctionSpec, SpecError};

    fn parse(v: Value) -> Result<FunctionSpec, SpecError> {
        parse_spec(v.to_string().as_bytes(), None)
    }

    fn ok_body() -> Value {
        json!({"name": "hello", "runtime": "python", "code": "def handler(e): return 1"})
    }

    fn package_body(source: &str, value: Value, handler: &str) -> Value {
        let mut body = json!({"name": "pkg", "runtime": "python", "handler": handler});
        body[source] = value;
        body
    }

    #[test]
    fn files_make_a_package_with_a_lambda_handler() {
        let files = json!({"hello_world/app.py": "def lambda_handler(e, c): return 1", "util.py": ""});
        let spec = parse(package_body(
            "files",
            files.clone(),
            "hello_world/app.lambda_handler",
        ))
        .expect("valid");
        let package = spec.package.as_ref().expect("a package");
        assert_eq!(package.files().len(), 2);
        assert_eq!(spec.package_sha256.as_deref(), Some(package.sha256()));
        assert_eq!(spec.code_sha256(), package.sha256());
        assert!(spec.code.is_empty());
        let e = parse(package_body("files", files.clone(), "app.lambda_handler")).expect_err("no app.py");
        assert_eq!((e.code, e.field.as_deref()), ("invalid_value", Some("handler")));
        let mut no_handler = package_body("files", files, "x.y");
        no_handler.as_object_mut().expect("object").remove("handler");
        assert_eq!(parse(no_handler).expect_err("required").code, "missing_field");
    }

    #[test]
    fn a_zip_is_base64_and_checked() {
        use base64::Engine;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        w.start_file("../x.py", zip::write::SimpleFileOptions::default())
            .expect("start");
        let bad = w.finish().expect("finish").into_inner();
        let b64 = base64::engine::general_purpose::STANDARD.encode(bad);
        let e = parse(package_body("zip", json!(b64), "x.handler")).expect_err("escapes");
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid_package_path", Some("zip"))
        );
        let e = parse(package_body("zip", json!("%%%"), "x.handler")).expect_err("not base64");
        assert_eq!((e.code, e.field.as_deref()), ("invalid_value", Some("zip")));
    }

    #[test]
    fn exactly_one_source_is_taken() {
        let mut both = ok_body();
        both["files"] = json!({"a.py": ""});
        let e = parse(both).expect_err("two sources");
        assert_eq!((e.code, e.field.as_deref()), ("invalid_value", Some("files")));
        let mut none = ok_body();
        none.as_object_mut().expect("object").remove("code");
        assert_eq!(parse(none).expect_err("none").code, "missing_field");
        let e = parse(package_body("files", json!({"/etc/x": ""}), "x.handler")).expect_err("absolute");
        assert_eq!(e.code, "invalid_package_path");
        let e = parse(package_body("files", json!({"a.py": 1}), "a.handler")).expect_err("not text");
        assert_eq!((e.code, e.field.as_deref()), ("invalid_type", Some("files.a.py")));
    }
}
