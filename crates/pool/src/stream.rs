//! Streamed answers: a handler that streams (Bun's `awslambda.streamifyResponse`, a
//! `Response` with a streamed body, a Python generator) sends a `head` and `chunk` frames
//! before its final one. An invocation given a [`StreamSink`] forwards them as they come;
//! one without (a direct invoke) gathers them into one answer.

use base64::Engine;
use ignis_core::response::{stream_head, MappedResponse};
use ignis_core::{limits, FunctionError, Outcome};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

/// What a streamed answer's reader receives, in order: one `Head`, any `Chunk`s, then
/// `End` (the handler finished) or `Abort` (it failed after it started answering). A
/// channel that closes without either ended abnormally (a timeout, a crash).
#[derive(Debug)]
pub enum StreamEvent {
    /// The status and headers, and the id of the call (its request id).
    Head(MappedResponse, String),
    Chunk(Vec<u8>),
    End,
    Abort(String),
}

/// Where an invocation forwards its streamed answer.
pub type StreamSink = mpsc::UnboundedSender<StreamEvent>;

/// One invocation's streamed answer so far.
#[derive(Debug, Default)]
pub(crate) struct Streamed {
    /// The head, once the handler sent it (or a default one with its first chunk).
    head: Option<MappedResponse>,
    /// The body gathered for a caller without a sink.
    body: Vec<u8>,
    bytes: usize,
    /// Why the answer cannot be used (a bad head, too many bytes): the call's outcome.
    failed: Option<Outcome>,
}

impl Streamed {
    pub(crate) fn started(&self) -> bool {
        self.head.is_some() || self.failed.is_some()
    }

    pub(crate) fn head(
        &mut self,
        sink: Option<&StreamSink>,
        id: &str,
        status: i64,
        headers: &Map<String, Value>,
        cookies: &[Value],
    ) {
        if self.started() {
            return;
        }
        match stream_head(status, headers, cookies) {
            Ok(head) => {
                if let Some(sink) = sink {
                    let _ = sink.send(StreamEvent::Head(head.clone(), id.to_owned()));
                }
                self.head = Some(head);
            }
            Err(e) => {
                self.failed = Some(Outcome::InvalidResponse {
                    message: e.to_string(),
                })
            }
        }
    }

