//! The API token: generated (`diskwatch token generate`), stored in a file only its owner can
//! read, read at start-up, and compared in constant time.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// Shortest token accepted from a file: 128 bits as hex. Shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 32;
/// Bytes of randomness in a generated token (printed as 64 hex digits).
const TOKEN_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: the token is empty")]
    Empty { path: String },
    #[error("{path}: the token is {len} characters; at least {MIN_TOKEN_LEN} are needed (`diskwatch token generate` writes one)")]
    Short { path: String, len: usize },
    #[error("{path}: the token may hold only printable ASCII without spaces")]
    Charset { path: String },
    #[error("{path} exists; pass --force to replace it")]
    Exists { path: String },
}

/// Reads a token file: surrounding whitespace is ignored; empty, short or odd tokens are errors.
pub fn read_token_file(path: &Path) -> Result<Secret, TokenError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Io { path: name.clone(), source })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenError::Empty { path: name });
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::Charset { path: name });
    }
    if token.len() < MIN_TOKEN_LEN {
        return Err(TokenError::Short { path: name, len: token.len() });
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %name, mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the token file is readable by others than its owner; chmod 600 it");
        }
    }
    Ok(Secret::new(token))
}

/// A new random token: 256 bits from the operating system's generator, as hex.
pub fn generate_token() -> Secret {
    let bytes: [u8; TOKEN_BYTES] = rand::random();
    Secret::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Writes a new token to `path` with mode 0600 (created that way, never widened later);
/// refuses to replace an existing file unless `force`.
pub fn write_token_file(path: &Path, force: bool) -> Result<Secret, TokenError> {
    let name = path.display().to_string();
    let io = |source| TokenError::Io { path: name.clone(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    if path.exists() && !force {
        return Err(TokenError::Exists { path: name });
    }
    let token = generate_token();
    // Written beside the target and renamed over it: a reader sees the old token or the new one.
    let tmp = path.with_extension("tmp-token");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io)?;
    file.write_all(format!("{}\n", token.expose()).as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(token)
}

/// Whether `given` is the token, in time independent of where they differ.
pub fn token_matches(token: &Secret, given: &[u8]) -> bool {
    token.expose().as_bytes().ct_eq(given).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_file_is_private_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/token");
        let token = write_token_file(&path, false).unwrap();
        assert_eq!(token.expose().len(), 64);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read_token_file(&path).unwrap(), token);
        assert!(matches!(write_token_file(&path, false), Err(TokenError::Exists { .. })));
        let again = write_token_file(&path, true).unwrap();
        assert_ne!(again, token);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn bad_token_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        for (text, what) in
            [("\n", "empty"), ("short", "at least"), ("has a space in it and is long enough!!", "printable")]
        {
            std::fs::write(&path, text).unwrap();
            let e = read_token_file(&path).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
        assert!(matches!(read_token_file(&dir.path().join("none")), Err(TokenError::Io { .. })));
    }

    #[test]
    fn comparison() {
        let t = Secret::new("0123456789abcdef0123456789abcdef");
        assert!(token_matches(&t, b"0123456789abcdef0123456789abcdef"));
        assert!(!token_matches(&t, b"0123456789abcdef0123456789abcdeF"));
        assert!(!token_matches(&t, b"0123456789abcdef"));
        assert!(!token_matches(&t, b""));
    }
}
