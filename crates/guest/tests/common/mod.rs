//! The test harness shared by the guest's tests: boots the real guest that `make microvm`
//! builds (kernel, root filesystem, agent) with QEMU `-M microvm` under TCG, listens on the
//! four virtio-serial ports' unix sockets and speaks the agent protocol over them.

// Each test file uses its own part of the harness.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Generous: TCG is slow, and other builds may share the machine's two cores.
pub const DEADLINE: Duration = Duration::from_secs(90);

pub fn guest_dir() -> PathBuf {
    let current = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/microvm/current");
    assert!(
        current.join("vmlinux").is_file() && current.join("rootfs.ext4").is_file(),
        "no guest at {}: run `make microvm` first",
        current.display()
    );
    current
}

/// A stream read to its end on a thread: the bytes, and when the first of them came.
pub type Collected = JoinHandle<(Vec<u8>, Option<Instant>)>;

pub fn collect(mut stream: UnixStream) -> Collected {
    std::thread::spawn(move || {
        let (mut all, mut first) = (Vec::new(), None);
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            first.get_or_insert_with(Instant::now);
            all.extend_from_slice(&buf[..n]);
        }
        (all, first)
    })
}

/// How to boot a guest.
pub struct Boot<'a> {
    /// More QEMU arguments (devices, shares).
    pub extra: &'a [String],
    /// More kernel parameters.
    pub cmdline: &'a str,
    /// The guest's RAM.
    pub memory_mb: u32,
    /// The size of the guest's `/tmp` (`ignis.tmp_mb`).
    pub tmp_mb: u32,
    /// How long the agent may take to answer one request (and QEMU to exit at the end).
    pub deadline: Duration,
}

impl Default for Boot<'_> {
    fn default() -> Self {
        Boot {
            extra: &[],
            cmdline: "",
            memory_mb: 256,
            tmp_mb: 32,
            deadline: DEADLINE,
        }
    }
}

pub struct Guest {
    qemu: Child,
    dir: tempfile::TempDir,
    agent: BufReader<UnixStream>,
    agent_w: UnixStream,
    pub control: UnixStream,
    stdout: Option<Collected>,
    stderr: Option<Collected>,
    pub ready: Value,
    pub boot: Duration,
    deadline: Duration,
}

/// What a guest left when its program exited and QEMU stopped.
pub struct Ended {
    pub exit: Value,
    pub stdout: String,
    pub stderr: String,
    pub status: ExitStatus,
    pub first_stdout: Option<Instant>,
}

impl Guest {
    pub fn boot(extra: &[String]) -> Guest {
        Guest::boot_with(extra, "")
    }

    /// Boots with more QEMU arguments and more kernel parameters.
    pub fn boot_with(extra: &[String], cmdline: &str) -> Guest {
        Guest::start(&Boot {
            extra,
            cmdline,
            ..Boot::default()
        })
    }

