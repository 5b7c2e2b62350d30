//! The one error type of the shares module: every variant names the file, and the line where there is one.

use std::path::PathBuf;

/// Why a share configuration could not be used. The source keeps its last good share set on any of these.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("cannot read {}{context}: {source}", path.display())]
    Read {
        path: PathBuf,
        /// ` (included from FILE:LINE)` or empty.
        context: String,
        source: std::io::Error,
    },
    #[error("{}: larger than {limit} bytes, refusing to parse it", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{}:{line}: invalid UTF-8", path.display())]
    NotUtf8 { path: PathBuf, line: usize },
    #[error("{}:{line}: binary content (control byte {byte:#04x})", path.display())]
    Binary { path: PathBuf, line: usize, byte: u8 },
    #[error("{}:{line}: {message}", path.display())]
    Syntax { path: PathBuf, line: usize, message: String },
    #[error("{}:{line}: included file {} does not exist", path.display(), include.display())]
    MissingInclude { path: PathBuf, line: usize, include: PathBuf },
    #[error("{}:{line}: include cycle: {} is already being read", path.display(), include.display())]
    IncludeCycle { path: PathBuf, line: usize, include: PathBuf },
    #[error("{}:{line}: includes nested deeper than {limit} levels", path.display())]
    IncludeDepth { path: PathBuf, line: usize, limit: usize },
}
