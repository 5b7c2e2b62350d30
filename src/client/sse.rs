//! An incremental parser of the `text/event-stream` format: feed it chunks as
//! they arrive, get whole messages back (comments and keep-alives dropped).

/// One Server-Sent-Events message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub id: Option<String>,
    /// `message` when the server sent no `event:` field.
    pub event: String,
    pub data: String,
}

/// Collects lines across chunk boundaries.
#[derive(Debug, Default)]
pub struct Parser {
    buffer: String,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

impl Parser {
    /// Adds a chunk of the stream; returns the messages it completed.
    pub fn feed(&mut self, chunk: &str) -> Vec<Message> {
        self.buffer.push_str(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=end).collect();
            let line = line.trim_end_matches('\n').trim_end_matches('\r');
            if let Some(message) = self.line(line) {
                out.push(message);
            }
        }
        out
    }

    fn line(&mut self, line: &str) -> Option<Message> {
        if line.is_empty() {
            let data = self.data.take();
            let event = self.event.take();
            let id = self.id.take();
            return data.map(|data| Message { id, event: event.unwrap_or_else(|| "message".to_owned()), data });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" => self.id = Some(value.to_owned()),
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_across_chunks() {
        let mut p = Parser::default();
        assert!(p.feed(": keep-alive\n\nid: 4\nevent: disk.ad").is_empty());
        let msgs = p.feed("ded\ndata: {\"a\":1}\n\nid: 5\r\nevent: x\r\ndata: one\r\ndata: two\r\n\r\n");
        assert_eq!(
            msgs,
            vec![
                Message { id: Some("4".into()), event: "disk.added".into(), data: "{\"a\":1}".into() },
                Message { id: Some("5".into()), event: "x".into(), data: "one\ntwo".into() },
            ]
        );
        assert_eq!(p.feed("data:plain\n\n")[0].event, "message");
    }
}
