//! The storage objects diskwatch reports (SPEC §2): disks, partitions, mounts and shares.
//!
//! Sources fill in what they observe; the fields marked *derived* are owned by
//! the state model (`state::State`), which links the topology both ways after every fact.

pub mod array;
pub mod attention;
pub mod selftest;
pub mod sleep;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Makes a string safe for MQTT topics and Home Assistant unique_ids:
/// every character outside `[a-zA-Z0-9_-]` becomes `_`.
pub fn sanitize_id(raw: &str) -> String {
    raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

/// The id of a mount: its mount point without the leading slash, sanitised;
/// the root filesystem is `root`.
pub fn mount_id(mount_point: &str) -> String {
    let trimmed = mount_point.trim_start_matches('/');
    if trimmed.is_empty() {
        "root".to_owned()
    } else {
        sanitize_id(trimmed)
    }
}

fn stable_by_default() -> bool {
    true
}

/// A whole block device (DEVTYPE=disk): a drive, an md array, a dm device, a loop device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Disk {
    /// Stable id: WWN, else bus+model+serial, else `dev-<kernel name>`; a twin (another disk
    /// present with the same WWN or serial, as a cloned disk or sticks from one batch) gets
    /// `<that id>-<kernel name>`.
    pub id: String,
    /// False when the id falls back to the kernel name and may change on re-plug, or a twin with
    /// the same identity is present (both are then marked).
    pub stable: bool,
    pub kernel_name: String,
    pub devpath: String,
    /// Device node, e.g. `/dev/sdb`.
    pub devnode: String,
    /// `major:minor`.
    pub dev: String,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    /// Firmware revision (sysfs `device/rev`, NVMe `device/firmware_rev`), when the drive reports one.
    /// (A boxed str: a `Fact` carrying a disk stays within clippy's enum-size bound.)
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub firmware: Option<Box<str>>,
    pub wwn: Option<String>,
    /// usb, ata, nvme, scsi, virtio, mmc or virtual.
    pub bus: Option<String>,
    pub size_bytes: u64,
    pub removable: bool,
    pub rotational: bool,
    pub read_only: bool,
    /// Partition table type (gpt, dos) when known.
    pub partition_table: Option<String>,
    /// Filesystem on the whole device (no partition table), when there is one.
    pub fs_type: Option<String>,
    pub fs_label: Option<String>,
    pub fs_uuid: Option<String>,
    /// Kernel names of the devices this one is built from (md/dm members, /sys/…/slaves).
    pub members: Vec<String>,
    /// Kernel names of the devices built on top of this one (/sys/…/holders).
    pub holders: Vec<String>,
    /// *Derived*: ids of this disk's partitions.
    #[serde(default)]
    pub partitions: Vec<String>,
    /// *Derived*: ids of mounts of the whole device.
    #[serde(default)]
    pub mounts: Vec<String>,
    /// Power state as last seen without waking the disk (`null` where health is not watched).
    #[serde(default)]
    pub power_state: Option<PowerState>,
    /// Last SMART health; a disk in standby keeps its last reading (see `checked_at`).
    /// (Boxed: most disks in a fact carry none, and a `Fact` stays small.)
    #[serde(default)]
    pub health: Option<Box<Health>>,
    /// Why `health` is what it is when it is not a fresh reading (standby, no I/O since the
    /// last read, SMART unavailable, smartctl failed).
    #[serde(default)]
    pub health_note: Option<String>,
    /// I/O activity over the last sampling interval (boxed like `health`).
    #[serde(default)]
    pub io: Option<Box<DiskIo>>,
    /// Spin-ups, standby share and the last wake's cause (SPEC §9; `null` with `[sleep]` off).
    #[serde(default)]
    pub sleep: Option<Box<sleep::Sleep>>,
    /// *Derived*: ids of the arrays this whole device is a member of.
    #[serde(default)]
    pub arrays: Vec<String>,
    /// *Derived*: does this disk need its owner (SPEC §9, docs/health.md); `null` while
    /// nothing was ever read of it. (Boxed like `health`.)
    #[serde(default)]
    pub attention: Option<Box<attention::Attention>>,
    /// SMART self-tests: running, last result, next due (SPEC §9, docs/selftest.md); `null`
    /// where self-tests are off or nothing is known yet. (Boxed like `health`.)
    #[serde(default)]
    pub self_test: Option<Box<selftest::SelfTest>>,
}

