//! The host ⇄ instance wire protocol (see docs/protocol.md): framing and message types.

use std::collections::BTreeMap;

use ignis_core::limits::MAX_RESPONSE_DEPTH;
use ignis_core::nesting::json_depth;
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
        /// The source of a one-file function: the bootstrap runs it from memory as if it
        /// were `dir/file` (nothing is written to disk). `None` for a package: its files are
        /// in `dir` (read-only), `file` is the handler's file relative to it, imported from
        /// there with `dir` on the module path.
        code: Option<&'a str>,
        /// Where the function's layers are merged (`/opt`), when it lists any: Python puts
        /// `<opt>/python` and its `lib/pythonX.Y/site-packages` on the module path after the
        /// code, as Lambda does (Bun finds `/opt/nodejs/node_modules` through `NODE_PATH`).
        #[serde(skip_serializing_if = "Option::is_none")]
        opt: Option<&'a str>,
        /// The handler's calling convention when it is not Lambda's: `openfaas` (OpenFaaS's
        /// python3-http template).
        #[serde(skip_serializing_if = "Option::is_none")]
        style: Option<&'a str>,
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
    /// Before `load` only: run the load and call paths once on a throwaway module, then
    /// answer `warmed` and wait for the load. A guest restored from a snapshot is sent it
    /// ahead of time, so that its emulator has translated those paths before a real load.
    Warm,
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
    /// The answer to `warm`.
    Warmed,
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
    /// A streamed answer's status and headers, before its first chunk (at most once).
    Head {
        id: String,
        #[serde(default = "ok_status")]
        status: i64,
        #[serde(default)]
        headers: serde_json::Map<String, serde_json::Value>,
        #[serde(default)]
        cookies: Vec<serde_json::Value>,
    },
    /// Bytes of a streamed answer, in base64, sent as the handler writes them.
    Chunk {
        id: String,
        data: String,
    },
    /// A result whose value the host does not read (nested deeper than
    /// [`MAX_RESPONSE_DEPTH`], a number out of range): made by the host when it decodes a
    /// `result` frame, never sent by an instance.
    #[serde(skip)]
    Unreadable {
        id: String,
        /// Why, for the caller.
        reason: String,
        logs: Vec<WireLog>,
    },
}

fn ok_status() -> i64 {
    200
}

/// The outside of a frame, read without reading a result's value (which is skipped
/// without recursion): the value is the handler's, the rest is the bootstrap's.
#[derive(Deserialize)]
struct Envelope<'a> {
    t: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default, borrow)]
    value: Option<&'a RawValue>,
    #[serde(default)]
    logs: Vec<WireLog>,
}

/// Decodes one frame's body. A result's value that cannot be read fails that result only
/// ([`InstanceMessage::Unreadable`]); any other fault is a broken instance.
pub fn decode(body: &[u8]) -> Result<InstanceMessage, ProtocolError> {
    let envelope: Envelope<'_> = serde_json::from_slice(body)?;
    let (true, Some(id), Some(value)) = (envelope.t == "result", envelope.id, envelope.value) else {
        return Ok(serde_json::from_slice(body)?);
    };
    let logs = envelope.logs;
    let depth = json_depth(value.get().as_bytes());
    if depth > MAX_RESPONSE_DEPTH {
        return Ok(InstanceMessage::Unreadable {
            id,
            reason: format!(
                "the function returned a value nested {depth} levels deep; the most the server reads is \
                 {MAX_RESPONSE_DEPTH} levels of arrays and objects"
            ),
            logs,
        });
    }
    match serde_json::from_str(value.get()) {
        Ok(value) => Ok(InstanceMessage::Result { id, value, logs }),
        Err(e) => Ok(InstanceMessage::Unreadable {
            id,
            reason: format!("the server could not read the function's return value: {e}"),
            logs,
        }),
    }
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
    decode(&body)
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

    #[tokio::test]
    async fn an_invoke_frame_starts_with_its_id() {
        // The Python bootstrap answers an invoke frame it cannot decode by the id it finds
        // at this exact head: the order is part of the protocol.
        let event = RawValue::from_string("[[1]]".to_owned()).expect("valid json");
        let mut buf = Vec::new();
        let invoke = HostMessage::Invoke {
            id: "0193-ab",
            event: &event,
            deadline_ms: 5,
        };
        write_message(&mut buf, &invoke).await.expect("writes");
        assert!(
            buf[4..].starts_with(br#"{"t":"invoke","id":"0193-ab","#),
            "{}",
            String::from_utf8_lossy(&buf[4..])
        );
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

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn a_value_nested_to_the_limit_is_read() {
        let body = format!(
            r#"{{"t":"result","id":"1","value":{},"logs":[]}}"#,
            nested(MAX_RESPONSE_DEPTH)
        );
        match decode(body.as_bytes()).expect("decodes") {
            InstanceMessage::Result { id, value, .. } => {
                assert_eq!(id, "1");
                assert!(value.is_array());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_value_too_deep_fails_only_its_result() {
        for depth in [MAX_RESPONSE_DEPTH + 1, 200_000] {
            let body = format!(
                r#"{{"t":"result","id":"7","value":{},"logs":[{{"ts":1,"stream":"stdout","line":"hi"}}]}}"#,
                nested(depth)
            );
            match decode(body.as_bytes()).expect("decodes") {
                InstanceMessage::Unreadable { id, reason, logs } => {
                    assert_eq!(id, "7");
                    assert!(reason.contains(&format!("{depth} levels deep")), "{reason}");
                    assert_eq!(logs.len(), 1);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn a_number_out_of_range_fails_only_its_result() {
        let body = format!(r#"{{"t":"result","id":"2","value":[1{}]}}"#, "0".repeat(400));
        match decode(body.as_bytes()).expect("decodes") {
            InstanceMessage::Unreadable { id, reason, .. } => {
                assert_eq!(id, "2");
                assert!(reason.contains("could not read"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn frames_that_are_not_messages_are_errors() {
        for body in [
            "[1]",
            r#"{"t":"nonsense"}"#,
            r#"{"t":"result","value":1}"#,
            r#"{"t":"result","id":"1"}"#,
            r#"{"t":"error","id":"1","error":[[[[]]]]}"#,
        ] {
            assert!(
                matches!(decode(body.as_bytes()), Err(ProtocolError::BadMessage(_))),
                "{body}"
            );
        }
        let deep_error = format!(r#"{{"t":"error","id":"1","error":{}}}"#, nested(10_000));
        assert!(decode(deep_error.as_bytes()).is_err());
    }
}
