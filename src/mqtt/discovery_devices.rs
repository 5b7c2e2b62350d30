//! How Home Assistant names and describes the agent's devices: the host, one device per disk
//! (named for the user, "WDC WD40EFRX (sda)", with manufacturer, model, serial and firmware),
//! per mount (named for its label or mount point, under its disk) and per array; and how
//! long a removed object's entities stay (short for removable and loop disks).

use serde_json::{json, Value};

use crate::arrays::{Array, ArrayKind};
use crate::model::{Disk, Mount, Snapshot};
use crate::mqtt::topics::Naming;

/// Vendor strings that name a transport or a bridge, not who made the drive.
const NOT_A_MAKER: [&str; 5] = ["ATA", "SATA", "USB", "GENERIC", "VIRTIO"];

/// Makers by the first word (or prefix) of a drive's model string, as ATA and NVMe drives
/// report it (the vendor is "ATA" or missing there). Longest prefixes first.
const MAKERS: [(&str, &str); 17] = [
    ("WDC", "Western Digital"),
    ("WD", "Western Digital"),
    ("Samsung", "Samsung"),
    ("SAMSUNG", "Samsung"),
    ("TOSHIBA", "Toshiba"),
    ("HGST", "HGST"),
    ("Hitachi", "Hitachi"),
    ("KINGSTON", "Kingston"),
    ("Crucial", "Crucial"),
    ("Micron", "Micron"),
    ("INTEL", "Intel"),
    ("SanDisk", "SanDisk"),
    ("SPCC", "Silicon Power"),
    ("ADATA", "ADATA"),
    ("Seagate", "Seagate"),
    ("ST", "Seagate"),
    ("CT", "Crucial"),
];

/// The drive's maker and the model without the maker's prefix: ("Western Digital",
/// "WD40EFRX-68N32N0") from vendor "ATA" and model "WDC WD40EFRX-68N32N0".
pub fn maker_and_model(d: &Disk) -> (Option<String>, Option<String>) {
    let model = d.model.as_deref().map(|m| m.replace('_', " ").trim().to_owned()).filter(|m| !m.is_empty());
    let vendor = d
        .vendor
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty() && !NOT_A_MAKER.contains(&v.to_ascii_uppercase().as_str()));
    if let Some(vendor) = vendor {
        return (Some(vendor.to_owned()), model);
    }
    let Some(model) = model else { return (None, None) };
    let first = model.split_whitespace().next().unwrap_or_default();
    for (prefix, maker) in MAKERS {
        if first == prefix && model.len() > first.len() {
            // "WDC WD40EFRX": the first word is the maker's tag.
            return (Some(maker.to_owned()), Some(model[first.len()..].trim().to_owned()));
        }
        // "ST4000VN008-2DR166", "CT500MX500SSD1": a model number with the maker's prefix.
        let numbered = first.strip_prefix(prefix).is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
        if numbered {
            return (Some(maker.to_owned()), Some(model));
        }
    }
    (None, Some(model))
}

/// "WDC WD40EFRX (sda)": the model as the drive reports it, without the variant suffix
/// after a dash ("-68N32N0"), and the kernel name; the kernel name alone without a model.
pub fn disk_label(d: &Disk) -> String {
    let model = d.model.as_deref().map(|m| m.replace('_', " ")).unwrap_or_default();
    let mut words: Vec<&str> = model.split_whitespace().collect();
    if let Some(last) = words.last_mut() {
        if let Some((base, _variant)) = last.split_once('-') {
            let has = |f: fn(&char) -> bool| base.chars().any(|c| f(&c));
            if base.len() >= 6 && has(char::is_ascii_digit) && has(char::is_ascii_alphabetic) {
                *last = base;
            }
        }
    }
    if words.is_empty() {
        d.kernel_name.clone()
    } else {
        format!("{} ({})", words.join(" "), d.kernel_name)
    }
}

/// "Data (/mnt/data)": the filesystem label and the mount point, or the mount point alone.
pub fn mount_label(m: &Mount, s: &Snapshot) -> String {
    let fs_label = m
        .partition_id
        .as_deref()
        .and_then(|p| s.partitions.iter().find(|x| x.id == p))
        .and_then(|p| p.fs_label.clone())
        .or_else(|| m.disk_id.as_deref().and_then(|d| s.disks.iter().find(|x| x.id == d)?.fs_label.clone()))
        .filter(|l| !l.trim().is_empty());
    match fs_label {
        Some(label) => format!("{} ({})", label.trim(), m.mount_point),
        None if m.mount_point == "/" => "Root filesystem (/)".to_owned(),
        None => m.mount_point.clone(),
    }
}

/// "md0 raid1", "btrfs data raid1", "zfs tank raidz1".
pub fn array_label(a: &Array) -> String {
    let name = if a.kind == ArrayKind::Md { a.name.clone() } else { format!("{} {}", a.kind.as_str(), a.name) };
    match a.level.as_deref() {
        Some(level) => format!("{name} {level}"),
        None => name,
    }
}

/// The host's device block. Shares carry the same block (their entities live on the host),
/// so every payload that names the host describes it identically.
pub fn host_device(naming: &Naming) -> Value {
    json!({
        "identifiers": [naming.host_device()],
        "name": format!("diskwatch {}", naming.node_id),
        "manufacturer": "diskwatch",
        "model": "Storage monitor",
        "sw_version": naming.version,
    })
}

