//! A small client of QEMU's machine protocol (QMP): JSON lines on a socket, commands
//! answered with `return` or `error`, events in between. Only what snapshots need: with
//! `qemu.rs` (the command line) this is all of the tier that is QEMU's; another VMM
//! (docs/microvm.md) replaces these two files' `args`, `save` and `restore`.

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

pub(crate) struct Qmp {
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
    /// Events read while waiting for a command's answer.
    events: Vec<Value>,
}

impl Qmp {
    /// Reads QEMU's greeting and leaves capability negotiation.
    pub(crate) async fn connect(stream: UnixStream) -> Result<Qmp, String> {
        let (read, writer) = stream.into_split();
        let mut qmp = Qmp {
            lines: BufReader::new(read).lines(),
            writer,
            events: Vec::new(),
        };
        let greeting = qmp.next().await?;
        if greeting.get("QMP").is_none() {
            return Err(format!("QEMU's monitor greeted with {greeting}"));
        }
        qmp.execute("qmp_capabilities", json!({})).await?;
        Ok(qmp)
    }

    async fn next(&mut self) -> Result<Value, String> {
        let line = self
            .lines
            .next_line()
            .await
            .map_err(|e| format!("QEMU's monitor: {e}"))?
            .ok_or_else(|| "QEMU's monitor closed (QEMU ended)".to_owned())?;
        serde_json::from_str(&line).map_err(|e| format!("QEMU's monitor sent {line:?}: {e}"))
    }

    /// Runs one command; QEMU's error is returned with its description.
    pub(crate) async fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, String> {
        let mut line = serde_json::to_vec(&json!({"execute": command, "arguments": arguments}))
            .map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .await
            .map_err(|e| format!("QEMU's monitor: {e}"))?;
        loop {
            let v = self.next().await?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(format!(
                    "QEMU refused {command}: {}",
                    e["desc"].as_str().unwrap_or("no description")
                ));
            }
            if v.get("event").is_some() {
                self.events.push(v);
            }
        }
    }

    /// Waits for the first event named `name` for which `done` holds; an event for which
    /// `failed` holds is an error.
    pub(crate) async fn wait_event(
        &mut self,
        name: &str,
        done: impl Fn(&Value) -> bool,
        failed: impl Fn(&Value) -> bool,
    ) -> Result<(), String> {
        let mut seen = std::mem::take(&mut self.events).into_iter();
        loop {
            let v = match seen.next() {
                Some(v) => v,
                None => self.next().await?,
            };
            if v["event"] != name {
                continue;
            }
            if done(&v["data"]) {
                return Ok(());
            }
            if failed(&v["data"]) {
                return Err(format!("QEMU reported {name} {}", v["data"]));
            }
        }
    }

    /// Turns on migration capabilities by name.
    pub(crate) async fn capabilities(&mut self, names: &[&str]) -> Result<(), String> {
        let caps: Vec<Value> = names
            .iter()
            .map(|n| json!({"capability": n, "state": true}))
            .collect();
        self.execute("migrate-set-capabilities", json!({"capabilities": caps}))
            .await
            .map(drop)
    }
}

/// Saves a running guest through its monitor: device state into `state` (a path as QEMU
/// sees it), RAM left in its shared memory file (`x-ignore-shared`); the guest is paused
/// when it returns.
pub(crate) async fn save(monitor: UnixStream, state: &str) -> Result<(), String> {
    let mut qmp = Qmp::connect(monitor).await?;
    qmp.capabilities(&["x-ignore-shared", "events"]).await?;
    qmp.execute("migrate", json!({"uri": format!("file:{state}")}))
        .await?;
    qmp.wait_event("MIGRATION", migration_completed, migration_failed)
        .await
}

/// Restores a guest QEMU started with `-incoming defer` from `state` (RAM from the
/// memory file on its command line); returns once the guest runs again.
pub(crate) async fn restore(monitor: UnixStream, state: &str) -> Result<(), String> {
    let mut qmp = Qmp::connect(monitor).await?;
    qmp.capabilities(&["x-ignore-shared", "events"]).await?;
    qmp.execute("migrate-incoming", json!({"uri": format!("file:{state}")}))
        .await?;
    qmp.wait_event("RESUME", |_| true, |_| false).await
}

/// A migration event's status is final and good.
pub(crate) fn migration_completed(data: &Value) -> bool {
    data["status"] == "completed"
}

/// A migration event's status is final and bad.
pub(crate) fn migration_failed(data: &Value) -> bool {
    matches!(data["status"].as_str(), Some("failed" | "cancelled"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_read_while_a_command_runs_are_kept_for_later() {
        let (host, qemu) = UnixStream::pair().expect("pair");
        let fake = tokio::spawn(async move {
            let (read, mut write) = qemu.into_split();
            let mut lines = BufReader::new(read).lines();
            write
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .await
                .expect("w");
            assert!(lines
                .next_line()
                .await
                .expect("r")
                .expect("l")
                .contains("qmp_capabilities"));
            write.write_all(b"{\"return\": {}}\n").await.expect("w");
            assert!(lines
                .next_line()
                .await
                .expect("r")
                .expect("l")
                .contains("\"migrate\""));
            write
                .write_all(
                    b"{\"event\": \"MIGRATION\", \"data\": {\"status\": \"completed\"}}\n{\"return\": {}}\n",
                )
                .await
                .expect("w");
            assert!(lines.next_line().await.expect("r").expect("l").contains("bogus"));
            write
                .write_all(b"{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command bogus has not been found\"}}\n")
                .await
                .expect("w");
        });
        let mut qmp = Qmp::connect(host).await.expect("connect");
        qmp.execute("migrate", json!({"uri": "file:/x"}))
            .await
            .expect("migrate");
        qmp.wait_event("MIGRATION", migration_completed, migration_failed)
            .await
            .expect("completed event, read earlier");
        let err = qmp.execute("bogus", json!({})).await.expect_err("refused");
        assert_eq!(err, "QEMU refused bogus: The command bogus has not been found");
        fake.await.expect("fake");
    }
}
