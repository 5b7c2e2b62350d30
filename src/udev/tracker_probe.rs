//! The tracker's probing: identity properties in either mode, partitions described from their
//! own probe and their disk's table, and the partitions a batch of uevents adds probed at once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::model::Partition;

use super::super::describe;
use super::super::probe::{self, kernel_props, Found, Job};
use super::super::sleep::ProbeCache;
use super::super::sysfs::{Kind, SysDevice};
use super::super::tables::Tables;
use super::super::uevent::{Action, Props, Uevent};
use super::{PropSource, Reported, Tracker};

impl Tracker {
    /// Partition tables kept now (for tests and memory checks).
    pub fn tables_kept(&self) -> usize {
        self.tables.len()
    }

    /// The partition tables kept, shared with the first probes of new disks (which keep theirs).
    pub fn tables(&self) -> Arc<Tables> {
        Arc::clone(&self.tables)
    }

    /// Whether disks were announced whose partition table is not read yet.
    pub fn has_new_tables(&self) -> bool {
        !self.tables_due.is_empty()
    }

    /// Reads and keeps the partition tables of the disks announced since the last call, all at
    /// once (kernel mode; a few small reads each).
    pub fn read_new_tables(&mut self) {
        let due: Vec<String> = std::mem::take(&mut self.tables_due)
            .into_iter()
            .filter(|d| self.known.contains_key(d) && !self.asleep.contains(d))
            .collect();
        if due.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let writes: Vec<Option<u64>> = due.iter().map(|d| self.tables.writes(d)).collect();
        let found = probe::probe_all(due.iter().map(|d| Job::Table(disk_node(d))).collect());
        for ((disk, writes), f) in due.iter().zip(writes).zip(found) {
            if let Found::Table(kind, entries) = f {
                self.tables.keep(disk, writes, &(kind, entries));
            }
        }
        tracing::debug!(disks = due.len(), micros = started.elapsed().as_micros() as u64, "new disks' tables read");
    }

    /// Kernel mode, a new partition whose disk's kept table gives it an entry UUID: its id needs
    /// nothing else, so it is announced at once and its own probe (the filesystem) follows, as
    /// a new disk's does.
    pub(super) fn partition_from_table(&self, sys: &SysDevice) -> Option<Partition> {
        if self.source != PropSource::Kernel || self.known.contains_key(&sys.devpath) {
            return None;
        }
        let parent = sys.parent_devpath()?;
        let disk_id = self.known.get(parent).filter(|_| !self.asleep.contains(parent))?.id.clone();
        let mut props = Props::new();
        // The batch's own look at the table (`prefetch`), else the kept one if still fresh.
        let fresh = match self.batch_tables.get(parent) {
            Some(table) => Some(table.clone()),
            None => self.tables.fresh(parent),
        };
        let (kind, entries) = fresh?;
        let entry = entries.iter().find(|e| Some(e.number) == sys.partition && e.uuid.is_some())?;
        probe::entry_props(entry, kind.as_deref(), &mut props);
        Some(describe::partition(sys, &props, &disk_id))
    }

    pub(super) fn describe_partition(
        &self,
        sys: &SysDevice,
        event_props: Option<&Props>,
        probed: Option<Props>,
    ) -> Option<Partition> {
        let parent_path = sys.parent_devpath()?;
        let disk_id = match self.known.get(parent_path) {
            Some(k) => k.id.clone(),
            None => {
                let parent = self.sysfs.read(parent_path)?;
                describe::disk(&parent, &self.props(&parent, None)).id
            }
        };
        let key = (self.source == PropSource::Kernel).then(|| self.disk_cache_key(parent_path)).flatten();
        if self.asleep.contains(parent_path) {
            // Its disk sleeps: what the last probe found, or sysfs alone.
            let cached = key.as_deref().and_then(|k| {
                let cache = self.cache.lock().ok()?;
                cache.get(k)?.partitions.get(&sys.partition?).cloned()
            });
            return Some(describe::partition(sys, &cached.unwrap_or_default(), &disk_id));
        }
        let mut props = match probed {
            Some(p) => p,
            None => self.props(sys, event_props),
        };
        // udevd's blkid builtin fills ID_PART_ENTRY_*; without it, read the parent's table (once
        // for all its partitions while the disk is not written).
        if self.source == PropSource::Kernel || !props.contains_key("ID_PART_ENTRY_SCHEME") {
            let parent_node = format!("/dev/{}", parent_path.rsplit('/').next().unwrap_or_default());
            if let Some((kind, entries)) = self.tables.get(parent_path, Path::new(&parent_node)) {
                if let Some(e) = entries.iter().find(|e| Some(e.number) == sys.partition) {
                    probe::entry_props(e, kind.as_deref(), &mut props);
                }
            }
        }
        if let (Some(k), Some(n), Ok(mut c)) = (key, sys.partition, self.cache.lock()) {
            c.put(&k, Some(n), &props);
        }
        Some(describe::partition(sys, &props, &disk_id))
    }

    /// The probe-cache key of a disk: from what was reported when it is known, else from sysfs.
    pub(super) fn disk_cache_key(&self, devpath: &str) -> Option<String> {
        match self.known.get(devpath).and_then(|k| k.reported.as_ref().map(|r| (k, r))) {
            Some((k, Reported::Disk(d))) => Some(ProbeCache::key(&k.base, d.size_bytes)),
            _ => self.sysfs.read(devpath).map(|parent| Self::cache_key(&parent)),
        }
    }

    /// Keeps the probe cache to the disks reported now.
    pub(super) fn retain_cache(&self) {
        let keys: HashSet<String> = self
            .known
            .values()
            .filter_map(|k| match (&k.reported, k.kind) {
                (Some(Reported::Disk(d)), Kind::Disk) => Some(ProbeCache::key(&k.base, d.size_bytes)),
                _ => None,
            })
            .collect();
        if let Ok(mut c) = self.cache.lock() {
            c.retain(&keys);
        }
    }

