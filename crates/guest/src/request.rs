//! The requests the host sends on `ignis.agent`: parsed and validated here, before any of
//! them touches the guest (pure: no IO).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

/// Where the bootstraps and other files of an `exec` may be written.
pub const FILES_ROOT: &str = "/ignis";
/// The folders a `mount` may show its tags at.
pub const MOUNT_POINTS: [&str; 2] = ["/code", "/opt"];
/// Entropy a `resume` must bring, in bytes.
pub const ENTROPY_MIN: usize = 32;
pub const ENTROPY_MAX: usize = 512;
/// The 9p tag of the host folder holding the function's files (its package, dependencies
/// and layers, each a folder of it).
pub const SHARE_TAG: &str = "ignis.share";
/// The longest folder name a `mount` may name.
const NAME_MAX: usize = 64;

/// One validated request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Ping,
    Exec(Exec),
    Resume(Resume),
    Mount(Mount),
}

/// Start the guest's one program.
#[derive(Debug, PartialEq, Eq)]
pub struct Exec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// Absolute paths under `/ignis/` → their text.
    pub files: BTreeMap<PathBuf, String>,
    /// Confine the program as the process tier confines an instance: the seccomp filters,
    /// an empty capability bounding set, the open-files and core limits (default). Off only
    /// for the host's own tests that run a sandbox inside the guest.
    pub confine: bool,
    /// Whether its seccomp filter lets it open internet sockets.
    pub outbound: bool,
}

/// After a restore from a snapshot: the host's clock and fresh entropy.
#[derive(Debug, PartialEq, Eq)]
pub struct Resume {
    pub time_ns: i64,
    pub entropy: Vec<u8>,
}

