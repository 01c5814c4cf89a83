//! Starts the real `ignis` binary on a free port with a temporary data directory, and
//! talks to it over real HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_ignis");

/// A running server. Killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    dir: tempfile::TempDir,
    token: Option<String>,
    http: Client,
    /// The arguments it was started with (without the token).
    args: Vec<String>,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub fn cold(&self) -> bool {
        match self.header("x-ignis-cold-start") {
            "true" => true,
            "false" => false,
            other => panic!("x-ignis-cold-start is {other:?}"),
        }
    }

    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_owned()
    }
}

/// Starts `ignis serve` and returns the child and its URL once it accepts connections.
pub fn spawn(data: &Path, args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    spawn_as(data, args, env, None)
}

/// As [`spawn`], as the given uid and gid (the test runs as root) when one is given.
pub fn spawn_as(data: &Path, args: &[&str], env: &[(&str, &str)], user: Option<u32>) -> (Child, String) {
    let mut cmd = Command::new(BIN);
    if let Some(id) = user {
        use std::os::unix::process::CommandExt;
        cmd.uid(id).gid(id);
    }
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    spawn_command(cmd)
}

/// Starts `cmd` (an `ignis serve` command line, possibly behind a wrapper such as
/// `prlimit`) and returns the child and its URL once it accepts connections.
pub fn spawn_command(mut cmd: Command) -> (Child, String) {
    if !cmd.get_envs().any(|(k, _)| k == "IGNIS_TOKEN") {
        cmd.env_remove("IGNIS_TOKEN");
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("start ignis");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("ignis listening on ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("ignis printed its listening line within 30 s");
    (child, url)
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(None, &[])
    }

    pub fn start_with(token: Option<&str>, args: &[&str]) -> Server {
        Server::start_full(token, args, &[])
    }

    /// A server with extra environment variables (secrets a sandbox must not leak).
    pub fn start_env(env: &[(&str, &str)]) -> Server {
        Server::start_full(None, &[], env)
    }

    /// A server on the given data directory (e.g. one a test mounted a small file system
    /// on), started through `wrapper` (e.g. `["prlimit", "--nofile=1024:", "--"]`) if any.
    pub fn start_in(dir: tempfile::TempDir, wrapper: &[&str], args: &[&str]) -> Server {
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path())
            .args(args);
        let (child, url) = spawn_command(cmd);
        Server::of(child, url, dir, None, args)
    }

    fn start_full(token: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut all: Vec<&str> = args.to_vec();
        if let Some(t) = token {
            all.extend(["--token", t]);
        }
        let (child, url) = spawn(dir.path(), &all, env);
        Server::of(child, url, dir, token, args)
    }

    fn of(child: Child, url: String, dir: tempfile::TempDir, token: Option<&str>, args: &[&str]) -> Server {
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        let http = Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client");
        Server {
            child,
            url,
            dir,
            token: token.map(str::to_owned),
            http,
            args,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port the API listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {}", self.url))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// SIGKILLs the server and starts it again on the same data directory, with the
    /// arguments it was started with.
    pub fn restart(&mut self) {
        let args = self.args.clone();
        self.restart_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// Same, with these arguments instead.
    pub fn restart_with(&mut self, new_args: &[&str]) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
        self.args = new_args.iter().map(|a| (*a).to_owned()).collect();
        let mut args: Vec<&str> = new_args.to_vec();
        if let Some(t) = &self.token {
            args.extend(["--token", t.as_str()]);
        }
        let (child, url) = spawn(self.dir.path(), &args, &[]);
        self.child = child;
        self.url = url;
    }

    /// Sends SIGTERM and waits for a graceful exit; false if it took longer than `within`.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.child.try_wait().expect("try_wait").is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.url));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub fn send(&self, r: RequestBuilder) -> Answer {
        let resp = r.send().expect("request reaches the server");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().expect("body");
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn get(&self, path: &str) -> Answer {
        self.send(self.request(Method::GET, path))
    }

    pub fn post(&self, path: &str, body: impl Into<reqwest::blocking::Body>) -> Answer {
        self.send(self.request(Method::POST, path).body(body))
    }

    /// Creates a function (waiting for its deploy) and returns the answer, whatever it is.
    pub fn create(&self, body: &Value) -> Answer {
        self.post("/v1/functions?wait=true", body.to_string())
    }

    /// Creates a function from `code` and `extra` fields, asserting it becomes ready.
    pub fn deploy(&self, name: &str, runtime: &str, code: &str, extra: Value) -> Value {
        let mut body = json!({"name": name, "runtime": runtime, "code": code});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                body[k] = v;
            }
        }
        let a = self.create(&body);
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let f = a.json();
        assert_eq!(f["state"], "ready", "{f}");
        f
    }

    pub fn update(&self, name: &str, body: &Value) -> Answer {
        self.send(
            self.request(Method::PUT, &format!("/v1/functions/{name}?wait=true"))
                .body(body.to_string()),
        )
    }

    /// An asynchronous invoke; returns the answer (202 with the id when accepted).
    pub fn invoke_async(&self, name: &str, event: &str) -> Answer {
        self.send(
            self.request(Method::POST, &format!("/v1/functions/{name}/invoke"))
                .header("x-ignis-invocation-type", "async")
                .body(event.to_owned()),
        )
    }

    /// Polls an asynchronous invocation until its status is `status`; returns it.
    pub fn wait_for_status(&self, id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        wait_until(
            &format!("invocation {id} is {status}"),
            Duration::from_secs(60),
            || {
                last = self.invocation(id);
                last["status"] == status
            },
        );
        last
    }

    pub fn invoke(&self, name: &str, event: &str) -> Answer {
        self.post(&format!("/v1/functions/{name}/invoke"), event.to_owned())
    }

    pub fn function(&self, name: &str) -> Value {
        let a = self.get(&format!("/v1/functions/{name}"));
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.json()
    }

    pub fn invocation(&self, id: &str) -> Value {
        let a = self.get(&format!("/v1/invocations/{id}"));
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.json()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it is true, failing the test after `within`.
pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The text lines of an invocation's logs, Bun's console lines without their Lambda
/// prefix (see [`console_message`]).
pub fn log_lines(invocation: &Value) -> Vec<String> {
    invocation["logs"]
        .as_array()
        .expect("logs array")
        .iter()
        .map(|l| console_message(l["line"].as_str().expect("line")).to_owned())
        .collect()
}

/// The message of a Bun console line written as on Lambda,
/// `<ISO time>\t<request id>\t<LEVEL>\t<message>`; any other line as it is.
pub fn console_message(line: &str) -> &str {
    let mut parts = line.splitn(4, '\t');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(time), Some(_), Some(level), Some(message))
            if time.len() == 24
                && time.ends_with('Z')
                && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"].contains(&level) =>
        {
            message
        }
        _ => line,
    }
}

impl Server {
    /// The value of one series of `GET /metrics`, named exactly as printed, e.g.
    /// `ignis_invocations_total{function="f",outcome="succeeded"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let page = self.get("/metrics");
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        page.body.lines().find_map(|l| {
            let value = l.strip_prefix(series)?.strip_prefix(' ')?;
            Some(value.parse().expect("a number"))
        })
    }
}

/// The strings of a JSON array of strings (`what` names it in the failure).
pub fn strings<'a>(v: &'a Value, what: &str) -> Vec<&'a str> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what} is not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("{what} holds a non-string: {v}"))
        })
        .collect()
}
