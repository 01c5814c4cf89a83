//! The server's own resources: slow and idle clients, the connection cap, the open-files
//! limit, the token file, the data directory's modes and a full disk.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{wait_until, Server, BIN};

const HALF_SENT: usize = 1_100;

/// A request head that never ends.
const PARTIAL_HEAD: &[u8] = b"POST /v1/functions/f/invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n";

fn host_port(s: &Server) -> String {
    s.url.trim_start_matches("http://").to_owned()
}

/// Opens `n` connections that each send part of a request head and then nothing.
fn half_sent(s: &Server, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut c = TcpStream::connect(host_port(s)).expect("connect");
            c.write_all(PARTIAL_HEAD).expect("send half a head");
            c
        })
        .collect()
}

/// Reads until the server closes `c` (EOF or reset); the time it took, failing after `within`.
fn closed_within(c: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    c.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) => panic!("the server did not close the connection within {within:?}: {e}"),
        }
    }
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn others_are_still_served(s: &Server) {
    let health = s.get("/healthz");
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    let a = s.invoke("f", r#"{"n": 2}"#);
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body, "4");
}

const DOUBLE: &str = "def handler(e, c):\n    return e['n'] * 2\n";

#[test]
fn with_1100_half_sent_requests_open_healthz_and_invokes_still_answer() {
    // Started with a soft limit of 1024 open files: the server raises it to the hard limit,
    // so it holds 1,100 connections and still answers.
    let s = Server::start_in(
        tempfile::tempdir().expect("tempdir"),
        &["prlimit", "--nofile=1024:", "--"],
        &["--header-timeout-secs", "600", "--idle-timeout-secs", "600"],
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.pid())).expect("limits");
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line")
        .split_whitespace()
        .collect();
    assert!(
        open_files[3] == open_files[4] || open_files[4] == "unlimited",
        "soft limit raised to the hard one: {open_files:?}"
    );
    assert!(
        open_files[3]
            .parse::<u64>()
            .is_ok_and(|n| n > 1024 + HALF_SENT as u64),
        "{open_files:?}"
    );
    s.deploy("f", "python", DOUBLE, json!({}));
    let _slow = half_sent(&s, HALF_SENT);
    wait_until(
        "the server holds the 1,100 connections",
        Duration::from_secs(30),
        || open_descriptors(s.pid()) > HALF_SENT,
    );
    others_are_still_served(&s);
}

#[test]
fn with_a_low_hard_open_files_limit_the_cap_leaves_room_and_healthz_answers() {
    // The hard limit cannot be raised: the connection cap is lowered to half of it, so the
    // server closes idle connections instead of running out of descriptors.
    let s = Server::start_in(
        tempfile::tempdir().expect("tempdir"),
        &["prlimit", "--nofile=1024:1024", "--"],
        &["--header-timeout-secs", "600"],
    );
    s.deploy("f", "python", DOUBLE, json!({}));
    let _slow = half_sent(&s, HALF_SENT);
    others_are_still_served(&s);
    assert!(open_descriptors(s.pid()) < 1024);
}

#[test]
fn a_graceful_shutdown_does_not_wait_for_idle_or_half_sent_connections() {
    let mut s = Server::start_with(
        None,
        &["--header-timeout-secs", "600", "--idle-timeout-secs", "600"],
    );
    let _slow = half_sent(&s, 20);
    let mut kept = TcpStream::connect(host_port(&s)).expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut buf = [0u8; 1024];
    assert!(kept.read(&mut buf).expect("answer") > 0);
    assert!(s.terminate(Duration::from_secs(10)), "stopped promptly");
}

#[test]
fn at_the_connection_cap_the_longest_idle_connection_makes_room() {
    let s = Server::start_with(
        None,
        &["--max-connections", "100", "--header-timeout-secs", "600"],
    );
    s.deploy("f", "python", DOUBLE, json!({}));
    let mut slow = half_sent(&s, HALF_SENT);
    others_are_still_served(&s);
    // The oldest half-sent request was closed to make room; the newest is still open.
    closed_within(&mut slow[0], Duration::from_secs(10));
    assert!(
        open_descriptors(s.pid()) < 400,
        "the cap holds: {} descriptors",
        open_descriptors(s.pid())
    );
    let newest = slow.last_mut().expect("some");
    newest
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    let still_open = matches!(newest.read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut);
    assert!(still_open, "the newest connection is still open");
}

