//! Kernel mode never spins a sleeping disk up to probe it.
//!
//! Without udevd, libblkid reads each disk's first sectors (partition table, superblocks)
//! at coldplug and after every netlink-overflow resync; on a disk in standby that read
//! spins it up. So before those probes each disk's power state is asked the way the health
//! source asks it, without waking it: a runtime-suspended device (`device/power/runtime_status`)
//! gets nothing at all; a rotational disk gets `smartctl -i -n standby,…` (ATA CHECK POWER
//! MODE, answered in standby without spinning up). A disk found asleep is reported from sysfs
//! and from what its last probe found ([`ProbeCache`], kept in the state directory across
//! restarts), so its partitions keep their ids; it is probed once its I/O counters show that
//! something else woke it and a second power check agrees.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::uevent::Props;
use crate::activity::stat;
use crate::smartctl::{runtime_suspended, Answer, Ask, Smartctl};
use crate::text::KernelNameFilter;

/// How long one power check may take before the disk counts as awake.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the I/O counters of disks left unprobed are read (sysfs only; no command).
pub const RECHECK: Duration = Duration::from_secs(10);

/// A disk as the power check needs it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub devpath: String,
    pub kernel_name: String,
    pub devnode: String,
    /// A spinning disk, the only kind CHECK POWER MODE is sent to.
    pub rotational: bool,
}

/// The power check: runtime PM state from sysfs, CHECK POWER MODE through smartctl.
pub struct SleepCheck {
    smartctl: Option<Smartctl>,
    /// The disks smartctl is sent to (the health source's include/exclude); None: all.
    filter: Option<KernelNameFilter>,
    sys_block: PathBuf,
}

impl SleepCheck {
    /// `smartctl` None: only the runtime PM state is consulted; `device_type` is smartctl's
    /// `-d` (the health source's), so the check talks to the disk the way the health source does.
    pub fn new(
        smartctl: Option<PathBuf>,
        device_type: Option<String>,
        filter: Option<KernelNameFilter>,
        sysfs_root: &Path,
    ) -> Self {
        Self {
            smartctl: smartctl.map(|s| Smartctl::new(s, CHECK_TIMEOUT, device_type)),
            filter,
            sys_block: sysfs_root.join("block"),
        }
    }

    /// Sends the power checks to the smartctl helper at `socket` (None: smartctl runs itself).
    pub fn via_socket(mut self, socket: Option<PathBuf>) -> Self {
        self.smartctl = self.smartctl.map(|s| s.via_socket(socket));
        self
    }

    /// The devpaths of the disks among `disks` that are asleep now (checked at once).
    pub async fn asleep(&self, disks: &[Candidate]) -> HashSet<String> {
        let checks = disks.iter().map(|d| async move { self.is_asleep(d).await.then(|| d.devpath.clone()) });
        futures_util::future::join_all(checks).await.into_iter().flatten().collect()
    }

    pub async fn is_asleep(&self, disk: &Candidate) -> bool {
        if runtime_suspended(&self.sys_block, &disk.kernel_name) {
            debug!(disk = %disk.kernel_name, "runtime-suspended: not probed");
            return true;
        }
        let (true, Some(smartctl)) = (disk.rotational, &self.smartctl) else { return false };
        if self.filter.as_ref().is_some_and(|f| !f.keeps(&disk.kernel_name)) {
            return false;
        }
        match smartctl.ask(&disk.kernel_name, &disk.devnode, Ask::PowerCheck).await {
            Ok(Answer::LowPower(state)) => {
                debug!(disk = %disk.kernel_name, ?state, "in a low-power mode: not probed");
                true
            }
            Ok(Answer::BadCommandLine(why)) => {
                warn!(disk = %disk.kernel_name, error = %why, "smartctl refused the power check; probing");
                false
            }
            Ok(_) => false,
            Err(e) => {
                // No answer (no smartctl, a hung bridge): the probe itself is bounded by its timeout.
                debug!(disk = %disk.kernel_name, error = %e, "power check failed; probing");
                false
            }
        }
    }

    /// Completed I/Os of a disk as a user sees them (partitions' counters when it has any):
    /// when they move, something woke the disk.
    pub fn ios(&self, kernel_name: &str) -> Option<u64> {
        stat::activity(&self.sys_block, kernel_name).ok().map(|c| c.ios())
    }
}

