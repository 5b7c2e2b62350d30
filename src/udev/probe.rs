//! Filesystem and partition-table identity through libblkid, for kernel mode
//! (no udevd to do it). Results use udev's property names (ID_FS_TYPE,
//! ID_PART_ENTRY_UUID, ...) so both modes describe devices the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use libblkid_rs::{BlkidProbe, BlkidSublks, BlkidSublksFlags};

use tracing::{debug, warn};

use super::describe;
use super::sysfs::{Kind, SysDevice};
use super::tables::Table;
use super::uevent::Props;

/// Probes a device's superblock (and, with `table`, its partition table) and
/// returns the findings as udev properties. Nothing found gives an empty set.
pub fn probe(devnode: &Path, table: bool) -> Result<Props, libblkid_rs::BlkidErr> {
    let mut probe = BlkidProbe::new_from_filename(devnode)?;
    superblocks(&mut probe, table)
}

/// A whole disk's partition table and its own properties, from one open and one probe: the
/// table first, handed to `table_read` at once (partitions added meanwhile wait for it, not for
/// the superblocks), then the superblocks over the buffers libblkid read for the table.
pub fn disk(devnode: &Path, table_read: impl FnOnce(&Table)) -> Result<Props, libblkid_rs::BlkidErr> {
    let mut probe = BlkidProbe::new_from_filename(devnode)?;
    let table = entries(&mut probe)?;
    table_read(&table);
    superblocks(&mut probe, true)
}

fn superblocks(probe: &mut BlkidProbe, table: bool) -> Result<Props, libblkid_rs::BlkidErr> {
    probe.enable_superblocks(true)?;
    probe.set_superblock_flags(BlkidSublksFlags::new(vec![
        BlkidSublks::Label,
        BlkidSublks::Uuid,
        BlkidSublks::Type,
    ]))?;
    probe.enable_partitions(table)?;
    let mut props = Props::new();
    // Ambiguous or empty results leave no values; that is "no filesystem".
    let _ = probe.do_safeprobe()?;
    for (key, prop) in
        [("TYPE", "ID_FS_TYPE"), ("LABEL", "ID_FS_LABEL"), ("UUID", "ID_FS_UUID"), ("PTTYPE", "ID_PART_TABLE_TYPE")]
    {
        if let Ok(v) = probe.lookup_value(key) {
            if !v.is_empty() {
                props.insert(prop.to_owned(), v);
            }
        }
    }
    Ok(props)
}

/// How long one probe may wait on its device: a dead disk or bridge can hold a read for
/// minutes, and the source must go on reporting the others.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a probe on its own thread and waits at most [`PROBE_TIMEOUT`]: past that the device is
/// reported without what the probe would have found, and the thread is left to finish (or to
/// stay blocked in the kernel) on its own.
fn bounded<T: Send + 'static>(node: &Path, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    bounded_for(PROBE_TIMEOUT, node, f)
}

fn bounded_for<T: Send + 'static>(timeout: Duration, node: &Path, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    // A thread of its own: the runtime's blocking pool was slower from its hand-offs (docs/udev.md).
    let spawned = std::thread::Builder::new().name("blkid".into()).spawn(move || {
        let _ = tx.send(f());
    });
    if let Err(e) = spawned {
        warn!(device = %node.display(), error = %e, "cannot start a probe thread; device reported without a probe");
        return None;
    }
    match rx.recv_timeout(timeout) {
        Ok(v) => Some(v),
        Err(_) => {
            warn!(device = %node.display(), ?timeout, "blkid probe did not finish: device reported without it");
            None
        }
    }
}

/// One probe of [`probe_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// A partition's filesystem (its own superblock, no table).
    Filesystem(PathBuf),
    /// A disk's partition table.
    Table(PathBuf),
}

/// What a [`Job`] found; `Failed` when the probe failed or did not finish in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Filesystem(Props),
    Table(Option<String>, Vec<TableEntry>),
    Failed,
}

impl Job {
    fn node(&self) -> &Path {
        match self {
            Job::Filesystem(p) | Job::Table(p) => p,
        }
    }

    fn run(&self) -> Found {
        let found = match self {
            Job::Filesystem(node) => probe(node, false).map(Found::Filesystem),
            Job::Table(node) => table(node).map(|(kind, entries)| Found::Table(kind, entries)),
        };
        found.unwrap_or_else(|e| {
            debug!(device = %self.node().display(), error = %e, "blkid probe failed");
            Found::Failed
        })
    }
}

