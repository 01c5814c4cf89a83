//! What an instance inherits and sees (descriptors, mounts, system calls, uids, pids) and
//! what outlives it: nothing, after its server is killed or restarted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{spawn_command, wait_until, Server, BIN};

/// Lists the instance's descriptors (and where each leads) and tries the ones the server
/// was started with.
const FDS_PY: &str = r#"
import os
def handler(event):
    links = {}
    for fd in sorted(os.listdir("/proc/self/fd"), key=int):
        try:
            links[fd] = os.readlink("/proc/self/fd/" + fd)
        except OSError as e:
            links[fd] = type(e).__name__
    tries = {}
    for fd in event["fds"]:
        try:
            tries[str(fd)] = {"listed": os.listdir(fd)}
        except OSError as e:
            try:
                tries[str(fd)] = {"read": os.pread(fd, 100, 0).decode("latin1")}
            except OSError as e2:
                tries[str(fd)] = {"errors": [e.errno, e2.errno]}
    return {"links": links, "tries": tries}
"#;

const FDS_JS: &str = r#"
import fs from "node:fs";
export function handler(event) {
  const links = {};
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    try { links[fd] = fs.readlinkSync("/proc/self/fd/" + fd); } catch (e) { links[fd] = e.code; }
  }
  const tries = {};
  for (const fd of event.fds) {
    try { tries[fd] = { read: fs.readFileSync("/proc/self/fd/" + fd + "/secret", "latin1") }; }
    catch (e) {
      try { const b = Buffer.alloc(100); const n = fs.readSync(fd, b, 0, 100, 0); tries[fd] = { read: b.subarray(0, n).toString("latin1") }; }
      catch (e2) { tries[fd] = { errors: [e.code, e2.code] }; }
    }
  }
  return { links, tries };
}
"#;

/// A server started by a shell that leaves descriptors 7 (a host directory) and 8 (a file
/// in it) open: what an instance must not inherit.
struct Inherited {
    child: Child,
    url: String,
    data: tempfile::TempDir,
    http: reqwest::blocking::Client,
}

impl Inherited {
    fn start(dir: &Path, file: &Path) -> Inherited {
        let data = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"exec 7<"$1" 8<"$2"; shift 2; exec "$@""#)
            .arg("sh")
            .arg(dir)
            .arg(file)
            .arg(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path());
        let (child, url) = spawn_command(cmd);
        Inherited {
            child,
            url,
            data,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("client"),
        }
    }

    fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .body(body.to_string())
            .send()
            .expect("request reaches the server");
        let status = resp.status();
        (status, resp.json().expect("JSON"))
    }
}

impl Drop for Inherited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_instance_inherits_none_of_the_servers_descriptors() {
    let host = tempfile::tempdir().expect("tempdir");
    let secret = host.path().join("secret");
    std::fs::write(&secret, "host-secret-5e1f").expect("write");
    let s = Inherited::start(host.path(), &secret);
    // The server itself does hold them: the test would prove nothing otherwise.
    let server_fd =
        |fd: u32| std::fs::read_link(format!("/proc/{}/fd/{fd}", s.child.id())).expect("server fd");
    assert_eq!(server_fd(7), host.path());
    assert_eq!(server_fd(8), secret);
    let host_path = host.path().display().to_string();
    let data_path = s.data.path().display().to_string();
    for (name, runtime, code) in [("fds-py", "python", FDS_PY), ("fds-js", "javascript", FDS_JS)] {
        let (status, f) = s.post(
            "/v1/functions?wait=true",
            &json!({"name": name, "runtime": runtime, "code": code}),
        );
        assert_eq!(status, StatusCode::CREATED, "{f}");
        let (status, v) = s.post(
            &format!("/v1/functions/{name}/invoke"),
            &json!({"fds": [7, 8, 9, 10]}),
        );
        assert_eq!(status, StatusCode::OK, "{v}");
        let links = v["links"].as_object().expect("links");
        assert!(
            links.contains_key("3"),
            "{name}: the control socket is listed: {v}"
        );
        for (fd, link) in links {
            let link = link.as_str().unwrap_or_default();
            assert!(
                !link.contains(&host_path) && !link.contains(&data_path) && !link.contains("ignis.db"),
                "{name} holds fd {fd} on {link}: {v}"
            );
        }
        for (fd, tried) in v["tries"].as_object().expect("tries") {
            assert!(tried.get("errors").is_some(), "{name} used fd {fd}: {v}");
        }
    }
}

