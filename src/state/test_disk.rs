//! A plain SATA disk for the state's unit tests (one place, not one copy per test module).

use serde_json::json;

use crate::model::Disk;

/// A whole disk `sdb` with the given id and nothing known about its contents.
pub(crate) fn disk(id: &str) -> Disk {
    serde_json::from_value(json!({
        "id": id, "stable": true, "kernel_name": "sdb", "devpath": "/devices/x/sdb", "devnode": "/dev/sdb",
        "dev": "8:16", "vendor": null, "model": null, "serial": null, "wwn": null, "bus": "ata",
        "size_bytes": 1, "removable": false, "rotational": true, "read_only": false,
        "partition_table": null, "fs_type": null, "fs_label": null, "fs_uuid": null,
        "members": [], "holders": []
    }))
    .expect("a valid disk")
}
