//! Boot tests of the real guest that `make microvm` builds (kernel, root filesystem, agent):
//! QEMU `-M microvm` under TCG, the four virtio-serial ports on unix sockets this test
//! listens on, and the agent protocol spoken over them.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Instant;

use serde_json::{json, Value};

use common::{exec, share, Guest};

#[test]
fn ready_names_the_guest_kernel_and_bad_requests_get_precise_errors() {
    let mut guest = Guest::boot(&[]);
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("host kernel");
    let kernel = guest.ready["kernel"].as_str().expect("kernel").to_owned();
    assert!(
        kernel.starts_with("6.1."),
        "the guest runs the 6.1 kernel: {kernel}"
    );
    assert_ne!(kernel, host.trim(), "the guest's kernel is not the host's");

    assert_eq!(guest.request(&json!({"op": "ping"})), json!({"ok": true}));
    assert_eq!(
        guest.request(&json!({"op": "reboot"})),
        json!({"ok": false, "error": "unknown op \"reboot\" (one of ping, exec, resume, mount)"})
    );
    let mut outside = exec("/usr/bin/python3", &[]);
    outside["files"] = json!({"/etc/evil": "x"});
    assert_eq!(
        guest.request(&outside),
        json!({"ok": false, "error": "file \"/etc/evil\" is outside /ignis/ (files may only be written there)"})
    );
    assert_eq!(
        guest.request(&exec("/usr/bin/nothing", &[])),
        json!({"ok": false, "error": "program /usr/bin/nothing does not exist in the guest"})
    );
    assert_eq!(
        guest.request(&json!({"op": "resume", "time_ns": 1, "entropy": "AAAA"})),
        json!({"ok": false, "error": "entropy has 3 bytes; between 32 and 512 are needed"})
    );
    assert_eq!(
        guest.request(&json!({"op": "mount", "at": "/etc", "dirs": ["code"]})),
        json!({"ok": false, "error": "mount point \"/etc\" is not one of /code, /opt"})
    );
    let answer = guest.request_raw("{not json");
    assert_eq!(answer["ok"], false);
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("the request is not JSON")),
        "{answer}"
    );
    // The guest still runs a program after all that, and stops when it exits, though the
    // program leaves a child behind (an orphan the agent reaps, not waits for).
    let answer = guest.request(&exec("/bin/sh", &["-c", "sleep 1000 & exit 3"]));
    assert_eq!(answer["ok"], true, "{answer}");
    let ended = guest.end();
    assert_eq!(
        ended.exit,
        json!({"event": "exit", "code": 3, "signal": null, "oom": false})
    );
    assert!(ended.status.success(), "QEMU exits by itself: {:?}", ended.status);
}

const IDENTITY_PY: &str = r#"
import json, os, sys
sys.stdout.write("to stdout\n"); sys.stdout.flush()
sys.stderr.write("to stderr\n"); sys.stderr.flush()
control = os.fdopen(3, "r+b", buffering=0)
control.write(b"to control\n")
line = control.readline()
tmp = os.statvfs("/tmp")
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
print(json.dumps({
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
    "environ": sorted(open("/proc/self/environ", "rb").read().decode().split("\0")[:-1]),
    "cwd": os.getcwd(), "session_leader": os.getsid(0) == os.getpid(),
    "no_new_privs": status["NoNewPrivs"].strip(), "tmp_bytes": tmp.f_blocks * tmp.f_frsize,
    "stdin": os.readlink("/proc/self/fd/0"), "from_host": line.decode(),
    "bootstrap_mode": oct(os.stat("/ignis/bootstrap.py").st_mode & 0o777),
    "seccomp": status["Seccomp"].strip(), "bounding": status["CapBnd"].strip(),
    "nofile": __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE),
    "hostname": os.uname().nodename,
    "modules_disabled": open("/proc/sys/kernel/modules_disabled").read().strip(),
}))
sys.exit(7)
"#;

