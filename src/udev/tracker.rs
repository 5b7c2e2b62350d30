//! The source's memory of what it reported: devpath → id, so removals can be
//! sent and id changes (a partition gaining a filesystem UUID) are seen.
//! Turns device events and full enumerations into facts.
//!
//! Two devices present with one identity (a cloned disk shares its partitions' UUIDs, two sticks
//! from one batch share a serial) are kept apart: the first keeps the id, the twin gets the id
//! plus its kernel name, both are reported `stable: false` while the other is present, and each
//! is removed by its own device path, so unplugging one never removes the other.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tracing::debug;

use crate::model::{Disk, Partition};
use crate::state::Fact;

use super::describe;
use super::identity;
use super::parallel::parallel_map;
use super::sleep::{Candidate, ProbeCache};
use super::sysfs::{Kind, SysDevice, Sysfs};
use super::tables::{Table, Tables};
use super::uevent::{Action, Props};
use crate::text::KernelNameFilter;

/// Where the identity properties (ID_FS_*, ID_SERIAL, ...) come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropSource {
    /// Our own blkid probe (no udevd).
    Kernel,
    /// udevd's database and events.
    Udev,
}

/// The object last sent for a device, so a twin's arrival or departure can re-send it.
#[derive(Debug, Clone)]
enum Reported {
    /// Boxed, both: a disk carries its health, attention and activity, and the two would
    /// otherwise differ in size by hundreds of bytes.
    Disk(Box<Disk>),
    Partition(Box<Partition>),
}

impl Reported {
    fn id(&self) -> &str {
        match self {
            Reported::Disk(d) => &d.id,
            Reported::Partition(p) => &p.id,
        }
    }

    fn kernel_name(&self) -> &str {
        match self {
            Reported::Disk(d) => &d.kernel_name,
            Reported::Partition(p) => &p.kernel_name,
        }
    }

    fn stable(&self) -> bool {
        match self {
            Reported::Disk(d) => d.stable,
            Reported::Partition(p) => p.stable,
        }
    }

    fn set(&mut self, id: &str, stable: bool) {
        match self {
            Reported::Disk(d) => (d.id, d.stable) = (id.to_owned(), stable),
            Reported::Partition(p) => (p.id, p.stable) = (id.to_owned(), stable),
        }
    }

    fn upsert(&self) -> Fact {
        match self {
            Reported::Disk(d) => Fact::DiskUpsert((**d).clone()),
            Reported::Partition(p) => Fact::PartitionUpsert((**p).clone()),
        }
    }
}

#[derive(Debug, Clone)]
struct Known {
    /// The id reported (the identity's, or a twin's `<identity>-<kernel name>`).
    id: String,
    /// The identity the device itself gives (WWN, serial, UUID, …), before any twin suffix.
    base: String,
    /// Whether the identity is stable when no twin is present.
    natural_stable: bool,
    /// The object last reported, with the id and stability as sent.
    reported: Option<Reported>,
    kind: Kind,
    /// A partition's disk devpath.
    parent: Option<String>,
    devnode: String,
    /// Kernel names of the devices this one is built from (md, dm).
    members: Vec<String>,
}

pub struct Tracker {
    sysfs: Sysfs,
    filter: KernelNameFilter,
    source: PropSource,
    known: HashMap<String, Known>,
    /// New disks announced before their blkid probe, to be probed next.
    /// Devices announced before their probe, as sysfs showed them then (not read again).
    unprobed: Vec<SysDevice>,
    /// New disks announced before their partition table was read (kernel mode).
    tables_due: Vec<String>,
    /// Disks handed out for their first probe and not re-read since: the probe's result applies.
    probing: HashSet<String>,
    /// Devices whose `remove` came: the kernel sends it before the sysfs entry
    /// goes, so a late change or node write must not bring them back until an `add`.
    removed: HashSet<String>,
    /// Disks found asleep (kernel mode): neither they nor their partitions are probed; what
    /// their last probe found is used instead (`sleep` module).
    asleep: HashSet<String>,
    /// What the probes found, by disk identity, for disks that are asleep at the next enumeration.
    cache: Mutex<ProbeCache>,
    /// Partition tables read for partitions' entries (kernel mode), while their disk is unwritten.
    tables: Arc<Tables>,
    /// Filesystem probes of the partitions a batch of events adds, run at once by [`Self::prefetch`].
    prefetched: HashMap<String, Props>,
    /// Disks whose table [`Self::prefetch`] read or found fresh after this batch's events
    /// came: current for the batch, so its partitions do not look again.
    batch_tables: HashMap<String, Table>,
}

