//! Stable identities (SPEC §2): WWN, else bus+model+serial as in
//! /dev/disk/by-id, else `dev-<kernel name>` (unstable); partitions by
//! partition UUID, else filesystem UUID, else `<disk id>-part<N>`.

use crate::model::sanitize_id;

/// The bus a disk hangs on, from udev's ID_BUS or the sysfs path.
pub fn bus(devpath: &str, id_bus: Option<&str>) -> Option<String> {
    if let Some(b) = id_bus.filter(|b| !b.is_empty()) {
        return Some(b.to_owned());
    }
    let checks: [(&str, &str); 7] = [
        ("/usb", "usb"),
        ("/nvme", "nvme"),
        ("/virtio", "virtio"),
        ("/mmc", "mmc"),
        ("/ata", "ata"),
        ("/devices/virtual/", "virtual"),
        ("/host", "scsi"),
    ];
    checks.iter().find(|(needle, _)| devpath.contains(needle)).map(|(_, bus)| (*bus).to_owned())
}

/// A world-wide name from sysfs `wwid` (`naa.5000…` → `0x5000…`, `eui.…` kept).
/// T10 vendor ids are not unique names and give None.
pub fn wwn_from_wwid(wwid: &str) -> Option<String> {
    let w = wwid.trim();
    if let Some(hex) = w.strip_prefix("naa.") {
        Some(format!("0x{}", hex.to_ascii_lowercase()))
    } else if w.starts_with("eui.") || w.starts_with("0x") {
        Some(w.to_ascii_lowercase())
    } else {
        None
    }
}

/// `<model>_<serial>` with blanks as underscores, as udev builds ID_SERIAL.
pub fn model_serial(model: Option<&str>, serial: &str) -> String {
    let join = |s: &str| s.split_whitespace().collect::<Vec<_>>().join("_");
    match model {
        Some(m) if !m.trim().is_empty() => format!("{}_{}", join(m), join(serial)),
        _ => join(serial),
    }
}

/// The disk id and whether it is stable.
pub fn disk_id(kernel_name: &str, wwn: Option<&str>, bus: Option<&str>, serial_id: Option<&str>) -> (String, bool) {
    if let Some(w) = wwn.filter(|w| !w.is_empty()) {
        return (sanitize_id(&format!("wwn-{w}")), true);
    }
    match (bus, serial_id) {
        (Some(b), Some(s)) if !s.is_empty() && b != "virtual" => (sanitize_id(&format!("{b}-{s}")), true),
        _ => (sanitize_id(&format!("dev-{kernel_name}")), false),
    }
}

/// Whether a disk id is the kernel-name fallback (`dev-<kernel name>`), which may change on re-plug.
pub fn is_fallback_disk_id(id: &str) -> bool {
    id.starts_with("dev-")
}

/// The id of a device whose identity another present device already holds (a cloned disk, two
/// sticks flashed from one image): the identity plus the kernel name, unique while both are present.
pub fn twin_id(id: &str, kernel_name: &str) -> String {
    sanitize_id(&format!("{id}-{kernel_name}"))
}

/// The partition id.
pub fn partition_id(disk_id: &str, number: u32, part_uuid: Option<&str>, fs_uuid: Option<&str>) -> String {
    match part_uuid.filter(|u| !u.is_empty()).or(fs_uuid.filter(|u| !u.is_empty())) {
        Some(uuid) => sanitize_id(uuid),
        None => sanitize_id(&format!("{disk_id}-part{number}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_from_paths() {
        assert_eq!(
            bus("/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb", None)
                .as_deref(),
            Some("usb")
        );
        assert_eq!(bus("/devices/pci0000:00/0000:00:1d.0/nvme/nvme0/nvme0n1", None).as_deref(), Some("nvme"));
        assert_eq!(
            bus("/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda", None).as_deref(),
            Some("ata")
        );
        assert_eq!(bus("/devices/virtual/block/loop0", None).as_deref(), Some("virtual"));
        assert_eq!(bus("/devices/pci0000:00/0000:00:04.0/virtio1/block/vda", None).as_deref(), Some("virtio"));
        assert_eq!(bus("/devices/platform/x/host2/target2:0:0/2:0:0:0/block/sdc", None).as_deref(), Some("scsi"));
        assert_eq!(bus("/devices/virtual/block/loop0", Some("usb")).as_deref(), Some("usb"));
    }

    #[test]
    fn wwn_prefers_naa_and_eui() {
        assert_eq!(wwn_from_wwid("naa.50014EE2B5D5E6F7").as_deref(), Some("0x50014ee2b5d5e6f7"));
        assert_eq!(wwn_from_wwid("eui.0025388b71b2c3d4").as_deref(), Some("eui.0025388b71b2c3d4"));
        assert_eq!(wwn_from_wwid("t10.ATA     QEMU HARDDISK                           QM00001"), None);
    }

    #[test]
    fn disk_ids_in_order_of_preference() {
        assert_eq!(
            disk_id("sda", Some("0x50014ee2b5d5e6f7"), Some("ata"), Some("WDC_X_123")),
            ("wwn-0x50014ee2b5d5e6f7".into(), true)
        );
        let serial = model_serial(Some("WDC WD40EFRX-68N"), "WD-WCC4E1234567");
        assert_eq!(serial, "WDC_WD40EFRX-68N_WD-WCC4E1234567");
        assert_eq!(
            disk_id("sdb", None, Some("ata"), Some(&serial)),
            ("ata-WDC_WD40EFRX-68N_WD-WCC4E1234567".into(), true)
        );
        assert_eq!(disk_id("loop3", None, Some("virtual"), None), ("dev-loop3".into(), false));
        assert_eq!(disk_id("sdc", None, Some("usb"), None), ("dev-sdc".into(), false));
    }

    #[test]
    fn a_port_change_keeps_the_id() {
        // The same drive on another port: other kernel name and path, same serial.
        let a = disk_id(
            "sdb",
            None,
            bus("/devices/pci0/usb2/2-1/host6/block/sdb", None).as_deref(),
            Some("SanDisk_Ultra_4C53"),
        );
        let b = disk_id(
            "sdd",
            None,
            bus("/devices/pci0/usb3/3-4/host9/block/sdd", None).as_deref(),
            Some("SanDisk_Ultra_4C53"),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn twins_get_the_kernel_name_appended() {
        assert_eq!(twin_id("wwn-0x5000c500a", "sdc"), "wwn-0x5000c500a-sdc");
        assert_eq!(twin_id("5f3c-aa", "loop7p1"), "5f3c-aa-loop7p1");
        assert!(is_fallback_disk_id("dev-loop3") && !is_fallback_disk_id("wwn-0x1"));
    }

    #[test]
    fn partition_ids() {
        assert_eq!(partition_id("dev-loop0", 1, Some("5f3c-aa"), Some("x")), "5f3c-aa");
        assert_eq!(partition_id("dev-loop0", 1, None, Some("1234-ABCD")), "1234-ABCD");
        assert_eq!(partition_id("dev-loop0", 2, Some(""), None), "dev-loop0-part2");
    }
}
