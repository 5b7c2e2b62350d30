//! Turns successive mount-table texts into changes: the mounts that are new or changed and
//! the ids that are gone. Unchanged lines are compared in place, never copied, so a re-read
//! of a large table costs little more than reading it.

use super::filter::Filter;
use super::fxhash::{FxHashMap as HashMap, FxHashSet as HashSet};
use super::mountinfo::{assign_ids_from, parse_line_ref, LineRef};
use crate::model::Mount;

/// What changed between two reads.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Delta {
    pub upserts: Vec<Mount>,
    pub removed: Vec<String>,
    /// Lines that did not parse (logged by the caller).
    pub bad_lines: usize,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removed.is_empty()
    }
}

/// What an earlier read learnt about one line, keyed by the kernel's mount id.
#[derive(Debug)]
struct Seen {
    /// Fx hash and length of the line: compared instead of the bytes, which would be one more
    /// cold memory access per line. Lines of one kernel mount that differ in one 8-byte word
    /// cannot collide (each step of the hash is a bijection); other collisions are 2^-64 events.
    line_hash: (u64, usize),
    line: String,
    /// Whether the filter keeps it.
    kept: bool,
    mount_point: String,
    /// [`mount_id`] of the mount point (before clash handling).
    plain_id: String,
    /// The read that last saw this line.
    generation: u64,
}

/// The mounts reported so far, by id, and a cache of the lines they came from.
#[derive(Debug, Default)]
pub struct Differ {
    current: HashMap<String, Mount>,
    /// Per id: the kernel mount id of the line the current mount was built from.
    built_from: HashMap<String, u32>,
    seen: HashMap<u32, Seen>,
    generation: u64,
    last_text: String,
}

impl Differ {
    pub fn new() -> Self {
        Self::default()
    }

    /// The whole table as last diffed.
    pub fn mounts(&self) -> impl Iterator<Item = &Mount> {
        self.current.values()
    }