impl Tracker {
    pub fn new(sysfs: Sysfs, filter: KernelNameFilter, source: PropSource) -> Self {
        Self::with_cache(sysfs, filter, source, ProbeCache::default())
    }

    pub fn with_cache(sysfs: Sysfs, filter: KernelNameFilter, source: PropSource, cache: ProbeCache) -> Self {
        let sysfs_root = sysfs.root().to_owned();
        Self {
            sysfs,
            filter,
            source,
            known: HashMap::new(),
            unprobed: Vec::new(),
            tables_due: Vec::new(),
            probing: HashSet::new(),
            removed: HashSet::new(),
            asleep: HashSet::new(),
            cache: Mutex::new(cache),
            tables: Arc::new(Tables::new(sysfs_root)),
            prefetched: HashMap::new(),
            batch_tables: HashMap::new(),
        }
    }

    /// The disks an enumeration would report now, for the power check before it (kernel mode).
    pub fn disk_candidates(&self) -> Vec<Candidate> {
        let names = self.sysfs.list().unwrap_or_default();
        names
            .iter()
            .filter(|n| self.filter.keeps(n))
            .filter_map(|n| self.sysfs.read_name(n))
            .filter(|d| d.kind == Some(Kind::Disk) && d.is_present())
            .map(|d| Candidate {
                devnode: describe::devnode(&d),
                kernel_name: d.kernel_name,
                // A virtio disk reports rotational but has no spin state, and smartctl cannot
                // open one (tests/fixtures/smartctl/virtio-unable-to-detect.json): not asked.
                rotational: d.rotational && !d.devpath.contains("/virtio"),
                devpath: d.devpath,
            })
            .collect()
    }

    /// Sets the disks (devpaths) not to probe until they wake.
    pub fn set_asleep(&mut self, asleep: HashSet<String>) {
        self.asleep = asleep;
    }

    /// Disks left unprobed because they were asleep.
    pub fn asleep(&self) -> &HashSet<String> {
        &self.asleep
    }

    /// A disk is awake again (its I/O moved, or it had an event): probe it and its partitions
    /// from now on. `true` if it was asleep.
    pub fn wake(&mut self, devpath: &str) -> bool {
        self.asleep.remove(devpath)
    }

    /// The disk a reported device belongs to: itself, or a partition's disk.
    pub fn disk_of(&self, devpath: &str) -> Option<String> {
        let known = self.known.get(devpath)?;
        match known.kind {
            Kind::Disk => Some(devpath.to_owned()),
            Kind::Partition => known.parent.clone(),
        }
    }

    /// Something happened that only a spinning disk does (a write to it or a partition, a device
    /// added on it): the disk of `devpath` is awake. `true` if it was asleep.
    pub fn wake_disk_of(&mut self, devpath: &str) -> bool {
        let parent = devpath.rsplit_once('/').map(|(parent, _)| parent).filter(|p| self.asleep.contains(*p));
        let Some(disk) =
            parent.map(str::to_owned).or_else(|| self.asleep.contains(devpath).then(|| devpath.to_owned()))
        else {
            return false;
        };
        debug!(devpath = %disk, "a disk left unprobed while asleep is in use: probing it now");
        self.asleep.remove(&disk)
    }

