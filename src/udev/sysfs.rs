//! Reading block devices from sysfs (`<root>/class/block/<name>`): kind,
//! numbers, size, flags, vendor/model/serial/wwid, members and holders.
//! The root is an argument so tests can use a fake tree.

use std::fs;
use std::path::{Path, PathBuf};

use super::uevent::{parse_uevent_file, Props};

/// Whole device or partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Disk,
    Partition,
}

/// What sysfs says about one block device.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SysDevice {
    pub kernel_name: String,
    /// Path below the sysfs root, e.g. `/devices/virtual/block/loop0`.
    pub devpath: String,
    pub kind: Option<Kind>,
    /// `major:minor`.
    pub dev: String,
    /// DEVNAME from the uevent file (relative to /dev).
    pub devname: String,
    /// Partition number (partitions only).
    pub partition: Option<u32>,
    pub size_bytes: u64,
    pub read_only: bool,
    pub removable: bool,
    pub rotational: bool,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    /// Firmware revision: `device/rev` (SCSI, ATA), `device/firmware_rev` (NVMe).
    pub firmware: Option<String>,
    pub wwid: Option<String>,
    pub slaves: Vec<String>,
    pub holders: Vec<String>,
    /// Loop devices: the backing file, None while detached.
    pub loop_backing: Option<String>,
    /// The uevent file's properties.
    pub uevent: Props,
}

impl SysDevice {
    /// A loop device without a backing file is an unused slot, not a disk.
    pub fn is_present(&self) -> bool {
        if self.kind == Some(Kind::Disk) && self.kernel_name.starts_with("loop") {
            return self.loop_backing.is_some();
        }
        self.kind.is_some()
    }

    /// devpath of the disk a partition belongs to.
    pub fn parent_devpath(&self) -> Option<&str> {
        (self.kind == Some(Kind::Partition)).then(|| self.devpath.rsplit_once('/').map(|(p, _)| p)).flatten()
    }
}

