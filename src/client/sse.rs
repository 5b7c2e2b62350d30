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

/// Collects lines across chunk boundaries. Chunks are bytes: a multi-byte character split
/// between two network reads is decoded only once its line is whole.
#[derive(Debug, Default)]
pub struct Parser {
    buffer: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

impl Parser {
    /// Adds a chunk of the stream; returns the messages it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Message> {
        self.buffer.extend_from_slice(chunk);
        let mut out = Vec::new();
        // A newline byte never occurs inside a UTF-8 multi-byte sequence, so whole lines decode.
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&raw);
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
        assert!(p.feed(b": keep-alive\n\nid: 4\nevent: disk.ad").is_empty());
        let msgs = p.feed(b"ded\ndata: {\"a\":1}\n\nid: 5\r\nevent: x\r\ndata: one\r\ndata: two\r\n\r\n");
        assert_eq!(
            msgs,
            vec![
                Message { id: Some("4".into()), event: "disk.added".into(), data: "{\"a\":1}".into() },
                Message { id: Some("5".into()), event: "x".into(), data: "one\ntwo".into() },
            ]
        );
        assert_eq!(p.feed(b"data:plain\n\n")[0].event, "message");
    }

    #[test]
    fn a_character_split_across_chunks_survives() {
        let mut p = Parser::default();
        let text = "data: {\"name\":\"Überlauf ✓\"}\n\n".as_bytes();
        // Split inside the two-byte 'Ü' and again inside the three-byte '✓'.
        let at_u = text.iter().position(|&b| b == 0xC3).unwrap() + 1;
        let at_check = text.iter().position(|&b| b == 0xE2).unwrap() + 2;
        assert!(p.feed(&text[..at_u]).is_empty());
        assert!(p.feed(&text[at_u..at_check]).is_empty());
        let msgs = p.feed(&text[at_check..]);
        assert_eq!(msgs[0].data, "{\"name\":\"Überlauf ✓\"}");
    }
}
