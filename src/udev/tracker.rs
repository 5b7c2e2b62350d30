//! The source's memory of what it reported: devpath → id, so removals can be
//! sent and id changes (a partition gaining a filesystem UUID) are seen.
//! Turns device events and full enumerations into facts.
//!
//! Two devices present with one identity (a cloned disk shares its partitions' UUIDs, two sticks
//! from one batch share a serial) are kept apart: the first keeps the id, the twin gets the id
//! plus its kernel name, both are reported `stable: false` while the other is present, and each
//! is removed by its own device path, so unplugging one never removes the other.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use tracing::debug;

use crate::model::{Disk, Partition};
use crate::state::Fact;

use super::describe;
use super::filter::NameFilter;
use super::identity;
use super::parallel::parallel_map;
use super::probe::{self, kernel_props};
use super::sleep::{Candidate, ProbeCache};
use super::sysfs::{Kind, SysDevice, Sysfs};
use super::uevent::{Action, Props};

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
    filter: NameFilter,
    source: PropSource,
    known: HashMap<String, Known>,
    /// New disks announced before their blkid probe, to be probed next.
    unprobed: Vec<String>,
    /// Devices whose `remove` came: the kernel sends it before the sysfs entry
    /// goes, so a late change or node write must not bring them back until an `add`.
    removed: HashSet<String>,
    /// Disks found asleep (kernel mode): neither they nor their partitions are probed; what
    /// their last probe found is used instead (`sleep` module).
    asleep: HashSet<String>,
    /// What the probes found, by disk identity, for disks that are asleep at the next enumeration.
    cache: Mutex<ProbeCache>,
}

impl Tracker {
    pub fn new(sysfs: Sysfs, filter: NameFilter, source: PropSource) -> Self {
        Self::with_cache(sysfs, filter, source, ProbeCache::default())
    }

    pub fn with_cache(sysfs: Sysfs, filter: NameFilter, source: PropSource, cache: ProbeCache) -> Self {
        Self {
            sysfs,
            filter,
            source,
            known: HashMap::new(),
            unprobed: Vec::new(),
            removed: HashSet::new(),
            asleep: HashSet::new(),
            cache: Mutex::new(cache),
        }
    }

