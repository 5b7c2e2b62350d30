//! The mount-table file: opened once, watched for the kernel's change notification (POLLPRI on
//! mountinfo), and re-read from the start on demand.

use std::borrow::Cow;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
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

/// The table read by default: PID 1's, i.e. the host's mounts as its init sees them, even when
/// the agent runs in a mount namespace of its own. The hardened systemd unit gives it one
/// (ProtectSystem=strict, PrivateTmp, ReadWritePaths), whose per-mount `ro` flags and sandbox
/// mounts are not the host's. Reading it needs no capability (proc(5): mountinfo has no ptrace
/// check), see docs/mounts.md.
pub const HOST_MOUNTINFO: &str = "/proc/1/mountinfo";
/// Read instead of [`HOST_MOUNTINFO`] when PID 1 is hidden (`hidepid=` on /proc, a non-root run).
pub const OWN_MOUNTINFO: &str = "/proc/self/mountinfo";

/// The watched mount table.
pub struct Table {
    path: PathBuf,
    /// Read when `path` cannot be opened because it is hidden or missing.
    fallback: Option<PathBuf>,
    /// The path actually open (or last opened): `path` or `fallback`.
    active: PathBuf,
    handle: Option<Handle>,
    buf: Vec<u8>,
}

impl Table {
    pub fn new(path: PathBuf) -> Self {
        Self { active: path.clone(), path, fallback: None, handle: None, buf: Vec::with_capacity(64 << 10) }
    }

    /// A table at `path` that falls back to `fallback` while `path` is hidden (permission
    /// denied) or missing.
    pub fn with_fallback(path: PathBuf, fallback: PathBuf) -> Self {
        Self { fallback: Some(fallback), ..Self::new(path) }
    }

    /// The table for the `mounts.mountinfo` setting: the default, [`HOST_MOUNTINFO`], falls back
    /// to [`OWN_MOUNTINFO`]; any other path is read as given.
    pub fn for_setting(path: &Path) -> Self {
        if path == Path::new(HOST_MOUNTINFO) {
            Self::with_fallback(path.to_path_buf(), OWN_MOUNTINFO.into())
        } else {
            Self::new(path.to_path_buf())
        }
    }

    /// The configured path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path read: the configured one, or the fallback while that one is hidden.
    pub fn reading(&self) -> &Path {
        &self.active
    }

    /// Forgets the open file, so the next read opens it again.
    pub fn close(&mut self) {
        self.handle = None;
    }

    fn open_file(&mut self) -> Result<File, MountsError> {
        let error = match File::open(&self.path) {
            Ok(file) => {
                if self.active != self.path {
                    info!(path = %self.path.display(), "mount table readable: reading it again");
                    self.active = self.path.clone();
                }
                return Ok(file);
            }
            Err(e) => e,
        };
        let hidden = matches!(error.kind(), ErrorKind::PermissionDenied | ErrorKind::NotFound);
        match &self.fallback {
            Some(fallback) if hidden => {
                let file =
                    File::open(fallback).map_err(|source| MountsError::Open { path: fallback.clone(), source })?;
                if &self.active != fallback {
                    info!(path = %self.path.display(), error = %error, fallback = %fallback.display(),
                        "mount table not readable: reading this process's own");
                    self.active = fallback.clone();
                }
                Ok(file)
            }
            _ => Err(MountsError::Open { path: self.path.clone(), source: error }),
        }
    }

    fn open(&mut self) -> Result<(), MountsError> {
        let file = self.open_file()?;
        // SAFETY: the `File` owns its descriptor and is never swapped out while registered; it is
        // closed only when the `AsyncFd` (which owns the `File`) is dropped.
        let registered = unsafe { AsyncFd::register_with_interest(file, Interest::PRIORITY) };
        self.handle = Some(match registered {
            Ok(fd) => Handle::Polled(fd),
            Err(e) => {
                info!(path = %self.active.display(), error = %e, "mount table cannot be polled: relying on re-reads");
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
            std::fs::metadata(&self.active)
                .map_err(|source| MountsError::Open { path: self.active.clone(), source })?;
        }
        self.buf.clear();
        let result = match &self.handle {
            Some(Handle::Polled(fd)) => {
                let mut file = fd.get_ref();
                file.seek(SeekFrom::Start(0)).and_then(|_| file.read_to_end(&mut self.buf))
            }
            _ => File::open(&self.active).and_then(|mut f| f.read_to_end(&mut self.buf)),
        };
        if let Err(source) = result {
            self.handle = None;
            return Err(MountsError::Read { path: self.active.clone(), source });
        }
        if self.buf.is_empty() {
            // A live mount namespace always has a root; empty means the process is gone.
            self.handle = None;
            return Err(MountsError::Empty { path: self.active.clone() });
        }
        // Paths are bytes; names that are not UTF-8 get replacement characters.
        Ok(String::from_utf8_lossy(&self.buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "28 1 8:2 / / rw,relatime - ext4 /dev/sda2 rw\n";

    #[tokio::test]
    async fn hidden_table_falls_back_and_returns() {
        let dir = tempfile::tempdir().unwrap();
        let (main, own) = (dir.path().join("main"), dir.path().join("own"));
        std::fs::write(&own, LINE).unwrap();
        let mut table = Table::with_fallback(main.clone(), own.clone());
        assert_eq!(table.read(false).unwrap(), LINE);
        assert_eq!(table.reading(), own);
        // Once the configured table is readable, it is read again.
        std::fs::write(&main, LINE.replace("sda2", "sdb1")).unwrap();
        table.close();
        assert!(table.read(false).unwrap().contains("sdb1"));
        assert_eq!(table.reading(), main);
    }

    #[tokio::test]
    async fn without_fallback_a_missing_table_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = Table::new(dir.path().join("none"));
        let err = table.read(false).unwrap_err().to_string();
        assert!(err.contains("none"), "{err}");
        // Only the default setting falls back.
        assert!(Table::for_setting(Path::new(HOST_MOUNTINFO)).fallback.is_some());
        assert!(Table::for_setting(Path::new(OWN_MOUNTINFO)).fallback.is_none());
    }

    #[tokio::test]
    async fn default_table_has_a_root() {
        // PID 1's table (or this process's own where PID 1 is hidden) answers with a root.
        let mut table = Table::for_setting(Path::new(HOST_MOUNTINFO));
        let text = table.read(false).unwrap().into_owned();
        assert!(text.lines().any(|l| l.split(' ').nth(4) == Some("/")), "{text}");
    }
}
