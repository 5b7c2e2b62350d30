//! kernel mode: inotify IN_CLOSE_WRITE on the device nodes of reported
//! devices, as udevd's `watch` option does. Without udevd the kernel sends
//! no event after mkfs or a partition-table rewrite; this is how we notice.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;
use tracing::debug;

use super::error::UdevError;

pub struct NodeWatcher {
    // Declared first so it is deregistered before the inotify fd closes.
    ready: AsyncFd<RawFd>,
    inotify: Inotify,
    by_wd: HashMap<WatchDescriptor, String>,
    by_path: HashMap<String, WatchDescriptor>,
}

impl NodeWatcher {
    pub fn new() -> Result<Self, UdevError> {
        let inotify =
            Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(|e| UdevError::Inotify(e.into()))?;
        // SAFETY: `ready` is a field declared before `inotify`, so it is dropped (deregistered)
        // before the inotify fd is closed, and the fd is never replaced.
        let ready = unsafe { AsyncFd::register(inotify.as_fd().as_raw_fd()) }
            .map_err(|e| UdevError::Inotify(e.into_parts().1))?;
        Ok(Self { ready, inotify, by_wd: HashMap::new(), by_path: HashMap::new() })
    }

    /// Watches `devnode` for `devpath` (Some) or stops watching `devpath` (None).
    pub fn sync(&mut self, devpath: &str, devnode: Option<&str>) {
        match devnode {
            Some(node) if !self.by_path.contains_key(devpath) => {
                match self.inotify.add_watch(node, AddWatchFlags::IN_CLOSE_WRITE) {
                    Ok(wd) => {
                        self.by_wd.insert(wd, devpath.to_owned());
                        self.by_path.insert(devpath.to_owned(), wd);
                    }
                    Err(e) => debug!(device = %node, error = %e, "cannot watch device node"),
                }
            }
            Some(_) => {}
            None => {
                if let Some(wd) = self.by_path.remove(devpath) {
                    self.by_wd.remove(&wd);
                    // The node may be gone already, which removed the watch.
                    let _ = self.inotify.rm_watch(wd);
                }
            }
        }
    }

    /// Devpaths whose node was closed after writing; waits until there is at least one event.
    pub async fn written(&mut self, out: &mut Vec<String>) -> std::io::Result<()> {
        let mut guard = self.ready.readable().await?;
        loop {
            match self.inotify.read_events() {
                Ok(events) => {
                    for ev in events {
                        if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                            if let Some(path) = self.by_wd.remove(&ev.wd) {
                                self.by_path.remove(&path);
                            }
                        } else if ev.mask.contains(AddWatchFlags::IN_CLOSE_WRITE) {
                            if let Some(path) = self.by_wd.get(&ev.wd) {
                                out.push(path.clone());
                            }
                        }
                    }
                }
                Err(Errno::EAGAIN) => {
                    guard.clear_ready();
                    return Ok(());
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_close_after_write() {
        let t = tempfile::tempdir().unwrap();
        let node = t.path().join("node");
        std::fs::write(&node, b"x").unwrap();
        let mut w = NodeWatcher::new().unwrap();
        w.sync("/devices/x", Some(node.to_str().unwrap()));
        assert_eq!(w.len(), 1);
        let _ = std::fs::read(&node).unwrap();
        std::fs::write(&node, b"y").unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(5), w.written(&mut out)).await.unwrap().unwrap();
        assert_eq!(out, vec!["/devices/x".to_string()], "a read does not count, a write does");
        w.sync("/devices/x", None);
        assert!(w.is_empty());
    }
}