#[test]
fn a_slow_request_head_and_an_idle_connection_are_closed_after_their_timeouts() {
    let s = Server::start_with(None, &["--header-timeout-secs", "1", "--idle-timeout-secs", "3"]);
    // Part of a head, then nothing: cut after about a second.
    let mut slow = TcpStream::connect(host_port(&s)).expect("connect");
    slow.write_all(PARTIAL_HEAD).expect("send");
    let took = closed_within(&mut slow, Duration::from_secs(15));
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    // A silent new connection gets the header timeout too.
    let mut silent = TcpStream::connect(host_port(&s)).expect("connect");
    let took = closed_within(&mut silent, Duration::from_secs(15));
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    // A whole request is answered; the idle keep-alive connection closes after ~3 s.
    let mut kept = TcpStream::connect(host_port(&s)).expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    kept.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"status\":\"ok\"") {
        let n = kept.read(&mut buf).expect("answer");
        assert!(
            n > 0,
            "closed before answering: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    let took = closed_within(&mut kept, Duration::from_secs(15));
    assert!(
        took >= Duration::from_millis(2_500),
        "the idle timeout, not the header timeout, applies between requests: {took:?}"
    );
}

#[test]
fn a_trickled_request_body_is_answered_408() {
    let s = Server::start_with(None, &["--body-timeout-secs", "1"]);
    let mut c = TcpStream::connect(host_port(&s)).expect("connect");
    let start = Instant::now();
    c.write_all(b"POST /v1/functions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"name\"")
        .expect("send");
    c.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("}}") {
        let n = c.read(&mut buf).expect("an answer");
        assert!(
            n > 0,
            "closed without answering: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""code":"request_timeout""#), "{text}");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    // A body that is too large is still 413, and a whole one is read as before.
    s.deploy("f", "python", DOUBLE, json!({}));
    let big = s.post("/v1/functions/f/invoke", vec![b' '; 6 * 1024 * 1024 + 1]);
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", big.body);
    assert_eq!(big.error_code(), "payload_too_large");
    assert_eq!(s.invoke("f", r#"{"n": 4}"#).body, "8");
}

#[test]
fn a_log_tail_is_busy_not_idle_and_outlives_the_idle_timeout() {
    use std::io::BufRead;
    let s = Server::start_with(None, &["--idle-timeout-secs", "1"]);
    let code = "def handler(e, c):\n    print('line', e['m'])\n    return 1\n";
    s.deploy("tailed", "python", code, json!({}));
    let resp = s
        .request(reqwest::Method::GET, "/v1/functions/tailed/logs?follow=true")
        .send()
        .expect("follow");
    assert_eq!(resp.status(), StatusCode::OK);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(resp).lines().map_while(Result::ok) {
            if line.starts_with("data: ") && tx.send(line).is_err() {
                return;
            }
        }
    });
    // A keep-alive connection opened now is closed once the idle timeout has passed...
    let mut idle = TcpStream::connect(host_port(&s)).expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    closed_within(&mut idle, Duration::from_secs(15));
    // ... while the tail, busy streaming, still delivers.
    assert_eq!(s.invoke("tailed", r#"{"m": "late"}"#).status, StatusCode::OK);
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the tail still delivers lines");
    assert!(line.contains("line late"), "{line}");
}

#[test]
fn the_token_can_come_from_a_file_and_bad_token_files_are_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, "file-s3cret\n").expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let file_arg = file.to_str().expect("utf-8");
    let s = Server::start_with(None, &["--token-file", file_arg]);
    let http = reqwest::blocking::Client::new();
    let url = format!("{}/v1/functions", s.url);
    assert_eq!(
        http.get(&url).send().expect("send").status(),
        StatusCode::UNAUTHORIZED
    );
    let with = http.get(&url).bearer_auth("file-s3cret").send().expect("send");
    assert_eq!(with.status(), StatusCode::OK);

    let fails = |args: &[&str]| -> String {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .args(args)
            .env_remove("IGNIS_TOKEN")
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} must fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").expect("write");
    let err = fails(&["--token-file", empty.to_str().expect("utf-8")]);
    assert!(err.contains("is empty"), "{err}");
    let err = fails(&["--token-file", "/nonexistent/token"]);
    assert!(
        err.contains("cannot read the token file /nonexistent/token"),
        "{err}"
    );
    let err = fails(&["--token-file", file_arg, "--token", "other"]);
    assert!(err.contains("one way only"), "{err}");
}

#[test]
fn a_token_on_the_command_line_is_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--token", "visible", "--data"])
        .arg(dir.path())
        .env_remove("IGNIS_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if text.contains("process list") {
                let _ = tx.send(text.clone());
            }
        }
    });
    let said = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let said = said.expect("a warning about --token within 30 s");
    assert!(said.contains("--token-file"), "{said}");
}