/// Runs every job at once, each on its own thread (they wait on different I/O), and waits at
/// most [`PROBE_TIMEOUT`] for all of them. Results in the order of `jobs`.
pub fn probe_all(jobs: Vec<Job>) -> Vec<Found> {
    probe_all_for(PROBE_TIMEOUT, jobs)
}

fn probe_all_for(timeout: Duration, jobs: Vec<Job>) -> Vec<Found> {
    let deadline = std::time::Instant::now() + timeout;
    let mut out = vec![Found::Failed; jobs.len()];
    let (tx, rx) = std::sync::mpsc::channel();
    for (i, job) in jobs.into_iter().enumerate() {
        let tx = tx.clone();
        let node = job.node().to_owned();
        let spawned = std::thread::Builder::new().name("blkid".into()).spawn(move || {
            let _ = tx.send((i, job.run()));
        });
        if let Err(e) = spawned {
            warn!(device = %node.display(), error = %e, "cannot start a probe thread; device reported without a probe");
        }
    }
    drop(tx);
    // Ends when every thread has answered (all senders gone) or at the deadline.
    while let Ok((i, found)) = rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
        out[i] = found;
    }
    out
}

/// [`disk`], bounded by [`PROBE_TIMEOUT`]; `table_read` runs on the probe's thread.
pub fn disk_bounded(devnode: &Path, table_read: impl FnOnce(&Table) + Send + 'static) -> Props {
    let path = devnode.to_owned();
    match bounded(devnode, move || disk(&path, table_read).map_err(|e| e.to_string())) {
        Some(Ok(props)) => props,
        Some(Err(e)) => {
            debug!(device = %devnode.display(), error = %e, "blkid probe failed");
            Props::new()
        }
        None => Props::new(),
    }
}

/// Identity properties of a device from our own blkid probe (kernel mode).
pub fn kernel_props(sys: &SysDevice) -> Props {
    let node = PathBuf::from(describe::devnode(sys));
    let whole = sys.kind == Some(Kind::Disk);
    let path = node.clone();
    match bounded(&node, move || probe(&path, whole).map_err(|e| e.to_string())) {
        Some(Ok(props)) => props,
        Some(Err(e)) => {
            debug!(device = %node.display(), error = %e, "blkid probe failed");
            Props::new()
        }
        None => Props::new(),
    }
}

/// [`table`], bounded by [`PROBE_TIMEOUT`].
pub fn table_bounded(devnode: &Path) -> Result<Table, String> {
    let path = devnode.to_owned();
    bounded(devnode, move || table(&path).map_err(|e| e.to_string()))
        .unwrap_or_else(|| Err(format!("no answer within {PROBE_TIMEOUT:?}")))
}

/// One entry of a partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    pub number: u32,
    pub uuid: Option<String>,
    pub name: Option<String>,
}

/// The partition table of a whole disk: its type and entries (empty when none).
pub fn table(devnode: &Path) -> Result<Table, libblkid_rs::BlkidErr> {
    let mut probe = BlkidProbe::new_from_filename(devnode)?;
    entries(&mut probe)
}

fn entries(probe: &mut BlkidProbe) -> Result<Table, libblkid_rs::BlkidErr> {
    probe.enable_superblocks(false)?;
    probe.enable_partitions(true)?;
    let Ok(mut list) = probe.get_partitions() else { return Ok((None, Vec::new())) };
    let kind = list.get_table().and_then(|t| t.get_type()).ok();
    let count = list.number_of_partitions().unwrap_or(0);
    let mut entries = Vec::new();
    for i in 0..count {
        let Ok(part) = list.get_partition(i) else { continue };
        let Ok(number) = part.get_partno() else { continue };
        entries.push(TableEntry {
            number,
            // An MBR "UUID" (`1234abcd-01`) is not a UUID to the binding; it is then left out.
            uuid: part.get_uuid().ok().flatten().map(|u| u.to_string()),
            name: part.get_name().ok().flatten().filter(|n| !n.is_empty()),
        });
    }
    Ok((kind, entries))
}

