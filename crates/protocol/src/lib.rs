//! The host ⇄ instance wire protocol (see docs/protocol.md): framing and message types.

use std::collections::BTreeMap;

use ignis_core::FunctionError;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol version this host speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Frames from an instance longer than this are refused: the instance is killed.
pub const MAX_INSTANCE_FRAME: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("the instance closed its channel")]
    Closed,
    #[error("io error on the instance channel: {0}")]
    Io(#[from] std::io::Error),
    #[error("the instance sent a frame of {0} bytes, over the limit")]
    FrameTooLarge(usize),
    #[error("the instance sent a message that is not valid: {0}")]
    BadMessage(#[from] serde_json::Error),
}

/// Facts about the function an instance serves, for its context object.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionInfo<'a> {
    pub name: &'a str,
    pub version: u32,
    pub memory_mb: u32,
    pub timeout_ms: u64,
}

/// Messages the host sends.
#[derive(Debug, Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum HostMessage<'a> {
    Load {
        dir: &'a str,
        file: &'a str,
        /// The source itself: the bootstrap runs it from memory as if it were `dir/file`
        /// (nothing is written to disk).
        code: &'a str,
        /// How many invocations the host may have in flight on this instance at once.
        concurrency: u32,
        handler: &'a str,
        env: &'a BTreeMap<String, String>,
        function: FunctionInfo<'a>,
        log_limit_bytes: usize,
        max_response_bytes: usize,
    },
    Invoke {
        id: &'a str,
        event: &'a RawValue,
        deadline_ms: u64,
    },
}

/// One captured log line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WireLog {
    /// Unix time in milliseconds.
    pub ts: i64,
    pub stream: String,
    pub line: String,
}

/// Why a module failed to load.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LoadError {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub stack: String,
    #[serde(default)]
    pub line: Option<u32>,
}

/// Messages an instance sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum InstanceMessage {
    Hello {
        protocol: u32,
        runtime: String,
        version: String,
    },
    Loaded,
    LoadError {
        error: LoadError,
    },
    Result {
        id: String,
        value: serde_json::Value,
        #[serde(default)]
        logs: Vec<WireLog>,
    },
    Error {
        id: String,
        error: FunctionError,
        #[serde(default)]
        logs: Vec<WireLog>,
    },
    TooLarge {
        id: String,
        size: u64,
        #[serde(default)]
        logs: Vec<WireLog>,
    },
}

/// Writes one frame holding `msg`.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &HostMessage<'_>,
) -> Result<(), ProtocolError> {
    let body = serde_json::to_vec(msg)?;
    let len = u32::try_from(body.len()).map_err(|_| ProtocolError::FrameTooLarge(body.len()))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame from an instance and decodes it.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<InstanceMessage, ProtocolError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ProtocolError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_INSTANCE_FRAME {
        return Err(ProtocolError::FrameTooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ProtocolError::Closed,
        _ => ProtocolError::Io(e),
    })?;
    Ok(serde_json::from_slice(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn invoke_frame_embeds_the_raw_event() {
        let event = RawValue::from_string(r#"{"a": 1}"#.to_owned()).expect("valid json");
        let mut buf = Vec::new();
        write_message(
            &mut buf,
            &HostMessage::Invoke {
                id: "x",
                event: &event,
                deadline_ms: 5,
            },
        )
        .await
        .expect("writes");
        let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
        assert_eq!(len, buf.len() - 4);
        let v: serde_json::Value = serde_json::from_slice(&buf[4..]).expect("json");
        assert_eq!(v["t"], "invoke");
        assert_eq!(v["event"]["a"], 1);
        assert_eq!(v["deadline_ms"], 5);
    }

    fn frame(body: &str) -> Vec<u8> {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body.as_bytes());
        f
    }

    #[tokio::test]
    async fn reads_results_and_errors() {
        let mut bytes = frame(
            r#"{"t":"result","id":"1","value":{"ok":true},"logs":[{"ts":1,"stream":"stdout","line":"hi"}]}"#,
        );
        bytes.extend(frame(
            r#"{"t":"error","id":"2","error":{"type":"ValueError","message":"m","stack":"s"}}"#,
        ));
        let mut r = bytes.as_slice();
        match read_message(&mut r).await.expect("result") {
            InstanceMessage::Result { id, value, logs } => {
                assert_eq!(
                    (id.as_str(), value["ok"].as_bool(), logs.len()),
                    ("1", Some(true), 1)
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        match read_message(&mut r).await.expect("error") {
            InstanceMessage::Error { error, logs, .. } => {
                assert_eq!(error.kind, "ValueError");
                assert!(logs.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(read_message(&mut r).await, Err(ProtocolError::Closed)));
    }

    #[tokio::test]
    async fn oversized_frames_are_refused() {
        let bytes = ((MAX_INSTANCE_FRAME + 1) as u32).to_be_bytes();
        let mut r = bytes.as_slice();
        assert!(matches!(
            read_message(&mut r).await,
            Err(ProtocolError::FrameTooLarge(_))
        ));
    }
}