/// Reads the instance's mount table and its own executable's path.
const MOUNTS_PY: &str = r#"
import os, sys
def handler(event):
    return {"mountinfo": open("/proc/self/mountinfo").read(), "mounts": open("/proc/self/mounts").read(),
            "exe": os.readlink("/proc/self/exe"), "executable": sys.executable}
"#;

const MOUNTS_JS: &str = r#"
import fs from "node:fs";
export function handler() {
  return { mountinfo: fs.readFileSync("/proc/self/mountinfo", "utf8"), mounts: fs.readFileSync("/proc/self/mounts", "utf8"),
           exe: fs.readlinkSync("/proc/self/exe"), executable: process.execPath };
}
"#;

#[test]
fn the_mount_table_reveals_no_host_path() {
    let s = Server::start();
    let data = s.data_dir().display().to_string();
    let repo = env!("CARGO_MANIFEST_DIR");
    let tools = std::fs::canonicalize(Path::new(repo).join(".tools"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| format!("{repo}/.tools"));
    for (name, runtime, code) in [
        ("mounts-py", "python", MOUNTS_PY),
        ("mounts-js", "javascript", MOUNTS_JS),
    ] {
        s.deploy(name, runtime, code, json!({}));
        let a = s.invoke(name, "{}");
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let v = a.json();
        let text = v.to_string();
        assert!(
            v["mountinfo"].as_str().is_some_and(|m| m.lines().count() > 3),
            "{v}"
        );
        for host_path in [data.as_str(), repo, tools.as_str()] {
            assert!(!text.contains(host_path), "{name} sees {host_path}: {text}");
        }
    }
}

/// Tries io_uring and sockets of several families with raw system calls.
const SYSCALLS_PY: &str = r#"
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
FAMILIES = {"unix": 1, "inet": 2, "inet6": 10, "netlink": 16, "packet": 17, "vsock": 40, "alg": 38}
def handler(event):
    out = {}
    params = (ctypes.c_uint8 * 120)()
    ctypes.set_errno(0)
    out["io_uring_setup"] = [libc.syscall(425, 8, ctypes.byref(params)), ctypes.get_errno()]
    for name, family in FAMILIES.items():
        ctypes.set_errno(0)
        fd = libc.socket(family, 2 if family in (2, 10, 40) else 1 if family == 1 else 3, 0)
        out[name] = [1 if fd >= 0 else fd, ctypes.get_errno()]
        if fd >= 0:
            libc.close(fd)
    ctypes.set_errno(0)
    pair = (ctypes.c_int * 2)()
    out["socketpair_vsock"] = [libc.socketpair(40, 1, 0, pair), ctypes.get_errno()]
    buf = ctypes.create_string_buffer(4096)
    for name, nr, args in [("syslog", 103, [3, buf, 4096]), ("open_tree", 428, [-100, b"/", 1]),
                           ("fsopen", 430, [b"tmpfs", 0]), ("kcmp", 312, [1, 1, 0, 0, 0]),
                           ("process_madvise", 440, [0, 0, 0, 0, 0])]:
        ctypes.set_errno(0)
        out[name] = [libc.syscall(nr, *args), ctypes.get_errno()]
    return out
"#;

#[test]
fn io_uring_and_socket_families_beyond_the_network_are_refused() {
    const EPERM: i64 = 1;
    const ENOSYS: i64 = 38;
    const EAFNOSUPPORT: i64 = 97;
    let s = Server::start();
    s.deploy("none", "python", SYSCALLS_PY, json!({}));
    s.deploy("out", "python", SYSCALLS_PY, json!({"network": "outbound"}));
    for (name, internet) in [("none", false), ("out", true)] {
        let v = s.invoke(name, "{}").json();
        assert_eq!(v["io_uring_setup"], json!([-1, ENOSYS]), "{name}: {v}");
        assert_eq!(v["unix"][0], 1, "{name}: local sockets work: {v}");
        for family in ["inet", "inet6"] {
            if internet {
                assert_eq!(
                    v[family][0], 1,
                    "{name}: {family} works with outbound networking: {v}"
                );
            } else {
                assert_eq!(v[family], json!([-1, EAFNOSUPPORT]), "{name}: {v}");
            }
        }
        for family in ["netlink", "packet", "vsock", "alg"] {
            assert_eq!(v[family], json!([-1, EAFNOSUPPORT]), "{name}: {family}: {v}");
        }
        assert_eq!(v["socketpair_vsock"], json!([-1, EAFNOSUPPORT]), "{name}: {v}");
        for call in ["syslog", "open_tree", "fsopen", "kcmp", "process_madvise"] {
            assert_eq!(v[call], json!([-1, EPERM]), "{name}: {call}: {v}");
        }
    }
}

const IDENTITY_PY: &str = "import os\ndef handler(e):\n    return {'uid': os.getuid(), 'gid': os.getgid()}\n";

/// The pids-hierarchy cgroup of a host process, as a path under the hierarchy's mount.
fn pids_cgroup(pid: u32) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup file");
    let v1 = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "pids")
            .then(|| format!("/sys/fs/cgroup/pids{path}"))
    });
    let v2 = || {
        text.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(|p| format!("/sys/fs/cgroup{p}"))
    };
    PathBuf::from(v1.or_else(v2).expect("a pids cgroup"))
}

