//! An update body that names no code (none of `code`, `files`, `zip`): its settings make
//! the new version, which keeps the code of the function's newest version (as Lambda's
//! UpdateFunctionConfiguration).

use super::{one_file_handler, package_handler, FunctionName, FunctionSpec, SpecError};

/// A parsed update body: a whole new spec, or settings that keep the function's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecUpdate {
    /// The body gave its code (`code`, `files` or `zip`).
    Replace(FunctionSpec),
    /// The body gave no code: the newest version's is kept.
    KeepCode(KeepCode),
}

impl SpecUpdate {
    /// The function updated.
    pub fn name(&self) -> &FunctionName {
        match self {
            SpecUpdate::Replace(spec) => &spec.name,
            SpecUpdate::KeepCode(keep) => &keep.spec.name,
        }
    }
}

impl From<FunctionSpec> for SpecUpdate {
    fn from(spec: FunctionSpec) -> SpecUpdate {
        SpecUpdate::Replace(spec)
    }
}

/// Every setting of an update body that gave no code, validated but for the handler, which
/// is checked once the code kept is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepCode {
    /// The body's settings; its code and handler are not set yet.
    pub(super) spec: FunctionSpec,
    /// The body's handler, if it gave one.
    pub(super) handler: Option<String>,
}

impl KeepCode {
    /// The new version's spec: these settings with the code of `current`, the function's
    /// newest version (its one file, or its package, by hash: not stored again). The
    /// handler is checked as for new code: for one file an identifier (`handler` when not
    /// given); for a package needed, in Lambda's form, naming a file of the package
    /// (`package_contains` answers whether it holds a path).
    pub fn keep(
        self,
        current: &FunctionSpec,
        package_contains: impl Fn(&str) -> bool,
    ) -> Result<FunctionSpec, SpecError> {
        let KeepCode { mut spec, handler } = self;
        let given = handler.as_deref();
        match &current.package_sha256 {
            None => {
                spec.handler = one_file_handler(given)?.to_owned();
                spec.code = current.code.clone();
                spec.package_sha256 = None;
            }
            Some(sha) => {
                spec.handler = package_handler(
                    spec.runtime,
                    given,
                    "for a function whose code is a package (an update without code keeps it)",
                    package_contains,
                )?
                .to_owned();
                spec.code = String::new();
                spec.package_sha256 = Some(sha.clone());
            }
        }
        spec.package = None;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::spec::{parse_spec, parse_update, FunctionName, FunctionSpec, SpecUpdate};
    use crate::SpecError;

    fn name() -> FunctionName {
        FunctionName::parse("fn").expect("valid")
    }

    fn update(v: Value) -> Result<SpecUpdate, SpecError> {
        parse_update(v.to_string().as_bytes(), &name())
    }

    fn keep(v: Value, current: &FunctionSpec) -> Result<FunctionSpec, SpecError> {
        match update(v).expect("parses") {
            SpecUpdate::KeepCode(k) => k.keep(current, |p| p == "app/main.py"),
            SpecUpdate::Replace(_) => panic!("no code was given: it is kept"),
        }
    }

    fn one_file() -> FunctionSpec {
        parse_spec(
            json!({"name": "fn", "runtime": "python", "code": "def run(e, c): return 1", "handler": "run"})
                .to_string()
                .as_bytes(),
            None,
        )
        .expect("valid")
    }

    fn package() -> FunctionSpec {
        parse_spec(
            json!({"name": "fn", "runtime": "python", "handler": "app/main.handler",
                   "files": {"app/main.py": "def handler(e, c): return 1"}})
            .to_string()
            .as_bytes(),
            None,
        )
        .expect("valid")
    }

    #[test]
    fn an_update_without_code_keeps_one_file() {
        let current = one_file();
        let spec = keep(
            json!({"runtime": "python", "handler": "run", "memory_mb": 256}),
            &current,
        )
        .expect("kept");
        assert_eq!((spec.code.as_str(), spec.memory_mb), (current.code.as_str(), 256));
        assert_eq!(
            (spec.handler.as_str(), spec.package_sha256.as_deref()),
            ("run", None)
        );
        assert_eq!(spec.code_sha256(), current.code_sha256());
        // The handler defaults as for new code, and is checked as for new code.
        let spec = keep(json!({"runtime": "python"}), &current).expect("kept");
        assert_eq!(spec.handler, "handler");
        let e =
            keep(json!({"runtime": "python", "handler": "a.b"}), &current).expect_err("not an identifier");
        assert_eq!((e.code, e.field.as_deref()), ("invalid_value", Some("handler")));
    }

    #[test]
    fn an_update_without_code_keeps_the_package_by_hash() {
        let current = package();
        let spec = keep(
            json!({"runtime": "python", "handler": "app/main.handler", "timeout_secs": 9}),
            &current,
        )
        .expect("kept");
        assert_eq!(spec.package_sha256, current.package_sha256);
        assert_eq!(spec.code_sha256(), current.code_sha256());
        assert!(spec.package.is_none(), "the files are not sent again");
        assert!(spec.code.is_empty());
        assert_eq!(
            (spec.handler.as_str(), spec.timeout_secs),
            ("app/main.handler", 9)
        );
        let e = keep(
            json!({"runtime": "python", "handler": "app/gone.handler"}),
            &current,
        )
        .expect_err("no such file");
        assert_eq!((e.code, e.field.as_deref()), ("invalid_value", Some("handler")));
        assert!(e.message.contains("app/gone"), "{}", e.message);
        let e = keep(json!({"runtime": "python"}), &current).expect_err("a package needs a handler");
        assert_eq!((e.code, e.field.as_deref()), ("missing_field", Some("handler")));
    }

    #[test]
    fn settings_are_checked_before_the_code_is_known() {
        let e = update(json!({"runtime": "python", "memory_mb": 1})).expect_err("too small");
        assert_eq!((e.code, e.field.as_deref()), ("invalid_value", Some("memory_mb")));
        let e = update(json!({"name": "other", "runtime": "python"})).expect_err("another name");
        assert_eq!(e.field.as_deref(), Some("name"));
        // A null source is not given, as every null field: the code is kept.
        let null = update(json!({"runtime": "python", "code": null, "files": null, "zip": null}));
        assert!(matches!(null, Ok(SpecUpdate::KeepCode(_))), "{null:?}");
    }

    #[test]
    fn code_given_replaces_and_two_sources_are_still_refused() {
        let given = update(json!({"runtime": "python", "code": "def handler(e): return 2"})).expect("valid");
        assert!(matches!(given, SpecUpdate::Replace(ref s) if s.code.contains("return 2")));
        assert_eq!(given.name(), &name());
        let e =
            update(json!({"runtime": "python", "code": "x = 1", "zip": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}))
                .expect_err("two sources");
        assert_eq!((e.code, e.field.as_deref()), ("invalid_value", Some("zip")));
        // A create needs code.
        let e = parse_spec(br#"{"name": "fn", "runtime": "python"}"#, None).expect_err("no code");
        assert_eq!((e.code, e.field.as_deref()), ("missing_field", Some("code")));
        // So does parse_spec for an update (the caller that wants keeping asks parse_update).
        let e = parse_spec(br#"{"runtime": "python"}"#, Some(&name())).expect_err("no code");
        assert_eq!(e.code, "missing_field");
    }
}
