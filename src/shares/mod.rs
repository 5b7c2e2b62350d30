//! The shares source: Samba and NFS share configuration, watched with inotify, parsed the way the
//! servers read it, and each share's path checked so the state can link it to its storage.
//!
//! - [`smbconf`]: the smb.conf parser; [`exports`]: the NFS exports parser.
//! - `load`: reads the configured files into one share set and says what to watch.
//! - `watch`: the task: initial read, then debounced re-reads on file changes and path
//!   re-checks when mounts come and go.

pub mod config;
mod error;
pub mod exports;
mod load;
pub mod smbconf;
mod text;
mod watch;

pub use error::ShareError;
pub use load::{load, resolve, Loaded, WatchSet};
pub use text::MAX_FILE_BYTES;
pub use watch::SharesSource;
