//! Server-sent events: splits a byte stream into the payloads of its
//! `data:` lines.

#[derive(Default)]
pub struct SseLines {
    buffer: Vec<u8>,
}

impl SseLines {
    /// Adds bytes; returns the `data:` payloads of the lines completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if let Some(data) = line.strip_prefix("data:") {
                out.push(data.trim_start().to_string());
            }
        }
        out
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
                Ok(chunk) => self.pending.extend(self.lines.push(&chunk)),
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
        assert!(sse.push(b"data: {\"a\"").is_empty());
        assert_eq!(
            sse.push(b":1}\r\n\r\nevent: x\ndata: [DONE]\n"),
            vec!["{\"a\":1}", "[DONE]"]
        );
    }
}