    /// The disks an enumeration would report now, for the power check before it (kernel mode).
    pub fn disk_candidates(&self) -> Vec<Candidate> {
        let names = self.sysfs.list().unwrap_or_default();
        names
            .iter()
            .filter(|n| self.filter.accepts(n))
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

    /// Writes the probe cache if it changed.
    pub fn save_cache(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.save();
        }
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
        if !self.filter.accepts(name) && !self.known.contains_key(devpath) {
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
            .filter(|n| self.filter.accepts(n))
            .filter_map(|n| self.sysfs.read_name(n))
            .filter(SysDevice::is_present)
            .collect();
        self.known.clear();
        self.removed.clear();
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
        let described = parallel_map(&part_devs, |sys| self.describe_partition(sys, None));
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
        if !self.filter.accepts(name) && !self.known.contains_key(devpath) {
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
        // An event about a sleeping disk (a write to it, a change) means it is in use: awake.
        let disk_path = devpath.rsplit_once('/').map(|(parent, _)| parent).filter(|p| self.asleep.contains(*p));
        if let Some(disk) =
            disk_path.map(str::to_owned).or_else(|| self.asleep.contains(devpath).then(|| devpath.to_owned()))
        {
            debug!(devpath = %disk, "event for a disk left unprobed while asleep: probing it now");
            self.asleep.remove(&disk);
        }
        let Some(sys) = self.sysfs.read(devpath).filter(SysDevice::is_present) else {
            // Gone already, or a loop slot that was detached.
            self.forget(devpath, out);
            return;
        };
        match sys.kind {
            Some(Kind::Disk) => {
                // A new disk's id comes from sysfs alone; announce it before the (slow, I/O bound)
                // blkid probe, which follows with `probe_pending` and may add the table and fs.
                let announce_first = self.source == PropSource::Kernel && !self.known.contains_key(devpath);
                let props = if announce_first { Props::new() } else { self.props(&sys, event_props) };
                if announce_first {
                    self.unprobed.push(devpath.to_owned());
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
                let Some(p) = self.describe_partition(&sys, event_props) else { return };
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

    /// The disks announced without a probe, as sysfs shows them now (the
    /// caller probes them, off the async threads, and hands them to [`Self::finish_probe`]).
    pub fn take_unprobed(&mut self) -> Vec<SysDevice> {
        std::mem::take(&mut self.unprobed)
            .into_iter()
            .filter(|p| self.known.contains_key(p))
            .filter_map(|p| self.sysfs.read(&p).filter(SysDevice::is_present))
            .collect()
    }

    /// Upserts probed disks that are still reported under the same id.
    pub fn finish_probe(&mut self, probed: Vec<(SysDevice, Props)>, out: &mut Vec<Fact>) {
        for (sys, props) in probed {
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

    fn describe_partition(&self, sys: &SysDevice, event_props: Option<&Props>) -> Option<Partition> {
        let parent_path = sys.parent_devpath()?;
        let disk_id = match self.known.get(parent_path) {
            Some(k) => k.id.clone(),
            None => {
                let parent = self.sysfs.read(parent_path)?;
                describe::disk(&parent, &self.props(&parent, None)).id
            }
        };
        let key = (self.source == PropSource::Kernel)
            .then(|| self.sysfs.read(parent_path).map(|parent| Self::cache_key(&parent)))
            .flatten();
        if self.asleep.contains(parent_path) {
            // Its disk sleeps: what the last probe found, or sysfs alone.
            let cached = key.as_deref().and_then(|k| {
                let cache = self.cache.lock().ok()?;
                cache.get(k)?.partitions.get(&sys.partition?).cloned()
            });
            return Some(describe::partition(sys, &cached.unwrap_or_default(), &disk_id));
        }
        let mut props = self.props(sys, event_props);
        // udevd's blkid builtin fills ID_PART_ENTRY_*; without it, read the parent's table.
        if self.source == PropSource::Kernel || !props.contains_key("ID_PART_ENTRY_SCHEME") {
            let parent_node = format!("/dev/{}", parent_path.rsplit('/').next().unwrap_or_default());
            match probe::table_bounded(Path::new(&parent_node)) {
                Ok((kind, entries)) => {
                    if let Some(e) = entries.iter().find(|e| Some(e.number) == sys.partition) {
                        probe::entry_props(e, kind.as_deref(), &mut props);
                    }
                }
                Err(e) => debug!(device = %parent_node, error = %e, "partition table probe failed"),
            }
        }
        if let (Some(k), Some(n), Ok(mut c)) = (key, sys.partition, self.cache.lock()) {
            c.put(&k, Some(n), &props);
        }
        Some(describe::partition(sys, &props, &disk_id))
    }

    /// Identity properties of a device in the configured mode.
    fn props(&self, sys: &SysDevice, event_props: Option<&Props>) -> Props {
        match self.source {
            PropSource::Kernel if sys.kind == Some(Kind::Disk) => {
                let key = Self::cache_key(sys);
                if self.asleep.contains(&sys.devpath) {
                    let cached = self.cache.lock().ok().and_then(|c| c.get(&key).map(|p| p.disk.clone()));
                    return cached.unwrap_or_default();
                }
                let props = kernel_props(sys);
                if let Ok(mut c) = self.cache.lock() {
                    c.put(&key, None, &props);
                }
                props
            }
            PropSource::Kernel => kernel_props(sys),
            PropSource::Udev => {
                let props = match event_props {
                    Some(p) => p.clone(),
                    None => super::udevd::database_props(&sys.dev),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str, content: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// A fake sysfs with an attached loop disk `loop90` (partitions p1, p2) and a detached `loop91`.
    fn fake() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("class/block")).unwrap();
        for (name, rel, uevent) in [
            ("loop90", "devices/virtual/block/loop90", "MAJOR=7\nMINOR=90\nDEVNAME=loop90\nDEVTYPE=disk\n"),
            (
                "loop90p1",
                "devices/virtual/block/loop90/loop90p1",
                "MAJOR=259\nMINOR=90\nDEVNAME=loop90p1\nDEVTYPE=partition\nPARTN=1\n",
            ),
            (
                "loop90p2",
                "devices/virtual/block/loop90/loop90p2",
                "MAJOR=259\nMINOR=91\nDEVNAME=loop90p2\nDEVTYPE=partition\nPARTN=2\n",
            ),
            ("loop91", "devices/virtual/block/loop91", "MAJOR=7\nMINOR=91\nDEVNAME=loop91\nDEVTYPE=disk\n"),
            ("sda", "devices/virtual/block/sda", "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n"),
        ] {
            write(r, &format!("{rel}/uevent"), uevent);
            write(r, &format!("{rel}/size"), "2048\n");
            std::os::unix::fs::symlink(r.join(rel), r.join("class/block").join(name)).unwrap();
        }
        write(r, "devices/virtual/block/loop90/loop/backing_file", "/x.img\n");
        t
    }

    fn tracker(root: &Path) -> Tracker {
        let filter = NameFilter::new(&["loop9*".into()], &["loop*".into(), "sd*".into()]).unwrap();
        Tracker::new(Sysfs::new(root), filter, PropSource::Udev)
    }

    #[test]
    fn enumeration_reports_present_filtered_devices() {
        let t = fake();
        let mut tr = tracker(t.path());
        let Fact::BlockDevices { disks, partitions, initial } = tr.enumerate(true) else { panic!() };
        assert!(initial);
        assert_eq!(disks.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec!["dev-loop90"]);
        let mut parts: Vec<_> = partitions.iter().map(|p| (p.id.clone(), p.disk_id.clone())).collect();
        parts.sort();
        assert_eq!(
            parts,
            vec![("dev-loop90-part1".into(), "dev-loop90".into()), ("dev-loop90-part2".into(), "dev-loop90".into())]
        );
        assert_eq!(tr.len(), 3);
    }

    #[test]
    fn attach_and_detach_of_a_loop_slot() {
        let t = fake();
        let mut tr = tracker(t.path());
        tr.enumerate(true);
        let mut out = Vec::new();
        tr.handle(Action::Change, "/devices/virtual/block/loop91", None, &mut out);
        assert!(out.is_empty(), "a detached slot is no disk");
        write(t.path(), "devices/virtual/block/loop91/loop/backing_file", "/y.img\n");
        tr.handle(Action::Change, "/devices/virtual/block/loop91", None, &mut out);
        assert!(matches!(&out[..], [Fact::DiskUpsert(d)] if d.id == "dev-loop91"));
        out.clear();
        assert!(!tr.presence_changed("/devices/virtual/block/loop91"));
        fs::remove_file(t.path().join("devices/virtual/block/loop91/loop/backing_file")).unwrap();
        assert!(tr.presence_changed("/devices/virtual/block/loop91"));
        tr.handle(Action::Change, "/devices/virtual/block/loop91", None, &mut out);
        assert!(matches!(&out[..], [Fact::DiskRemoved { id }] if id == "dev-loop91"));
    }

    #[test]
    fn kernel_mode_announces_a_new_disk_before_probing_it() {
        let t = fake();
        let filter = NameFilter::new(&["loop9*".into()], &[]).unwrap();
        let mut tr = Tracker::new(Sysfs::new(t.path()), filter, PropSource::Kernel);
        tr.enumerate(true);
        write(t.path(), "devices/virtual/block/loop91/loop/backing_file", "/y.img\n");
        let mut out = Vec::new();
        tr.handle(Action::Change, "/devices/virtual/block/loop91", None, &mut out);
        assert!(matches!(&out[..], [Fact::DiskUpsert(d)] if d.id == "dev-loop91"));
        out.clear();
        tr.probe_pending(&mut out);
        assert!(matches!(&out[..], [Fact::DiskUpsert(d)] if d.id == "dev-loop91"), "the probed upsert follows");
        out.clear();
        tr.probe_pending(&mut out);
        assert!(out.is_empty(), "each new disk is probed once");
        // A known disk is probed in line: no second round.
        tr.handle(Action::Change, "/devices/virtual/block/loop91", None, &mut out);
        out.clear();
        tr.probe_pending(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn removals_use_the_remembered_id() {
        let t = fake();
        let mut tr = tracker(t.path());
        tr.enumerate(true);
        let mut out = Vec::new();
        tr.handle(Action::Remove, "/devices/virtual/block/loop90/loop90p1", None, &mut out);
        assert!(matches!(&out[..], [Fact::PartitionRemoved { id }] if id == "dev-loop90-part1"));
        out.clear();
        tr.handle(Action::Remove, "/devices/virtual/block/loop90", None, &mut out);
        assert!(matches!(&out[..], [Fact::DiskRemoved { id }] if id == "dev-loop90"));
        assert!(tr.is_empty(), "the disk's partitions are forgotten with it");
        out.clear();
        tr.handle(Action::Remove, "/devices/virtual/block/loop90", None, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_late_change_does_not_revive_a_removed_device() {
        let t = fake();
        let mut tr = tracker(t.path());
        tr.enumerate(true);
        let p1 = "/devices/virtual/block/loop90/loop90p1";
        let mut out = Vec::new();
        // The sysfs entry is still there when the remove event is read.
        tr.handle(Action::Remove, p1, None, &mut out);
        out.clear();
        tr.handle(Action::Change, p1, None, &mut out);
        assert!(out.is_empty(), "revived: {out:?}");
        tr.handle(Action::Add, p1, None, &mut out);
        assert!(matches!(&out[..], [Fact::PartitionUpsert(p)] if p.kernel_name == "loop90p1"));
    }

    #[test]
    fn an_id_change_removes_the_old_id() {
        let t = fake();
        let mut tr = tracker(t.path());
        tr.enumerate(true);
        let mut out = Vec::new();
        let props: Props = [("ID_FS_UUID", "fresh-uuid"), ("ID_FS_TYPE", "ext4")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tr.handle(Action::Change, "/devices/virtual/block/loop90/loop90p2", Some(&props), &mut out);
        assert!(matches!(&out[0], Fact::PartitionRemoved { id } if id == "dev-loop90-part2"));
        assert!(
            matches!(&out[1], Fact::PartitionUpsert(p) if p.id == "fresh-uuid" && p.fs_type.as_deref() == Some("ext4"))
        );
    }

    #[test]
    fn an_array_coming_and_going_refreshes_its_members_holders() {
        let t = fake();
        let r = t.path();
        let mut tr = tracker(r);
        tr.enumerate(true);
        let md = "devices/virtual/block/loop95";
        write(r, &format!("{md}/uevent"), "MAJOR=9\nMINOR=0\nDEVNAME=loop95\nDEVTYPE=disk\n");
        write(r, &format!("{md}/loop/backing_file"), "/z.img\n");
        fs::create_dir_all(r.join(format!("{md}/slaves/loop90p1"))).unwrap();
        fs::create_dir_all(r.join("devices/virtual/block/loop90/loop90p1/holders/loop95")).unwrap();
        std::os::unix::fs::symlink(r.join(md), r.join("class/block/loop95")).unwrap();
        let mut out = Vec::new();
        tr.handle(Action::Add, &format!("/{md}"), None, &mut out);
        assert!(matches!(&out[0], Fact::DiskUpsert(d) if d.members == vec!["loop90p1"]));
        assert!(matches!(&out[1], Fact::PartitionUpsert(p) if p.kernel_name == "loop90p1"), "{out:?}");
        out.clear();
        fs::remove_dir(r.join("devices/virtual/block/loop90/loop90p1/holders/loop95")).unwrap();
        tr.handle(Action::Remove, &format!("/{md}"), None, &mut out);
        assert!(matches!(&out[0], Fact::DiskRemoved { id } if id == "dev-loop95"));
        assert!(matches!(&out[1], Fact::PartitionUpsert(p) if p.kernel_name == "loop90p1"), "{out:?}");
    }

    fn props_of(kv: &[(&str, &str)]) -> Props {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Adds an attached loop disk `name` with one partition to the fake sysfs.
    fn add_loop(root: &Path, name: &str, minor: u32) -> (String, String) {
        let rel = format!("devices/virtual/block/{name}");
        write(root, &format!("{rel}/uevent"), &format!("MAJOR=7\nMINOR={minor}\nDEVNAME={name}\nDEVTYPE=disk\n"));
        write(root, &format!("{rel}/size"), "2048\n");
        write(root, &format!("{rel}/loop/backing_file"), "/clone.img\n");
        let part = format!("{name}p1");
        write(
            root,
            &format!("{rel}/{part}/uevent"),
            &format!("MAJOR=259\nMINOR={minor}\nDEVNAME={part}\nDEVTYPE=partition\nPARTN=1\n"),
        );
        write(root, &format!("{rel}/{part}/size"), "1024\n");
        std::os::unix::fs::symlink(root.join(&rel), root.join("class/block").join(name)).unwrap();
        std::os::unix::fs::symlink(root.join(format!("{rel}/{part}")), root.join("class/block").join(&part)).unwrap();
        (format!("/{rel}"), format!("/{rel}/{part}"))
    }

    #[test]
    fn twin_partitions_are_kept_apart_and_removed_by_device_path() {
        let t = fake();
        let (_, first) = add_loop(t.path(), "loop92", 92);
        let (_, second) = add_loop(t.path(), "loop93", 93);
        let mut tr = tracker(t.path());
        tr.enumerate(true);
        // A cloned disk: both partitions carry the same partition and filesystem UUIDs.
        let clone = props_of(&[("ID_PART_ENTRY_UUID", "c10e-1"), ("ID_FS_UUID", "f5-1"), ("ID_FS_TYPE", "ext4")]);
        let mut out = Vec::new();
        tr.handle(Action::Change, &first, Some(&clone), &mut out);
        assert!(
            matches!(&out[..], [Fact::PartitionRemoved { .. }, Fact::PartitionUpsert(p)] if p.id == "c10e-1" && p.stable)
        );
        out.clear();
        tr.handle(Action::Change, &second, Some(&clone), &mut out);
        match &out[..] {
            [Fact::PartitionRemoved { id }, Fact::PartitionUpsert(twin), Fact::PartitionUpsert(first)] => {
                assert_eq!(id, "dev-loop93-part1");
                assert_eq!(
                    (twin.id.as_str(), twin.stable, twin.kernel_name.as_str()),
                    ("c10e-1-loop93p1", false, "loop93p1")
                );
                assert_eq!(
                    (first.id.as_str(), first.stable, first.kernel_name.as_str()),
                    ("c10e-1", false, "loop92p1")
                );
            }
            other => panic!("{other:?}"),
        }
        out.clear();
        // Unplugging the twin removes the twin, and the first is stable again.
        tr.handle(Action::Remove, &second, None, &mut out);
        match &out[..] {
            [Fact::PartitionRemoved { id }, Fact::PartitionUpsert(first)] => {
                assert_eq!(id, "c10e-1-loop93p1");
                assert_eq!((first.id.as_str(), first.stable), ("c10e-1", true));
            }
            other => panic!("{other:?}"),
        }
        // Back, then the first goes: the twin keeps its id, unstable (a restart may rename it).
        out.clear();
        tr.handle(Action::Add, &second, Some(&clone), &mut out);
        out.clear();
        tr.handle(Action::Remove, &first, None, &mut out);
        assert!(matches!(&out[..], [Fact::PartitionRemoved { id }] if id == "c10e-1"), "{out:?}");
    }

    #[test]
    fn twin_disks_with_one_serial_are_kept_apart() {
        let t = fake();
        let (a, _) = add_loop(t.path(), "loop92", 92);
        let (b, _) = add_loop(t.path(), "loop93", 93);
        let mut tr = tracker(t.path());
        tr.enumerate(true);
        let stick = props_of(&[("ID_BUS", "usb"), ("ID_SERIAL", "Generic_Flash_0001"), ("ID_SERIAL_SHORT", "0001")]);
        let mut out = Vec::new();
        tr.handle(Action::Change, &a, Some(&stick), &mut out);
        tr.handle(Action::Change, &b, Some(&stick), &mut out);
        let upserts: Vec<(String, bool)> = out
            .iter()
            .filter_map(|f| match f {
                Fact::DiskUpsert(d) => Some((d.id.clone(), d.stable)),
                _ => None,
            })
            .collect();
        assert_eq!(
            upserts,
            vec![
                ("usb-Generic_Flash_0001".into(), true),
                ("usb-Generic_Flash_0001-loop93".into(), false),
                ("usb-Generic_Flash_0001".into(), false),
            ]
        );
        // The twin's partition hangs under the twin's id.
        let twin_part = out.iter().find_map(|f| match f {
            Fact::PartitionUpsert(p) if p.kernel_name == "loop93p1" => Some(p.disk_id.clone()),
            _ => None,
        });
        assert_eq!(twin_part.as_deref(), Some("usb-Generic_Flash_0001-loop93"));
        out.clear();
        tr.handle(Action::Remove, &b, None, &mut out);
        assert!(matches!(&out[0], Fact::DiskRemoved { id } if id == "usb-Generic_Flash_0001-loop93"), "{out:?}");
        assert!(out.iter().any(|f| matches!(f, Fact::DiskUpsert(d) if d.id == "usb-Generic_Flash_0001" && d.stable)));
        assert!(!out.iter().any(|f| matches!(f, Fact::DiskRemoved { id } if id == "usb-Generic_Flash_0001")));
    }

    #[test]
    fn filtered_devices_are_ignored() {
        let t = fake();
        let mut tr = tracker(t.path());
        let mut out = Vec::new();
        tr.handle(Action::Add, "/devices/virtual/block/sda", None, &mut out);
        assert!(out.is_empty());
    }
}
