//! Turning the bytes of a configuration file into text: a size cap, UTF-8 and a binary-content check.

use std::io::Read;
use std::path::Path;

use super::ShareError;

/// Largest configuration file parsed. A real smb.conf with thousands of shares is far below this;
/// anything bigger is a mistake (or an attack) and must not stall the agent.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Reads at most [`MAX_FILE_BYTES`] from `reader` and decodes it with [`decode`].
pub fn read_text(mut reader: impl Read, path: &Path, context: &str) -> Result<String, ShareError> {
    let mut bytes = Vec::new();
    (&mut reader).take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|source| ShareError::Read {
        path: path.to_path_buf(),
        context: context.to_owned(),
        source,
    })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ShareError::TooLarge { path: path.to_path_buf(), limit: MAX_FILE_BYTES });
    }
    decode(bytes, path)
}

/// UTF-8 text without control characters other than tab, CR, LF and form feed.
pub fn decode(bytes: Vec<u8>, path: &Path) -> Result<String, ShareError> {
    let line_at = |bytes: &[u8], at: usize| bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
    if let Some(at) = bytes.iter().position(|b| is_binary(*b)) {
        return Err(ShareError::Binary { path: path.to_path_buf(), line: line_at(&bytes, at), byte: bytes[at] });
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        ShareError::NotUtf8 { path: path.to_path_buf(), line: line_at(e.as_bytes(), at) }
    })
}

fn is_binary(b: u8) -> bool {
    (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c)) || b == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_passes_and_errors_name_the_line() {
        let p = Path::new("/etc/x");
        assert_eq!(decode(b"a\r\n\tb\x0c".to_vec(), p).unwrap(), "a\r\n\tb\x0c");
        let e = decode(b"a\nb\nc\xff\n".to_vec(), p).unwrap_err().to_string();
        assert_eq!(e, "/etc/x:3: invalid UTF-8");
        let e = decode(b"a\n\x00".to_vec(), p).unwrap_err().to_string();
        assert_eq!(e, "/etc/x:2: binary content (control byte 0x00)");
    }

    #[test]
    fn size_is_capped() {
        let big = vec![b'#'; MAX_FILE_BYTES as usize + 1];
        let e = read_text(&big[..], Path::new("/big"), "").unwrap_err();
        assert!(matches!(e, ShareError::TooLarge { .. }), "{e}");
        let ok = vec![b'#'; 1000];
        assert_eq!(read_text(&ok[..], Path::new("/ok"), "").unwrap().len(), 1000);
    }
}
