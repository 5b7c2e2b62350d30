//! Arrays in the state model: applying the arrays source's complete set (events decided by
//! [`crate::state::array_transitions`]) and linking members to disks and partitions and arrays to
//! their mounts.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use super::{current_draft, ready_draft, Draft, State};
use crate::events::EventKind;
use crate::model::array::{Array, ArrayKind, MemberRole};
use crate::state::array_transitions::transitions;

impl State {
    pub(super) fn replace_arrays(
        &mut self,
        arrays: Vec<Array>,
        initial: bool,
        now: SystemTime,
        drafts: &mut Vec<Draft>,
    ) {
        let quiet = self.quiet(initial);
        let mut next: BTreeMap<String, Array> = BTreeMap::new();
        for array in arrays {
            next.insert(array.id.clone(), array);
        }
        let gone: Vec<String> = self.arrays.keys().filter(|id| !next.contains_key(*id)).cloned().collect();
        for id in gone {
            if let Some(array) = self.arrays.remove(&id) {
                self.progress_marks.remove(&id);
                drafts.push(ready_draft(EventKind::ArrayRemoved, "array", &id, &array));
            }
        }
        for (id, mut array) in next {
            let old = self.arrays.get(&id);
            if let Some(old) = old {
                keep_links(old, &mut array);
            }
            let mark = self.progress_marks.entry(id.clone()).or_default();
            for raise in transitions(old, &mut array, quiet, mark, now) {
                drafts.push(current_draft(raise.kind, "array", &id, raise.changed));
            }
            self.arrays.insert(id, array);
        }
    }

    /// Links array members to disks and partitions by kernel name, and arrays to the mounts of
    /// their device (md) or of one of their members (btrfs) or of their datasets (ZFS); and
    /// back: disks and partitions list their arrays, a mount names its array.
    pub(super) fn relink_arrays(&mut self) {
        let mut disk_arrays: HashMap<String, Vec<String>> = HashMap::new();
        let mut part_arrays: HashMap<String, Vec<String>> = HashMap::new();
        let mut mount_array: HashMap<String, String> = HashMap::new();
        let mut by_name: HashMap<&str, (Option<&str>, &str)> = HashMap::new();
        for disk in self.disks.values() {
            by_name.insert(disk.kernel_name.as_str(), (None, disk.id.as_str()));
        }
        for part in self.partitions.values() {
            by_name.insert(part.kernel_name.as_str(), (Some(part.id.as_str()), part.disk_id.as_str()));
        }
        for array in self.arrays.values_mut() {
            for member in &mut array.members {
                let link = member
                    .kernel_name
                    .as_deref()
                    .filter(|_| member.role != MemberRole::Missing)
                    .and_then(|n| by_name.get(n));
                member.partition_id = link.and_then(|(p, _)| p.map(str::to_owned));
                member.disk_id = link.map(|(_, d)| (*d).to_owned());
                match (&member.partition_id, &member.disk_id) {
                    (Some(p), _) => part_arrays.entry(p.clone()).or_default().push(array.id.clone()),
                    (None, Some(d)) => disk_arrays.entry(d.clone()).or_default().push(array.id.clone()),
                    _ => {}
                }
            }
            let member_nodes: Vec<String> = array
                .members
                .iter()
                .filter(|m| m.role != MemberRole::Missing)
                .filter_map(|m| m.kernel_name.as_ref().map(|n| format!("/dev/{n}")))
                .collect();
            let mut mounts = Vec::new();
            let mut degraded_mount = false;
            for mount in self.mounts.values() {
                let linked = match array.kind {
                    ArrayKind::Md => {
                        array.dev.as_deref() == Some(mount.dev.as_str())
                            || array.devnode.as_deref() == Some(mount.source.as_str())
                    }
                    ArrayKind::Btrfs => mount.fs_type == "btrfs" && member_nodes.contains(&mount.source),
                    ArrayKind::Zfs => {
                        mount.fs_type == "zfs"
                            && (mount.source == array.name || mount.source.starts_with(&format!("{}/", array.name)))
                    }
                };
                if linked {
                    mounts.push(mount.id.clone());
                    mount_array.insert(mount.id.clone(), array.id.clone());
                    degraded_mount |= mount.options.iter().chain(&mount.super_options).any(|o| o == "degraded");
                }
            }
            array.mounts = mounts;
            array.degraded_mount = degraded_mount;
        }
        for disk in self.disks.values_mut() {
            let arrays = disk_arrays.remove(&disk.id).unwrap_or_default();
            if disk.arrays != arrays {
                disk.arrays = arrays;
            }
        }
        for part in self.partitions.values_mut() {
            let arrays = part_arrays.remove(&part.id).unwrap_or_default();
            if part.arrays != arrays {
                part.arrays = arrays;
            }
        }
        for mount in self.mounts.values_mut() {
            let array = mount_array.remove(&mount.id);
            if mount.array_id != array {
                mount.array_id = array;
            }
        }
    }
}

/// Carries the derived links over to a new observation, so they do not count as a change.
fn keep_links(old: &Array, new: &mut Array) {
    for member in &mut new.members {
        if let Some(before) = old.members.iter().find(|o| o.kernel_name == member.kernel_name && o.slot == member.slot)
        {
            member.disk_id = before.disk_id.clone();
            member.partition_id = before.partition_id.clone();
        }
    }
    new.mounts = old.mounts.clone();
    new.degraded_mount = old.degraded_mount;
}
