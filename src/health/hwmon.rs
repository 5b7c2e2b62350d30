//! Disk temperatures from hwmon in sysfs: the `drivetemp` driver registers a hwmon device
//! under the SCSI device of a SATA disk (`/sys/block/sdX/device/hwmon/hwmonN`), the NVMe
//! driver under the controller (`/sys/block/nvme0n1/device/hwmonN`, the device link pointing
//! at the controller). `temp1_input` is in millidegrees Celsius.
//!
//! `drivetemp` may talk to the drive (SCT status), so callers read this no more often than a
//! SMART read is allowed; nothing here decides when.

use std::path::{Path, PathBuf};

/// The `temp1_input` files that belong to `disk`, first match wins.
pub fn temp_input(sys_block: &Path, disk: &str) -> Option<PathBuf> {
    let device = sys_block.join(disk).join("device");
    for dir in [device.join("hwmon"), device.clone()] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("hwmon"))
            .map(|e| e.path().join("temp1_input"))
            .filter(|p| p.exists())
            .collect();
        found.sort();
        if let Some(first) = found.into_iter().next() {
            return Some(first);
        }
    }
    None
}

/// The disk's temperature in °C, rounded to a tenth.
pub fn read_temperature(sys_block: &Path, disk: &str) -> Option<f64> {
    let path = temp_input(sys_block, disk)?;
    let milli: i64 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    Some((milli as f64 / 100.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivetemp_and_nvme_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let sata = dir.path().join("sda/device/hwmon/hwmon3");
        std::fs::create_dir_all(&sata).unwrap();
        std::fs::write(sata.join("temp1_input"), "34000\n").unwrap();
        let nvme = dir.path().join("nvme0n1/device/hwmon1");
        std::fs::create_dir_all(&nvme).unwrap();
        std::fs::write(nvme.join("temp1_input"), "38850\n").unwrap();
        std::fs::create_dir_all(dir.path().join("vda/device")).unwrap();
        assert_eq!(read_temperature(dir.path(), "sda"), Some(34.0));
        assert_eq!(read_temperature(dir.path(), "nvme0n1"), Some(38.9));
        assert_eq!(read_temperature(dir.path(), "vda"), None);
        assert_eq!(read_temperature(dir.path(), "missing"), None);
    }
}
