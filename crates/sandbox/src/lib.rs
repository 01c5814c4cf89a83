//! Starting and stopping instance processes. The only crate with `unsafe` (in `sys`).

mod sys;

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::net::UnixStream;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

/// The file descriptor on which an instance finds its control socket.
pub const CONTROL_FD: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("could not create the control socket: {0}")]
    Socket(std::io::Error),
    #[error("could not start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The whole environment of the process: nothing of the host's leaks in.
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
}

/// A started instance process and its channels.
pub struct Spawned {
    pub process: Process,
    pub control: UnixStream,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
}

/// A running instance process. Dropping it kills the process and its whole group.
pub struct Process {
    child: Child,
    pgid: Option<Pid>,
}

impl Process {
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the process group at once (SIGKILL): used for timeouts and stops.
    pub fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // The group may already be gone; that is the outcome we want anyway.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        let _ = self.child.start_kill();
    }

    /// Waits for the process to end and describes how it ended.
    pub async fn wait(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => describe_exit(status),
            Err(e) => format!("could not wait for the instance: {e}"),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("the instance exited with status {code}"),
        (None, Some(sig)) => {
            let name = Signal::try_from(sig)
                .map(|s| s.as_str())
                .unwrap_or("unknown signal");
            format!("the instance was killed by signal {sig} ({name})")
        }
        (None, None) => "the instance ended".to_owned(),
    }
}

/// Starts a process with a fresh control socket on fd 3 and pipes on stdout and stderr.
pub fn spawn(req: &SpawnRequest) -> Result<Spawned, SpawnError> {
    let (host_end, child_end) = std::os::unix::net::UnixStream::pair().map_err(SpawnError::Socket)?;
    host_end.set_nonblocking(true).map_err(SpawnError::Socket)?;
    let child_end: OwnedFd = child_end.into();

    let mut cmd = Command::new(&req.program);
    cmd.args(&req.args)
        .env_clear()
        .envs(&req.env)
        .current_dir(&req.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    sys::prepare_child(&mut cmd, child_end.as_raw_fd());
    let mut child = cmd.spawn().map_err(|source| SpawnError::Spawn {
        program: req.program.display().to_string(),
        source,
    })?;
    // The child has its own copy now; the host must not keep the other end open, or it
    // would never see EOF when the instance dies.
    drop(child_end);

    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let stdout = child.stdout.take().expect("stdout was configured as piped");
    let stderr = child.stderr.take().expect("stderr was configured as piped");
    let control = UnixStream::from_std(host_end).map_err(SpawnError::Socket)?;
    Ok(Spawned {
        process: Process { child, pgid },
        control,
        stdout,
        stderr,
    })
}