/// The block class of a sysfs tree.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The sysfs root this reads.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Kernel names of every block device, sorted.
    pub fn list(&self) -> std::io::Result<Vec<String>> {
        let mut names: Vec<String> = fs::read_dir(self.root.join("class/block"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Reads a device by kernel name; None when it is gone.
    pub fn read_name(&self, name: &str) -> Option<SysDevice> {
        let link = self.root.join("class/block").join(name);
        let target = fs::canonicalize(&link).ok()?;
        let devpath = target.strip_prefix(fs::canonicalize(&self.root).ok()?).ok()?;
        self.read(&format!("/{}", devpath.display()))
    }

    /// A cheap presence check (no full read): the device exists and, for a
    /// loop disk, is bound to a backing file.
    pub fn is_present(&self, devpath: &str) -> bool {
        let dir = self.root.join(devpath.trim_start_matches('/'));
        let name = devpath.rsplit('/').next().unwrap_or_default();
        let loop_disk = name.starts_with("loop") && !dir.join("partition").exists();
        dir.join("uevent").exists() && (!loop_disk || dir.join("loop/backing_file").exists())
    }

    /// Reads a device by devpath (`/devices/...`); None when it is gone.
    pub fn read(&self, devpath: &str) -> Option<SysDevice> {
        let dir = self.root.join(devpath.trim_start_matches('/'));
        let uevent = parse_uevent_file(&fs::read_to_string(dir.join("uevent")).ok()?);
        let kernel_name = devpath.rsplit('/').next().unwrap_or_default().to_owned();
        let kind = match uevent.get("DEVTYPE").map(String::as_str) {
            Some("disk") => Some(Kind::Disk),
            Some("partition") => Some(Kind::Partition),
            _ => None,
        };
        let dev = match (uevent.get("MAJOR"), uevent.get("MINOR")) {
            (Some(a), Some(b)) => format!("{a}:{b}"),
            _ => attr(&dir, "dev").unwrap_or_default(),
        };
        // Queue attributes live on the disk; a partition inherits them.
        let queue_dir =
            if kind == Some(Kind::Partition) { dir.parent().unwrap_or(&dir).to_path_buf() } else { dir.clone() };
        let device_dir = dir.join("device");
        Some(SysDevice {
            devname: uevent.get("DEVNAME").cloned().unwrap_or_else(|| kernel_name.clone()),
            partition: attr(&dir, "partition").or_else(|| uevent.get("PARTN").cloned()).and_then(|n| n.parse().ok()),
            size_bytes: attr(&dir, "size").and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) * 512,
            read_only: flag(&dir, "ro"),
            removable: flag(&queue_dir, "removable"),
            rotational: flag(&queue_dir.join("queue"), "rotational"),
            vendor: attr(&device_dir, "vendor"),
            model: attr(&device_dir, "model"),
            serial: attr(&device_dir, "serial")
                .or_else(|| attr(&dir, "serial"))
                .or_else(|| usb_serial(&self.root, &dir)),
            firmware: attr(&device_dir, "rev").or_else(|| attr(&device_dir, "firmware_rev")),
            wwid: attr(&device_dir, "wwid").or_else(|| attr(&dir, "wwid")),
            slaves: list_dir(&dir.join("slaves")),
            holders: list_dir(&dir.join("holders")),
            loop_backing: attr(&dir.join("loop"), "backing_file"),
            devpath: devpath.to_owned(),
            kernel_name,
            kind,
            dev,
            uevent,
        })
    }
}

/// A trimmed, non-empty attribute.
fn attr(dir: &Path, name: &str) -> Option<String> {
    let v = fs::read_to_string(dir.join(name)).ok()?;
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

fn flag(dir: &Path, name: &str) -> bool {
    attr(dir, name).is_some_and(|v| v == "1")
}

fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|it| it.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// USB mass storage: the serial is on the USB device, an ancestor of the disk.
fn usb_serial(root: &Path, dir: &Path) -> Option<String> {
    let real = fs::canonicalize(dir.join("device")).ok()?;
    let root = fs::canonicalize(root).ok()?;
    let mut cur = real.as_path();
    while let Some(parent) = cur.parent() {
        if parent == root || !parent.starts_with(&root) {
            break;
        }
        if parent.join("idVendor").exists() {
            return attr(parent, "serial");
        }
        cur = parent;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, content: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// A fake sysfs with an ATA disk with one partition and a detached loop slot.
    fn fake() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let sda = "devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda";
        write(r, &format!("{sda}/uevent"), "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n");
        write(r, &format!("{sda}/size"), "7814037168\n");
        write(r, &format!("{sda}/ro"), "0\n");
        write(r, &format!("{sda}/removable"), "0\n");
        write(r, &format!("{sda}/queue/rotational"), "1\n");
        write(r, &format!("{sda}/device/vendor"), "ATA     \n");
        write(r, &format!("{sda}/device/model"), "WDC WD40EFRX-68N\n");
        write(r, &format!("{sda}/device/rev"), "0A82\n");
        write(r, &format!("{sda}/device/wwid"), "naa.50014ee2b5d5e6f7\n");
        fs::create_dir_all(r.join(format!("{sda}/holders"))).unwrap();
        fs::create_dir_all(r.join(format!("{sda}/slaves"))).unwrap();
        write(r, &format!("{sda}/sda1/uevent"), "MAJOR=8\nMINOR=1\nDEVNAME=sda1\nDEVTYPE=partition\nPARTN=1\n");
        write(r, &format!("{sda}/sda1/size"), "2048\n");
        write(r, &format!("{sda}/sda1/partition"), "1\n");
        write(r, &format!("{sda}/sda1/ro"), "1\n");
        fs::create_dir_all(r.join(format!("{sda}/sda1/holders/md0"))).unwrap();
        let lp = "devices/virtual/block/loop0";
        write(r, &format!("{lp}/uevent"), "MAJOR=7\nMINOR=0\nDEVNAME=loop0\nDEVTYPE=disk\n");
        write(r, &format!("{lp}/size"), "0\n");
        fs::create_dir_all(r.join("class/block")).unwrap();
        std::os::unix::fs::symlink(r.join(sda), r.join("class/block/sda")).unwrap();
        std::os::unix::fs::symlink(r.join(format!("{sda}/sda1")), r.join("class/block/sda1")).unwrap();
        std::os::unix::fs::symlink(r.join(lp), r.join("class/block/loop0")).unwrap();
        t
    }

    #[test]
    fn reads_disks_and_partitions() {
        let t = fake();
        let sys = Sysfs::new(t.path());
        assert_eq!(sys.list().unwrap(), vec!["loop0", "sda", "sda1"]);
        let sda = sys.read_name("sda").unwrap();
        assert_eq!(sda.kind, Some(Kind::Disk));
        assert_eq!(sda.dev, "8:0");
        assert_eq!(sda.size_bytes, 7814037168 * 512);
        assert!(sda.rotational && !sda.removable && !sda.read_only);
        assert_eq!(sda.vendor.as_deref(), Some("ATA"));
        assert_eq!(sda.model.as_deref(), Some("WDC WD40EFRX-68N"));
        assert_eq!(sda.firmware.as_deref(), Some("0A82"));
        assert_eq!(sda.wwid.as_deref(), Some("naa.50014ee2b5d5e6f7"));
        assert!(sda.devpath.ends_with("/block/sda") && sda.devpath.starts_with("/devices/"));
        assert!(sda.is_present());
        let p = sys.read_name("sda1").unwrap();
        assert_eq!(p.kind, Some(Kind::Partition));
        assert_eq!(p.partition, Some(1));
        assert_eq!(p.size_bytes, 2048 * 512);
        assert!(p.read_only && p.rotational, "partitions inherit the disk's queue");
        assert_eq!(p.holders, vec!["md0"]);
        assert_eq!(p.parent_devpath(), Some(sda.devpath.as_str()));
    }

    #[test]
    fn a_detached_loop_slot_is_not_present() {
        let t = fake();
        let sys = Sysfs::new(t.path());
        let lp = sys.read_name("loop0").unwrap();
        assert!(!lp.is_present());
        assert!(!sys.is_present(&lp.devpath));
        write(t.path(), "devices/virtual/block/loop0/loop/backing_file", "/tmp/disk.img\n");
        assert!(sys.is_present(&lp.devpath));
        let lp = sys.read_name("loop0").unwrap();
        assert!(lp.is_present());
        assert_eq!(lp.loop_backing.as_deref(), Some("/tmp/disk.img"));
    }

    #[test]
    fn a_vanished_device_reads_as_none() {
        let t = fake();
        let sys = Sysfs::new(t.path());
        assert!(sys.read_name("sdz").is_none());
        assert!(sys.read("/devices/virtual/block/nope").is_none());
        assert!(!sys.is_present("/devices/virtual/block/nope"));
        let sda1 = sys.read_name("sda1").unwrap();
        assert!(sys.is_present(&sda1.devpath));
    }
}