    /// Diffs `text` against the table last seen and remembers it. Lines seen before
    /// (same kernel mount id, same bytes) are neither parsed nor filtered again.
    pub fn diff(&mut self, text: &str, filter: &Filter) -> Delta {
        if text == self.last_text {
            return Delta::default();
        }
        let mut bad_lines = 0;
        self.generation += 1;
        let generation = self.generation;
        let mut lines_seen = 0;
        // Kept lines in table order: (kernel mount id, parsed line when new or changed).
        let mut kept: Vec<(u32, Option<LineRef<'_>>)> = Vec::with_capacity(self.current.len() + 16);
        for line in text.lines() {
            if line.trim().is_empty() {
                continue;
            }
            let kernel_id = line.split_once(' ').and_then(|(n, _)| n.parse::<u32>().ok());
            if let Some((k, old)) = kernel_id.and_then(|k| self.seen.get_mut(&k).map(|old| (k, old))) {
                if old.line_hash == line_hash(line) && old.generation != generation {
                    old.generation = generation;
                    lines_seen += 1;
                    if old.kept {
                        kept.push((k, None));
                    }
                    continue;
                }
            }
            match parse_line_ref(line) {
                Ok(l) => {
                    let keep = filter.keeps(&l.fs_type, &l.mount_point);
                    let fresh = Seen {
                        line_hash: line_hash(line),
                        line: line.to_owned(),
                        kept: keep,
                        mount_point: l.mount_point.clone().into_owned(),
                        plain_id: crate::model::mount_id(&l.mount_point),
                        generation,
                    };
                    if self.seen.insert(l.mount_id, fresh).is_none_or(|old| old.generation != generation) {
                        lines_seen += 1;
                    }
                    if keep {
                        kept.push((l.mount_id, Some(l)));
                    }
                }
                Err(e) => {
                    tracing::debug!(line = %line, error = %e, "unparsable mountinfo line");
                    bad_lines += 1;
                }
            }
        }
        if self.seen.len() != lines_seen {
            self.seen.retain(|_, s| s.generation == generation);
        }
        // Topmost (listed last) per mount point, in order of first appearance.
        let mut slot: HashMap<&str, usize> = HashMap::with_capacity_and_hasher(kept.len(), Default::default());
        let mut top: Vec<usize> = Vec::with_capacity(kept.len());
        for (i, (k, _)) in kept.iter().enumerate() {
            let Some(info) = self.seen.get(k) else { continue };
            match slot.get(info.mount_point.as_str()) {
                Some(&t) => top[t] = i,
                None => {
                    slot.insert(info.mount_point.as_str(), top.len());
                    top.push(i);
                }
            }
        }
        let infos: Vec<&Seen> = top.iter().filter_map(|&i| self.seen.get(&kept[i].0)).collect();
        let points: Vec<(&str, &str)> = infos.iter().map(|s| (s.mount_point.as_str(), s.plain_id.as_str())).collect();
        let ids = assign_ids_from(&points);
        let mut upserts = Vec::new();
        for ((&i, id), info) in top.iter().zip(&ids).zip(&infos) {
            let unchanged = match &kept[i].1 {
                // Same bytes as before: unchanged if this id was built from this very line (not
                // from a mount stacked on it that went away, nor another mount point).
                None => self.built_from.get(id.as_ref()) == Some(&kept[i].0),
                Some(line) => self.current.get(id.as_ref()).is_some_and(|m| line.same_as(m)),
            };
            if unchanged {
                if kept[i].1.is_some() {
                    // Same mount under a new kernel id (or only the optional fields changed).
                    self.built_from.insert(id.clone().into_owned(), kept[i].0);
                }
                continue;
            }
            let line = match &kept[i].1 {
                Some(line) => line.clone(),
                // A cached line whose mount moved to another id (a clash appeared or went away).
                None => match parse_line_ref(&info.line) {
                    Ok(line) => line,
                    Err(_) => continue,
                },
            };
            let mut mount = line.into_entry().into_mount();
            mount.id = id.clone().into_owned();
            self.built_from.insert(mount.id.clone(), kept[i].0);
            upserts.push(mount);
        }
        // Every id not seen before is an upsert; when the old ids plus those make up exactly the
        // new set, nothing went away and the set comparison can be skipped.
        let fresh = upserts.iter().filter(|m| !self.current.contains_key(&m.id)).count();
        let removed: Vec<String> = if ids.len() == self.current.len() + fresh {
            Vec::new()
        } else {
            let now: HashSet<&str> = ids.iter().map(|id| id.as_ref()).collect();
            self.current.keys().filter(|id| !now.contains(id.as_str())).cloned().collect()
        };
        for id in &removed {
            self.current.remove(id);
            self.built_from.remove(id);
        }
        for m in &upserts {
            self.current.insert(m.id.clone(), m.clone());
        }
        self.last_text.clear();
        self.last_text.push_str(text);
        Delta { upserts, removed, bad_lines }
    }
}

fn line_hash(line: &str) -> (u64, usize) {
    use std::hash::Hasher;
    let mut h = super::fxhash::FxHasher::default();
    h.write(line.as_bytes());
    (h.finish(), line.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mounts::config::MountsConfig;

    fn filter() -> Filter {
        Filter::new(&MountsConfig::default()).unwrap()
    }

    const BASE: &str = "\
22 28 0:21 / /sys rw,nosuid - sysfs sysfs rw
28 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw
40 28 8:17 / /mnt/my\\040data rw,noatime shared:30 - ext4 /dev/sdb1 rw
";

    #[test]
    fn first_read_is_all_upserts_then_nothing() {
        let mut d = Differ::new();
        let delta = d.diff(BASE, &filter());
        let mut ids: Vec<&str> = delta.upserts.iter().map(|m| m.id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["mnt_my_data", "root"]);
        assert!(delta.removed.is_empty());
        assert!(d.diff(BASE, &filter()).is_empty());
    }

    #[test]
    fn added_changed_removed_and_stacked() {
        let mut d = Differ::new();
        d.diff(BASE, &filter());
        let next = "\
28 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 ro,errors=remount-ro
50 28 0:60 / /tmp/t rw - tmpfs tmpfs rw
51 50 0:61 / /tmp/t rw - tmpfs tmpfs rw,size=8k
";
        let delta = d.diff(next, &filter());
        assert_eq!(delta.removed, ["mnt_my_data"]);
        let root = delta.upserts.iter().find(|m| m.id == "root").unwrap();
        assert!(root.read_only);
        let t: Vec<&Mount> = delta.upserts.iter().filter(|m| m.id == "tmp_t").collect();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].dev, "0:61", "topmost wins");
        // The stacked mount goes away: the one underneath shows again.
        let after = "\
28 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 ro,errors=remount-ro
50 28 0:60 / /tmp/t rw - tmpfs tmpfs rw
";
        let delta = d.diff(after, &filter());
        assert!(delta.removed.is_empty());
        assert_eq!(delta.upserts.len(), 1);
        assert_eq!(delta.upserts[0].dev, "0:60");
        assert_eq!(d.mounts().count(), 2);
    }