    /// Another source saw a reported disk asleep (the health source's power check): it is not
    /// probed until it wakes, its last probe's findings stand. `true` if it was not held already.
    pub fn hold_asleep(&mut self, devpath: &str) -> bool {
        self.known.get(devpath).is_some_and(|k| k.kind == Kind::Disk) && self.asleep.insert(devpath.to_owned())
    }

    /// The size of a reported disk.
    fn reported_size(&self, devpath: &str) -> Option<u64> {
        match self.known.get(devpath)?.reported.as_ref()? {
            Reported::Disk(d) => Some(d.size_bytes),
            Reported::Partition(_) => None,
        }
    }

    /// Writes the probe cache if it changed.
    pub fn save_cache(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.save();
        }
    }

    /// A save of [`Self::cache_snapshot`] failed: the cache is to be saved again.
    pub fn cache_unsaved(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.mark_unsaved();
        }
    }

    /// The probe cache's content to write, when it changed since it was last saved.
    pub fn cache_snapshot(&self) -> Option<(std::path::PathBuf, Vec<u8>)> {
        self.cache.lock().ok()?.snapshot()
    }

    /// The cache key of a disk: its identity from sysfs alone (what the probe cannot change)
    /// and its size.
    fn cache_key(disk: &SysDevice) -> String {
        ProbeCache::key(&describe::disk(disk, &Props::new()).id, disk.size_bytes)
    }

    /// Number of devices reported now.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// The device node of a reported device.
    pub fn devnode(&self, devpath: &str) -> Option<&str> {
        self.known.get(devpath).map(|k| k.devnode.as_str())
    }

    /// Devpaths of the reported devices.
    pub fn devpaths(&self) -> impl Iterator<Item = &str> {
        self.known.keys().map(String::as_str)
    }

    /// Whether a device appeared or vanished since it was last reported: such
    /// a change is an add or remove in disguise (loop attach/detach) and must not wait.
    pub fn presence_changed(&self, devpath: &str) -> bool {
        let name = devpath.rsplit('/').next().unwrap_or_default();
        if !self.filter.keeps(name) && !self.known.contains_key(devpath) {
            return false;
        }
        self.sysfs.is_present(devpath) != self.known.contains_key(devpath)
    }

    /// Reads every block device and forgets what is gone: the coldplug and resync fact.
    pub fn enumerate(&mut self, initial: bool) -> Fact {
        let names = self.sysfs.list().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot list block devices");
            Vec::new()
        });
        let devices: Vec<SysDevice> = names
            .iter()
            .filter(|n| self.filter.keeps(n))
            .filter_map(|n| self.sysfs.read_name(n))
            .filter(SysDevice::is_present)
            .collect();
        self.known.clear();
        self.removed.clear();
        self.tables.clear();
        // Probing waits on device I/O; probe several devices at once.
        let mut disk_devs: Vec<&SysDevice> = devices.iter().filter(|d| d.kind == Some(Kind::Disk)).collect();
        // In name order, so which of two twins keeps the plain id does not depend on sysfs order.
        disk_devs.sort_by(|a, b| a.devpath.cmp(&b.devpath));
        if self.source == PropSource::Kernel {
            let keys: HashSet<String> = disk_devs.iter().map(|d| Self::cache_key(d)).collect();
            if let Ok(mut c) = self.cache.lock() {
                c.retain(&keys);
            }
        }
        let described: Vec<Disk> = parallel_map(&disk_devs, |sys| describe::disk(sys, &self.props(sys, None)));
        for (sys, disk) in disk_devs.iter().zip(described) {
            self.adopt(sys, Reported::Disk(Box::new(disk)));
        }
        let mut part_devs: Vec<&SysDevice> = devices.iter().filter(|d| d.kind == Some(Kind::Partition)).collect();
        part_devs.sort_by(|a, b| a.devpath.cmp(&b.devpath));
        let described = parallel_map(&part_devs, |sys| self.describe_partition(sys, None, None));
        for (sys, p) in part_devs.iter().zip(described) {
            if let Some(p) = p {
                self.adopt(sys, Reported::Partition(Box::new(p)));
            }
        }
        // Twins are marked unstable both, whichever came first.
        let mut ignored = Vec::new();
        let bases: Vec<(Kind, String)> = self.known.values().map(|k| (k.kind, k.base.clone())).collect();
        for (kind, base) in bases {
            self.mark_twins(kind, &base, &mut ignored);
        }
        let mut disks = Vec::new();
        let mut partitions = Vec::new();
        for sys in disk_devs.iter().chain(&part_devs) {
            match self.known.get(&sys.devpath).and_then(|k| k.reported.clone()) {
                Some(Reported::Disk(d)) => disks.push(*d),
                Some(Reported::Partition(p)) => partitions.push(*p),
                None => {}
            }
        }
        Fact::BlockDevices { disks, partitions, initial }
    }

    /// Handles one device event, appending the facts it makes.
    pub fn handle(&mut self, action: Action, devpath: &str, event_props: Option<&Props>, out: &mut Vec<Fact>) {
        let name = devpath.rsplit('/').next().unwrap_or_default();
        if !self.filter.keeps(name) && !self.known.contains_key(devpath) {
            return;
        }
        match action {
            Action::Remove => {
                self.removed.insert(devpath.to_owned());
                self.forget(devpath, out);
                return;
            }
            Action::Add => {
                self.removed.remove(devpath);
            }
            _ if self.removed.contains(devpath) => return,
            _ => {}
        }
        // A device added on a sleeping disk (a partition scan, which read it) means it is in use:
        // awake. A `change` does not: `udevadm trigger` and `echo change > uevent` send one to a
        // disk in standby, and probing it then would spin it up. The caller wakes the disk for
        // what only a spinning disk can do (a write: `wake_disk_of`); a size change is seen here.
        if action == Action::Add {
            self.wake_disk_of(devpath);
        }
        let Some(sys) = self.sysfs.read(devpath).filter(SysDevice::is_present) else {
            // Gone already, or a loop slot that was detached.
            self.forget(devpath, out);
            return;
        };
        if self.asleep.contains(devpath) && self.reported_size(devpath).is_some_and(|s| s != sys.size_bytes) {
            debug!(devpath, "a sleeping disk changed size (a new medium): probing it");
            self.asleep.remove(devpath);
        }
        match sys.kind {
            Some(Kind::Disk) => {
                // A new disk's id comes from sysfs alone; announce it before the (slow, I/O bound)
                // blkid probe, which follows with `probe_pending` and may add the table and fs.
                let announce_first = self.source == PropSource::Kernel && !self.known.contains_key(devpath);
                if action != Action::Add && !self.batch_tables.contains_key(devpath) {
                    // A change of the disk (a table re-read, a media change): its table is read
                    // again (by the probe below, which keeps it), unless it was read after this
                    // change came.
                    self.tables.forget(devpath);
                }
                let props = if announce_first { Props::new() } else { self.props(&sys, event_props) };
                if !announce_first {
                    // Read afresh now: a first probe still running or due would report older findings.
                    self.probing.remove(devpath);
                    self.unprobed.retain(|u| u.devpath != devpath);
                }
                if announce_first {
                    self.unprobed.push(sys.clone());
                    self.tables_due.push(devpath.to_owned());
                }
                let disk = describe::disk(&sys, &props);
                // A table rewrite or an id change touches the partitions too; taken before a
                // rename forgets them with the old id (the state drops them with the old disk).
                let children: Vec<String> = self
                    .known
                    .iter()
                    .filter(|(_, k)| k.parent.as_deref() == Some(devpath))
                    .map(|(p, _)| p.clone())
                    .collect();
                let renamed = self.known.get(devpath).is_some_and(|k| k.base != disk.id);
                if renamed {
                    self.forget(devpath, out);
                }
                self.report(&sys, Reported::Disk(Box::new(disk)), out);
                if action == Action::Add {
                    self.refresh_members(&sys.slaves, out);
                }
                if action != Action::Add {
                    for child in children {
                        self.handle(Action::Change, &child, None, out);
                    }
                }
            }
            Some(Kind::Partition) => {
                let p = match self.partition_from_table(&sys) {
                    Some(p) => {
                        self.unprobed.push(sys.clone());
                        p
                    }
                    None => {
                        // Read afresh now: a first probe still running or due would report older findings.
                        self.probing.remove(devpath);
                        self.unprobed.retain(|u| u.devpath != devpath);
                        let probed = self.prefetched.remove(devpath);
                        let Some(p) = self.describe_partition(&sys, event_props, probed) else { return };
                        p
                    }
                };
                if self.known.get(devpath).is_some_and(|k| k.base != p.id) {
                    self.forget(devpath, out);
                }
                self.report(&sys, Reported::Partition(Box::new(p)), out);
            }
            None => {}
        }
    }

    /// Probes the disks announced without a probe; their upserts carry the
    /// partition table and filesystem when there are any.
    pub fn probe_pending(&mut self, out: &mut Vec<Fact>) {
        let pending = self.take_unprobed();
        let probed = pending.into_iter().map(|sys| {
            let props = self.props(&sys, None);
            (sys, props)
        });
        let probed: Vec<_> = probed.collect();
        self.finish_probe(probed, out);
    }

    /// The devices announced without a probe and still reported, as sysfs showed them when they
    /// were announced: a change since re-read and probed them already, and dropped them here
    /// (the caller probes them, off the event loop, and hands them to [`Self::finish_probe`]).
    pub fn take_unprobed(&mut self) -> Vec<SysDevice> {
        let taken: Vec<SysDevice> =
            std::mem::take(&mut self.unprobed).into_iter().filter(|d| self.known.contains_key(&d.devpath)).collect();
        self.probing.extend(taken.iter().map(|d| d.devpath.clone()));
        taken
    }

    /// Upserts probed disks that are still reported under the same id.
    pub fn finish_probe(&mut self, probed: Vec<(SysDevice, Props)>, out: &mut Vec<Fact>) {
        for (sys, props) in probed {
            if !self.probing.remove(&sys.devpath) {
                // Removed, or re-read (and probed) since the probe started.
                continue;
            }
            if sys.kind == Some(Kind::Partition) {
                // Announced from its disk's table: its filesystem follows.
                let Some(p) = self.describe_partition(&sys, None, Some(props)) else { continue };
                if self.known.get(&sys.devpath).is_some_and(|k| k.base == p.id) {
                    self.report(&sys, Reported::Partition(Box::new(p)), out);
                }
                continue;
            }
            if let Ok(mut c) = self.cache.lock() {
                c.put(&Self::cache_key(&sys), None, &props);
            }
            let disk = describe::disk(&sys, &props);
            if self.known.get(&sys.devpath).is_some_and(|k| k.base == disk.id) {
                self.report(&sys, Reported::Disk(Box::new(disk)), out);
            }
        }
    }

    /// Remembers a device under the id it may claim and sends its upsert; a twin already present
    /// is re-sent as unstable.
    fn report(&mut self, sys: &SysDevice, object: Reported, out: &mut Vec<Fact>) {
        let (kind, base) = (sys.kind.unwrap_or(Kind::Disk), object.id().to_owned());
        self.adopt(sys, object);
        if let Some(upsert) = self.known.get(&sys.devpath).and_then(|k| k.reported.as_ref()).map(Reported::upsert) {
            out.push(upsert);
        }
        self.mark_twins(kind, &base, out);
    }

    /// Gives a device its id and remembers it: the identity's own id, unless another present
    /// device of the same kind holds it; then `<id>-<kernel name>`, and unstable.
    fn adopt(&mut self, sys: &SysDevice, mut object: Reported) {
        let kind = sys.kind.unwrap_or(Kind::Disk);
        let base = object.id().to_owned();
        let natural_stable = object.stable();
        let mut twins = self.known.iter().filter(|(p, k)| **p != sys.devpath && k.kind == kind && k.base == base);
        let id = match self.known.get(&sys.devpath) {
            // Already reported under this identity: keep the id it has.
            Some(k) if k.base == base => k.id.clone(),
            _ if twins.any(|(_, k)| k.id == base) => identity::twin_id(&base, object.kernel_name()),
            _ => base.clone(),
        };
        let has_twin = self.known.iter().any(|(p, k)| *p != sys.devpath && k.kind == kind && k.base == base);
        object.set(&id, natural_stable && !has_twin);
        let known = Known {
            id,
            base,
            natural_stable,
            reported: Some(object),
            kind,
            parent: sys.parent_devpath().map(str::to_owned),
            devnode: describe::devnode(sys),
            members: sys.slaves.clone(),
        };
        self.known.insert(sys.devpath.clone(), known);
    }

    /// Re-sends every device of identity `base` whose stability is not what it should be now:
    /// unstable while two or more share the identity, its own stability once alone again.
    fn mark_twins(&mut self, kind: Kind, base: &str, out: &mut Vec<Fact>) {
        let holders: Vec<String> =
            self.known.iter().filter(|(_, k)| k.kind == kind && k.base == base).map(|(p, _)| p.clone()).collect();
        let alone = holders.len() == 1;
        for path in holders {
            let Some(k) = self.known.get_mut(&path) else { continue };
            // A twin's suffixed id lasts only while its twin does (a restart may hand it the plain
            // id): it stays unstable even alone.
            let stable = alone && k.natural_stable && k.id == k.base;
            let id = k.id.clone();
            if let Some(object) = k.reported.as_mut().filter(|o| o.stable() != stable) {
                object.set(&id, stable);
                out.push(object.upsert());
            }
        }
    }

    fn forget(&mut self, devpath: &str, out: &mut Vec<Fact>) {
        self.probing.remove(devpath);
        self.unprobed.retain(|u| u.devpath != devpath);
        let Some(known) = self.known.remove(devpath) else { return };
        match known.kind {
            Kind::Disk => {
                // The state drops a disk's partitions with it.
                let mut bases = Vec::new();
                self.known.retain(|_, k| {
                    let child = k.parent.as_deref() == Some(devpath);
                    if child {
                        bases.push(k.base.clone());
                    }
                    !child
                });
                out.push(Fact::DiskRemoved { id: known.id });
                self.tables.forget(devpath);
                // A disk plugged in again under this name is a new one, awake.
                self.asleep.remove(devpath);
                if self.source == PropSource::Kernel {
                    // A disk plugged in again is awake and probed afresh: its entry is not needed,
                    // and keeping it would grow the cache with every new kernel name or size.
                    self.retain_cache();
                }
                for base in bases {
                    self.mark_twins(Kind::Partition, &base, out);
                }
            }
            Kind::Partition => out.push(Fact::PartitionRemoved { id: known.id }),
        }
        // A twin left alone is stable again (if its identity is).
        self.mark_twins(known.kind, &known.base, out);
        self.refresh_members(&known.members, out);
    }

    /// An array or mapping came or went: its members' `holders` changed
    /// without an event of their own, so re-read them.
    fn refresh_members(&mut self, members: &[String], out: &mut Vec<Fact>) {
        for member in members {
            let suffix = format!("/{member}");
            let path = self.known.keys().find(|p| p.ends_with(&suffix)).cloned();
            if let Some(path) = path {
                self.handle(Action::Change, &path, None, out);
            }
        }
    }
}

#[path = "tracker_probe.rs"]
mod probing;

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
