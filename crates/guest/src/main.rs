//! `ignis-agent`: PID 1 of an Ignis microVM guest. It mounts the guest's file systems, opens
//! the four virtio-serial ports, says `ready`, serves the host's requests (one JSON object per
//! line on `ignis.agent`), starts the guest's one program and, when it exits, reports its exit
//! and powers the guest off. See "The guest agent protocol" in ARCHITECTURE.md.

mod boot;
mod guest;
mod request;
mod sys;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

/// A request line longer than this is refused (the files of an exec travel inside it).
const MAX_LINE: usize = 16 << 20;
/// How long the ports may take to appear after the agent starts.
const PORTS_DEADLINE: Duration = Duration::from_secs(10);

/// The agent's end of `ignis.agent`, shared by the request loop and the exit reporter.
#[derive(Clone)]
pub struct Channel(Arc<Mutex<File>>);

impl Channel {
    /// Writes one JSON line (a whole line per write, so answers and events never interleave).
    pub fn send(&self, value: &serde_json::Value) {
        let mut line = value.to_string();
        line.push('\n');
        let mut port = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = port.write_all(line.as_bytes()) {
            eprintln!("ignis-agent: cannot write to ignis.agent: {e}");
        }
    }
}

fn main() {
    if std::process::id() != 1 {
        eprintln!("ignis-agent: this is the init of an Ignis microVM guest (PID 1), not a command");
        std::process::exit(2);
    }
    if let Err(message) = run() {
        // The serial console is the one place left to say it; then the guest stops, so the
        // host sees QEMU exit without a `ready` (or without an `exit` event).
        eprintln!("ignis-agent: {message}");
        guest::power_off();
    }
}

fn run() -> Result<(), String> {
    guest::mount_basics()?;
    let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(|e| format!("read /proc/cmdline: {e}"))?;
    let cmdline = boot::parse_cmdline(&cmdline)?;
    guest::mount_scratch(cmdline.tmp_mb)?;
    sys::loopback_up().map_err(|e| format!("bring lo up: {e}"))?;
    // Memory as a cgroup limit gives it in the process tier: an allocation past the guest's
    // memory succeeds, and touching it wakes the OOM killer (the kernel's default heuristic
    // would refuse one large allocation with ENOMEM instead).
    guest::sysctl("vm.overcommit_memory", "1")?;
    // The name an instance sees in the process tier too.
    nix::unistd::sethostname("ignis").map_err(|e| format!("set the hostname: {e}"))?;
    // The kernel can load modules only because its BPF JIT needs module support (it
    // compiles the seccomp filters): nothing in a guest ever loads one, so that ends here,
    // for the guest's whole life (a one-way switch).
    guest::sysctl("kernel.modules_disabled", "1")?;
    // A program may install seccomp filters of its own, which the JIT compiles too:
    // constants in what it compiles for an unprivileged program are blinded.
    guest::sysctl("net.core.bpf_jit_harden", "1")?;

    let ports = boot::find_ports(PORTS_DEADLINE)?;
    let open = |name: &str| -> Result<File, String> {
        let path = &ports[name];
        // The program's stdout and stderr are only written; the others go both ways.
        let both_ways = !matches!(name, "ignis.stdout" | "ignis.stderr");
        OpenOptions::new()
            .read(both_ways)
            .write(true)
            .open(path)
            .map_err(|e| format!("open {name} ({}): {e}", path.display()))
    };
    let agent = open("ignis.agent")?;
    let reader = agent.try_clone().map_err(|e| format!("dup ignis.agent: {e}"))?;
    let streams = guest::Streams {
        control: open("ignis.control")?,
        stdout: open("ignis.stdout")?,
        stderr: open("ignis.stderr")?,
    };
    let channel = Channel(Arc::new(Mutex::new(agent)));

    let kernel = nix::sys::utsname::uname().map_err(|e| format!("uname: {e}"))?;
    // The write waits until the host is connected; reads after it see the host's lines.
    channel.send(&json!({"event": "ready", "kernel": kernel.release().to_string_lossy()}));

    let mut state = guest::State::new(streams, channel.clone());
    serve(reader, &channel, &mut state);
    Ok(())
}

/// Answers each request line; never returns (the exit reporter powers the guest off).
fn serve(port: File, channel: &Channel, state: &mut guest::State) {
    let mut reader = BufReader::new(port);
    let mut line = Vec::new();
    loop {
        let room = (MAX_LINE + 1).saturating_sub(line.len()) as u64;
        match (&mut reader).take(room).read_until(b'\n', &mut line) {
            // No host on the port right now (the virtio console's end of file): wait for one.
            Ok(0) => std::thread::sleep(Duration::from_millis(20)),
            Ok(_) if line.ends_with(b"\n") => {
                let answer = match std::str::from_utf8(&line) {
                    Ok(text) => handle(text.trim_end(), state),
                    Err(_) => Err("the request is not UTF-8".to_owned()),
                };
                channel.send(&match answer {
                    Ok(serde_json::Value::Object(mut extra)) => {
                        extra.insert("ok".into(), true.into());
                        serde_json::Value::Object(extra)
                    }
                    Ok(_) => json!({"ok": true}),
                    Err(error) => json!({"ok": false, "error": error}),
                });
                line.clear();
            }
            Ok(_) if line.len() > MAX_LINE => {
                channel.send(
                    &json!({"ok": false, "error": format!("the request is longer than {MAX_LINE} bytes")}),
                );
                // Skip the rest of the oversized line.
                line.clear();
                let _ = reader.skip_until(b'\n');
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("ignis-agent: read ignis.agent: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// One request → the fields of its answer (beside `"ok": true`) or the error message.
fn handle(line: &str, state: &mut guest::State) -> Result<serde_json::Value, String> {
    match request::parse(line)? {
        request::Request::Ping => Ok(json!({})),
        request::Request::Exec(exec) => state.exec(exec).map(|pid| json!({"pid": pid})),
        request::Request::Resume(resume) => guest::resume(&resume).map(|()| json!({})),
        request::Request::Mount(mount) => state.mount(&mount).map(|()| json!({})),
    }
}
