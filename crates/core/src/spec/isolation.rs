//! A function's isolation tier: `process` (the default: a process in the sandbox) or
//! `microvm` (each instance in its own virtual machine, itself inside the sandbox).

use serde::{Deserialize, Serialize};

use super::{Fields, SpecError};

/// Where a function's instances run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// A process in the sandbox (namespaces, seccomp, cgroup limits).
    #[default]
    Process,
    /// Each instance in its own virtual machine (its own guest kernel), itself started
    /// inside the process sandbox.
    Microvm,
}

impl Isolation {
    pub const ALL: [Isolation; 2] = [Isolation::Process, Isolation::Microvm];

    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Process => "process",
            Isolation::Microvm => "microvm",
        }
    }
}

/// `isolation`: `process` (the default, also when the field is absent or null) or `microvm`.
/// Whether this host can run the tier is the control plane's check, not the spec's.
pub(super) fn parse_isolation(fields: &Fields<'_>) -> Result<Isolation, SpecError> {
    match fields.string("isolation")? {
        None | Some("process") => Ok(Isolation::Process),
        Some("microvm") => Ok(Isolation::Microvm),
        Some(other) => Err(SpecError::invalid(
            "isolation",
            format!("isolation {other:?} is not one of process, microvm"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::spec::{parse_spec, FunctionSpec, SpecUpdate};

    fn parse(isolation: Option<Value>) -> Result<FunctionSpec, SpecError> {
        let mut body = json!({"name": "hello", "runtime": "python", "code": "def handler(e): return 1"});
        if let Some(v) = isolation {
            body["isolation"] = v;
        }
        parse_spec(body.to_string().as_bytes(), None)
    }

    #[test]
    fn isolation_defaults_to_process_and_takes_microvm() {
        assert_eq!(parse(None).expect("valid").isolation, Isolation::Process);
        assert_eq!(
            parse(Some(Value::Null)).expect("valid").isolation,
            Isolation::Process
        );
        assert_eq!(
            parse(Some(json!("process"))).expect("valid").isolation,
            Isolation::Process
        );
        assert_eq!(
            parse(Some(json!("microvm"))).expect("valid").isolation,
            Isolation::Microvm
        );
    }

    #[test]
    fn a_bad_isolation_names_the_field_and_the_choices() {
        let err = parse(Some(json!("vm"))).expect_err("vm");
        assert_eq!(
            (err.code, err.field.as_deref()),
            ("invalid_value", Some("isolation"))
        );
        assert_eq!(err.message, "isolation \"vm\" is not one of process, microvm");
        let err = parse(Some(json!(1))).expect_err("a number");
        assert_eq!(
            (err.code, err.field.as_deref()),
            ("invalid_type", Some("isolation"))
        );
    }

    #[test]
    fn isolation_round_trips_through_the_stored_spec_and_old_versions_read_as_process() {
        let spec = parse(Some(json!("microvm"))).expect("valid");
        let stored = serde_json::to_value(&spec).expect("serialize");
        assert_eq!(stored["isolation"], json!("microvm"));
        let back: FunctionSpec = serde_json::from_value(stored.clone()).expect("read back");
        assert_eq!(back.isolation, Isolation::Microvm);
        // A version stored before the field existed.
        let mut old = stored;
        old.as_object_mut().expect("object").remove("isolation");
        let back: FunctionSpec = serde_json::from_value(old).expect("read back");
        assert_eq!(back.isolation, Isolation::Process);
    }

    #[test]
    fn an_update_without_code_takes_the_isolation_it_gives() {
        let current = parse(Some(json!("microvm"))).expect("valid");
        let update = |body: Value| match crate::spec::parse_update(body.to_string().as_bytes(), &current.name)
        {
            Ok(SpecUpdate::KeepCode(k)) => k.keep(&current, |_| false).expect("kept"),
            other => panic!("expected an update keeping the code, got {other:?}"),
        };
        // Like `network`, a setting left out of an update is its default: the console and
        // the CLI send the whole `spec` back.
        let kept = update(json!({"runtime": "python", "isolation": "microvm"}));
        assert_eq!(
            (kept.isolation, kept.code.as_str()),
            (Isolation::Microvm, current.code.as_str())
        );
        let left_out = update(json!({"runtime": "python"}));
        assert_eq!(left_out.isolation, Isolation::Process);
    }
}