/// A partition of a disk (DEVTYPE=partition).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Partition {
    /// Partition UUID, else filesystem UUID, else `<disk id>-part<N>`; a twin (another partition
    /// present with the same UUID, as on a cloned disk) gets `<that id>-<kernel name>`.
    pub id: String,
    /// False when the id may change: it falls back to an unstable disk's kernel name, or a twin
    /// with the same UUID is present (both are then marked).
    #[serde(default = "stable_by_default")]
    pub stable: bool,
    pub kernel_name: String,
    pub devpath: String,
    pub devnode: String,
    /// `major:minor`.
    pub dev: String,
    pub disk_id: String,
    pub number: u32,
    pub size_bytes: u64,
    pub read_only: bool,
    pub fs_type: Option<String>,
    pub fs_label: Option<String>,
    pub fs_uuid: Option<String>,
    pub part_label: Option<String>,
    pub part_uuid: Option<String>,
    /// *Derived*: ids of the mounts of this partition.
    #[serde(default)]
    pub mounts: Vec<String>,
    /// *Derived*: ids of the arrays this partition is a member of.
    #[serde(default)]
    pub arrays: Vec<String>,
}

/// Space usage of a mounted filesystem, from statvfs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
    /// Used share of the space available to users, 0–100, as `df` computes it.
    pub percent: f64,
    pub inodes_total: u64,
    pub inodes_used: u64,
    pub inodes_free: u64,
}

/// A mounted filesystem from the mount table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Mount {
    /// The mount point, sanitised (see [`mount_id`]).
    pub id: String,
    pub mount_point: String,
    /// The mount source as the table shows it (`/dev/sdb1`, `server:/export`, `tmpfs`).
    pub source: String,
    /// `major:minor` of the mounted device.
    pub dev: String,
    pub fs_type: String,
    /// Per-mount options (`rw,nosuid,relatime`), split on commas.
    pub options: Vec<String>,
    /// Superblock options.
    pub super_options: Vec<String>,
    pub read_only: bool,
    /// Root of the mount within its filesystem (`/` unless a bind mount of a subtree).
    pub root: String,
    /// True for network filesystems (nfs, cifs, sshfs, fuse.*).
    pub network: bool,
    /// *Derived*: the partition mounted here, matched by `dev`.
    #[serde(default)]
    pub partition_id: Option<String>,
    /// *Derived*: the disk this mount lives on.
    #[serde(default)]
    pub disk_id: Option<String>,
    /// *Derived*: ids of the shares whose storage is this mount.
    #[serde(default)]
    pub shares: Vec<String>,
    /// *Derived*: the array (md device, btrfs filesystem, ZFS pool) mounted here.
    #[serde(default)]
    pub array_id: Option<String>,
    /// Last usage sample; absent until the first one.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// True while the last usage query timed out (dead network server), or could not run
    /// within the timeout because every usage thread hangs: `usage` is then an old value.
    #[serde(default)]
    pub stale: bool,
    /// *Derived*: does this mount need its owner (SPEC §9); `null` until assessed.
    #[serde(default)]
    pub attention: Option<Box<attention::Attention>>,
    /// When the filesystem fills at its current trend (`null` until `[forecast] min_basis` of
    /// history; derived by the forecast source, docs/forecast.md).
    #[serde(default)]
    pub forecast: Option<Forecast>,
}

/// Time to full of a mount, from a robust trend over its usage history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Forecast {
    /// Seconds until the filesystem is full at the trend; `null` when flat or shrinking (not
    /// provably growing) or beyond ten years.
    pub full_in_seconds: Option<u64>,
    /// The 95 % interval of `full_in_seconds` (the trend's faster and slower slopes).
    pub low_seconds: Option<u64>,
    pub high_seconds: Option<u64>,
    /// How much history the trend is fitted over (since the last cleanup).
    pub basis_seconds: u64,
    /// The trend, bytes per day (negative when shrinking).
    pub bytes_per_day: i64,
}

/// File-sharing protocol of a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Smb,
    Nfs,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Smb => "smb",
            Protocol::Nfs => "nfs",
        }
    }
}

/// One client entry of an NFS export: `host(options)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NfsClient {
    pub host: String,
    pub options: Vec<String>,
}

/// A network share (Samba section or NFS export).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Share {
    /// `<protocol>-<name>`, sanitised.
    pub id: String,
    pub protocol: Protocol,
    pub name: String,
    pub path: String,
    /// Samba's `available` (an export is always enabled).
    pub enabled: bool,
    pub read_only: bool,
    pub guest_ok: bool,
    pub browseable: bool,
    /// Samba `valid users`.
    pub users: Vec<String>,
    pub comment: Option<String>,
    /// `homes` for Samba's special [homes] section.
    pub special: Option<String>,
    /// NFS clients and their options (empty for Samba).
    pub clients: Vec<NfsClient>,
    /// The file the share was defined in.
    pub config_file: String,
    /// `path` with symlinks resolved, as the share source saw it.
    pub resolved_path: String,
    /// Whether `path` existed when the share source last looked.
    pub path_exists: bool,
    /// *Derived*: the mount holding the share's path (kept while that mount is gone).
    #[serde(default)]
    pub mount_id: Option<String>,
    /// *Derived*: the partition behind that mount.
    #[serde(default)]
    pub partition_id: Option<String>,
    /// *Derived*: the disk the share lives on.
    #[serde(default)]
    pub disk_id: Option<String>,
    /// *Derived*: enabled, backing mount present and path exists.
    #[serde(default)]
    pub available: bool,
}

