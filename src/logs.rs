//! The gateway's recent log lines, kept in memory for `logs.tail`: one
//! JSON object per line, at most [`KEPT_BYTES`] of them. A cursor is a
//! byte offset into everything logged since start, so a client that polls
//! with the cursor it was given gets each line once, and learns how much
//! it missed when it polls too slowly.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// How much log is kept.
pub const KEPT_BYTES: usize = 1024 * 1024;
/// Longest line kept; a longer one has its long values shortened.
const LINE_BYTES: usize = 16 * 1024;
/// What a shortened value keeps.
const VALUE_BYTES: usize = 1024;

/// Log targets the tail leaves out: what needs more than operator.read
/// elsewhere (the exec commands agents asked for, which approvals.* show
/// only to operator.approvals) or is not the gateway's own words (plugin
/// output, copied from their stderr).
const WITHHELD_TARGETS: [&str; 2] = ["clawgate::exec", "clawgate::plugins::link"];

/// Whether events of this target go into the tail.
pub fn kept_target(target: &str) -> bool {
    !WITHHELD_TARGETS.iter().any(|t| {
        target
            .strip_prefix(t)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

#[derive(Default)]
pub struct LogTail {
    ring: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    /// (offset of the line's first byte, the line without its newline)
    lines: VecDeque<(u64, String)>,
    kept: usize,
    /// Bytes logged since start: the offset the next line starts at.
    end: u64,
}

/// One read of the tail.
#[derive(Debug, PartialEq)]
pub struct Tail {
    /// Where the next read starts.
    pub cursor: u64,
    /// Bytes logged since start.
    pub size: u64,
    pub lines: Vec<String>,
    /// More lines follow `cursor` than were returned.
    pub truncated: bool,
    /// The cursor given was beyond the log (another process's): read from
    /// the latest lines instead.
    pub reset: bool,
    /// Bytes between the cursor given and the oldest line still kept.
    pub skipped_bytes: u64,
}

impl LogTail {
    pub fn new() -> Arc<LogTail> {
        Arc::new(LogTail::default())
    }

    /// Keeps one formatted line (its trailing newline is dropped).
    pub fn push(&self, line: &str) {
        let line = line.trim_end_matches('\n');
        if line.is_empty() {
            return;
        }
        let shortened;
        let line = if line.len() > LINE_BYTES {
            shortened = shorten(line);
            shortened.as_str()
        } else {
            line
        };
        let mut ring = self.ring.lock().expect("log ring");
        let start = ring.end;
        ring.end += line.len() as u64 + 1;
        ring.kept += line.len() + 1;
        ring.lines.push_back((start, line.to_string()));
        while ring.kept > KEPT_BYTES {
            match ring.lines.pop_front() {
                Some((_, old)) => ring.kept -= old.len() + 1,
                None => break,
            }
        }
    }

    /// Lines after `cursor` (or the latest ones without), at most `limit`
    /// lines and `max_bytes` bytes.
    pub fn tail(&self, cursor: Option<u64>, limit: usize, max_bytes: usize) -> Tail {
        let ring = self.ring.lock().expect("log ring");
        let oldest = ring.lines.front().map_or(ring.end, |(at, _)| *at);
        let reset = cursor.is_some_and(|c| c > ring.end);
        let (from, skipped_bytes) = match cursor.filter(|_| !reset) {
            Some(c) => {
                let first = ring.lines.partition_point(|(at, _)| *at < c);
                (first, oldest.saturating_sub(c))
            }
            None => {
                // The latest lines that fit.
                let mut first = ring.lines.len();
                let mut bytes = 0;
                while first > 0 && ring.lines.len() - first < limit {
                    let len = ring.lines[first - 1].1.len() + 1;
                    if bytes + len > max_bytes && first < ring.lines.len() {
                        break;
                    }
                    bytes += len;
                    first -= 1;
                }
                (first, 0)
            }
        };
        let mut lines = Vec::new();
        let mut bytes = 0;
        let mut next = ring.end;
        for (at, line) in ring.lines.iter().skip(from) {
            let len = line.len() + 1;
            if lines.len() == limit || (bytes + len > max_bytes && !lines.is_empty()) {
                next = *at;
                break;
            }
            bytes += len;
            lines.push(line.clone());
        }
        Tail {
            cursor: next,
            size: ring.end,
            truncated: next < ring.end,
            lines,
            reset,
            skipped_bytes,
        }
    }
}

/// A line too long to keep, still one JSON object: its long string values
/// cut to [`VALUE_BYTES`], or, if that is not enough, a note of its size.
fn shorten(line: &str) -> String {
    fn cut(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) if s.len() > VALUE_BYTES => {
                let mut end = VALUE_BYTES;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
                s.push_str("…(cut)");
            }
            serde_json::Value::Object(map) => map.values_mut().for_each(cut),
            serde_json::Value::Array(items) => items.iter_mut().for_each(cut),
            _ => {}
        }
    }
    let mut parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    cut(&mut parsed);
    let shortened = parsed.to_string();
    if parsed.is_object() && shortened.len() <= LINE_BYTES {
        return shortened;
    }
    serde_json::json!({
        "level": parsed.get("level").cloned().unwrap_or("INFO".into()),
        "fields": {"message": format!("a log line of {} bytes was left out", line.len())},
    })
    .to_string()
}

/// The writer a log layer formats each event into; the line is kept when
/// the layer is done with it.
pub struct LineWriter {
    tail: Arc<LogTail>,
    buffer: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        for line in String::from_utf8_lossy(&self.buffer).lines() {
            self.tail.push(line);
        }
    }
}

