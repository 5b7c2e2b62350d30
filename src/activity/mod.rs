//! The activity source (SPEC §8): I/O rates, busy % and seconds since the last I/O of every
//! disk, sampled from `/sys/block/*/stat` every `[activity] interval`. No event per sample:
//! these are fields of the disk (and MQTT states), how a user sees a disk that never spins
//! down and why.
//!
//! - [`config`]: the `[activity]` section.
//! - [`source`]: the task.
//! - [`stat`]: the counters file, partition sums and rates.

pub mod config;
pub mod source;
pub mod stat;

pub use config::ActivityConfig;
pub use source::ActivitySource;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::model::DiskIo;

/// Source name in health and `source.*` events.
pub const NAME: &str = "activity";

/// Per-disk memory between samples.
struct Last {
    whole: stat::Counters,
    ios: u64,
    at: Instant,
    /// When the activity counter last moved (or when watching began).
    moved_at: Instant,
}

/// Turns successive readings into [`DiskIo`] per disk (keyed by the caller's id).
pub struct Sampler {
    sys_block: PathBuf,
    last: HashMap<String, Last>,
}

impl Sampler {
    pub fn new(sysfs: &Path) -> Self {
        Sampler { sys_block: sysfs.join("block"), last: HashMap::new() }
    }

    /// Samples `(id, kernel name)` pairs at `now`; a disk's first sample yields nothing
    /// (a rate needs two). Disks not listed are forgotten.
    pub fn sample<'a>(
        &mut self,
        disks: impl IntoIterator<Item = (&'a str, &'a str)>,
        now: Instant,
    ) -> Vec<(String, DiskIo)> {
        let mut out = Vec::new();
        let mut keep = std::collections::HashSet::new();
        for (id, name) in disks {
            keep.insert(id.to_owned());
            let Ok(whole) = stat::read(&self.sys_block, name) else { continue };
            let ios = stat::activity(&self.sys_block, name).map(|c| c.ios()).unwrap_or(whole.ios());
            match self.last.get_mut(id) {
                Some(last) => {
                    if ios != last.ios {
                        last.moved_at = now;
                    }
                    let idle = now.saturating_duration_since(last.moved_at).as_secs();
                    out.push((
                        id.to_owned(),
                        stat::rates(&last.whole, &whole, now.saturating_duration_since(last.at), idle),
                    ));
                    last.whole = whole;
                    last.ios = ios;
                    last.at = now;
                }
                None => {
                    self.last.insert(id.to_owned(), Last { whole, ios, at: now, moved_at: now });
                }
            }
        }
        self.last.retain(|id, _| keep.contains(id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn idle_seconds_follow_partition_counters() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("block/sdb");
        std::fs::create_dir_all(disk.join("sdb1")).unwrap();
        std::fs::write(disk.join("sdb1/partition"), "1").unwrap();
        let write = |whole: u64, part: u64| {
            std::fs::write(disk.join("stat"), format!("{whole} 0 {whole} 0 0 0 0 0 0 {whole} 0")).unwrap();
            std::fs::write(disk.join("sdb1/stat"), format!("{part} 0 {part} 0 0 0 0 0 0 0 0")).unwrap();
        };
        let mut s = Sampler::new(dir.path());
        let t0 = Instant::now();
        write(10, 5);
        assert!(s.sample([("d", "sdb")], t0).is_empty());
        // Only the whole-disk counter moves (monitoring): still idle since t0.
        write(20, 5);
        let io = &s.sample([("d", "sdb")], t0 + Duration::from_secs(10))[0].1;
        assert_eq!(io.idle_seconds, 10);
        assert_eq!(io.read_bytes_per_s, 512.0);
        assert_eq!(io.busy_percent, 0.1);
        // A partition moves: idle resets.
        write(30, 6);
        let io = &s.sample([("d", "sdb")], t0 + Duration::from_secs(20))[0].1;
        assert_eq!(io.idle_seconds, 0);
        assert!(s.sample(std::iter::empty(), t0 + Duration::from_secs(30)).is_empty());
        assert!(s.last.is_empty());
    }
}
