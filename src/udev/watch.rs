//! kernel mode: inotify IN_CLOSE_WRITE on the device nodes of reported
//! devices, as udevd's `watch` option does. Without udevd the kernel sends
//! no event after mkfs or a partition-table rewrite; this is how we notice.
//!
//! Monitors open disks read-write and write nothing (smartctl's SCSI/SAT pass-through does,
//! every health round): [`Writes`] lets a close through only when the device's write counters
//! moved, so such a close never makes the source re-read (and so wake) a sleeping disk.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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

/// A close without counted writes is looked at again this much later: a tool that did not
/// fsync has its writes flushed by the last close, which the kernel runs after the notification.
const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// Write counters per watched device, to tell a real write from an open for writing.
pub struct Writes {
    sysfs: PathBuf,
    seen: HashMap<String, u64>,
    recheck: Vec<(String, Instant)>,
}

impl Writes {
    pub fn new(sysfs: impl Into<PathBuf>) -> Self {
        Self { sysfs: sysfs.into(), seen: HashMap::new(), recheck: Vec::new() }
    }

    /// Completed writes plus I/Os in flight of a device (`<sysfs><devpath>/stat`).
    fn count(&self, devpath: &str) -> Option<(u64, u64)> {
        let text = std::fs::read_to_string(self.sysfs.join(devpath.trim_start_matches('/')).join("stat")).ok()?;
        let c = crate::activity::stat::parse(&text)?;
        Some((c.write_ios, c.in_flight))
    }

    /// Remembers a device's write count when it starts being watched.
    pub fn baseline(&mut self, devpath: &str) {
        if !self.seen.contains_key(devpath) {
            if let Some((w, _)) = self.count(devpath) {
                self.seen.insert(devpath.to_owned(), w);
            }
        }
    }

    pub fn forget(&mut self, devpath: &str) {
        self.seen.remove(devpath);
    }

    /// Whether the device was written since it was last reported (or cannot tell: then yes).
    /// A close without writes is checked once more after [`RECHECK_AFTER`] ([`Self::due`]).
    pub fn wrote(&mut self, devpath: &str, now: Instant) -> bool {
        let Some((writes, in_flight)) = self.count(devpath) else { return true };
        let before = self.seen.insert(devpath.to_owned(), writes);
        if before.is_some_and(|b| b == writes) && in_flight == 0 {
            if !self.recheck.iter().any(|(p, _)| p == devpath) {
                self.recheck.push((devpath.to_owned(), now + RECHECK_AFTER));
            }
            return false;
        }
        true
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.recheck.iter().map(|(_, at)| *at).min()
    }

    /// The devices rechecked now whose writes moved after all.
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        let (due, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.recheck).into_iter().partition(|(_, at)| *at <= now);
        self.recheck = later;
        due.into_iter()
            .filter(|(p, _)| {
                let Some((writes, in_flight)) = self.count(p) else { return false };
                self.seen.insert(p.clone(), writes).is_some_and(|b| b != writes) || in_flight > 0
            })
            .map(|(p, _)| p)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_for_writing_without_writes_is_not_a_write() {
        let t = tempfile::tempdir().unwrap();
        let stat = t.path().join("devices/x/sda/stat");
        std::fs::create_dir_all(stat.parent().unwrap()).unwrap();
        let line = |w: u64, f: u64| format!("10 0 80 5 {w} 0 {} 7 {f} 12 12 0 0 0 0", w * 8);
        std::fs::write(&stat, line(3, 0)).unwrap();
        let mut writes = Writes::new(t.path());
        writes.baseline("/devices/x/sda");
        let now = Instant::now();
        assert!(!writes.wrote("/devices/x/sda", now), "smartctl's close: nothing written");
        assert_eq!(writes.next_deadline(), Some(now + RECHECK_AFTER));
        assert!(writes.due(now).is_empty(), "not due yet");
        // The last close flushed a write after the notification: the recheck sees it.
        std::fs::write(&stat, line(4, 0)).unwrap();
        assert_eq!(writes.due(now + RECHECK_AFTER), ["/devices/x/sda"]);
        assert_eq!(writes.next_deadline(), None);
        std::fs::write(&stat, line(9, 0)).unwrap();
        assert!(writes.wrote("/devices/x/sda", now), "mkfs wrote");
        std::fs::write(&stat, line(9, 2)).unwrap();
        assert!(writes.wrote("/devices/x/sda", now), "writes in flight count");
        assert!(writes.wrote("/devices/x/gone", now), "no counters: cannot tell, so yes");
    }

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