/// The uid a host process runs as.
fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|id| id.parse().ok())
}

/// A process of `server`'s instances running as `uid`.
fn instance_process(server: u32, uid: u32) -> u32 {
    descendants(server)
        .into_iter()
        .find(|&p| uid_of(p) == Some(uid))
        .unwrap_or_else(|| panic!("no process of server {server} runs as {uid}"))
}

#[test]
fn two_servers_never_share_instance_uids_and_each_caps_its_instances_pids() {
    let servers = [Server::start(), Server::start()];
    let mut ranges = BTreeSet::new();
    let mut parents = BTreeSet::new();
    for s in &servers {
        s.deploy("who", "python", IDENTITY_PY, json!({"idle_timeout_secs": 60}));
        let v = s.invoke("who", "{}").json();
        let uid = u32::try_from(v["uid"].as_u64().expect("uid")).expect("u32");
        assert!(uid >= 200_000, "{v}");
        assert_eq!(v["gid"], v["uid"]);
        ranges.insert(uid / 100_000);
        // The instance is idle now, still running as that uid: its cgroup, seen from the
        // host, sits in its server's parent cgroup, which has a pids limit of its own.
        let own = pids_cgroup(instance_process(s.pid(), uid));
        let parent = own.parent().expect("parent").to_path_buf();
        let name = parent.file_name().expect("name").to_string_lossy().into_owned();
        assert!(name.starts_with("s-"), "{}", own.display());
        let max = std::fs::read_to_string(parent.join("pids.max")).expect("pids.max");
        let max: u64 = max
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("a number, not {max:?}"));
        assert!((64..=32768).contains(&max), "{max}");
        parents.insert(parent);
    }
    assert_eq!(ranges.len(), 2, "each server has its own uid range: {ranges:?}");
    assert_eq!(
        parents.len(),
        2,
        "each server has its own parent cgroup: {parents:?}"
    );
}

const SPIN_PY: &str = "def handler(e):\n    while True:\n        pass\n";