/// Disks left unprobed while asleep, with their I/O count then: when it moves, something else
/// woke the disk, and a second power check confirms it before the probe.
#[derive(Default)]
pub struct Deferred {
    disks: HashMap<String, (Candidate, Option<u64>)>,
}

impl Deferred {
    /// Starts following these disks (the ones found asleep among `candidates`).
    pub fn follow(&mut self, check: &SleepCheck, candidates: &[Candidate], asleep: &HashSet<String>) {
        self.disks = candidates
            .iter()
            .filter(|c| asleep.contains(&c.devpath))
            .map(|c| (c.devpath.clone(), (c.clone(), check.ios(&c.kernel_name))))
            .collect();
    }

    pub fn is_empty(&self) -> bool {
        self.disks.is_empty()
    }

    /// Forgets disks that are no longer asleep (woken by an event of their own).
    pub fn retain(&mut self, asleep: &HashSet<String>) {
        self.disks.retain(|p, _| asleep.contains(p));
    }

    /// The disks whose I/O moved since the last look, and that a power check finds awake.
    pub async fn woken(&mut self, check: &SleepCheck) -> Vec<String> {
        let mut woken = Vec::new();
        for (devpath, (disk, seen)) in &mut self.disks {
            let now = check.ios(&disk.kernel_name);
            if now == *seen {
                continue;
            }
            *seen = now;
            if !check.is_asleep(disk).await {
                woken.push(devpath.clone());
            }
        }
        for p in &woken {
            self.disks.remove(p);
        }
        woken
    }
}

/// What the last probe of a disk found, by a key that survives restarts and renames.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probed {
    /// The disk's own properties (table type, a whole-disk filesystem).
    pub disk: Props,
    /// Each partition's properties (table entry and filesystem), by partition number.
    pub partitions: BTreeMap<u32, Props>,
}

/// Probe results kept for disks that may be asleep the next time they are enumerated.
/// Keyed by `<stable disk id>@<size in bytes>`, so a disk under another kernel name after a
/// reboot finds its own entry and never another disk's.
#[derive(Debug, Default)]
pub struct ProbeCache {
    path: Option<PathBuf>,
    entries: HashMap<String, Probed>,
    dirty: bool,
}

impl ProbeCache {
    /// Loads the cache file; a missing or unreadable one starts empty.
    pub fn load(path: Option<PathBuf>) -> Self {
        let entries = path
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| {
                serde_json::from_slice(&b)
                    .map_err(|e| warn!(error = %e, "probe cache unreadable: starting afresh"))
                    .ok()
            })
            .unwrap_or_default();
        Self { path, entries, dirty: false }
    }

    pub fn key(disk_id: &str, size_bytes: u64) -> String {
        format!("{disk_id}@{size_bytes}")
    }

    pub fn get(&self, key: &str) -> Option<&Probed> {
        self.entries.get(key)
    }

    /// Records a disk's properties (`part` None) or a partition's.
    pub fn put(&mut self, key: &str, part: Option<u32>, props: &Props) {
        let entry = self.entries.entry(key.to_owned()).or_default();
        let slot = match part {
            None => &mut entry.disk,
            Some(n) => entry.partitions.entry(n).or_default(),
        };
        if slot != props {
            *slot = props.clone();
            self.dirty = true;
        }
    }

    /// Keeps only the entries of these keys (the disks present now).
    pub fn retain(&mut self, keys: &HashSet<String>) {
        let before = self.entries.len();
        self.entries.retain(|k, _| keys.contains(k));
        self.dirty |= self.entries.len() != before;
    }

    /// Writes the file if anything changed (atomically: temporary file, fsync, rename).
    pub fn save(&mut self) {
        if let Some((path, bytes)) = self.snapshot() {
            if !write_cache(&path, &bytes) {
                self.mark_unsaved();
            }
        }
    }

    /// A write of a [`Self::snapshot`] failed: save it again next time.
    pub fn mark_unsaved(&mut self) {
        self.dirty = true;
    }

    /// What [`Self::save`] would write, to be written elsewhere (off the event loop: the write
    /// is fsynced); the cache counts as saved from here on.
    pub fn snapshot(&mut self) -> Option<(PathBuf, Vec<u8>)> {
        let path = self.path.clone().filter(|_| self.dirty)?;
        match serde_json::to_vec(&self.entries) {
            Ok(bytes) => {
                self.dirty = false;
                Some((path, bytes))
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot save the probe cache");
                None
            }
        }
    }
}