    /// Kernel mode: probes the partitions a batch of events adds all at once, with each of their
    /// disks' tables read beside them when not kept already, instead of one after another
    /// when the events are handled. The uevent names the node and says it is a partition.
    pub fn prefetch(&mut self, events: &[Uevent]) {
        self.end_batch();
        if self.source != PropSource::Kernel {
            return;
        }
        // A disk changed in this batch has its kept table dropped when the change is handled.
        let changed: HashSet<&str> = events
            .iter()
            .filter(|e| e.action == Action::Change && e.props.get("DEVTYPE").is_some_and(|t| t == "disk"))
            .map(|e| e.devpath.as_str())
            .collect();
        // The added partitions: devpath, node name, disk devpath, number.
        let mut parts: Vec<(&str, &str, &str, Option<u32>)> = Vec::new();
        let mut disks: Vec<&str> = Vec::new();
        for ev in events.iter().filter(|e| e.action == Action::Add) {
            let name = ev.devpath.rsplit('/').next().unwrap_or_default();
            let (Some("partition"), Some(devname)) =
                (ev.props.get("DEVTYPE").map(String::as_str), ev.props.get("DEVNAME"))
            else {
                continue;
            };
            let Some((parent, _)) = ev.devpath.rsplit_once('/') else { continue };
            if !self.filter.keeps(name) || self.asleep.contains(parent) {
                continue;
            }
            let number = ev.props.get("PARTN").and_then(|n| n.parse::<u32>().ok());
            parts.push((&ev.devpath, devname, parent, number));
            if disks.contains(&parent) || self.batch_tables.contains_key(parent) {
                continue;
            }
            let kept = if changed.contains(parent) { None } else { self.tables.fresh(parent) };
            match kept {
                Some(table) => {
                    self.batch_tables.insert(parent.to_owned(), table);
                }
                None => disks.push(parent),
            }
        }
        if parts.is_empty() {
            return;
        }
        // First the tables not kept, every disk's at once: a partition whose entry has a UUID has
        // its id then, is announced at once and probed after (`partition_from_table`).
        let writes: Vec<Option<u64>> = disks.iter().map(|d| self.tables.writes(d)).collect();
        let read = std::time::Instant::now();
        let found = probe::probe_all(disks.iter().map(|d| Job::Table(disk_node(d))).collect());
        if !disks.is_empty() {
            tracing::debug!(
                disks = disks.len(),
                micros = read.elapsed().as_micros() as u64,
                "tables read for added partitions"
            );
        }
        for ((disk, writes), f) in disks.iter().zip(&writes).zip(found) {
            if let Found::Table(kind, entries) = f {
                let table = (kind, entries);
                self.tables.keep(disk, *writes, &table);
                self.batch_tables.insert((*disk).to_owned(), table);
            }
        }
        // Then, all at once, the filesystems of the partitions no table names.
        let unnamed: Vec<(&str, &str)> = parts
            .iter()
            .filter(|(_, _, parent, number)| {
                !(self.known.contains_key(*parent)
                    && self
                        .batch_tables
                        .get(*parent)
                        .is_some_and(|(_, e)| e.iter().any(|e| Some(e.number) == *number && e.uuid.is_some())))
            })
            .map(|(devpath, devname, _, _)| (*devpath, *devname))
            .collect();
        if unnamed.is_empty() {
            return;
        }
        let jobs =
            unnamed.iter().map(|(_, devname)| Job::Filesystem(PathBuf::from(format!("/dev/{devname}")))).collect();
        for ((devpath, _), f) in unnamed.iter().zip(probe::probe_all(jobs)) {
            if let Found::Filesystem(props) = f {
                self.prefetched.insert((*devpath).to_owned(), props);
            }
        }
    }

    /// Drops what [`Self::prefetch`] found and no event used.
    pub fn end_batch(&mut self) {
        self.prefetched.clear();
        self.batch_tables.clear();
    }

    /// Identity properties of a device in the configured mode.
    pub(super) fn props(&self, sys: &SysDevice, event_props: Option<&Props>) -> Props {
        match self.source {
            PropSource::Kernel if sys.kind == Some(Kind::Disk) => {
                let key = Self::cache_key(sys);
                if self.asleep.contains(&sys.devpath) {
                    let cached = self.cache.lock().ok().and_then(|c| c.get(&key).map(|p| p.disk.clone()));
                    return cached.unwrap_or_default();
                }
                // One probe for the disk's properties and its table, kept for its partitions.
                let node = PathBuf::from(describe::devnode(sys));
                let (tables, devpath) = (Arc::clone(&self.tables), sys.devpath.clone());
                let writes = tables.writes(&devpath);
                let props = probe::disk_bounded(&node, move |table| tables.keep(&devpath, writes, table));
                if let Ok(mut c) = self.cache.lock() {
                    c.put(&key, None, &props);
                }
                props
            }
            PropSource::Kernel => kernel_props(sys),
            PropSource::Udev => {
                let props = match event_props {
                    Some(p) => p.clone(),
                    None => super::super::udevd::database_props(&sys.dev),
                };
                // udevd never processed this device (started after it, no `udevadm trigger`):
                // probe it ourselves rather than report it without identity.
                if props.is_empty() {
                    kernel_props(sys)
                } else {
                    props
                }
            }
        }
    }
}

/// The device node of a disk, from its devpath.
fn disk_node(devpath: &str) -> PathBuf {
    PathBuf::from(format!("/dev/{}", devpath.rsplit('/').next().unwrap_or_default()))
}
