//! The Array object (SPEC §8): an md RAID array, a multi-device btrfs filesystem or a ZFS pool,
//! with its members and its redundancy state.
//!
//! Sources fill in what they observe; the fields marked *derived* are owned by
//! [`crate::state::State`], which links members to disks and partitions and the array to its
//! mounts after every structural fact.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::sanitize_id;

/// What kind of array: the subsystem that assembles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArrayKind {
    Md,
    Btrfs,
    Zfs,
}

impl ArrayKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArrayKind::Md => "md",
            ArrayKind::Btrfs => "btrfs",
            ArrayKind::Zfs => "zfs",
        }
    }
}

/// The redundancy state of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArrayState {
    /// Every member present and in sync.
    Clean,
    /// Redundancy lost (a member missing or faulty), nothing rebuilding.
    Degraded,
    /// Redundancy lost and a rebuild onto a spare or replacement is running.
    Recovering,
    /// Parity/mirror being (re)computed with every member present: the initial sync of a new
    /// array, or a resync after an unclean shutdown. Not an alarm.
    Resyncing,
    /// A check or scrub is running on a healthy array.
    Checking,
    /// More members lost than the level tolerates: the array is unusable.
    Failed,
    /// Assembled but not started (md), or known but not imported.
    Inactive,
}

impl ArrayState {
    pub const ALL: [ArrayState; 7] = [
        ArrayState::Clean,
        ArrayState::Degraded,
        ArrayState::Recovering,
        ArrayState::Resyncing,
        ArrayState::Checking,
        ArrayState::Failed,
        ArrayState::Inactive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ArrayState::Clean => "clean",
            ArrayState::Degraded => "degraded",
            ArrayState::Recovering => "recovering",
            ArrayState::Resyncing => "resyncing",
            ArrayState::Checking => "checking",
            ArrayState::Failed => "failed",
            ArrayState::Inactive => "inactive",
        }
    }

    /// Whether the array has lost redundancy (or more).
    pub fn lost_redundancy(self) -> bool {
        matches!(self, ArrayState::Degraded | ArrayState::Recovering | ArrayState::Failed)
    }
}

/// The role of one member in its array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// A working member holding data.
    Active,
    /// A standby device, or one being rebuilt onto (then `rebuilding` is true).
    Spare,
    /// Kicked out after errors.
    Faulty,
    /// Expected by the array but not present.
    Missing,
}

/// Device error counters (btrfs `error_stats`; ZFS vdev read/write/checksum errors).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorCounts {
    pub read: u64,
    pub write: u64,
    pub flush: u64,
    /// Checksum mismatches (btrfs corruption_errs, ZFS checksum_errors).
    pub corruption: u64,
    pub generation: u64,
}

impl ErrorCounts {
    pub fn add(&mut self, other: &ErrorCounts) {
        self.read += other.read;
        self.write += other.write;
        self.flush += other.flush;
        self.corruption += other.corruption;
        self.generation += other.generation;
    }

    /// Names of the counters that are higher in `self` than in `before`.
    pub fn rising_since(&self, before: &ErrorCounts) -> Vec<&'static str> {
        let pairs = [
            ("read", self.read, before.read),
            ("write", self.write, before.write),
            ("flush", self.flush, before.flush),
            ("corruption", self.corruption, before.corruption),
            ("generation", self.generation, before.generation),
        ];
        pairs.iter().filter(|(_, now, then)| now > then).map(|(name, _, _)| *name).collect()
    }
}

/// One member device of an array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ArrayMember {
    /// Kernel name of the member device (`sdb1`, `loop3`); absent for a missing member
    /// nobody has seen, or the last name it had when it went missing.
    pub kernel_name: Option<String>,
    pub role: MemberRole,
    /// Slot (md raid disk number) or device id (btrfs devid).
    pub slot: Option<u64>,
    /// A spare that is being rebuilt onto, or a btrfs replace target.
    #[serde(default)]
    pub rebuilding: bool,
    /// The raw state flags the kernel reports (md `dev-*/state`, ZFS vdev state).
    #[serde(default)]
    pub flags: Vec<String>,
    /// Error counters of this member, where the subsystem keeps them.
    #[serde(default)]
    pub errors: Option<ErrorCounts>,
    /// *Derived*: the disk this member is, or the disk of its partition.
    #[serde(default)]
    pub disk_id: Option<String>,
    /// *Derived*: the partition this member is.
    #[serde(default)]
    pub partition_id: Option<String>,
}

impl ArrayMember {
    pub fn new(kernel_name: Option<String>, role: MemberRole, slot: Option<u64>) -> Self {
        Self {
            kernel_name,
            role,
            slot,
            rebuilding: false,
            flags: Vec::new(),
            errors: None,
            disk_id: None,
            partition_id: None,
        }
    }
}