    #[test]
    fn agrees_with_the_full_conversion() {
        let text = "\
28 1 8:2 / / rw - ext4 /dev/sda2 rw
60 28 0:60 / /mnt/a\\040b rw,x=a\\054b - tmpfs tmpfs rw
61 28 0:61 / /mnt/a_b rw - tmpfs tmpfs rw
62 28 8:17 /sub /srv/bind ro - ext4 /dev/sdb1 rw
";
        let mut d = Differ::new();
        d.diff(text, &filter());
        let (entries, _) = super::super::mountinfo::parse(text);
        let mut full = super::super::mountinfo::to_mounts(entries);
        let mut ours: Vec<Mount> = d.mounts().cloned().collect();
        full.sort_by(|a, b| a.id.cmp(&b.id));
        ours.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(full, ours);
        assert!(d.diff(text, &filter()).is_empty(), "escaped options compare equal");
    }

    /// The state fed deltas ends up exactly where the state fed whole tables does.
    #[test]
    fn deltas_and_whole_tables_give_the_same_state_and_events() {
        use crate::state::{Fact, State, StateConfig};
        use std::time::SystemTime;
        let tables = [
            BASE.to_owned(),
            format!("{BASE}50 28 0:60 / /tmp/t rw - tmpfs tmpfs rw\n"),
            format!("{BASE}50 28 0:60 / /tmp/t ro - tmpfs tmpfs rw\n51 50 0:61 / /tmp/t rw - tmpfs tmpfs rw\n"),
            "28 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 ro\n".to_owned(),
        ];
        let now = SystemTime::UNIX_EPOCH;
        let mut whole = State::new(StateConfig::default(), 0);
        let mut delta = State::new(StateConfig::default(), 0);
        let mut d = Differ::new();
        for (i, text) in tables.iter().enumerate() {
            let (mounts, _) = super::super::mounts_from(text, &filter());
            let a = whole.apply(Fact::Mounts { mounts, initial: i == 0 }, now);
            let change = d.diff(text, &filter());
            let b = if i == 0 {
                delta.apply(Fact::Mounts { mounts: d.mounts().cloned().collect(), initial: true }, now)
            } else {
                delta.apply(Fact::MountsChanged { upserts: change.upserts, removed: change.removed }, now)
            };
            let kinds = |v: &[crate::events::CloudEvent]| {
                let mut k: Vec<(String, String)> = v.iter().map(|e| (e.kind.clone(), e.subject.clone())).collect();
                k.sort();
                k
            };
            assert_eq!(kinds(&a), kinds(&b), "table {i}");
            assert_eq!(whole.snapshot().mounts, delta.snapshot().mounts, "table {i}");
        }
    }

    #[test]
    fn an_unrelated_clash_renames_and_counts_bad_lines() {
        let mut d = Differ::new();
        d.diff("28 1 8:2 / / rw - ext4 /dev/sda2 rw\n60 28 0:60 / /mnt/a\\040b rw - tmpfs tmpfs rw\n", &filter());
        let delta = d.diff(
            "28 1 8:2 / / rw - ext4 /dev/sda2 rw\n60 28 0:60 / /mnt/a\\040b rw - tmpfs tmpfs rw\n61 28 0:61 / /mnt/a_b rw - tmpfs tmpfs rw\nbroken\n",
            &filter(),
        );
        assert_eq!(delta.bad_lines, 1);
        // The plain id now names the other mount point: an upsert, not a removal.
        assert!(delta.removed.is_empty());
        assert_eq!(delta.upserts.len(), 2);
        assert!(delta.upserts.iter().any(|m| m.id == "mnt_a_b" && m.mount_point == "/mnt/a_b"));
        assert!(delta.upserts.iter().any(|m| m.id.starts_with("mnt_a_b-") && m.mount_point == "/mnt/a b"));
    }
}
