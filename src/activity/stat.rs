//! `/sys/block/<dev>/stat` (Documentation/block/stat.rst): the kernel's I/O counters of a disk
//! and of each of its partitions, and the rates between two readings.
//!
//! The fields are, in order: read I/Os, read merges, read sectors, read ticks, write I/Os, write
//! merges, write sectors, write ticks, in flight, io ticks (ms busy), time in queue, then
//! (since 4.18) four discard fields and (since 5.5) two flush fields. Sectors are always 512
//! bytes here, whatever the device's block size.

use std::path::Path;
use std::time::Duration;

use crate::model::DiskIo;

/// The counters diskwatch uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub read_ios: u64,
    pub read_sectors: u64,
    pub write_ios: u64,
    pub write_sectors: u64,
    pub in_flight: u64,
    /// Milliseconds with I/O in flight.
    pub io_ticks_ms: u64,
}

impl Counters {
    /// Completed requests, both directions: what "the disk had I/O" means.
    pub fn ios(&self) -> u64 {
        self.read_ios.wrapping_add(self.write_ios)
    }

    fn add(&mut self, o: &Counters) {
        self.read_ios = self.read_ios.wrapping_add(o.read_ios);
        self.read_sectors = self.read_sectors.wrapping_add(o.read_sectors);
        self.write_ios = self.write_ios.wrapping_add(o.write_ios);
        self.write_sectors = self.write_sectors.wrapping_add(o.write_sectors);
        self.in_flight = self.in_flight.wrapping_add(o.in_flight);
        self.io_ticks_ms = self.io_ticks_ms.max(o.io_ticks_ms);
    }
}

/// Parses one stat line; `None` when it has fewer than the 11 classic fields.
pub fn parse(text: &str) -> Option<Counters> {
    let mut f = [0u64; 11];
    let mut n = 0;
    for (slot, field) in f.iter_mut().zip(text.split_ascii_whitespace()) {
        *slot = field.parse().ok()?;
        n += 1;
    }
    (n == 11).then_some(Counters {
        read_ios: f[0],
        read_sectors: f[2],
        write_ios: f[4],
        write_sectors: f[6],
        in_flight: f[8],
        io_ticks_ms: f[9],
    })
}

/// Reads `<sys_block>/<name>/stat`.
pub fn read(sys_block: &Path, name: &str) -> std::io::Result<Counters> {
    let path = sys_block.join(name).join("stat");
    let text = std::fs::read_to_string(&path)?;
    parse(&text).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: bad stat line", path.display()))
    })
}

/// The partitions of a disk: subdirectories of `<sys_block>/<disk>` that have a `partition` file.
pub fn partitions(sys_block: &Path, disk: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(sys_block.join(disk)) else { return Vec::new() };
    let mut names: Vec<String> = dir
        .filter_map(Result::ok)
        .filter(|e| e.path().join("partition").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// The activity counters of a disk as a user sees it: the sum over its partitions when it has
/// any, else the whole disk. On recent kernels the whole-disk counters also move from
/// monitoring commands (SMART passthrough and the like), the partitions' only from real I/O.
pub fn activity(sys_block: &Path, disk: &str) -> std::io::Result<Counters> {
    let parts = partitions(sys_block, disk);
    if parts.is_empty() {
        return read(sys_block, disk);
    }
    let mut sum = Counters::default();
    for p in &parts {
        sum.add(&read(&sys_block.join(disk), p)?);
    }
    Ok(sum)
}

/// Rates between two readings `elapsed` apart; `idle_seconds` is carried by the caller.
pub fn rates(prev: &Counters, now: &Counters, elapsed: Duration, idle_seconds: u64) -> DiskIo {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let per_s = |a: u64, b: u64| (b.saturating_sub(a) as f64 * 512.0 / secs).round();
    let busy = now.io_ticks_ms.saturating_sub(prev.io_ticks_ms) as f64 / (secs * 1000.0) * 100.0;
    DiskIo {
        read_bytes_per_s: per_s(prev.read_sectors, now.read_sectors),
        write_bytes_per_s: per_s(prev.write_sectors, now.write_sectors),
        busy_percent: (busy.clamp(0.0, 100.0) * 10.0).round() / 10.0,
        idle_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A line read from this machine's /sys/block/vda/stat (17 fields, kernel 6.x).
    const VDA: &str = "   45275     8644  3532002    44215    93788    54523 14444720   191869        0    29536   245353    17241       40  1901984     5042    20059     4225\n";

    #[test]
    fn parses_modern_and_classic_lines() {
        let c = parse(VDA).unwrap();
        assert_eq!(c.read_ios, 45275);
        assert_eq!(c.read_sectors, 3532002);
        assert_eq!(c.write_ios, 93788);
        assert_eq!(c.write_sectors, 14444720);
        assert_eq!(c.io_ticks_ms, 29536);
        assert_eq!(parse("1 2 3 4 5 6 7 8 9 10 11").unwrap().io_ticks_ms, 10);
        assert_eq!(parse("1 2 3"), None);
        assert_eq!(parse("1 2 3 4 5 6 7 8 9 x 11"), None);
    }

    #[test]
    fn rates_between_readings() {
        let a = Counters { read_sectors: 0, write_sectors: 0, io_ticks_ms: 0, ..Default::default() };
        let b = Counters { read_sectors: 2048, write_sectors: 4096, io_ticks_ms: 2500, ..Default::default() };
        let io = rates(&a, &b, Duration::from_secs(10), 0);
        assert_eq!(io.read_bytes_per_s, 104857.6f64.round());
        assert_eq!(io.write_bytes_per_s, 209715.0f64.round());
        assert_eq!(io.busy_percent, 25.0);
        // Counters that go backwards (device replaced under the same name) give zero, not garbage.
        assert_eq!(rates(&b, &a, Duration::from_secs(10), 3).read_bytes_per_s, 0.0);
    }

    #[test]
    fn activity_sums_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("sdb");
        std::fs::create_dir_all(disk.join("sdb1")).unwrap();
        std::fs::create_dir_all(disk.join("sdb2")).unwrap();
        std::fs::create_dir_all(disk.join("queue")).unwrap();
        std::fs::write(disk.join("stat"), "100 0 800 0 100 0 800 0 0 50 0").unwrap();
        for (p, n) in [("sdb1", 3), ("sdb2", 4)] {
            std::fs::write(disk.join(p).join("partition"), "1").unwrap();
            std::fs::write(disk.join(p).join("stat"), format!("{n} 0 8 0 {n} 0 8 0 0 5 0")).unwrap();
        }
        assert_eq!(partitions(dir.path(), "sdb"), vec!["sdb1", "sdb2"]);
        let c = activity(dir.path(), "sdb").unwrap();
        assert_eq!(c.ios(), 14);
        assert_eq!(c.read_sectors, 16);
        assert_eq!(read(dir.path(), "sdb").unwrap().ios(), 200);
    }
}