    /// Boots as `how` says and waits for the agent's `ready`.
    pub fn start(how: &Boot) -> Guest {
        let guest = guest_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        let names = ["agent", "control", "stdout", "stderr"];
        let listeners: Vec<UnixListener> = names
            .iter()
            .map(|n| UnixListener::bind(dir.path().join(format!("{n}.sock"))).expect("listen"))
            .collect();
        let memory = how.memory_mb.to_string();
        let mut args: Vec<String> = [
            "-M",
            "microvm,acpi=off",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            &memory,
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("-serial".into());
        args.push(format!("file:{}", dir.path().join("serial.log").display()));
        args.push("-kernel".into());
        args.push(guest.join("vmlinux").display().to_string());
        args.push("-drive".into());
        args.push(format!(
            "id=root,file={},format=raw,if=none,readonly=on",
            guest.join("rootfs.ext4").display()
        ));
        args.extend(
            [
                "-device",
                "virtio-blk-device,drive=root",
                "-device",
                "virtio-serial-device",
            ]
            .map(String::from),
        );
        for n in names {
            args.push("-chardev".into());
            args.push(format!(
                "socket,id={n},path={},server=off",
                dir.path().join(format!("{n}.sock")).display()
            ));
            args.push("-device".into());
            args.push(format!("virtserialport,chardev={n},name=ignis.{n}"));
        }
        args.extend(how.extra.iter().cloned());
        args.push("-append".into());
        args.push(format!(
            "console=ttyS0 root=/dev/vda ro rootfstype=ext4 init=/sbin/ignis-agent quiet panic=-1 \
             random.trust_cpu=on ignis.tmp_mb={} {}",
            how.tmp_mb, how.cmdline
        ));
        let started = Instant::now();
        let qemu = Command::new("qemu-system-x86_64")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start qemu-system-x86_64 (apt-get install qemu-system-x86)");
        // QEMU connects to each socket as it starts; accept on threads so a QEMU that fails
        // to start fails the test instead of hanging it.
        let (tx, rx) = mpsc::channel();
        for (i, listener) in listeners.into_iter().enumerate() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tx.send((i, listener.accept().map(|(s, _)| s)));
            });
        }
        let mut streams: [Option<UnixStream>; 4] = [None, None, None, None];
        let mut guest = Guest::partial(qemu, dir, how.deadline);
        for _ in 0..4 {
            match rx.recv_timeout(DEADLINE) {
                Ok((i, Ok(stream))) => streams[i] = Some(stream),
                Ok((i, Err(e))) => guest.fail(&format!("accept {}: {e}", names[i])),
                Err(_) => guest.fail("QEMU did not connect to the four sockets"),
            }
        }
        let [agent, control, stdout, stderr] = streams.map(|s| s.expect("accepted"));
        agent.set_read_timeout(Some(how.deadline)).expect("timeout");
        guest.agent_w = agent.try_clone().expect("clone");
        guest.agent = BufReader::new(agent);
        guest.control = control;
        guest.stdout = Some(collect(stdout));
        guest.stderr = Some(collect(stderr));
        guest.ready = guest.line();
        guest.boot = started.elapsed();
        eprintln!("boot to ready: {:?}", guest.boot);
        assert_eq!(
            guest.ready["event"], "ready",
            "the first line is the ready event: {}",
            guest.ready
        );
        guest
    }

    /// A guest whose sockets are not accepted yet (so `fail` can show its serial console).
    fn partial(qemu: Child, dir: tempfile::TempDir, deadline: Duration) -> Guest {
        let (a, b) = UnixStream::pair().expect("placeholder pair");
        let c = a.try_clone().expect("clone");
        Guest {
            qemu,
            dir,
            agent: BufReader::new(a),
            agent_w: b,
            control: c,
            stdout: None,
            stderr: None,
            ready: Value::Null,
            boot: Duration::ZERO,
            deadline,
        }
    }

    pub fn serial(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serial.log")).unwrap_or_default()
    }

    pub fn fail(&mut self, what: &str) -> ! {
        let _ = self.qemu.kill();
        let mut err = String::new();
        if let Some(mut e) = self.qemu.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        // What the program wrote so far: its streams end now that QEMU is gone.
        let mut streams = String::new();
        for (name, collected) in [("stdout", self.stdout.take()), ("stderr", self.stderr.take())] {
            if let Some(Ok((bytes, _))) = collected.map(JoinHandle::join) {
                streams += &format!("\n--- program {name} ---\n{}", String::from_utf8_lossy(&bytes));
            }
        }
        panic!(
            "{what}\n--- serial console ---\n{}\n--- qemu stderr ---\n{err}{streams}",
            self.serial()
        );
    }

    /// The next line of `ignis.agent`, as JSON.
    pub fn line(&mut self) -> Value {
        let mut line = String::new();
        match self.agent.read_line(&mut line) {
            Ok(n) if n > 0 => {
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
            }
            Ok(_) => self.fail("ignis.agent closed"),
            Err(e) => self.fail(&format!("read ignis.agent: {e}")),
        }
    }

    pub fn request(&mut self, request: &Value) -> Value {
        writeln!(self.agent_w, "{request}").expect("write a request");
        self.line()
    }

    pub fn request_raw(&mut self, line: &str) -> Value {
        writeln!(self.agent_w, "{line}").expect("write a request");
        self.line()
    }

    /// Reads the `exit` event, then waits for QEMU to exit by itself and for the streams
    /// to end.
    pub fn end(mut self) -> Ended {
        let exit = self.line();
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.qemu.try_wait().expect("wait for qemu") {
                break status;
            }
            if start.elapsed() > self.deadline {
                self.fail("QEMU did not exit after the program's exit");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let (stdout, first_stdout) = self.stdout.take().expect("stdout").join().expect("stdout reader");
        let (stderr, _) = self.stderr.take().expect("stderr").join().expect("stderr reader");
        Ended {
            exit,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            status,
            first_stdout,
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}

/// An `exec` request for `program` as uid/gid 1000, confined, with PATH only.
pub fn exec(program: &str, args: &[&str]) -> Value {
    json!({"op": "exec", "program": program, "args": args, "env": {"PATH": "/usr/bin:/bin"},
           "cwd": "/", "uid": 1000, "gid": 1000})
}

/// QEMU arguments sharing `dir` read-only as the 9p tag `tag`.
pub fn share(id: &str, dir: &Path, tag: &str) -> Vec<String> {
    vec![
        "-fsdev".into(),
        format!(
            "local,id={id},path={},security_model=none,readonly=on",
            dir.display()
        ),
        "-device".into(),
        format!("virtio-9p-device,fsdev={id},mount_tag={tag}"),
    ]
}