/// Show folders of the 9p share read-only at a folder (several merged, the first on top).
#[derive(Debug, PartialEq, Eq)]
pub struct Mount {
    pub at: PathBuf,
    pub dirs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Wire {
    Ping(WirePing),
    Exec(WireExec),
    Resume(WireResume),
    Mount(WireMount),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePing {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireExec {
    program: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: String,
    uid: u32,
    gid: u32,
    #[serde(default)]
    files: BTreeMap<String, String>,
    #[serde(default = "yes")]
    confine: bool,
    #[serde(default)]
    outbound: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireResume {
    time_ns: i64,
    entropy: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMount {
    at: String,
    dirs: Vec<String>,
}

/// Parses one request line; the error is the message the host gets.
pub fn parse(line: &str) -> Result<Request, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("the request is not JSON: {e}"))?;
    let Some(op) = value.get("op") else {
        return Err("the request has no \"op\" (one of ping, exec, resume, mount)".into());
    };
    let Some(op) = op.as_str().map(str::to_owned) else {
        return Err("\"op\" must be a string (one of ping, exec, resume, mount)".into());
    };
    if !["ping", "exec", "resume", "mount"].contains(&op.as_str()) {
        return Err(format!("unknown op {op:?} (one of ping, exec, resume, mount)"));
    }
    let wire: Wire = serde_json::from_value(value).map_err(|e| format!("invalid {op} request: {e}"))?;
    match wire {
        Wire::Ping(WirePing {}) => Ok(Request::Ping),
        Wire::Exec(exec) => validate_exec(exec).map(Request::Exec),
        Wire::Resume(resume) => validate_resume(resume).map(Request::Resume),
        Wire::Mount(mount) => validate_mount(mount).map(Request::Mount),
    }
}

/// An absolute path without `.`, `..` or empty parts, as given.
fn clean_absolute(what: &str, path: &str) -> Result<PathBuf, String> {
    if path.contains('\0') {
        return Err(format!("{what} {path:?} contains a NUL byte"));
    }
    if !path.starts_with('/') {
        return Err(format!("{what} {path:?} is not an absolute path"));
    }
    let parts_ok = path.split('/').skip(1).all(|part| part != "." && part != "..")
        && (path == "/" || !path.ends_with('/'))
        && !path.contains("//");
    if !parts_ok {
        return Err(format!(
            "{what} {path:?} must be a plain absolute path (no \".\", \"..\", \"//\" or trailing \"/\")"
        ));
    }
    Ok(PathBuf::from(path))
}

fn validate_exec(wire: WireExec) -> Result<Exec, String> {
    let program = clean_absolute("program", &wire.program)?;
    let cwd = clean_absolute("cwd", &wire.cwd)?;
    if let Some(arg) = wire.args.iter().find(|a| a.contains('\0')) {
        return Err(format!("argument {arg:?} contains a NUL byte"));
    }
    for (key, value) in &wire.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(format!(
                "environment name {key:?} must be non-empty, without \"=\" or NUL"
            ));
        }
        if value.contains('\0') {
            return Err(format!("environment variable {key} contains a NUL byte"));
        }
    }
    let mut files = BTreeMap::new();
    for (path, text) in wire.files {
        let clean = clean_absolute("file", &path)?;
        let inside = clean
            .strip_prefix(FILES_ROOT)
            .is_ok_and(|rest| rest.components().next().is_some());
        if !inside {
            return Err(format!(
                "file {path:?} is outside {FILES_ROOT}/ (files may only be written there)"
            ));
        }
        files.insert(clean, text);
    }
    Ok(Exec {
        program,
        args: wire.args,
        env: wire.env,
        cwd,
        uid: wire.uid,
        gid: wire.gid,
        files,
        confine: wire.confine,
        outbound: wire.outbound,
    })
}

fn validate_resume(wire: WireResume) -> Result<Resume, String> {
    if wire.time_ns <= 0 {
        return Err(format!(
            "time_ns {} must be a positive unix time in nanoseconds",
            wire.time_ns
        ));
    }
    let entropy = base64::engine::general_purpose::STANDARD
        .decode(&wire.entropy)
        .map_err(|e| format!("entropy is not base64: {e}"))?;
    if !(ENTROPY_MIN..=ENTROPY_MAX).contains(&entropy.len()) {
        return Err(format!(
            "entropy has {} bytes; between {ENTROPY_MIN} and {ENTROPY_MAX} are needed",
            entropy.len()
        ));
    }
    Ok(Resume {
        time_ns: wire.time_ns,
        entropy,
    })
}

fn validate_mount(wire: WireMount) -> Result<Mount, String> {
    if !MOUNT_POINTS.contains(&wire.at.as_str()) {
        return Err(format!(
            "mount point {:?} is not one of {}",
            wire.at,
            MOUNT_POINTS.join(", ")
        ));
    }
    if wire.dirs.is_empty() {
        return Err("dirs is empty: give at least one folder of the share".into());
    }
    for (i, dir) in wire.dirs.iter().enumerate() {
        let chars_ok = dir
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if dir.is_empty() || dir.len() > NAME_MAX || !chars_ok || dir.starts_with('.') {
            return Err(format!(
                "dir {dir:?} must be 1 to {NAME_MAX} characters of A-Z a-z 0-9 . _ - (not starting with \".\")"
            ));
        }
        if wire.dirs[..i].contains(dir) {
            return Err(format!("dir {dir:?} is given twice"));
        }
    }
    Ok(Mount {
        at: PathBuf::from(wire.at),
        dirs: wire.dirs,
    })
}

/// The path a file of an `exec` is written to, checked once more against the root.
pub fn file_under_root(path: &Path) -> bool {
    path.starts_with(FILES_ROOT)
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: &str) -> String {
        parse(line).expect_err("the request is refused")
    }