impl Share {
    pub fn make_id(protocol: Protocol, name: &str) -> String {
        sanitize_id(&format!("{}-{}", protocol.as_str(), name))
    }
}

/// What a source is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    /// Started; its facts are applied.
    Running,
    /// Failed; the last good state it reported is kept.
    Failed,
}

/// Health of one source as the core last heard it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SourceStatus {
    pub name: String,
    pub status: SourceState,
    pub message: Option<String>,
    /// Whether the agent is unhealthy (HTTP 503) while this source is failed.
    pub required: bool,
}

/// The whole topology at one point of the event sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    pub node_id: String,
    /// Sequence number of the last event reflected in this snapshot (0 before any).
    pub last_event_id: u64,
    pub disks: Vec<Disk>,
    pub partitions: Vec<Partition>,
    pub mounts: Vec<Mount>,
    pub shares: Vec<Share>,
    pub sources: Vec<SourceStatus>,
    /// md arrays, multi-device btrfs filesystems and ZFS pools (SPEC §8).
    #[serde(default)]
    pub arrays: Vec<crate::model::array::Array>,
}

/// A disk's power state as last seen without waking it (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    Active,
    Idle,
    Standby,
    Sleeping,
    #[default]
    Unknown,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::Active => "active",
            PowerState::Idle => "idle",
            PowerState::Standby => "standby",
            PowerState::Sleeping => "sleeping",
            PowerState::Unknown => "unknown",
        }
    }

    /// Standby and sleeping: the disk is spun down (or its link suspended) and must not be touched.
    pub fn is_asleep(self) -> bool {
        matches!(self, PowerState::Standby | PowerState::Sleeping)
    }
}

/// Where a disk's health was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthSource {
    Smartctl,
    Hwmon,
}

/// SMART health of a disk (SPEC §8); every counter is `null` where the drive does not report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// The drive's own overall assessment (`smart_status.passed`).
    pub passed: Option<bool>,
    pub temperature_c: Option<f64>,
    pub power_on_hours: Option<u64>,
    pub power_cycles: Option<u64>,
    /// ATA attribute 5, SCSI grown defect list.
    pub reallocated_sectors: Option<u64>,
    /// ATA attribute 197, SCSI pending defects.
    pub pending_sectors: Option<u64>,
    /// The larger of ATA attributes 198 (offline uncorrectable) and 187 (reported
    /// uncorrectable): they overlap, so they are not summed; SCSI uncorrected read/write/verify
    /// errors.
    pub uncorrectable: Option<u64>,
    pub nvme_percentage_used: Option<u64>,
    pub nvme_critical_warning: Option<u64>,
    pub nvme_media_errors: Option<u64>,
    /// When these values were read (RFC 3339); a disk in standby keeps its last reading.
    pub checked_at: String,
    pub source: HealthSource,
    /// `device.protocol` as smartctl names it: `ATA`, `SCSI` or `NVMe`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// ATA attribute 187 (Reported_Uncorrect).
    #[serde(default)]
    pub reported_uncorrect: Option<u64>,
    /// ATA attribute 198 (Offline_Uncorrectable).
    #[serde(default)]
    pub offline_uncorrectable: Option<u64>,
    /// ATA attribute 188 (Command_Timeout), decoded as smartmontools does (Seagate packs three
    /// counters into the raw value: the total is the low 16 bits).
    #[serde(default)]
    pub command_timeouts: Option<u64>,
    /// ATA attribute 199 (UDMA_CRC_Error_Count): link errors, a cable or connector, not the media.
    #[serde(default)]
    pub crc_errors: Option<u64>,
    /// NVMe available spare and the threshold below which the drive warns (percent).
    #[serde(default)]
    pub nvme_available_spare: Option<u64>,
    #[serde(default)]
    pub nvme_available_spare_threshold: Option<u64>,
    /// Whether the newest completed self-test in the drive's log failed (`null`: no log read).
    #[serde(default)]
    pub self_test_failed: Option<bool>,
    /// Set when smartctl read this disk before and its latest run could not (timeout, open
    /// failure, bad output): the values are the last good reading, kept; `null` otherwise.
    #[serde(default)]
    pub unreadable_since: Option<String>,
}

