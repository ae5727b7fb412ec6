//! Server-sent events: splits a byte stream into the payloads of its
//! `data:` lines.

/// The longest line an upstream may send; a longer one is a malformed
/// stream, not a reason to buffer without end.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

#[derive(Default)]
pub struct SseLines {
    buffer: Vec<u8>,
    /// How much of `buffer` is known to hold no newline.
    scanned: usize,
}

impl SseLines {
    /// Adds bytes; returns the `data:` payloads of the lines completed, or
    /// an error when a line grows past [`MAX_LINE_BYTES`].
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(at) = self.buffer[self.scanned..].iter().position(|b| *b == b'\n') {
            let end = self.scanned + at;
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            self.scanned = 0;
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if let Some(data) = line.strip_prefix("data:") {
                out.push(data.trim_start().to_string());
            }
        }
        self.scanned = self.buffer.len();
        if self.buffer.len() > MAX_LINE_BYTES {
            return Err(format!(
                "an event line is longer than {MAX_LINE_BYTES} bytes"
            ));
        }
        Ok(out)
    }
}

/// The `data:` payloads of a streaming HTTP response, in order.
pub struct SseStream {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
    lines: SseLines,
    pending: std::collections::VecDeque<String>,
}

impl SseStream {
    pub fn new(response: reqwest::Response) -> Self {
        use futures_util::StreamExt;
        SseStream {
            body: response.bytes_stream().boxed(),
            lines: SseLines::default(),
            pending: Default::default(),
        }
    }

    /// The next payload, parsed as JSON (`[DONE]` comes back as the string
    /// "[DONE]"); None when the body ends.
    pub async fn next(
        &mut self,
        agent_id: &str,
    ) -> Option<Result<serde_json::Value, crate::protocol::RpcError>> {
        use futures_util::StreamExt;
        loop {
            if let Some(data) = self.pending.pop_front() {
                if data == "[DONE]" {
                    return Some(Ok(serde_json::Value::from(data)));
                }
                return Some(serde_json::from_str(&data).map_err(|e| {
                    super::malformed(agent_id, &format!("an event is not JSON: {e}"))
                }));
            }
            match self.body.next().await? {
                Ok(chunk) => match self.lines.push(&chunk) {
                    Ok(payloads) => self.pending.extend(payloads),
                    Err(why) => return Some(Err(super::malformed(agent_id, &why))),
                },
                Err(e) => return Some(Err(super::transport_error(agent_id, &e))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_data_lines_across_chunks() {
        let mut sse = SseLines::default();
        assert!(sse.push(b"data: {\"a\"").unwrap().is_empty());
        assert_eq!(
            sse.push(b":1}\r\n\r\nevent: x\ndata: [DONE]\n").unwrap(),
            vec!["{\"a\":1}", "[DONE]"]
        );
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut sse = SseLines::default();
        let chunk = vec![b'x'; 64 * 1024];
        let mut refused = false;
        for _ in 0..(MAX_LINE_BYTES / chunk.len() + 2) {
            if sse.push(&chunk).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused);
    }
}