/// An md array, a multi-device btrfs filesystem or a ZFS pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Array {
    /// `<kind>-<uuid>` (md array UUID, btrfs fsid, ZFS pool GUID), sanitised.
    pub id: String,
    pub kind: ArrayKind,
    /// `md0`, the btrfs label (else the fsid), the pool name.
    pub name: String,
    pub uuid: Option<String>,
    /// raid0/1/4/5/6/10, linear (md); the data profile(s) (btrfs); the top vdev layout (ZFS).
    pub level: Option<String>,
    pub state: ArrayState,
    pub members: Vec<ArrayMember>,
    /// Number of members the level expects (md raid_disks).
    pub raid_disks: Option<u32>,
    /// Members by which the array is short of full redundancy.
    pub degraded_count: u32,
    /// What the array is doing: resync, recover, check, repair, reshape (md), replace (btrfs),
    /// scrub, resilver (ZFS); absent when idle.
    pub sync_action: Option<String>,
    pub sync_percent: Option<f64>,
    pub sync_eta_seconds: Option<u64>,
    /// md `mismatch_cnt` after a check or repair.
    pub mismatch_count: Option<u64>,
    /// Sum of the members' error counters (btrfs, ZFS).
    pub errors: Option<ErrorCounts>,
    pub size_bytes: Option<u64>,
    /// Device node of the array itself (`/dev/md0`); absent for btrfs and ZFS.
    pub devnode: Option<String>,
    /// `major:minor` of the array device (md).
    pub dev: Option<String>,
    pub read_only: bool,
    /// The raw kernel state (md `array_state`, ZFS pool state).
    pub raw_state: Option<String>,
    /// *Derived*: a mount of this filesystem carries the `degraded` option (btrfs).
    #[serde(default)]
    pub degraded_mount: bool,
    /// *Derived*: the array was created while diskwatch watched and is still in its first
    /// sync, which is not lost redundancy (a new RAID5 starts degraded-and-recovering).
    #[serde(default)]
    pub initial_sync: bool,
    /// *Derived*: ids of the mounts of this array.
    #[serde(default)]
    pub mounts: Vec<String>,
    /// *Derived*: does this array need its owner (SPEC §9); `null` until assessed.
    #[serde(default)]
    pub attention: Option<Box<crate::model::attention::Attention>>,
}

impl Array {
    /// `<kind>-<uuid>`, sanitised; the name when there is no UUID.
    pub fn make_id(kind: ArrayKind, uuid: Option<&str>, name: &str) -> String {
        sanitize_id(&format!("{}-{}", kind.as_str(), uuid.unwrap_or(name)))
    }

    /// An array with nothing known but its identity.
    pub fn new(kind: ArrayKind, name: &str, uuid: Option<String>) -> Self {
        Self {
            id: Self::make_id(kind, uuid.as_deref(), name),
            kind,
            name: name.to_owned(),
            uuid,
            level: None,
            state: ArrayState::Clean,
            members: Vec::new(),
            raid_disks: None,
            degraded_count: 0,
            sync_action: None,
            sync_percent: None,
            sync_eta_seconds: None,
            mismatch_count: None,
            errors: None,
            size_bytes: None,
            devnode: None,
            dev: None,
            read_only: false,
            raw_state: None,
            degraded_mount: false,
            initial_sync: false,
            mounts: Vec::new(),
            attention: None,
        }
    }

    /// Members that are missing or faulty, by the name they are known under.
    pub fn lost_members(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| matches!(m.role, MemberRole::Missing | MemberRole::Faulty))
            .map(|m| match (&m.kernel_name, m.slot) {
                (Some(name), _) => name.clone(),
                (None, Some(slot)) => format!("slot {slot}"),
                (None, None) => "unknown".to_owned(),
            })
            .collect()
    }
}

/// How many members a level can lose and still serve all data.
pub fn tolerated_losses(level: &str, raid_disks: u32) -> u32 {
    match level {
        "raid1" | "mirror" | "multipath" => raid_disks.saturating_sub(1),
        "raid1c3" => 2,
        "raid1c4" => 3,
        "raid4" | "raid5" | "raidz" | "raidz1" | "raid10" | "dup" => 1,
        "raid6" | "raidz2" => 2,
        "raidz3" => 3,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_tolerance() {
        assert_eq!(Array::make_id(ArrayKind::Md, Some("0fbf5f2c-add2"), "md1"), "md-0fbf5f2c-add2");
        assert_eq!(Array::make_id(ArrayKind::Md, None, "md1"), "md-md1");
        assert_eq!(tolerated_losses("raid1", 3), 2);
        assert_eq!(tolerated_losses("raid6", 8), 2);
        assert_eq!(tolerated_losses("raid0", 2), 0);
    }

    #[test]
    fn rising_counters_are_named() {
        let before = ErrorCounts { corruption: 1, ..Default::default() };
        let now = ErrorCounts { corruption: 5, read: 0, ..Default::default() };
        assert_eq!(now.rising_since(&before), vec!["corruption"]);
        assert!(before.rising_since(&now).is_empty());
    }
}