impl Default for Health {
    /// No values: a base for building one field by field.
    fn default() -> Self {
        Health {
            passed: None,
            temperature_c: None,
            power_on_hours: None,
            power_cycles: None,
            reallocated_sectors: None,
            pending_sectors: None,
            uncorrectable: None,
            nvme_percentage_used: None,
            nvme_critical_warning: None,
            nvme_media_errors: None,
            checked_at: String::new(),
            source: HealthSource::Smartctl,
            protocol: None,
            reported_uncorrect: None,
            offline_uncorrectable: None,
            command_timeouts: None,
            crc_errors: None,
            nvme_available_spare: None,
            nvme_available_spare_threshold: None,
            self_test_failed: None,
            unreadable_since: None,
        }
    }
}

/// I/O activity of a disk from `/sys/block/<dev>/stat` over the last sampling interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiskIo {
    pub read_bytes_per_s: f64,
    pub write_bytes_per_s: f64,
    /// Share of the interval the device had I/O in flight, 0–100.
    pub busy_percent: f64,
    /// Seconds since the counters last moved (as far as the agent has watched).
    pub idle_seconds: u64,
}

/// What an action does (`[actions] allow`, the POST routes, the MQTT command topics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Unmount a mount (never lazily).
    Unmount,
    /// Unmount every mount of a removable disk, flush it and power it off (or detach a loop device).
    Eject,
    /// Put a rotational disk in standby (ATA STANDBY IMMEDIATE).
    SpinDown,
    /// Mount a partition below `actions.mount_root`.
    Mount,
    /// Start a SMART self-test on an awake disk (`{"kind": "short" | "long"}`, docs/selftest.md).
    SelfTest,
}

impl ActionKind {
    pub const ALL: [ActionKind; 5] =
        [ActionKind::Unmount, ActionKind::Eject, ActionKind::SpinDown, ActionKind::Mount, ActionKind::SelfTest];

    /// The wire name: `unmount`, `eject`, `spin_down`, `mount`, `self_test`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ActionKind::Unmount => "unmount",
            ActionKind::Eject => "eject",
            ActionKind::SpinDown => "spin_down",
            ActionKind::Mount => "mount",
            ActionKind::SelfTest => "self_test",
        }
    }

    pub fn from_wire(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The kind of object the action takes: `disk`, `mount` or `partition`.
    pub const fn object(self) -> &'static str {
        match self {
            ActionKind::Unmount => "mount",
            ActionKind::Eject | ActionKind::SpinDown | ActionKind::SelfTest => "disk",
            ActionKind::Mount => "partition",
        }
    }
}

/// A process that keeps a mount busy, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Holder {
    pub pid: u32,
    /// `comm` of the process.
    pub command: String,
    /// The command line, space-separated (empty for kernel threads).
    pub cmdline: String,
    /// What it holds: `cwd`, `root`, `exe`, `fd 3 /mnt/x/file`, `mmap /mnt/x/lib.so`,
    /// or `mount /mnt/x/sub` for a mount on top of it.
    pub uses: Vec<String>,
}

/// The outcome of one action (the `data.action` of `action.succeeded` / `action.failed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActionRecord {
    /// The id the request was answered with.
    pub id: String,
    pub action: ActionKind,
    /// `disk/<id>`, `mount/<id>` or `partition/<id>`.
    pub object: String,
    /// Who asked: `token:<token name>` (HTTP) or `mqtt`.
    pub requested_by: String,
    pub succeeded: bool,
    /// Why it failed, as a stable code: `busy`, `holds_root`, `holds_system_mount`, `swap`,
    /// `array_member`, `in_use`, `not_removable`, `not_rotational`, `not_mounted`,
    /// `already_mounted`, `unsupported_filesystem`, `unsupported`, `timeout`, `busy_object`,
    /// `not_allowed`, `not_found`, `changed` (the object is no longer the one asked about),
    /// `shared_port` (eject: another disk behind the same USB port is in use), `permission`,
    /// `error`.
    pub reason: Option<String>,
    /// One sentence for people.
    pub message: String,
    /// For `busy`: the processes (and mounts) holding it.
    #[serde(default)]
    pub holders: Vec<Holder>,
    /// Mount points unmounted on the way (unmount, eject), even when a later step failed.
    #[serde(default)]
    pub unmounted: Vec<String>,
    /// Where a `mount` action mounted the partition.
    pub mount_point: Option<String>,
    /// From the request to the outcome.
    pub duration_ms: u64,
    /// The outcome of an action already reported failed with reason `timeout`, which then
    /// completed: what it finally did (the same action id).
    #[serde(default)]
    pub late: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_topic_safe() {
        assert_eq!(sanitize_id("ata-WDC WD40/EFRX"), "ata-WDC_WD40_EFRX");
        assert_eq!(mount_id("/"), "root");
        assert_eq!(mount_id("/mnt/my data"), "mnt_my_data");
        assert_eq!(Share::make_id(Protocol::Smb, "Time Machine"), "smb-Time_Machine");
    }
}
