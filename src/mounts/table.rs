//! The mount-table file: opened once, watched for the kernel's change notification (POLLPRI on
//! mountinfo), and re-read from the start on demand.

use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tracing::{debug, info};

use super::MountsError;

enum Handle {
    /// A proc mountinfo file: the kernel flags a change with POLLPRI.
    Polled(AsyncFd<File>),
    /// A file epoll refuses (a regular file in tests or containers): re-opened at every read,
    /// changes seen only by the safety re-read.
    Plain,
}

/// The watched mount table.
pub struct Table {
    path: PathBuf,
    handle: Option<Handle>,
    buf: Vec<u8>,
}

impl Table {
    pub fn new(path: PathBuf) -> Self {
        Self { path, handle: None, buf: Vec::with_capacity(64 << 10) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Forgets the open file, so the next read opens it again.
    pub fn close(&mut self) {
        self.handle = None;
    }

    fn open(&mut self) -> Result<(), MountsError> {
        let file = File::open(&self.path).map_err(|source| MountsError::Open { path: self.path.clone(), source })?;
        // SAFETY: the `File` owns its descriptor and is never swapped out while registered; it is
        // closed only when the `AsyncFd` (which owns the `File`) is dropped.
        let registered = unsafe { AsyncFd::register_with_interest(file, Interest::PRIORITY) };
        self.handle = Some(match registered {
            Ok(fd) => Handle::Polled(fd),
            Err(e) => {
                info!(path = %self.path.display(), error = %e, "mount table cannot be polled: relying on re-reads");
                Handle::Plain
            }
        });
        Ok(())
    }

    /// Waits until the kernel reports a change of the table. Pending forever when the file
    /// cannot be polled or is not open.
    pub async fn changed(&self) {
        match &self.handle {
            Some(Handle::Polled(fd)) => match fd.ready(Interest::PRIORITY).await {
                // Cleared before reading: a change during the read raises readiness again.
                Ok(mut guard) => guard.clear_ready(),
                Err(e) => {
                    debug!(error = %e, "waiting for mount table change failed");
                    std::future::pending::<()>().await
                }
            },
            _ => std::future::pending::<()>().await,
        }
    }

    /// Reads the whole table (opening it first if needed). `check_exists` also makes sure the
    /// path still names a file, since an open proc file keeps answering after its process is gone.
    pub fn read(&mut self, check_exists: bool) -> Result<Cow<'_, str>, MountsError> {
        if self.handle.is_none() {
            self.open()?;
        } else if check_exists {
            std::fs::metadata(&self.path).map_err(|source| MountsError::Open { path: self.path.clone(), source })?;
        }
        self.buf.clear();
        let result = match &self.handle {
            Some(Handle::Polled(fd)) => {
                let mut file = fd.get_ref();
                file.seek(SeekFrom::Start(0)).and_then(|_| file.read_to_end(&mut self.buf))
            }
            _ => File::open(&self.path).and_then(|mut f| f.read_to_end(&mut self.buf)),
        };
        if let Err(source) = result {
            self.handle = None;
            return Err(MountsError::Read { path: self.path.clone(), source });
        }
        if self.buf.is_empty() {
            // A live mount namespace always has a root; empty means the process is gone.
            self.handle = None;
            return Err(MountsError::Empty { path: self.path.clone() });
        }
        // Paths are bytes; names that are not UTF-8 get replacement characters.
        Ok(String::from_utf8_lossy(&self.buf))
    }
}
