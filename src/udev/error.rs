//! Errors at the boundary of the udev source: what can stop it from starting.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum UdevError {
    #[error("cannot open the kernel uevent netlink socket: {0}")]
    Netlink(#[source] std::io::Error),
    #[error("cannot open the udevd monitor: {0}")]
    Monitor(#[source] std::io::Error),
    #[error("cannot set up inotify for device nodes: {0}")]
    Inotify(#[source] std::io::Error),
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Glob(#[from] crate::text::GlobError),
}
