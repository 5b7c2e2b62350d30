//! Every event type the agent emits, as one enum with its wire name and meaning:
//! the state model emits these, and the catalogue endpoint, Home Assistant's
//! `event_types` and the dashboard's type list are all derived from [`EventKind::ALL`].

use serde::{Serialize, Serializer};

macro_rules! kinds {
    ($($variant:ident = $wire:literal : $meaning:literal,)*) => {
        /// An event type (`type` of the CloudEvent).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind {
            $($variant,)*
        }

        impl EventKind {
            /// Every kind, in catalogue order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// The wire name, e.g. `disk.added`.
            pub const fn wire(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $wire,)*
                }
            }

            /// What the event means (served by `/api/v1/events/types`).
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $meaning,)*
                }
            }

            /// The kind with this wire name.
            pub fn from_wire(name: &str) -> Option<Self> {
                match name {
                    $($wire => Some(EventKind::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

kinds! {
    DiskAdded = "disk.added": "a block device (DEVTYPE=disk) appeared",
    DiskRemoved = "disk.removed": "a block device disappeared",
    DiskChanged = "disk.changed": "a disk's properties or media changed",
    DiskHealthChanged = "disk.health_changed":
        "SMART health got worse: passed flipped, reallocated/pending/uncorrectable/NVMe media-error counts rose, or an NVMe critical-warning bit appeared",
    DiskTemperature = "disk.temperature": "a disk's temperature crossed the warn or critical threshold, in either direction",
    DiskPowerState = "disk.power_state": "a disk was seen to enter or leave standby",
    DiskAttentionChanged = "disk.attention_changed":
        "a disk's attention level or its set of unacknowledged reasons changed (data: the disk, previous, reasons)",
    DiskWoken = "disk.woken": "a disk seen in standby or sleep did I/O: who woke it (process, unit, path, op) and how long it slept",
    DiskSelfTestStarted = "disk.self_test_started":
        "a SMART self-test started on a disk, by schedule or on request (data: the disk, kind, by)",
    DiskSelfTestFinished = "disk.self_test_finished":
        "a disk's SMART self-test ended: passed, failed (with the first failing LBA), aborted or interrupted (data: the disk, last)",
    PartitionAdded = "partition.added": "a partition appeared",
    PartitionRemoved = "partition.removed": "a partition disappeared",
    PartitionChanged = "partition.changed": "a partition's filesystem identity or properties changed",
    MountMounted = "mount.mounted": "the mount table gained a mount",
    MountUnmounted = "mount.unmounted": "the mount table lost a mount",
    MountRemounted = "mount.remounted": "a mount's options changed (e.g. rw to ro)",
    MountUsage = "mount.usage": "usage crossed a threshold, moved by the configured step, or went stale",
    MountAttentionChanged = "mount.attention_changed":
        "a mount's attention level or its set of unacknowledged reasons changed (data: the mount, previous, reasons)",
    ShareCreated = "share.created": "a share appeared in the share configuration",
    ShareUpdated = "share.updated": "a share's configuration changed",
    ShareDeleted = "share.deleted": "a share left the share configuration",
    ShareEnabled = "share.enabled": "a share's enabled flag turned on",
    ShareDisabled = "share.disabled": "a share's enabled flag turned off",
    ShareAvailable = "share.available": "a share's backing storage appeared",
    ShareUnavailable = "share.unavailable": "a share's backing storage went away",
    ArrayAdded = "array.added": "an md array, multi-device btrfs filesystem or ZFS pool appeared",
    ArrayRemoved = "array.removed": "an array disappeared (stopped, unmounted, exported)",
    ArrayChanged = "array.changed": "an array's members, error counters, level or sync progress changed",
    ArrayDegraded = "array.degraded": "an array lost redundancy (a member missing or faulty)",
    ArrayRecovering = "array.recovering": "a rebuild of a degraded array started (progress in array.changed)",
    ArrayRecovered = "array.recovered": "an array has full redundancy again",
    ArrayFailed = "array.failed": "an array lost more members than its level tolerates",
    ArrayAttentionChanged = "array.attention_changed":
        "an array's attention level or its set of unacknowledged reasons changed (data: the array, previous, reasons)",
    AgentStarted = "agent.started": "the agent started (after every source's start-up facts)",
    AgentStopping = "agent.stopping": "the agent is shutting down",
    SourceFailed = "source.failed": "a source failed",
    SourceRecovered = "source.recovered": "a failed source works again",
    ActionSucceeded = "action.succeeded": "an action (unmount, eject, spin down, mount) finished",
    ActionFailed = "action.failed": "an action was refused or failed (with the reason, and the processes holding a busy mount)",
}

impl EventKind {
    /// The object kind in the subject (`disk`, `mount`, …), or `agent`/`source` for lifecycle events.
    pub fn object(self) -> &'static str {
        let wire = self.wire();
        wire.split_once('.').map_or(wire, |(object, _)| object)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.wire())
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.wire())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_wire(kind.wire()), Some(*kind));
            assert!(seen.insert(kind.wire()), "duplicate wire name {}", kind.wire());
            assert!(!kind.meaning().is_empty());
        }
        assert_eq!(EventKind::from_wire("disk.exploded"), None);
        assert_eq!(EventKind::MountUsage.object(), "mount");
    }
}
