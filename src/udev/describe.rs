//! Turns what sysfs says plus udev-style properties (from udevd, or from our
//! own blkid probe in kernel mode) into the model's [`Disk`] and [`Partition`].

use crate::model::{Disk, Partition};

use super::identity;
use super::sysfs::SysDevice;
use super::uevent::Props;

fn prop(props: &Props, key: &str) -> Option<String> {
    props.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// The device node of a device.
pub fn devnode(sys: &SysDevice) -> String {
    format!("/dev/{}", sys.devname)
}

pub fn disk(sys: &SysDevice, props: &Props) -> Disk {
    let bus = identity::bus(&sys.devpath, props.get("ID_BUS").map(String::as_str));
    let model = sys.model.clone().or_else(|| prop(props, "ID_MODEL"));
    let serial = prop(props, "ID_SERIAL_SHORT").or_else(|| sys.serial.clone());
    let wwn = prop(props, "ID_WWN_WITH_EXTENSION")
        .or_else(|| prop(props, "ID_WWN"))
        .or_else(|| sys.wwid.as_deref().and_then(identity::wwn_from_wwid));
    // udevd's ID_SERIAL is exactly what /dev/disk/by-id uses; without udevd build the same.
    let serial_id = prop(props, "ID_SERIAL")
        .filter(|_| serial.is_some())
        .or_else(|| serial.as_deref().map(|s| identity::model_serial(model.as_deref(), s)));
    let (id, stable) = identity::disk_id(&sys.kernel_name, wwn.as_deref(), bus.as_deref(), serial_id.as_deref());
    Disk {
        id,
        stable,
        kernel_name: sys.kernel_name.clone(),
        devpath: sys.devpath.clone(),
        devnode: devnode(sys),
        dev: sys.dev.clone(),
        // virtio's sysfs `vendor` is the PCI vendor number (0x1af4), not a name.
        vendor: sys.vendor.clone().filter(|v| !v.starts_with("0x")).or_else(|| prop(props, "ID_VENDOR")),
        model,
        serial,
        firmware: sys.firmware.clone().or_else(|| prop(props, "ID_REVISION")).map(String::into_boxed_str),
        wwn,
        bus,
        size_bytes: sys.size_bytes,
        removable: sys.removable,
        rotational: sys.rotational,
        read_only: sys.read_only,
        partition_table: prop(props, "ID_PART_TABLE_TYPE"),
        fs_type: prop(props, "ID_FS_TYPE"),
        fs_label: prop(props, "ID_FS_LABEL"),
        fs_uuid: prop(props, "ID_FS_UUID"),
        members: sys.slaves.clone(),
        holders: sys.holders.clone(),
        partitions: Vec::new(),
        mounts: Vec::new(),
        power_state: None,
        health: None,
        health_note: None,
        io: None,
        sleep: None,
        self_test: None,
        arrays: Vec::new(),
        attention: None,
    }
}

pub fn partition(sys: &SysDevice, props: &Props, disk_id: &str) -> Partition {
    let number =
        sys.partition.or_else(|| prop(props, "ID_PART_ENTRY_NUMBER").and_then(|n| n.parse().ok())).unwrap_or(0);
    let part_uuid = prop(props, "ID_PART_ENTRY_UUID").or_else(|| prop(&sys.uevent, "PARTUUID"));
    let fs_uuid = prop(props, "ID_FS_UUID");
    let by_uuid = part_uuid.as_deref().or(fs_uuid.as_deref()).is_some_and(|u| !u.is_empty());
    Partition {
        id: identity::partition_id(disk_id, number, part_uuid.as_deref(), fs_uuid.as_deref()),
        stable: by_uuid || !identity::is_fallback_disk_id(disk_id),
        kernel_name: sys.kernel_name.clone(),
        devpath: sys.devpath.clone(),
        devnode: devnode(sys),
        dev: sys.dev.clone(),
        disk_id: disk_id.to_owned(),
        number,
        size_bytes: sys.size_bytes,
        read_only: sys.read_only,
        fs_type: prop(props, "ID_FS_TYPE"),
        fs_label: prop(props, "ID_FS_LABEL"),
        fs_uuid,
        part_label: prop(props, "ID_PART_ENTRY_NAME").or_else(|| prop(&sys.uevent, "PARTNAME")),
        part_uuid,
        mounts: Vec::new(),
        arrays: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udev::sysfs::Kind;

    fn props(kv: &[(&str, &str)]) -> Props {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn sda() -> SysDevice {
        SysDevice {
            kernel_name: "sda".into(),
            devpath: "/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda".into(),
            kind: Some(Kind::Disk),
            dev: "8:0".into(),
            devname: "sda".into(),
            size_bytes: 4 << 40,
            rotational: true,
            vendor: Some("ATA".into()),
            model: Some("WDC WD40EFRX-68N".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_kernel_mode_disk_builds_its_by_id_name() {
        let mut sys = sda();
        sys.serial = Some("WD-WCC4E1234567".into());
        let d = disk(&sys, &props(&[("ID_PART_TABLE_TYPE", "gpt")]));
        assert_eq!(d.id, "ata-WDC_WD40EFRX-68N_WD-WCC4E1234567");
        assert!(d.stable);
        assert_eq!(d.bus.as_deref(), Some("ata"));
        assert_eq!(d.partition_table.as_deref(), Some("gpt"));
        assert_eq!(d.devnode, "/dev/sda");
    }

    #[test]
    fn udev_properties_give_the_wwn() {
        let d = disk(&sda(), &props(&[("ID_WWN", "0x50014ee2b5d5e6f7"), ("ID_SERIAL", "x"), ("ID_BUS", "ata")]));
        assert_eq!(d.id, "wwn-0x50014ee2b5d5e6f7");
        assert_eq!(d.wwn.as_deref(), Some("0x50014ee2b5d5e6f7"));
    }

    #[test]
    fn a_loop_device_is_unstable() {
        let sys = SysDevice {
            kernel_name: "loop4".into(),
            devpath: "/devices/virtual/block/loop4".into(),
            kind: Some(Kind::Disk),
            dev: "7:4".into(),
            devname: "loop4".into(),
            loop_backing: Some("/tmp/x.img".into()),
            ..Default::default()
        };
        let d = disk(&sys, &Props::new());
        assert_eq!((d.id.as_str(), d.stable), ("dev-loop4", false));
        let virtio = SysDevice {
            devpath: "/devices/pci0000:00/0000:00:02.0/virtio1/block/vda".into(),
            vendor: Some("0x1af4".into()),
            serial: Some("overlayblk".into()),
            firmware: None,
            ..sys
        };
        let v = disk(&virtio, &Props::new());
        assert_eq!((v.id.as_str(), v.stable, v.vendor), ("virtio-overlayblk", true, None));
        assert_eq!(d.bus.as_deref(), Some("virtual"));
    }

    #[test]
    fn partitions_take_the_entry_uuid_then_the_fs_uuid() {
        let sys = SysDevice {
            kernel_name: "loop4p1".into(),
            devpath: "/devices/virtual/block/loop4/loop4p1".into(),
            kind: Some(Kind::Partition),
            dev: "259:0".into(),
            devname: "loop4p1".into(),
            partition: Some(1),
            ..Default::default()
        };
        let fs = [("ID_FS_TYPE", "ext4"), ("ID_FS_LABEL", "data"), ("ID_FS_UUID", "u-1")];
        let p = partition(&sys, &props(&fs), "dev-loop4");
        assert_eq!(p.id, "u-1");
        assert_eq!(p.fs_type.as_deref(), Some("ext4"));
        assert_eq!(p.fs_label.as_deref(), Some("data"));
        let mut with_entry = fs.to_vec();
        with_entry.push(("ID_PART_ENTRY_UUID", "p-1"));
        with_entry.push(("ID_PART_ENTRY_NAME", "primary"));
        let p = partition(&sys, &props(&with_entry), "dev-loop4");
        assert_eq!((p.id.as_str(), p.part_label.as_deref()), ("p-1", Some("primary")));
        let p = partition(&sys, &Props::new(), "dev-loop4");
        assert_eq!(p.id, "dev-loop4-part1");
        assert_eq!(p.disk_id, "dev-loop4");
    }
}