/// A disk's device block: named for the user, with what the drive says about itself.
pub fn disk_device(d: &Disk, naming: &Naming) -> Value {
    let mut device = json!({
        "identifiers": [naming.disk_device(&d.id)],
        "name": disk_label(d),
        "via_device": naming.host_device(),
    });
    let (maker, model) = maker_and_model(d);
    let fields = [
        ("manufacturer", maker),
        ("model", model),
        ("serial_number", d.serial.clone()),
        ("sw_version", d.firmware.as_deref().map(str::to_owned)),
    ];
    for (key, value) in fields {
        if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            device[key] = json!(v);
        }
    }
    device
}

/// A mount's device block: under the disk it lives on (else the host), its filesystem as model.
pub fn mount_device(m: &Mount, s: &Snapshot, naming: &Naming) -> Value {
    let parent = match m.disk_id.as_deref() {
        Some(d) if s.disks.iter().any(|disk| disk.id == d) => naming.disk_device(d),
        _ => naming.host_device(),
    };
    let source = m.source.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(&m.source);
    json!({
        "identifiers": [mount_identifier(naming, &m.id)],
        "name": mount_label(m, s),
        "model": format!("{} on {}", m.fs_type, source),
        "via_device": parent,
    })
}

/// Identifier (and discovery object name) of a mount's device.
pub fn mount_identifier(naming: &Naming, id: &str) -> String {
    format!("diskwatch_{}_mount_{}", naming.node_id, id)
}

/// An array's device block, under the host.
pub fn array_device(a: &Array, name: &str, naming: &Naming) -> Value {
    let model = match a.level.as_deref() {
        Some(level) => format!("{} {level}", a.kind.as_str()),
        None => a.kind.as_str().to_owned(),
    };
    json!({
        "identifiers": [name],
        "name": array_label(a),
        "model": model,
        "via_device": naming.host_device(),
    })
}

/// Disks whose objects come and go with a plug: removable media, USB, MMC cards and loop
/// devices. Their entities (and those of their mounts and shares) leave Home Assistant after
/// `mqtt.remove_after_removable`; everything else after `mqtt.remove_after_fixed`.
pub fn removable(d: &Disk) -> bool {
    d.removable || matches!(d.bus.as_deref(), Some("usb" | "mmc")) || d.kernel_name.starts_with("loop")
}

/// Whether the object on disk `disk_id` is removable (false when the disk is not known).
pub fn on_removable(disk_id: Option<&str>, s: &Snapshot) -> bool {
    disk_id.and_then(|id| s.disks.iter().find(|d| d.id == id)).is_some_and(removable)
}

/// A mount goes with its disk; one on no disk the agent knows (tmpfs, overlay, FUSE, an
/// excluded loop device) is as transient as a removable one, except a network mount, which
/// comes back after an outage and keeps its entities as long as a fixed disk's.
pub fn mount_removable(m: &Mount, s: &Snapshot) -> bool {
    match m.disk_id.as_deref().and_then(|id| s.disks.iter().find(|d| d.id == id)) {
        Some(d) => removable(d),
        None => !m.network,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::discovery::tests::disk;

    fn with(vendor: Option<&str>, model: Option<&str>) -> Disk {
        let mut d = disk();
        d.vendor = vendor.map(str::to_owned);
        d.model = model.map(str::to_owned);
        d
    }

    #[test]
    fn makers_and_models_as_drives_report_them() {
        // (vendor, model) as sysfs / udev give them -> (manufacturer, model, label)
        let cases = [
            (
                Some("ATA"),
                Some("WDC WD40EFRX-68N32N0"),
                Some("Western Digital"),
                Some("WD40EFRX-68N32N0"),
                "WDC WD40EFRX (sdb)",
            ),
            (Some("ATA"), Some("ST4000VN008-2DR166"), Some("Seagate"), Some("ST4000VN008-2DR166"), "ST4000VN008 (sdb)"),
            (
                None,
                Some("Samsung SSD 970 EVO 1TB"),
                Some("Samsung"),
                Some("SSD 970 EVO 1TB"),
                "Samsung SSD 970 EVO 1TB (sdb)",
            ),
            (Some("ATA"), Some("CT500MX500SSD1"), Some("Crucial"), Some("CT500MX500SSD1"), "CT500MX500SSD1 (sdb)"),
            (Some("TOSHIBA"), Some("MG04ACA400E"), Some("TOSHIBA"), Some("MG04ACA400E"), "MG04ACA400E (sdb)"),
            (Some("Generic"), Some("Flash_Disk"), None, Some("Flash Disk"), "Flash Disk (sdb)"),
            (None, Some("QEMU HARDDISK"), None, Some("QEMU HARDDISK"), "QEMU HARDDISK (sdb)"),
            (None, None, None, None, "sdb"),
        ];
        for (vendor, model, maker, short, label) in cases {
            let d = with(vendor, model);
            let got = maker_and_model(&d);
            assert_eq!(got, (maker.map(str::to_owned), short.map(str::to_owned)), "{vendor:?} {model:?}");
            assert_eq!(disk_label(&d), label);
        }
    }

    #[test]
    fn loop_usb_and_removable_disks_are_removable() {
        let mut d = disk();
        assert!(!removable(&d));
        d.bus = Some("usb".into());
        assert!(removable(&d));
        let mut d = disk();
        d.kernel_name = "loop3".into();
        assert!(removable(&d));
        let mut d = disk();
        d.removable = true;
        assert!(removable(&d));
    }
}