/// The host pids of every descendant of `root`.
pub(crate) fn descendants(root: u32) -> BTreeSet<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name (in parentheses) may hold spaces: fields follow its last ')'.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        if let Some(ppid) = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
        {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = BTreeSet::from([root]);
    loop {
        let before = found.len();
        for &(pid, ppid) in &parent_of {
            if found.contains(&ppid) {
                found.insert(pid);
            }
        }
        if found.len() == before {
            found.remove(&root);
            return found;
        }
    }
}

/// Whether `pid` is still a live process (a zombie waits only to be reaped: it is dead).
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = stat.rsplit_once(')')?.1.to_owned();
            after
                .split_whitespace()
                .next()
                .map(|state| state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// Kills (SIGKILL) a server whose instance spins in a call, and requires every process
/// of its instances to end, with nothing restarting the server: only the kernel's
/// parent-death signals can end them.
fn a_killed_servers_instances_die_with_it(args: &[&str]) {
    let s = Server::start_with(None, args);
    s.deploy("spin", "python", SPIN_PY, json!({"timeout_secs": 300}));
    let accepted = s.invoke_async("spin", "{}");
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    let id = accepted.json()["invocation_id"]
        .as_str()
        .expect("invocation_id")
        .to_owned();
    s.wait_for_status(&id, "running");
    let mut instance = BTreeSet::new();
    wait_until("the spinning runtime is seen", Duration::from_secs(30), || {
        instance = descendants(s.pid());
        instance.iter().any(|&p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("bootstrap"))
        })
    });
    kill_server_and_wait_for(
        s.pid(),
        &instance,
        "every process of the killed server's instances is gone",
    );
}

/// Kills the server `server` with SIGKILL and waits until none of `pids` is alive.
pub(crate) fn kill_server_and_wait_for(server: u32, pids: &BTreeSet<u32>, what: &str) {
    let killed = Command::new("kill")
        .args(["-KILL", &server.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    wait_until(what, Duration::from_secs(20), || pids.iter().all(|&p| !alive(p)));
}

#[test]
fn a_killed_servers_sandboxed_instances_die_with_it() {
    a_killed_servers_instances_die_with_it(&[]);
}

#[test]
fn a_killed_servers_unsandboxed_instances_die_with_it() {
    a_killed_servers_instances_die_with_it(&["--insecure-no-sandbox"]);
}

/// A process of the test's own, killed when dropped if a failed assertion left it running.
struct Leftover(Child);

impl Drop for Leftover {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_restarted_server_kills_what_its_previous_run_left_in_its_cgroups() {
    let mut s = Server::start();
    s.deploy("who", "python", IDENTITY_PY, json!({"idle_timeout_secs": 60}));
    let v = s.invoke("who", "{}").json();
    let uid = u32::try_from(v["uid"].as_u64().expect("uid")).expect("u32");
    let server_cgroup = pids_cgroup(instance_process(s.pid(), uid))
        .parent()
        .expect("parent")
        .to_path_buf();
    // A process the parent-death signal cannot reach (the test's own child), left in the
    // server's cgroup tree as if an instance had escaped its init.
    let leftover_cgroup = server_cgroup.join("i-leftover-0");
    std::fs::create_dir(&leftover_cgroup).expect("mkdir cgroup");
    let mut leftover = Leftover(Command::new("sleep").arg("600").spawn().expect("sleep"));
    std::fs::write(leftover_cgroup.join("cgroup.procs"), leftover.0.id().to_string()).expect("join cgroup");
    assert_eq!(pids_cgroup(leftover.0.id()), leftover_cgroup);

    s.restart();
    wait_until(
        "the start-up sweep killed the leftover process",
        Duration::from_secs(30),
        || leftover.0.try_wait().expect("try_wait").is_some(),
    );
    use std::os::unix::process::ExitStatusExt;
    let status = leftover.0.wait().expect("wait");
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status}");
    wait_until("the leftover cgroup is removed", Duration::from_secs(10), || {
        !leftover_cgroup.exists()
    });
    // The restarted server still runs functions.
    wait_until("the function is ready again", Duration::from_secs(30), || {
        s.function("who")["state"] == "ready"
    });
    let again = s.invoke("who", "{}");
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
}
