//! `network: "outbound"`: egress through user-mode NAT, and still no way to the host's
//! loopback services. The "internet" is a test host: a network namespace of this test's
//! own, joined to the host by a veth pair, running a small HTTP server.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{wait_until, Server};

pub(crate) struct TestHost {
    ns: String,
    pub(crate) addr: String,
    server: Child,
    _dir: tempfile::TempDir,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

impl TestHost {
    pub(crate) fn start() -> TestHost {
        let id = std::process::id();
        let (ns, host_if, ns_if) = (format!("ignis-th-{id}"), format!("ith{id}"), format!("itn{id}"));
        let subnet = 20 + id % 200;
        let (host_addr, addr) = (format!("10.213.{subnet}.1"), format!("10.213.{subnet}.2"));
        ip(&["netns", "add", &ns]);
        ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &ns_if]);
        ip(&["link", "set", &ns_if, "netns", &ns]);
        ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "netns",
            "exec",
            &ns,
            "ip",
            "addr",
            "add",
            &format!("{addr}/30"),
            "dev",
            &ns_if,
        ]);
        ip(&["netns", "exec", &ns, "ip", "link", "set", &ns_if, "up"]);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("index.html"), "hello from the test host").expect("write");
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "python3",
                "-m",
                "http.server",
                "8080",
                "--bind",
                &addr,
                "--directory",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the test host's server");
        let target: std::net::SocketAddr = format!("{addr}:8080").parse().expect("address");
        wait_until("the test host serves", Duration::from_secs(20), || {
            std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok()
        });
        TestHost {
            ns,
            addr,
            server,
            _dir: dir,
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        // Deleting the namespace deletes its end of the veth pair, and so both ends.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

pub(crate) const FETCH: &str = r#"
import socket, urllib.request
def handler(event):
    out = {}
    try:
        out["fetched"] = urllib.request.urlopen(event["url"], timeout=5).read().decode()
    except Exception as e:
        out["fetch_error"] = type(e).__name__
    for name, (host, port) in event["forbidden"].items():
        try:
            socket.create_connection((host, port), timeout=2).close()
            out[name] = "connected"
        except OSError as e:
            out[name] = type(e).__name__
    return out
"#;

/// The event of `FETCH`: the test host's page, and the server's API through the network's
/// gateway and through the instance's own loopback, both of which must stay closed.
pub(crate) fn fetch_event(host: &TestHost, api_port: u16) -> Value {
    json!({
        "url": format!("http://{}:8080/", host.addr),
        "forbidden": {
            // slirp's gateway, which would lead to the host's loopback if it were allowed.
            "gateway_api": ["10.0.2.2", api_port],
            "own_loopback_api": ["127.0.0.1", api_port],
        },
    })
}

#[test]
fn outbound_functions_reach_out_but_never_the_host_loopback() {
    let host = TestHost::start();
    let s = Server::start();
    let api_port = s.port();
    let f = s.deploy("out", "python", FETCH, json!({"network": "outbound"}));
    assert_eq!(f["network"], "outbound");
    s.deploy("closed", "python", FETCH, json!({}));
    let event = fetch_event(&host, api_port);
    let out: Value = s.invoke("out", &event.to_string()).json();
    assert_eq!(out["fetched"], "hello from the test host", "{out}");
    assert_ne!(out["gateway_api"], "connected", "{out}");
    assert_ne!(out["own_loopback_api"], "connected", "{out}");

    let closed: Value = s.invoke("closed", &event.to_string()).json();
    assert!(
        closed.get("fetched").is_none(),
        "a function without network reached out: {closed}"
    );
    assert!(closed["fetch_error"].is_string());
}

#[test]
fn outbound_is_refused_where_the_host_cannot_provide_it() {
    // Without slirp4netns on PATH the server cannot give functions a network.
    let data = tempfile::tempdir().expect("tempdir");
    let (mut child, url) = crate::harness::spawn(data.path(), &[], &[("PATH", "/nonexistent")]);
    let body = json!({"name": "out", "runtime": "python", "code": "def handler(e):\n    return 1\n", "network": "outbound"});
    let resp = reqwest::blocking::Client::new()
        .post(format!("{url}/v1/functions"))
        .body(body.to_string())
        .send()
        .expect("send");
    let status = resp.status();
    let v: Value = resp.json().expect("json");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "network_unavailable");
    assert_eq!(v["error"]["field"], "network");
    assert!(v["error"]["message"]
        .as_str()
        .expect("message")
        .contains("slirp4netns"));
}
