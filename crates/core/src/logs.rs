//! Log lines of an invocation and the per-invocation cap on them.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }

    pub fn parse(s: &str) -> LogStream {
        if s == "stdout" {
            LogStream::Stdout
        } else {
            LogStream::Stderr
        }
    }
}

/// One line of output of an invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Unix time in milliseconds.
    pub ts_ms: i64,
    pub stream: LogStream,
    pub line: String,
}

/// The text of the line that replaces everything past the cap.
pub fn truncation_marker(limit: usize) -> String {
    format!("[ignis] log output truncated at {limit} bytes")
}

/// Keeps at most `limit` bytes of line text, in order; past it, one marker line on stderr.
/// A marker the runtime already added counts as the cut, so there is never a second one.
pub fn cap_logs(lines: &mut Vec<LogLine>, limit: usize) {
    let marker = truncation_marker(limit);
    let mut used = 0usize;
    for i in 0..lines.len() {
        if lines[i].line == marker {
            lines.truncate(i + 1);
            return;
        }
        used += lines[i].line.len();
        if used > limit {
            let ts_ms = lines[i].ts_ms;
            lines.truncate(i);
            lines.push(LogLine {
                ts_ms,
                stream: LogStream::Stderr,
                line: marker,
            });
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> LogLine {
        LogLine {
            ts_ms: 1,
            stream: LogStream::Stdout,
            line: s.to_owned(),
        }
    }

    #[test]
    fn under_the_cap_nothing_changes() {
        let mut l = vec![line("ab"), line("cd")];
        cap_logs(&mut l, 4);
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn over_the_cap_ends_with_one_marker() {
        let mut l = vec![line("ab"), line("cd"), line("e"), line("f")];
        cap_logs(&mut l, 4);
        assert_eq!(l.len(), 3);
        assert_eq!(l[2].line, truncation_marker(4));
        assert_eq!(l[2].stream, LogStream::Stderr);
    }

    #[test]
    fn runtime_marker_is_kept_once() {
        let mut l = vec![line("a"), line(&truncation_marker(4)), line("late raw line")];
        cap_logs(&mut l, 4);
        assert_eq!(l.len(), 2);
    }
}
