//! Partition tables read for the partitions' entry identity (UUID, name), kept per disk while
//! the disk is not written: partitions added one after another (BLKPG, a partition scan) each
//! need the same table, and reading it is most of a partition's probe.
//!
//! A kept table is used only while the disk's write counter (`stat`, which counts the writes
//! of its partitions too) has not moved and no write is in flight (`inflight`); a rewritten
//! table (sfdisk, which syncs before asking the kernel to re-read it) is read again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::debug;

use super::probe::{self, TableEntry};

/// A partition table: its type and entries.
pub type Table = (Option<String>, Vec<TableEntry>);

/// The completed writes of the disk at `disk` (a devpath) under `sysfs`, or None while a write is
/// in flight or the counters are unknown. Reads in flight (the disk's own identity probe, a
/// backup) cannot change the table: `inflight` counts reads and writes apart; without it, any
/// I/O in flight (`stat`) counts.
pub fn writes(sysfs: &Path, disk: &str) -> Option<u64> {
    let dir = sysfs.join(disk.trim_start_matches('/'));
    let c = crate::activity::stat::parse(&std::fs::read_to_string(dir.join("stat")).ok()?)?;
    let writing = match std::fs::read_to_string(dir.join("inflight")) {
        Ok(text) => text.split_whitespace().nth(1).and_then(|w| w.parse::<u64>().ok()).is_none_or(|w| w > 0),
        Err(_) => c.in_flight > 0,
    };
    (!writing).then_some(c.write_ios)
}

#[derive(Debug)]
struct Kept {
    /// The disk's write counter before the table was read.
    writes: u64,
    table: Table,
}

#[derive(Debug)]
pub struct Tables {
    sysfs: PathBuf,
    by_disk: Mutex<HashMap<String, Kept>>,
}

impl Tables {
    pub fn new(sysfs: impl Into<PathBuf>) -> Self {
        Self { sysfs: sysfs.into(), by_disk: Mutex::new(HashMap::new()) }
    }

    /// The disk's completed writes, or None while I/O is in flight or unknown.
    pub fn writes(&self, disk: &str) -> Option<u64> {
        writes(&self.sysfs, disk)
    }

    /// The kept table of `disk`, if the disk was not written since it was read.
    pub fn fresh(&self, disk: &str) -> Option<Table> {
        let writes = self.writes(disk)?;
        let kept = self.by_disk.lock().ok()?;
        kept.get(disk).filter(|k| k.writes == writes).map(|k| k.table.clone())
    }

    /// Keeps a table read after the disk's counter showed `writes`.
    pub fn keep(&self, disk: &str, writes: Option<u64>, table: &Table) {
        if let (Some(writes), Ok(mut kept)) = (writes, self.by_disk.lock()) {
            kept.insert(disk.to_owned(), Kept { writes, table: table.clone() });
        }
    }

    /// The table of `disk` (node `devnode`): the kept one, else read now and kept.
    pub fn get(&self, disk: &str, devnode: &Path) -> Option<Table> {
        if let Some(t) = self.fresh(disk) {
            return Some(t);
        }
        let writes = self.writes(disk);
        debug!(disk, "partition table read (none kept, or the disk was written since)");
        match probe::table_bounded(devnode) {
            Ok(table) => {
                self.keep(disk, writes, &table);
                Some(table)
            }
            Err(e) => {
                debug!(device = %devnode.display(), error = %e, "partition table probe failed");
                None
            }
        }
    }

    /// Drops a disk's table (the disk is gone or changed).
    pub fn forget(&self, disk: &str) {
        if let Ok(mut kept) = self.by_disk.lock() {
            kept.remove(disk);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut kept) = self.by_disk.lock() {
            kept.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.by_disk.lock().map(|k| k.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(root: &Path, writes: u64, in_flight: u64) {
        let p = root.join("devices/virtual/block/loop9/stat");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("1 0 8 0 {writes} 0 {} 0 {in_flight} 0 0 0 0 0 0 0 0\n", writes * 8)).unwrap();
    }

    #[test]
    fn a_kept_table_is_used_until_the_disk_is_written() {
        let t = tempfile::tempdir().unwrap();
        let disk = "/devices/virtual/block/loop9";
        let tables = Tables::new(t.path());
        stat(t.path(), 3, 0);
        let table: Table = (Some("gpt".into()), vec![TableEntry { number: 1, uuid: None, name: Some("a".into()) }]);
        tables.keep(disk, tables.writes(disk), &table);
        assert_eq!(tables.fresh(disk), Some(table.clone()));
        // I/O in flight: the table may be changing.
        stat(t.path(), 3, 1);
        assert_eq!(tables.fresh(disk), None);
        // A completed write: read it again.
        stat(t.path(), 4, 0);
        assert_eq!(tables.fresh(disk), None);
        // A table read while I/O was in flight is not kept.
        stat(t.path(), 4, 2);
        tables.keep(disk, tables.writes(disk), &table);
        stat(t.path(), 4, 0);
        assert_eq!(tables.fresh(disk), None);
        tables.keep(disk, tables.writes(disk), &table);
        assert_eq!(tables.len(), 1);
        tables.forget(disk);
        assert!(tables.is_empty());
    }

    #[test]
    fn reads_in_flight_leave_a_kept_table_fresh_writes_do_not() {
        let t = tempfile::tempdir().unwrap();
        let disk = "/devices/virtual/block/loop9";
        let inflight = t.path().join("devices/virtual/block/loop9/inflight");
        let tables = Tables::new(t.path());
        stat(t.path(), 3, 0);
        std::fs::write(&inflight, "       0        0\n").unwrap();
        let table: Table = (Some("dos".into()), Vec::new());
        tables.keep(disk, tables.writes(disk), &table);
        // The disk's identity probe reading it: the table cannot change.
        stat(t.path(), 3, 2);
        std::fs::write(&inflight, "       2        0\n").unwrap();
        assert_eq!(tables.fresh(disk), Some(table.clone()));
        // A write in flight may be rewriting it.
        std::fs::write(&inflight, "       2        1\n").unwrap();
        assert_eq!(tables.fresh(disk), None);
        // An unreadable count is not "no writes".
        std::fs::write(&inflight, "garbage\n").unwrap();
        assert_eq!(tables.fresh(disk), None);
    }
}
