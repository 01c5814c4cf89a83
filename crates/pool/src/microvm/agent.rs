//! The host side of the guest agent's channel (the `ignis.agent` port): one JSON object
//! per line. Requests are answered in order; the guest also says when it is ready and when
//! its runtime exited. The protocol is in `docs/microvm.md`.

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};

/// Longest line the agent may send (its answers are small).
const MAX_LINE: usize = 64 * 1024;

/// How the guest's runtime ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct GuestExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The guest kernel's OOM killer killed a process.
    pub oom: bool,
}

/// What the host knows of the guest's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct AgentState {
    pub exit: Option<GuestExit>,
    /// The channel closed: the guest (or its QEMU) is gone.
    pub closed: bool,
}

pub(crate) struct Agent {
    writer: OwnedWriteHalf,
    lines: mpsc::Receiver<Value>,
}

impl Agent {
    /// Starts reading the channel; the state follows the guest's `exit` event.
    pub(crate) fn new(stream: UnixStream) -> (Agent, watch::Receiver<AgentState>) {
        let (read, writer) = stream.into_split();
        let (tx, lines) = mpsc::channel(8);
        let (state_tx, state) = watch::channel(AgentState::default());
        tokio::spawn(async move {
            let mut reader = BufReader::new(read);
            let mut line = Vec::new();
            loop {
                line.clear();
                match (&mut reader)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut line)
                    .await
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let Ok(value) = serde_json::from_slice::<Value>(&line) else {
                    tracing::warn!(line = %String::from_utf8_lossy(&line), "the guest agent sent a line that is not JSON");
                    break;
                };
                if value["event"] == "exit" {
                    let int = |k: &str| value[k].as_i64().and_then(|v| i32::try_from(v).ok());
                    let exit = GuestExit {
                        code: int("code"),
                        signal: int("signal"),
                        oom: value["oom"].as_bool().unwrap_or(false),
                    };
                    state_tx.send_modify(|s| s.exit = Some(exit));
                } else if tx.send(value).await.is_err() {
                    // Nobody asks anymore; keep reading for the exit event.
                }
            }
            state_tx.send_modify(|s| s.closed = true);
        });
        (Agent { writer, lines }, state)
    }

    /// Waits for the guest's `ready` line: the kernel's release.
    pub(crate) async fn ready(&mut self) -> Result<String, String> {
        match self.lines.recv().await {
            Some(v) if v["event"] == "ready" => Ok(v["kernel"].as_str().unwrap_or("").to_owned()),
            Some(v) => Err(format!("the guest agent said {v} before it was ready")),
            None => Err("the guest ended before its agent was ready".to_owned()),
        }
    }

    /// Sends one request and waits for its answer; an agent's refusal is an error with
    /// its message.
    pub(crate) async fn request(&mut self, request: Value) -> Result<Value, String> {
        let op = request["op"].as_str().unwrap_or("?").to_owned();
        let mut line = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .await
            .map_err(|e| format!("the guest agent's channel broke: {e}"))?;
        match self.lines.recv().await {
            Some(v) if v["ok"] == true => Ok(v),
            Some(v) => Err(format!(
                "the guest agent refused {op}: {}",
                v["error"].as_str().unwrap_or("no reason given")
            )),
            None => Err(format!("the guest ended before answering {op}")),
        }
    }

    pub(crate) async fn ping(&mut self) -> Result<(), String> {
        self.request(json!({"op": "ping"})).await.map(drop)
    }
}

/// The request that gives a restored guest the host's clock and fresh entropy.
pub(crate) fn resume_request(now: std::time::SystemTime, entropy: &[u8]) -> Value {
    use base64::Engine as _;
    let ns = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    json!({
        "op": "resume",
        "time_ns": u64::try_from(ns).unwrap_or(u64::MAX),
        "entropy": base64::engine::general_purpose::STANDARD.encode(entropy),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_come_in_order_and_the_exit_event_is_kept_apart() {
        let (host, guest) = UnixStream::pair().expect("pair");
        let (mut agent, mut state) = Agent::new(host);
        let (guest_read, mut guest_write) = guest.into_split();
        guest_write
            .write_all(b"{\"event\":\"ready\",\"kernel\":\"6.1.0-ignis\"}\n")
            .await
            .expect("write");
        assert_eq!(agent.ready().await.expect("ready"), "6.1.0-ignis");
        let guest_task = tokio::spawn(async move {
            let mut lines = BufReader::new(guest_read).lines();
            let first = lines.next_line().await.expect("read").expect("a line");
            assert!(first.contains("\"ping\""), "{first}");
            guest_write.write_all(b"{\"ok\":true}\n").await.expect("write");
            let second = lines.next_line().await.expect("read").expect("a line");
            assert!(second.contains("\"exec\""), "{second}");
            guest_write
                .write_all(b"{\"ok\":false,\"error\":\"a program is already running\"}\n")
                .await
                .expect("write");
            guest_write
                .write_all(b"{\"event\":\"exit\",\"code\":null,\"signal\":9,\"oom\":true}\n")
                .await
                .expect("write");
        });
        agent.ping().await.expect("ping");
        let err = agent.request(json!({"op": "exec"})).await.expect_err("refused");
        assert_eq!(err, "the guest agent refused exec: a program is already running");
        guest_task.await.expect("guest");
        let state = state.wait_for(|s| s.closed).await.expect("state").to_owned();
        assert_eq!(
            state.exit,
            Some(GuestExit {
                code: None,
                signal: Some(9),
                oom: true
            })
        );
    }

    #[test]
    fn a_resume_carries_the_time_in_nanoseconds_and_the_entropy_in_base64() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(1_234_567_890_123);
        let r = resume_request(at, &[0xff; 3]);
        assert_eq!(r["time_ns"], 1_234_567_890_123_u64);
        assert_eq!(r["entropy"], "////");
        assert_eq!(r["op"], "resume");
    }
}
