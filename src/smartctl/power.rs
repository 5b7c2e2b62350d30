//! The power check and the `-n` option on every run: ATA CHECK POWER MODE through
//! `smartctl -n`, which answers a disk in standby without spinning it up (smartctl(8), `-n`).
//!
//! The forms by version (smartmontools NEWS):
//! - 6.6 added `-n POWERMODE,STATUS`; 7.0–7.2 accept `standby,2` and reject
//!   `standby,2,3` with exit status 1 (bad command line);
//! - 7.3 added `-n POWERMODE,STATUS,STATUS2`: STATUS2 is the exit status when the device cannot
//!   answer CHECK POWER MODE. Without it smartctl ignores `-n` on such a device ("CHECK POWER
//!   MODE not implemented, ignoring -n option") and goes on, which may spin the disk up; with
//!   7.2 and older diskwatch can only keep such a disk to SMART reads after I/O (docs/health.md).

use super::version::Version;

/// Exit status asked for with `-n standby,STANDBY_EXIT[,…]` when the disk is in standby or
/// sleep (smartctl's default, and what older versions return anyway).
pub const STANDBY_EXIT: i32 = 2;
/// Exit status asked for when the device does not implement CHECK POWER MODE (smartctl ≥ 7.3).
/// Bits 0 and 1 together never occur otherwise (bit 0 is "command line did not parse", which
/// ends smartctl before any open).
pub const UNSUPPORTED_EXIT: i32 = 3;

/// The first release that accepts `-n POWERMODE,STATUS,STATUS2`.
pub const STATUS2_SINCE: Version = Version::new(7, 3);

/// The `-n` form a smartctl version accepts. `None` (version unknown): the form every
/// supported release accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nocheck {
    /// `standby,2,3` (≥ 7.3): a device without CHECK POWER MODE exits with 3.
    WithUnsupportedExit,
    /// `standby,2` (6.6 – 7.2).
    StandbyOnly,
}

impl Nocheck {
    pub fn for_version(version: Option<Version>) -> Self {
        match version {
            Some(v) if v >= STATUS2_SINCE => Nocheck::WithUnsupportedExit,
            _ => Nocheck::StandbyOnly,
        }
    }

    /// The argument after `-n`.
    pub fn arg(self) -> String {
        match self {
            Nocheck::WithUnsupportedExit => format!("standby,{STANDBY_EXIT},{UNSUPPORTED_EXIT}"),
            Nocheck::StandbyOnly => format!("standby,{STANDBY_EXIT}"),
        }
    }

    /// Whether exit status [`UNSUPPORTED_EXIT`] means "no CHECK POWER MODE".
    pub fn has_unsupported_exit(self) -> bool {
        self == Nocheck::WithUnsupportedExit
    }
}

/// What is asked of a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// `-i`: the power mode, and the identity when the disk is up.
    PowerCheck,
    /// `-a`: SMART data (`-x` would add logs that some bridges time out on).
    Smart,
}

/// smartctl's arguments: `--json`, what is asked, the `-n` form, `-d device_type` when one is
/// configured (autodetection may send commands that spin some drives up, smartctl(8) on `-n`),
/// the device node last.
pub fn args(ask: Ask, nocheck: Nocheck, devnode: &str, device_type: Option<&str>) -> Vec<String> {
    let what = match ask {
        Ask::PowerCheck => "-i",
        Ask::Smart => "-a",
    };
    let mut a = vec!["--json".to_owned(), what.to_owned(), "-n".to_owned(), nocheck.arg()];
    if let Some(t) = device_type.filter(|t| !t.is_empty()) {
        a.push("-d".to_owned());
        a.push(t.to_owned());
    }
    a.push(devnode.to_owned());
    a
}

/// `true` when `<sys_block>/<disk>/device/power/runtime_status` says `suspended` (or
/// `suspending`): the device is powered down by runtime PM and must not get any command.
pub fn runtime_suspended(sys_block: &std::path::Path, disk: &str) -> bool {
    std::fs::read_to_string(sys_block.join(disk).join("device/power/runtime_status"))
        .map(|s| s.trim().starts_with("suspend"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_by_version() {
        assert_eq!(Nocheck::for_version(Some(Version::new(7, 3))).arg(), "standby,2,3");
        assert_eq!(Nocheck::for_version(Some(Version::new(7, 4))).arg(), "standby,2,3");
        assert_eq!(Nocheck::for_version(Some(Version::new(8, 0))).arg(), "standby,2,3");
        for old in [Version::new(7, 0), Version::new(7, 1), Version::new(7, 2)] {
            assert_eq!(Nocheck::for_version(Some(old)).arg(), "standby,2", "{old}");
        }
        assert_eq!(Nocheck::for_version(None).arg(), "standby,2");
    }

    #[test]
    fn args_carry_the_device_type() {
        let a = args(Ask::PowerCheck, Nocheck::WithUnsupportedExit, "/dev/sdb", Some("sat"));
        assert_eq!(a, ["--json", "-i", "-n", "standby,2,3", "-d", "sat", "/dev/sdb"]);
        let a = args(Ask::Smart, Nocheck::StandbyOnly, "/dev/sdb", None);
        assert_eq!(a, ["--json", "-a", "-n", "standby,2", "/dev/sdb"]);
        assert_eq!(args(Ask::Smart, Nocheck::StandbyOnly, "/dev/sdb", Some("")).len(), 5);
    }

    #[test]
    fn runtime_pm() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sdb/device/power");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("runtime_status"), "suspended\n").unwrap();
        assert!(runtime_suspended(dir.path(), "sdb"));
        std::fs::write(p.join("runtime_status"), "active\n").unwrap();
        assert!(!runtime_suspended(dir.path(), "sdb"));
        assert!(!runtime_suspended(dir.path(), "missing"));
    }
}
