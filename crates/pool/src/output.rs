//! Reads an instance's stdout or stderr pipe into log lines and end-of-invocation markers.

use ignis_core::{LogLine, LogStream};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// Longest line kept whole; longer output is split so one line cannot exhaust memory.
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OutputEvent {
    Line(LogLine),
    /// The bootstrap finished writing the output of invocation `id` on `stream`.
    Marker {
        stream: LogStream,
        id: String,
    },
    Eof(LogStream),
}

/// Splits a byte stream into lines and markers. Pure, so it is tested without processes.
pub(crate) struct LineSplitter {
    stream: LogStream,
    marker: Vec<u8>,
    buf: Vec<u8>,
}

impl LineSplitter {
    pub(crate) fn new(stream: LogStream, nonce: &str) -> LineSplitter {
        LineSplitter {
            stream,
            marker: format!("\0ignis-end:{nonce}:").into_bytes(),
            buf: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, data: &[u8], now_ms: i64, out: &mut Vec<OutputEvent>) {
        self.buf.extend_from_slice(data);
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            self.emit_line(&line[..line.len() - 1], now_ms, out);
        }
        // A long unterminated line is passed on in chunks, but never into its last
        // marker-length bytes: they may be the start of a marker still arriving.
        while self.buf.len() > MAX_LINE + self.marker.len() {
            let chunk: Vec<u8> = self.buf.drain(..MAX_LINE).collect();
            self.emit_text(&chunk, now_ms, out);
        }
    }

    /// Flushes a trailing partial line at end of stream.
    pub(crate) fn finish(&mut self, now_ms: i64, out: &mut Vec<OutputEvent>) {
        let rest = std::mem::take(&mut self.buf);
        if !rest.is_empty() {
            self.emit_line(&rest, now_ms, out);
        }
    }

    fn emit_line(&self, line: &[u8], now_ms: i64, out: &mut Vec<OutputEvent>) {
        match find(line, &self.marker) {
            Some(at) => {
                if at > 0 {
                    self.emit_text(&line[..at], now_ms, out);
                }
                let id = String::from_utf8_lossy(&line[at + self.marker.len()..]).into_owned();
                out.push(OutputEvent::Marker {
                    stream: self.stream,
                    id,
                });
            }
            None => self.emit_text(line, now_ms, out),
        }
    }

    fn emit_text(&self, text: &[u8], now_ms: i64, out: &mut Vec<OutputEvent>) {
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        out.push(OutputEvent::Line(LogLine {
            ts_ms: now_ms,
            stream: self.stream,
            line: String::from_utf8_lossy(text).into_owned(),
        }));
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub(crate) fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// Reads `pipe` until EOF, sending events to `tx`. Backpressure from `tx` blocks the pipe,
/// which blocks the writer: output is slowed, never dropped here.
pub(crate) async fn pump<R: AsyncRead + Unpin>(
    mut pipe: R,
    stream: LogStream,
    nonce: String,
    tx: mpsc::Sender<OutputEvent>,
) {
    let mut splitter = LineSplitter::new(stream, &nonce);
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = Vec::new();
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        splitter.push(&buf[..n], now_ms(), &mut events);
        for ev in events.drain(..) {
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    }
    splitter.finish(now_ms(), &mut events);
    events.push(OutputEvent::Eof(stream));
    for ev in events {
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(events: &[OutputEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                OutputEvent::Line(l) => l.line.clone(),
                OutputEvent::Marker { id, .. } => format!("<end {id}>"),
                OutputEvent::Eof(_) => "<eof>".to_owned(),
            })
            .collect()
    }

    #[test]
    fn splits_lines_across_chunks() {
        let mut s = LineSplitter::new(LogStream::Stdout, "n");
        let mut out = Vec::new();
        s.push(b"he", 1, &mut out);
        s.push(b"llo\nwor", 1, &mut out);
        s.push(b"ld\r\n", 1, &mut out);
        assert_eq!(lines(&out), ["hello", "world"]);
    }

    #[test]
    fn marker_after_partial_line() {
        let mut s = LineSplitter::new(LogStream::Stderr, "abc");
        let mut out = Vec::new();
        s.push(
            b"partial\0ignis-end:abc:id-1\n\0ignis-end:abc:id-2\n",
            1,
            &mut out,
        );
        assert_eq!(lines(&out), ["partial", "<end id-1>", "<end id-2>"]);
    }

    #[test]
    fn foreign_nonce_is_just_text() {
        let mut s = LineSplitter::new(LogStream::Stdout, "abc");
        let mut out = Vec::new();
        s.push(b"\0ignis-end:zzz:x\n", 1, &mut out);
        assert!(matches!(&out[0], OutputEvent::Line(_)));
    }

    /// Regression: a marker arriving in two reads after a long unterminated line was cut
    /// in half by the chunking of the line, and the invocation waited for it until its
    /// timeout.
    #[test]
    fn marker_split_across_reads_after_a_long_line() {
        let mut s = LineSplitter::new(LogStream::Stdout, "nonce");
        let mut out = Vec::new();
        let mut first = vec![b'z'; MAX_LINE + 3];
        first.extend_from_slice(b"\0ignis-en");
        s.push(&first, 1, &mut out);
        s.push(b"d:nonce:id-9\n", 1, &mut out);
        let got = lines(&out);
        assert_eq!(
            got.last().map(String::as_str),
            Some("<end id-9>"),
            "{:?}",
            got.len()
        );
        let text: usize = out
            .iter()
            .filter_map(|e| {
                if let OutputEvent::Line(l) = e {
                    Some(l.line.len())
                } else {
                    None
                }
            })
            .sum();
        assert_eq!(
            text,
            MAX_LINE + 3,
            "every byte of the line is kept, none of the marker"
        );
    }

    #[test]
    fn long_lines_are_split_and_tail_flushed() {
        let mut s = LineSplitter::new(LogStream::Stdout, "n");
        let mut out = Vec::new();
        s.push(&vec![b'x'; MAX_LINE * 3 + 5], 1, &mut out);
        // Two full chunks go at once; the rest waits, since its end could start a marker.
        assert_eq!(out.len(), 2);
        assert!(lines(&out).iter().all(|l| l.len() == MAX_LINE));
        s.finish(1, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(lines(&out)[2].len(), MAX_LINE + 5);
    }
}
