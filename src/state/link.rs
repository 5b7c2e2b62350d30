//! Linking the topology both ways: mounts to partitions and disks by
//! major:minor, shares to the mount holding their path (longest prefix).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::{current_draft, Draft, State};
use crate::events::EventKind;

impl State {
    /// Recomputes every derived link, then raises `share.available` /
    /// `share.unavailable` for shares whose availability flipped.
    pub(super) fn relink(&mut self, availability_before: &HashMap<String, bool>, drafts: &mut Vec<Draft>) {
        // major:minor → (partition id, disk id)
        let mut by_dev: HashMap<&str, (Option<&str>, &str)> = HashMap::new();
        for disk in self.disks.values() {
            by_dev.insert(disk.dev.as_str(), (None, disk.id.as_str()));
        }
        for part in self.partitions.values() {
            by_dev.insert(part.dev.as_str(), (Some(part.id.as_str()), part.disk_id.as_str()));
        }
        let mut part_mounts: HashMap<String, Vec<String>> = HashMap::new();
        let mut disk_mounts: HashMap<String, Vec<String>> = HashMap::new();
        // Disks and partitions are other fields than mounts: they can be borrowed meanwhile.
        for mount in self.mounts.values_mut() {
            let (part, disk) = match by_dev.get(mount.dev.as_str()) {
                Some((part, disk)) => (*part, Some(*disk)),
                None => (None, None),
            };
            match (part, disk) {
                (Some(p), _) => part_mounts.entry(p.to_owned()).or_default().push(mount.id.clone()),
                (None, Some(d)) => disk_mounts.entry(d.to_owned()).or_default().push(mount.id.clone()),
                _ => {}
            }
            if mount.partition_id.as_deref() != part {
                mount.partition_id = part.map(str::to_owned);
            }
            if mount.disk_id.as_deref() != disk {
                mount.disk_id = disk.map(str::to_owned);
            }
            mount.shares.clear();
        }
        let mut disk_parts: HashMap<String, Vec<String>> = HashMap::new();
        for part in self.partitions.values_mut() {
            part.mounts = part_mounts.remove(&part.id).unwrap_or_default();
            disk_parts.entry(part.disk_id.clone()).or_default().push(part.id.clone());
        }
        for disk in self.disks.values_mut() {
            disk.partitions = disk_parts.remove(&disk.id).unwrap_or_default();
            disk.mounts = disk_mounts.remove(&disk.id).unwrap_or_default();
        }
        self.relink_shares(availability_before, drafts);
        self.relink_arrays();
    }

    fn relink_shares(&mut self, availability_before: &HashMap<String, bool>, drafts: &mut Vec<Draft>) {
        if self.shares.is_empty() {
            // Nothing to link (mount.shares were cleared by the caller).
            return;
        }
        let by_point: HashMap<&str, &str> =
            self.mounts.values().map(|m| (m.mount_point.as_str(), m.id.as_str())).collect();
        let present: HashSet<&str> = self.mounts.keys().map(String::as_str).collect();
        let mut resolved: Vec<(String, Option<String>)> = Vec::with_capacity(self.shares.len());
        for share in self.shares.values() {
            let best = holding_mount(&share.resolved_path, &by_point).map(str::to_owned);
            let link = match &share.mount_id {
                // Sticky: a share whose mount went away stays bound to it (and unavailable)
                // instead of silently falling through to the directory underneath.
                Some(previous) if !present.contains(previous.as_str()) => Some(previous.clone()),
                _ => best,
            };
            resolved.push((share.id.clone(), link));
        }
        for (id, link) in resolved {
            let Some(share) = self.shares.get_mut(&id) else { continue };
            let mount = link.as_deref().and_then(|m| self.mounts.get_mut(m));
            share.partition_id = mount.as_ref().and_then(|m| m.partition_id.clone());
            share.disk_id = mount.as_ref().and_then(|m| m.disk_id.clone());
            share.available = share.enabled && share.path_exists && mount.is_some();
            if let Some(mount) = mount {
                mount.shares.push(id.clone());
            }
            share.mount_id = link;
            if let Some(before) = availability_before.get(&id) {
                if *before != share.available {
                    let kind = if share.available { EventKind::ShareAvailable } else { EventKind::ShareUnavailable };
                    drafts.push(current_draft(kind, "share", &id, Some(vec!["available".to_owned()])));
                }
            }
        }
    }
}

/// The mount whose mount point is the longest ancestor-or-self of `path`.
fn holding_mount<'a>(path: &str, by_point: &HashMap<&str, &'a str>) -> Option<&'a str> {
    let mut current = Some(Path::new(path));
    while let Some(dir) = current {
        if let Some(id) = dir.to_str().and_then(|d| by_point.get(d)) {
            return Some(id);
        }
        current = dir.parent();
    }
    None
}