/// Adds a partition table entry's identity as udev names it.
pub fn entry_props(entry: &TableEntry, table_type: Option<&str>, props: &mut Props) {
    if let Some(u) = &entry.uuid {
        props.insert("ID_PART_ENTRY_UUID".into(), u.clone());
    }
    if let Some(n) = &entry.name {
        props.insert("ID_PART_ENTRY_NAME".into(), n.clone());
    }
    if let Some(t) = table_type {
        props.insert("ID_PART_ENTRY_SCHEME".into(), t.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn image(dir: &Path, mib: u64) -> std::path::PathBuf {
        let p = dir.join("img");
        std::fs::File::create(&p).unwrap().set_len(mib << 20).unwrap();
        p
    }

    #[test]
    fn finds_an_ext4_label_and_uuid() {
        let t = tempfile::tempdir().unwrap();
        let img = image(t.path(), 8);
        let ok = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "probe-me", "-U", "0a1b2c3d-0000-4000-8000-000000000001"])
            .arg(&img)
            .status()
            .unwrap();
        assert!(ok.success());
        let props = probe(&img, false).unwrap();
        assert_eq!(props["ID_FS_TYPE"], "ext4");
        assert_eq!(props["ID_FS_LABEL"], "probe-me");
        assert_eq!(props["ID_FS_UUID"], "0a1b2c3d-0000-4000-8000-000000000001");
    }

    /// Writes a partition table into `img` with sfdisk's script `script`.
    fn sfdisk(img: &Path, script: &[u8]) {
        let mut child =
            Command::new("sfdisk").arg("--quiet").arg(img).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(script).unwrap();
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn finds_a_gpt_and_its_entries() {
        let t = tempfile::tempdir().unwrap();
        let img = image(t.path(), 8);
        sfdisk(&img, b"label: gpt\nsize=2MiB, name=alpha, uuid=11111111-2222-4333-8444-555555555555\nsize=2MiB\n");
        let props = probe(&img, true).unwrap();
        assert_eq!(props["ID_PART_TABLE_TYPE"], "gpt");
        assert!(!props.contains_key("ID_FS_TYPE"));
        let (kind, entries) = table(&img).unwrap();
        assert_eq!(kind.as_deref(), Some("gpt"));
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].number, 1);
        assert_eq!(entries[0].uuid.as_deref(), Some("11111111-2222-4333-8444-555555555555"));
        assert_eq!(entries[0].name.as_deref(), Some("alpha"));
        assert_eq!(entries[1].number, 2);
        assert!(entries[1].uuid.is_some());
    }

    #[test]
    fn one_disk_probe_gives_the_table_first_then_the_properties() {
        let t = tempfile::tempdir().unwrap();
        let img = image(t.path(), 8);
        sfdisk(&img, b"label: gpt\nsize=2MiB, name=one\n");
        let mut seen = None;
        let props = disk(&img, |t| seen = Some(t.clone())).unwrap();
        assert_eq!(props, probe(&img, true).unwrap(), "the same properties as a probe of its own");
        assert_eq!(seen, Some(table(&img).unwrap()), "the same table as a read of its own");
        assert_eq!(seen.unwrap().1[0].name.as_deref(), Some("one"));
    }

    #[test]
    fn a_hung_probe_is_given_up_and_the_caller_goes_on() {
        let started = std::time::Instant::now();
        let hung = bounded_for(Duration::from_millis(100), Path::new("/dev/hung"), || {
            std::thread::sleep(Duration::from_secs(5));
            1
        });
        assert_eq!(hung, None);
        assert!(started.elapsed() < Duration::from_secs(4), "waited for the hung probe (it sleeps 5 s)");
        assert_eq!(bounded_for(Duration::from_secs(5), Path::new("/dev/ok"), || 7), Some(7));
    }

    #[test]
    fn probes_run_at_once_and_answer_in_order() {
        let t = tempfile::tempdir().unwrap();
        let img = image(t.path(), 8);
        let ok = Command::new("mkfs.ext4").args(["-q", "-F", "-L", "at-once"]).arg(&img).status().unwrap();
        assert!(ok.success());
        let found = probe_all(vec![
            Job::Table(img.clone()),
            Job::Filesystem(img.clone()),
            Job::Filesystem(t.path().join("missing")),
        ]);
        assert_eq!(found[0], Found::Table(None, Vec::new()));
        let Found::Filesystem(props) = &found[1] else { panic!("{found:?}") };
        assert_eq!(props["ID_FS_LABEL"], "at-once");
        assert_eq!(found[2], Found::Failed);
        assert!(probe_all(Vec::new()).is_empty());
    }

    #[test]
    fn an_empty_device_has_no_identity() {
        let t = tempfile::tempdir().unwrap();
        let img = image(t.path(), 1);
        assert!(probe(&img, true).unwrap().is_empty());
        assert_eq!(table(&img).unwrap(), (None, Vec::new()));
    }
}