#[test]
fn the_data_directory_and_the_store_are_private_to_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let s = Server::start_in(dir, &[], &[]);
    let data = s.data_dir();
    let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "an existing wider directory is tightened");
    for f in ["ignis.db", "ignis.db-wal", "ignis.db-shm"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    // A new data directory is created private.
    let parent = tempfile::tempdir().expect("tempdir");
    let fresh = parent.path().join("new-data");
    let (mut child, _url) = crate::harness::spawn(&fresh, &[], &[]);
    let fresh_mode = mode(&fresh);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(fresh_mode, 0o700);
}

/// A small tmpfs mounted on a directory, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(ok.success(), "mount a tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Writes zeros into `path` until the file system has no space left.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = f.write_all(&chunk) {
            assert_eq!(e.raw_os_error(), Some(28), "stopped by ENOSPC: {e}");
            break;
        }
    }
    // Smaller writes take the last partial block.
    while f.write_all(&[0u8; 512]).is_ok() {}
}

fn assert_disk_full(a: &crate::harness::Answer) {
    assert_eq!(a.status.as_u16(), 507, "{}", a.body);
    assert_eq!(a.error_code(), "insufficient_storage", "{}", a.body);
    let message = a.json()["error"]["message"].as_str().unwrap_or("").to_owned();
    assert!(message.contains("disk is full"), "{message}");
}

#[test]
fn on_a_full_disk_writes_answer_507_sync_invokes_keep_working_and_all_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = Tmpfs::mount(dir.path(), "16m");
    let s = Server::start_in(dir, &[], &[]);
    s.deploy("f", "python", DOUBLE, json!({}));
    assert_eq!(s.invoke("f", r#"{"n": 1}"#).body, "2");
    s.deploy("echo", "python", "def handler(e, c):\n    return e\n", json!({}));
    let filler = mount.0.join("filler");
    fill(&filler);
    // Each write is larger than what the database's files already hold, so it needs space.
    let big_code = format!("{}\n{DOUBLE}", "# padding\n".repeat(200_000));
    let big = json!({"name": "g", "runtime": "python", "code": big_code});
    assert_disk_full(&s.create(&big));
    let mut newer = big.clone();
    newer["name"] = json!("f");
    assert_disk_full(&s.update("f", &newer));
    let event = json!({"n": 3, "pad": "x".repeat(1_000_000)}).to_string();
    assert_disk_full(&s.invoke_async("f", &event));
    let during = s.invoke("f", r#"{"n": 21}"#);
    assert_eq!(during.status, StatusCode::OK, "{}", during.body);
    assert_eq!(during.body, "42");
    let during_id = during.header("x-ignis-invocation-id").to_owned();
    // With an idempotency key too: the function ran, so its answer comes back even when
    // the key cannot be remembered.
    let keyed = s.send(
        s.request(reqwest::Method::POST, "/v1/functions/echo/invoke")
            .header("idempotency-key", "during-the-full-disk")
            .body(event.clone()),
    );
    assert_eq!(keyed.status, StatusCode::OK, "{}", keyed.body);
    assert_eq!(keyed.body.len(), event.len(), "the whole answer");
    assert_eq!(s.invocation(&during_id)["status"], "succeeded");
    assert_eq!(s.function("f")["version"], 1, "the refused update left no trace");
    assert_eq!(s.get("/v1/functions/g").status, StatusCode::NOT_FOUND);

    std::fs::remove_file(&filler).expect("free the space");
    let created = s.create(&big);
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.json()["state"], "ready", "{}", created.body);
    let a = s.invoke_async("f", &event);
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let id = a.json()["invocation_id"]
        .as_str()
        .expect("invocation_id")
        .to_owned();
    s.wait_for_status(&id, "succeeded");
    assert_eq!(s.invocation(&during_id)["status"], "succeeded");
    // The record made while the disk was full was kept and is now in the database itself.
    let data = s.data_dir();
    wait_until(
        "the record made on the full disk is committed",
        Duration::from_secs(30),
        || {
            ignis_store::Store::open(&data)
                .and_then(|store| store.get_invocation(&during_id))
                .is_ok_and(|r| r.is_some())
        },
    );
    drop(s);
}