    /// A chunk (base64); `false` when it is not base64 (the instance broke the protocol).
    pub(crate) fn chunk(&mut self, sink: Option<&StreamSink>, id: &str, data: &str) -> bool {
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data) else {
            return false;
        };
        if !self.started() {
            self.head(sink, id, 200, &Map::new(), &[]);
        }
        if self.failed.is_some() || bytes.is_empty() {
            return true;
        }
        self.bytes += bytes.len();
        if self.bytes > limits::MAX_STREAMED_BYTES {
            self.failed = Some(Outcome::ResponseTooLarge {
                size: self.bytes as u64,
            });
            if let Some(sink) = sink {
                let _ = sink.send(StreamEvent::Abort(format!(
                    "the streamed answer passed {} bytes",
                    limits::MAX_STREAMED_BYTES
                )));
            }
            return true;
        }
        match sink {
            Some(sink) => {
                let _ = sink.send(StreamEvent::Chunk(bytes));
            }
            None => self.body.extend_from_slice(&bytes),
        }
        true
    }

    /// The call's outcome once its final frame came: a streamed call that ended well is
    /// the answer it streamed (its body, when gathered), in the shape a handler returns.
    pub(crate) fn finish(self, sink: Option<&StreamSink>, outcome: Outcome) -> Outcome {
        if let Some(failed) = self.failed {
            return failed;
        }
        let Some(head) = self.head else {
            return outcome;
        };
        match outcome {
            Outcome::Ok(_) => {
                if let Some(sink) = sink {
                    let _ = sink.send(StreamEvent::End);
                }
                let headers: Map<String, Value> = head
                    .headers
                    .iter()
                    .filter(|(n, _)| n != "set-cookie")
                    .map(|(n, v)| (n.clone(), json!(v)))
                    .collect();
                let cookies: Vec<&String> = head
                    .headers
                    .iter()
                    .filter(|(n, _)| n == "set-cookie")
                    .map(|(_, v)| v)
                    .collect();
                Outcome::Ok(json!({
                    "statusCode": head.status,
                    "headers": headers,
                    "cookies": cookies,
                    "body": base64::engine::general_purpose::STANDARD.encode(&self.body),
                    "isBase64Encoded": true,
                }))
            }
            failed @ (Outcome::FunctionError(FunctionError { .. })
            | Outcome::Timeout
            | Outcome::Crashed { .. }
            | Outcome::OutOfMemory
            | Outcome::ResponseTooLarge { .. }
            | Outcome::InvalidResponse { .. }) => {
                if let Some(sink) = sink {
                    let _ = sink.send(StreamEvent::Abort(
                        "the function failed after it started answering".to_owned(),
                    ));
                }
                failed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn a_streamed_answer_is_forwarded_in_order_or_gathered() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut s = Streamed::default();
        let headers: Map<String, Value> = [
            ("Content-Type".to_owned(), json!("text/plain")),
            ("x-ignis-x".to_owned(), json!("no")),
        ]
        .into_iter()
        .collect();
        s.head(Some(&tx), "r1", 201, &headers, &[json!("a=1")]);
        assert!(s.chunk(Some(&tx), "r1", &b64(b"hello")));
        assert!(
            !s.chunk(Some(&tx), "r1", "not base64!"),
            "a broken chunk breaks the instance"
        );
        let out = s.finish(Some(&tx), Outcome::Ok(Value::Null));
        let Some(StreamEvent::Head(head, id)) = rx.try_recv().ok() else {
            panic!("a head first")
        };
        assert_eq!(id, "r1");
        assert_eq!(head.status, 201);
        assert!(
            head.headers.iter().all(|(n, _)| n != "x-ignis-x"),
            "reserved headers dropped"
        );
        assert!(matches!(rx.try_recv(), Ok(StreamEvent::Chunk(b)) if b == b"hello"));
        assert!(matches!(rx.try_recv(), Ok(StreamEvent::End)));
        let Outcome::Ok(v) = out else { panic!("ok") };
        assert_eq!(
            (v["statusCode"].clone(), v["body"].clone()),
            (json!(201), json!("")),
            "forwarded, not kept"
        );

        // Without a sink: a default head and the whole body in the outcome.
        let mut s = Streamed::default();
        assert!(s.chunk(None, "r", &b64(b"ab")));
        assert!(s.chunk(None, "r", &b64(b"cd")));
        let Outcome::Ok(v) = s.finish(None, Outcome::Ok(Value::Null)) else {
            panic!("ok")
        };
        assert_eq!(v["statusCode"], 200);
        assert_eq!(v["headers"]["content-type"], "application/octet-stream");
        assert_eq!(v["body"], b64(b"abcd"));
        // A call that never streamed keeps its own outcome.
        assert_eq!(
            Streamed::default().finish(None, Outcome::Ok(json!(1))),
            Outcome::Ok(json!(1))
        );
    }

    #[test]
    fn failures_after_the_head_abort_and_bad_heads_fail_the_call() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut s = Streamed::default();
        assert!(s.chunk(Some(&tx), "r", &b64(b"x")));
        let out = s.finish(Some(&tx), Outcome::Timeout);
        assert_eq!(out, Outcome::Timeout);
        let events: Vec<StreamEvent> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert!(matches!(events.last(), Some(StreamEvent::Abort(_))), "{events:?}");
        let mut s = Streamed::default();
        s.head(None, "r", 99, &Map::new(), &[]);
        assert!(matches!(
            s.finish(None, Outcome::Ok(Value::Null)),
            Outcome::InvalidResponse { .. }
        ));
    }
}