#[test]
fn exec_runs_python_as_the_given_user_with_its_streams_on_the_ports() {
    let mut guest = Guest::boot(&[]);
    let request = json!({"op": "exec", "program": "/usr/bin/python3", "args": ["/ignis/bootstrap.py"],
        "env": {"GREETING": "hi", "LANG": "C.UTF-8"}, "cwd": "/tmp", "uid": 1000, "gid": 1000,
        "files": {"/ignis/bootstrap.py": IDENTITY_PY}});
    let sent = Instant::now();
    let answer = guest.request(&request);
    assert_eq!(answer["ok"], true, "{answer}");
    assert!(answer["pid"].as_u64().is_some_and(|p| p > 1), "{answer}");

    // The program is running (it waits for a line on its control channel): a second exec
    // is refused.
    let mut control = BufReader::new(guest.control.try_clone().expect("clone"));
    let mut line = String::new();
    control.read_line(&mut line).expect("read control");
    assert_eq!(line, "to control\n");
    let second = guest.request(&exec("/bin/true", &[]));
    assert_eq!(second["ok"], false);
    assert!(
        second["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("a program is already running (pid ")),
        "{second}"
    );
    guest.control.write_all(b"go on\n").expect("write control");

    let ended = guest.end();
    assert_eq!(
        ended.exit,
        json!({"event": "exit", "code": 7, "signal": null, "oom": false})
    );
    eprintln!(
        "exec -> first stdout byte of python3: {:?}",
        ended.first_stdout.map(|t| t.duration_since(sent))
    );
    let mut lines = ended.stdout.lines();
    assert_eq!(lines.next(), Some("to stdout"));
    let info: Value = serde_json::from_str(lines.next().expect("the JSON line")).expect("JSON");
    assert_eq!(ended.stderr, "to stderr\n");
    assert_eq!(info["uid"], 1000);
    assert_eq!(info["euid"], 1000);
    assert_eq!(info["gid"], 1000);
    assert_eq!(info["groups"], json!([]));
    assert_eq!(info["environ"], json!(["GREETING=hi", "LANG=C.UTF-8"]));
    assert_eq!(info["cwd"], "/tmp");
    assert_eq!(info["session_leader"], true);
    assert_eq!(info["no_new_privs"], "1");
    assert_eq!(info["tmp_bytes"], 32 << 20, "/tmp is the 32 MiB of ignis.tmp_mb");
    assert_eq!(info["stdin"], "/dev/null");
    assert_eq!(info["from_host"], "go on\n");
    assert_eq!(info["bootstrap_mode"], "0o444");
    assert_eq!(
        info["seccomp"], "2",
        "confined: the process tier's seccomp filters"
    );
    assert_eq!(
        info["bounding"], "0000000000000000",
        "no capability can be regained"
    );
    assert_eq!(info["nofile"], json!([1024, 1024]));
    assert_eq!(info["hostname"], "ignis");
    assert_eq!(info["modules_disabled"], "1", "no kernel module can be loaded");
}

#[test]
fn resume_sets_the_clock_and_bun_runs() {
    let mut guest = Guest::boot(&[]);
    // 2030-01-01T00:00:00Z.
    let target_s: i64 = 1_893_456_000;
    let entropy = "q".repeat(64); // 48 bytes of base64
    let answer =
        guest.request(&json!({"op": "resume", "time_ns": target_s * 1_000_000_000, "entropy": entropy}));
    assert_eq!(answer, json!({"ok": true}));
    let sent = Instant::now();
    let answer = guest.request(&exec(
        "/usr/local/bin/bun",
        &[
            "-e",
            "console.log(Math.floor(Date.now() / 1000)); console.error('bun ' + Bun.version)",
        ],
    ));
    assert_eq!(answer["ok"], true, "{answer}");
    let ended = guest.end();
    assert_eq!(
        ended.exit,
        json!({"event": "exit", "code": 0, "signal": null, "oom": false}),
        "{}",
        ended.stderr
    );
    eprintln!(
        "exec -> first stdout byte of bun: {:?}",
        ended.first_stdout.map(|t| t.duration_since(sent))
    );
    let now: i64 = ended
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("seconds: {:?}", ended.stdout));
    assert!(
        (target_s..target_s + 120).contains(&now),
        "the guest's clock says {now}, not 2030"
    );
    assert!(ended.stderr.starts_with("bun 1."), "{}", ended.stderr);
}

#[test]
fn a_program_allocating_past_the_guest_memory_exits_with_oom() {
    let mut guest = Guest::boot(&[]);
    let hog = "chunks = []\nwhile True:\n    chunks.append(b'x' * (8 << 20))\n";
    let answer = guest.request(&exec("/usr/bin/python3", &["-c", hog]));
    assert_eq!(answer["ok"], true, "{answer}");
    let ended = guest.end();
    assert_eq!(
        ended.exit,
        json!({"event": "exit", "code": null, "signal": 9, "oom": true}),
        "{}",
        ended.stderr
    );
}

const READ_MOUNTS_PY: &str = r#"
print(open("hello.txt").read(), end="")
print(open("/opt/both.txt").read(), open("/opt/layer.txt").read())
for path in ("new.txt", "/opt/new.txt"):
    try:
        open(path, "w")
    except OSError as e:
        print(e.errno)
"#;

#[test]
fn mount_shows_one_folder_of_the_share_at_code_and_merges_several_at_opt() {
    let share_dir = tempfile::tempdir().expect("share dir");
    let dir = |name: &str| {
        let d = share_dir.path().join(name);
        std::fs::create_dir(&d).expect("mkdir");
        d
    };
    let (code, deps, layer) = (dir("code"), dir("deps"), dir("opt0"));
    std::fs::write(code.join("hello.txt"), "hello from the host\n").expect("write");
    std::fs::write(deps.join("both.txt"), "deps").expect("write");
    std::fs::write(layer.join("both.txt"), "layer").expect("write");
    std::fs::write(layer.join("layer.txt"), "only in the layer").expect("write");
    let mut guest = Guest::boot(&share("share", share_dir.path(), "ignis.share"));
    assert_eq!(
        guest.request(&json!({"op": "mount", "at": "/code", "dirs": ["code"]})),
        json!({"ok": true})
    );
    assert_eq!(
        guest.request(&json!({"op": "mount", "at": "/opt", "dirs": ["missing"]})),
        json!({"ok": false, "error": "the share has no folder \"missing\""})
    );
    assert_eq!(
        guest.request(&json!({"op": "mount", "at": "/opt", "dirs": ["deps", "opt0"]})),
        json!({"ok": true})
    );
    assert_eq!(
        guest.request(&json!({"op": "mount", "at": "/code", "dirs": ["code"]})),
        json!({"ok": false, "error": "/code is already mounted"})
    );
    let mut request = exec("/usr/bin/python3", &["-c", READ_MOUNTS_PY]);
    request["cwd"] = json!("/code");
    let answer = guest.request(&request);
    assert_eq!(answer["ok"], true, "{answer}");
    let ended = guest.end();
    assert_eq!(ended.exit["code"], 0, "{}", ended.stderr);
    assert_eq!(
        ended.stdout, "hello from the host\ndeps only in the layer\n30\n30\n",
        "the file; the first folder on top of the second; EROFS on writes at /code and /opt"
    );
}

#[test]
fn mount_without_the_share_is_an_error() {
    let mut guest = Guest::boot(&[]);
    let missing = guest.request(&json!({"op": "mount", "at": "/opt", "dirs": ["deps"]}));
    assert_eq!(missing["ok"], false);
    assert!(
        missing["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("mount the 9p share ignis.share (does the VM have it?): ")),
        "{missing}"
    );
    assert_eq!(guest.request(&exec("/bin/true", &[]))["ok"], true);
    assert_eq!(guest.end().exit["code"], 0);
}

const NETWORK_PY: &str = r#"
import socket, sys
# The loopback interface is up.
server = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(server.getsockname())
print("loopback", server.accept()[0].recv(0) == b"")
# The host, through QEMU's user network (10.0.2.2 is the host's 127.0.0.1).
host = socket.create_connection(("10.0.2.2", int(sys.argv[1])), timeout=30)
host.sendall(b"hello from the guest")
host.close()
print(open("/etc/resolv.conf").read().strip())
"#;

#[test]
fn the_ip_parameter_gives_outbound_network_and_lo_is_up() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let mut guest = Guest::boot_with(
        &[
            "-netdev",
            "user,id=net",
            "-device",
            "virtio-net-device,netdev=net",
        ]
        .map(String::from),
        "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off",
    );
    let accepted = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept the guest");
        let mut got = String::new();
        stream.read_to_string(&mut got).expect("read");
        got
    });
    let mut request = exec("/usr/bin/python3", &["-c", NETWORK_PY, &port.to_string()]);
    // Internet sockets: the seccomp filter of a confined program allows them only with
    // outbound networking.
    request["outbound"] = json!(true);
    let answer = guest.request(&request);
    assert_eq!(answer["ok"], true, "{answer}");
    let ended = guest.end();
    assert_eq!(ended.exit["code"], 0, "{}", ended.stderr);
    assert_eq!(ended.stdout, "loopback True\nnameserver 10.0.2.3\n");
    assert_eq!(
        accepted.join().expect("the host's listener"),
        "hello from the guest"
    );
}