/// What a log layer writes into: each event becomes a line of the tail.
pub struct Lines(pub Arc<LogTail>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            tail: self.0.clone(),
            buffer: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(lines: usize) -> Arc<LogTail> {
        let tail = LogTail::new();
        for i in 0..lines {
            tail.push(&format!("{{\"n\":{i:06}}}\n"));
        }
        tail
    }

    #[test]
    fn a_client_polling_with_its_cursor_gets_each_line_once() {
        let tail = filled(5);
        let first = tail.tail(None, 3, 1_000_000);
        assert_eq!(
            first.lines,
            ["{\"n\":000002}", "{\"n\":000003}", "{\"n\":000004}"]
        );
        assert_eq!(first.cursor, first.size);
        assert!(!first.truncated);
        tail.push("{\"n\":000005}");
        let next = tail.tail(Some(first.cursor), 10, 1_000_000);
        assert_eq!(next.lines, ["{\"n\":000005}"]);
        let none = tail.tail(Some(next.cursor), 10, 1_000_000);
        assert!(none.lines.is_empty() && none.cursor == next.cursor);
        // A page at a time.
        let page = tail.tail(Some(0), 2, 1_000_000);
        assert_eq!(page.lines.len(), 2);
        assert!(page.truncated);
        let rest = tail.tail(Some(page.cursor), 10, 1_000_000);
        assert_eq!(rest.lines.len(), 4);
        assert_eq!(rest.lines[0], "{\"n\":000002}");
    }

    #[test]
    fn a_long_line_is_kept_shortened_and_still_json() {
        let tail = LogTail::new();
        let long = "é".repeat(40_000);
        tail.push(&serde_json::json!({"level": "WARN", "fields": {"message": long}}).to_string());
        let read = tail.tail(None, 1, 1_000_000);
        let line: serde_json::Value = serde_json::from_str(&read.lines[0]).unwrap();
        assert_eq!(line["level"], "WARN");
        let message = line["fields"]["message"].as_str().unwrap();
        assert!(message.ends_with("…(cut)") && message.len() < 2 * VALUE_BYTES);
        assert!(kept_target("clawgate::agent::turn"));
        assert!(!kept_target("clawgate::exec::approvals"));
        assert!(kept_target("clawgate::executor"));
    }

    #[test]
    fn old_lines_are_dropped_and_a_slow_reader_learns_how_much_it_missed() {
        let line_bytes = "{\"n\":000000}\n".len();
        let tail = filled(KEPT_BYTES / line_bytes + 100);
        let read = tail.tail(Some(0), 1, 1_000_000);
        assert_eq!(read.skipped_bytes, 100 * line_bytes as u64);
        assert_eq!(read.lines, ["{\"n\":000100}"]);
        let beyond = tail.tail(Some(read.size + 10), 1, 1_000_000);
        assert!(beyond.reset);
        assert_eq!(beyond.cursor, beyond.size);
    }
}