/// Writes a probe cache [`ProbeCache::snapshot`] made (atomically, fsynced); false on failure,
/// which is logged.
pub fn write_cache(path: &Path, bytes: &[u8]) -> bool {
    match crate::fsutil::write_atomic(path, bytes) {
        Ok(()) => true,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot save the probe cache");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn candidate(name: &str, rotational: bool) -> Candidate {
        Candidate {
            devpath: format!("/devices/x/block/{name}"),
            kernel_name: name.to_owned(),
            devnode: format!("/dev/{name}"),
            rotational,
        }
    }

    /// A stand-in for smartctl that logs its arguments and replays a real output.
    fn smartctl(dir: &Path, standby: bool) -> PathBuf {
        let path = dir.join("smartctl");
        let body = if standby {
            // Real outputs (tests/fixtures/smartctl/README.md names their sources).
            format!("cat '{}'\nexit 2", fixture("standby-smartctl-7.3.txt").display())
        } else {
            format!("cat '{}'\nexit 0", fixture("ata-hdd-wd140edfz.json").display())
        };
        let version = "case \"$*\" in *--version*) echo 'smartctl 7.3 2022-02-28 r5338'; exit 0;; esac";
        std::fs::write(
            &path,
            format!("#!/bin/sh\n{version}\necho \"$@\" >> '{}'\n{body}\n", dir.join("calls").display()),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smartctl").join(name)
    }

    #[tokio::test]
    async fn runtime_suspended_disks_get_no_command_and_spinning_ones_are_asked() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        let power = sys.join("block/sdb/device/power");
        std::fs::create_dir_all(&power).unwrap();
        std::fs::write(power.join("runtime_status"), "suspended\n").unwrap();
        let filter = KernelNameFilter::new(&[], &["loop*".to_owned()]).unwrap();
        let check = SleepCheck::new(Some(smartctl(dir.path(), true)), Some("sat".into()), Some(filter), &sys);
        let disks =
            [candidate("sdb", true), candidate("sdc", true), candidate("nvme0n1", false), candidate("loop3", true)];
        let asleep = check.asleep(&disks).await;
        let mut asleep: Vec<_> = asleep.into_iter().collect();
        asleep.sort();
        assert_eq!(asleep, ["/devices/x/block/sdb", "/devices/x/block/sdc"]);
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
        // Not the runtime-suspended sdb, not the SSD, not loop3 (left out like the health source does).
        // With the health source's -d type (before, the check left it out).
        assert_eq!(
            calls.lines().collect::<Vec<_>>(),
            ["--json -i -n standby,2,3 -d sat /dev/sdc"],
            "only sdc was asked"
        );
    }

    #[tokio::test]
    async fn an_active_or_unanswering_disk_is_probed() {
        let dir = tempfile::tempdir().unwrap();
        let check = SleepCheck::new(Some(smartctl(dir.path(), false)), None, None, dir.path());
        assert!(!check.is_asleep(&candidate("sdc", true)).await);
        let none = SleepCheck::new(Some(dir.path().join("no-such-smartctl")), None, None, dir.path());
        assert!(!none.is_asleep(&candidate("sdc", true)).await);
        let without = SleepCheck::new(None, None, None, dir.path());
        assert!(!without.is_asleep(&candidate("sdc", true)).await);
    }

    #[test]
    fn cache_survives_a_restart_and_forgets_absent_disks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probe-cache.json");
        let mut cache = ProbeCache::load(Some(path.clone()));
        let props: Props = [("ID_PART_TABLE_TYPE".to_owned(), "gpt".to_owned())].into();
        let part: Props = [("ID_FS_UUID".to_owned(), "0f3c".to_owned())].into();
        let (a, b) = (ProbeCache::key("wwn-0x5000c500a1b2c3d4", 4000), ProbeCache::key("ata-X_1", 8000));
        cache.put(&a, None, &props);
        cache.put(&a, Some(1), &part);
        cache.put(&b, None, &props);
        cache.save();
        let mut again = ProbeCache::load(Some(path.clone()));
        assert_eq!(again.get(&a).unwrap().partitions[&1], part);
        again.retain(&[a.clone()].into());
        again.save();
        let last = ProbeCache::load(Some(path));
        assert!(last.get(&a).is_some() && last.get(&b).is_none());
    }
}
