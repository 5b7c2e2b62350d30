//! Reading kernel attribute files, and waiting for the kernel to flag a change in them.
//!
//! `/proc/mdstat` and the md sysfs attributes `array_state`, `degraded`, `sync_action` and
//! `dev-*/state` raise POLLPRI (with POLLERR) when they change, as mdadm --monitor and udisks2
//! rely on. The notification is re-armed only by reading the file *through the polled
//! descriptor*, so a watched file is always read through it. Paths that epoll refuses (regular
//! files: the fixture trees of the tests) are watched with inotify on their directory instead,
//! so a test that rewrites a fixture wakes the same code the kernel's notification wakes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;

use futures_util::future::select_all;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tracing::{debug, warn};

/// Reads an attribute file whole.
pub trait AttrReader {
    fn read(&mut self, path: &Path) -> io::Result<String>;
}

/// Opens and reads every time (tests, and files nobody polls).
pub struct PlainReader;

impl AttrReader for PlainReader {
    fn read(&mut self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// An inotify instance registered with the runtime.
struct DirWatch {
    // Declared first so it is deregistered before the inotify fd closes.
    ready: AsyncFd<RawFd>,
    inotify: Inotify,
}

impl DirWatch {
    fn new() -> io::Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(io::Error::from)?;
        // SAFETY: `ready` is declared before `inotify`, so it is dropped (deregistered) before
        // the inotify fd is closed, and the fd is never replaced.
        let ready = unsafe { AsyncFd::register_with_interest(inotify.as_fd().as_raw_fd(), Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Self { ready, inotify })
    }
}

/// A set of watched files: POLLPRI where the kernel supports it, inotify otherwise.
pub struct WatchSet {
    polled: HashMap<PathBuf, AsyncFd<File>>,
    /// Directories watched with inotify (for files epoll refuses).
    inotify: Option<DirWatch>,
    inotify_dirs: HashMap<PathBuf, nix::sys::inotify::WatchDescriptor>,
}

impl Default for WatchSet {
    fn default() -> Self {
        Self::new()
    }
}

impl WatchSet {
    pub fn new() -> Self {
        Self { polled: HashMap::new(), inotify: None, inotify_dirs: HashMap::new() }
    }

    /// Number of files watched with POLLPRI and directories watched with inotify.
    pub fn counts(&self) -> (usize, usize) {
        (self.polled.len(), self.inotify_dirs.len())
    }

    /// Makes the set watch exactly `paths` (and nothing else).
    pub fn set(&mut self, paths: &[PathBuf]) {
        self.polled.retain(|p, _| paths.contains(p));
        let mut dirs: Vec<PathBuf> = Vec::new();
        for path in paths {
            if self.polled.contains_key(path) {
                continue;
            }
            match open_polled(path) {
                Ok(Some(fd)) => {
                    self.polled.insert(path.clone(), fd);
                }
                Ok(None) => {
                    if let Some(dir) = path.parent() {
                        if !dirs.iter().any(|d| d == dir) {
                            dirs.push(dir.to_path_buf());
                        }
                    }
                }
                Err(e) => debug!(path = %path.display(), error = %e, "cannot watch"),
            }
        }
        self.set_inotify_dirs(dirs);
    }

    fn set_inotify_dirs(&mut self, dirs: Vec<PathBuf>) {
        if dirs.is_empty() && self.inotify.is_none() {
            return;
        }
        if self.inotify.is_none() {
            match DirWatch::new() {
                Ok(fd) => self.inotify = Some(fd),
                Err(e) => {
                    warn!(error = %e, "inotify unavailable: fixture paths are re-read only on the interval");
                    return;
                }
            }
        }
        let Some(inotify) = &self.inotify else { return };
        let stale: Vec<PathBuf> = self.inotify_dirs.keys().filter(|d| !dirs.contains(d)).cloned().collect();
        for dir in stale {
            if let Some(wd) = self.inotify_dirs.remove(&dir) {
                let _ = inotify.inotify.rm_watch(wd);
            }
        }
        let flags = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_ATTRIB;
        for dir in dirs {
            if self.inotify_dirs.contains_key(&dir) {
                continue;
            }
            match inotify.inotify.add_watch(&dir, flags) {
                Ok(wd) => {
                    self.inotify_dirs.insert(dir, wd);
                }
                Err(e) => debug!(dir = %dir.display(), error = %e, "cannot watch directory"),
            }
        }
    }

    /// Waits until a watched file is flagged changed; returns its path (the directory for an
    /// inotify wake). Pending forever when nothing is watched. Cancel-safe.
    pub async fn changed(&self) -> PathBuf {
        type Wait<'a> = Pin<Box<dyn std::future::Future<Output = PathBuf> + Send + 'a>>;
        let mut waits: Vec<Wait<'_>> = Vec::with_capacity(self.polled.len() + 1);
        for (path, fd) in &self.polled {
            waits.push(Box::pin(async move {
                match fd.ready(Interest::PRIORITY).await {
                    Ok(mut guard) => guard.clear_ready(),
                    Err(_) => std::future::pending::<()>().await,
                }
                path.clone()
            }));
        }
        if let Some(inotify) = &self.inotify {
            waits.push(Box::pin(async move {
                loop {
                    let Ok(mut guard) = inotify.ready.readable().await else {
                        std::future::pending::<()>().await;
                        continue;
                    };
                    match inotify.inotify.read_events() {
                        Ok(events) if !events.is_empty() => return PathBuf::from("inotify"),
                        Ok(_) => guard.clear_ready(),
                        Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
                        Err(_) => std::future::pending::<()>().await,
                    }
                }
            }));
        }
        if waits.is_empty() {
            return std::future::pending().await;
        }
        select_all(waits).await.0
    }
}

/// Opens a file for POLLPRI; `Ok(None)` when epoll refuses it (a regular file).
fn open_polled(path: &Path) -> io::Result<Option<AsyncFd<File>>> {
    let mut file = File::open(path)?;
    // Read once: the kernel compares against the event count seen at the last read.
    let mut sink = Vec::new();
    let _ = file.read_to_end(&mut sink);
    // SAFETY: the `File` owns its descriptor and is never swapped out while registered; it is
    // closed only when the `AsyncFd` (which owns the `File`) is dropped.
    match unsafe { AsyncFd::register_with_interest(file, Interest::PRIORITY) } {
        Ok(fd) => Ok(Some(fd)),
        Err(e) => {
            let (_, e) = e.into_parts();
            if e.raw_os_error() == Some(libc_eperm()) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// EPERM: epoll's answer for regular files.
fn libc_eperm() -> i32 {
    nix::errno::Errno::EPERM as i32
}

impl AttrReader for WatchSet {
    /// Reads through the polled descriptor when the file is watched (re-arming POLLPRI).
    fn read(&mut self, path: &Path) -> io::Result<String> {
        if let Some(fd) = self.polled.get(path) {
            let mut file = fd.get_ref();
            let mut buf = String::new();
            let read = file.seek(SeekFrom::Start(0)).and_then(|_| file.read_to_string(&mut buf));
            match read {
                Ok(_) => return Ok(buf),
                Err(e) => {
                    // The attribute went away with its array or member: forget the descriptor.
                    self.polled.remove(path);
                    return Err(e);
                }
            }
        }
        std::fs::read_to_string(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_rewritten_regular_file_wakes_through_inotify() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("array_state");
        std::fs::write(&file, "clean\n").expect("write");
        let mut set = WatchSet::new();
        set.set(std::slice::from_ref(&file));
        assert_eq!(set.counts(), (0, 1));
        assert_eq!(set.read(&file).expect("read"), "clean\n");
        let writer = {
            let file = file.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                std::fs::write(&file, "active\n").expect("write");
            })
        };
        tokio::time::timeout(Duration::from_secs(5), set.changed()).await.expect("woken");
        writer.await.expect("writer");
        assert_eq!(set.read(&file).expect("read"), "active\n");
    }

    #[tokio::test]
    async fn proc_mountinfo_is_polled_with_pollpri() {
        let path = PathBuf::from("/proc/self/mountinfo");
        let mut set = WatchSet::new();
        set.set(std::slice::from_ref(&path));
        assert_eq!(set.counts(), (1, 0), "the kernel supports POLLPRI on mountinfo");
        assert!(set.read(&path).expect("read").contains(" / "));
        // Nothing changes the mount table here: no wake within a short wait.
        assert!(tokio::time::timeout(Duration::from_millis(50), set.changed()).await.is_err());
    }
}
