//! A small SSE client over reqwest for tests: parses `id:`, `event:`, `data:`.

use std::time::Duration;

use futures_util::StreamExt;

/// One SSE message.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl Message {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("data of {} is not JSON: {e}", self.event))
    }
}

pub struct SseClient {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
    /// Start of the unparsed part of `buf`.
    pos: usize,
}

impl SseClient {
    /// Connects to `url`, optionally resuming after `last_event_id`.
    pub async fn connect(url: &str, last_event_id: Option<u64>) -> Self {
        let client = reqwest::Client::new();
        let mut req = client.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.expect("connect SSE");
        assert_eq!(resp.status(), 200, "SSE status");
        Self { stream: resp.bytes_stream().boxed(), buf: String::new(), pos: 0 }
    }

    /// The next message (keep-alive comments skipped), or None when the stream ends.
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(end) = self.buf[self.pos..].find("\n\n").map(|e| e + self.pos) {
                let block = self.buf[self.pos..end + 2].to_owned();
                self.pos = end + 2;
                let mut msg = Message { id: None, event: "message".into(), data: String::new() };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        msg.id = Some(v.to_owned());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        msg.event = v.to_owned();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        if !msg.data.is_empty() {
                            msg.data.push('\n');
                        }
                        msg.data.push_str(v);
                        any = true;
                    }
                }
                if any {
                    return Some(msg);
                }
                continue;
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => {
                    // Drop what was consumed before growing the buffer, so parsing stays linear.
                    self.buf.drain(..self.pos);
                    self.pos = 0;
                    self.buf.push_str(&String::from_utf8_lossy(&chunk));
                }
                Some(Err(e)) => panic!("SSE stream failed: {e}"),
                None => return None,
            }
        }
    }

    /// The next message within `timeout`; panics when none arrives.
    pub async fn expect(&mut self, timeout: Duration) -> Message {
        tokio::time::timeout(timeout, self.next())
            .await
            .unwrap_or_else(|_| panic!("no SSE message within {timeout:?}"))
            .expect("SSE stream ended")
    }

    /// Skips messages until one of type `event` arrives (within `timeout` overall).
    pub async fn expect_type(&mut self, event: &str, timeout: Duration) -> Message {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = self.expect(left).await;
            if msg.event == event {
                return msg;
            }
        }
    }
}