    #[test]
    fn ping_parses_and_refuses_extra_fields() {
        assert_eq!(parse(r#"{"op":"ping"}"#), Ok(Request::Ping));
        assert!(err(r#"{"op":"ping","x":1}"#).contains("unknown field `x`"));
    }

    #[test]
    fn unknown_op_and_missing_op_and_bad_json_are_named() {
        assert_eq!(
            err(r#"{"op":"reboot"}"#),
            r#"unknown op "reboot" (one of ping, exec, resume, mount)"#
        );
        assert_eq!(
            err(r#"{"x":1}"#),
            r#"the request has no "op" (one of ping, exec, resume, mount)"#
        );
        assert!(err(r#"{"op":3}"#).starts_with("\"op\" must be a string"));
        assert!(err("not json").starts_with("the request is not JSON"));
    }

    #[test]
    fn exec_parses_every_field() {
        let line = r#"{"op":"exec","program":"/usr/bin/python3","args":["-c","print(1)"],
            "env":{"A":"b"},"cwd":"/code","uid":1000,"gid":1000,
            "files":{"/ignis/bootstrap.py":"print(2)"}}"#;
        let Ok(Request::Exec(exec)) = parse(line) else {
            panic!("an exec")
        };
        assert_eq!(exec.program, PathBuf::from("/usr/bin/python3"));
        assert_eq!(exec.args, ["-c", "print(1)"]);
        assert_eq!(exec.env.get("A").map(String::as_str), Some("b"));
        assert_eq!(exec.cwd, PathBuf::from("/code"));
        assert_eq!((exec.uid, exec.gid), (1000, 1000));
        assert!(exec.confine, "confined unless asked otherwise");
        assert!(!exec.outbound);
        assert_eq!(
            exec.files
                .get(Path::new("/ignis/bootstrap.py"))
                .map(String::as_str),
            Some("print(2)")
        );
    }

    #[test]
    fn exec_files_must_stay_under_ignis() {
        let exec = |file: &str| {
            format!(
                r#"{{"op":"exec","program":"/bin/true","cwd":"/","uid":1,"gid":1,"files":{{"{file}":"x"}}}}"#
            )
        };
        assert_eq!(
            err(&exec("/etc/passwd")),
            r#"file "/etc/passwd" is outside /ignis/ (files may only be written there)"#
        );
        assert!(err(&exec("/ignis/../etc/passwd")).contains("plain absolute path"));
        assert!(err(&exec("/ignis")).contains("outside /ignis/"));
        assert!(err(&exec("/ignisx/a")).contains("outside /ignis/"));
        assert!(err(&exec("ignis/a")).contains("not an absolute path"));
        assert!(parse(&exec("/ignis/a/b.py")).is_ok());
    }

    #[test]
    fn exec_refuses_relative_program_bad_env_and_missing_fields() {
        let base = r#""cwd":"/","uid":1,"gid":1"#;
        assert!(err(&format!(r#"{{"op":"exec","program":"python3",{base}}}"#))
            .contains("program \"python3\" is not an absolute path"));
        assert!(err(&format!(
            r#"{{"op":"exec","program":"/a","env":{{"A=B":"c"}},{base}}}"#
        ))
        .contains("environment name \"A=B\""));
        assert!(err(r#"{"op":"exec","program":"/a","cwd":"/","gid":1}"#).contains("missing field `uid`"));
        assert!(err(r#"{"op":"exec","program":"/a","uid":-1,"cwd":"/","gid":1}"#)
            .starts_with("invalid exec request"));
    }

    #[test]
    fn resume_checks_time_and_entropy() {
        let entropy = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let line = format!(r#"{{"op":"resume","time_ns":1893456000000000000,"entropy":"{entropy}"}}"#);
        assert_eq!(
            parse(&line),
            Ok(Request::Resume(Resume {
                time_ns: 1_893_456_000_000_000_000,
                entropy: vec![7; 32]
            }))
        );
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 31]);
        assert_eq!(
            err(&format!(r#"{{"op":"resume","time_ns":1,"entropy":"{short}"}}"#)),
            "entropy has 31 bytes; between 32 and 512 are needed"
        );
        assert!(err(r#"{"op":"resume","time_ns":1,"entropy":"***"}"#).starts_with("entropy is not base64"));
        assert!(
            err(&format!(r#"{{"op":"resume","time_ns":0,"entropy":"{entropy}"}}"#))
                .contains("must be a positive")
        );
        assert!(err(&format!(
            r#"{{"op":"resume","time_ns":1.5,"entropy":"{entropy}"}}"#
        ))
        .starts_with("invalid resume request"));
    }

    #[test]
    fn mount_checks_point_and_dirs() {
        assert_eq!(
            parse(r#"{"op":"mount","at":"/opt","dirs":["opt0","opt-1.x"]}"#),
            Ok(Request::Mount(Mount {
                at: PathBuf::from("/opt"),
                dirs: vec!["opt0".into(), "opt-1.x".into()]
            }))
        );
        assert_eq!(
            err(r#"{"op":"mount","at":"/etc","dirs":["a"]}"#),
            r#"mount point "/etc" is not one of /code, /opt"#
        );
        assert_eq!(
            err(r#"{"op":"mount","at":"/code","dirs":[]}"#),
            "dirs is empty: give at least one folder of the share"
        );
        assert!(err(r#"{"op":"mount","at":"/code","dirs":["../x"]}"#).starts_with(r#"dir "../x" must be"#));
        assert!(err(r#"{"op":"mount","at":"/code","dirs":[".."]}"#).starts_with(r#"dir ".." must be"#));
        assert_eq!(
            err(r#"{"op":"mount","at":"/code","dirs":["a","a"]}"#),
            r#"dir "a" is given twice"#
        );
        assert!(err(r#"{"op":"mount","at":"/code","tags":["a"]}"#).contains("unknown field `tags`"));
    }

    #[test]
    fn file_under_root_refuses_escapes() {
        assert!(file_under_root(Path::new("/ignis/a.py")));
        assert!(!file_under_root(Path::new("/ignis/../a.py")));
        assert!(!file_under_root(Path::new("/etc/a.py")));
    }
}
