//! Builders of model objects for tests that feed facts directly.

use diskwatch::model::Disk;

/// A plausible SATA disk with the given id and size.
pub fn disk(id: &str, size_bytes: u64) -> Disk {
    Disk {
        id: id.into(),
        stable: true,
        kernel_name: format!("sd{id}"),
        devpath: format!("/devices/pci0000:00/ata1/block/sd{id}"),
        devnode: format!("/dev/sd{id}"),
        dev: "8:0".into(),
        vendor: Some("ATA".into()),
        model: Some("WDC_WD40EFRX".into()),
        serial: Some(format!("WD-{id}")),
        firmware: None,
        wwn: None,
        bus: Some("ata".into()),
        size_bytes,
        removable: false,
        rotational: true,
        read_only: false,
        partition_table: Some("gpt".into()),
        fs_type: None,
        fs_label: None,
        fs_uuid: None,
        members: vec![],
        holders: vec![],
        partitions: vec![],
        mounts: vec![],
        power_state: None,
        health: None,
        health_note: None,
        io: None,
        arrays: Vec::new(),
        attention: None,
    }
}

/// A virtual disk (a loop device, say) carrying an ext4 filesystem on the whole device,
/// as the udev source describes one; `dev` is `major:minor`.
pub fn whole_disk(id: &str, name: &str, dev: &str) -> Disk {
    Disk {
        id: id.into(),
        stable: false,
        kernel_name: name.into(),
        devpath: format!("/devices/virtual/block/{name}"),
        devnode: format!("/dev/{name}"),
        dev: dev.into(),
        vendor: None,
        model: None,
        serial: None,
        firmware: None,
        wwn: None,
        bus: Some("virtual".into()),
        size_bytes: 64 << 20,
        removable: false,
        rotational: false,
        read_only: false,
        partition_table: None,
        fs_type: Some("ext4".into()),
        fs_label: None,
        fs_uuid: None,
        members: vec![],
        holders: vec![],
        partitions: vec![],
        mounts: vec![],
        power_state: None,
        health: None,
        health_note: None,
        io: None,
        arrays: Vec::new(),
        attention: None,
    }
}
