//! tracefs, and nothing else touches it: a private trace instance (`instances/diskwatch-<pid>`,
//! so other users of tracefs are not disturbed) with four tracepoints, enabled only while some
//! disk is armed and filtered in the kernel to the armed disks' devices:
//!
//! - `block/block_bio_queue` — every bio, in the context of the task that submitted it;
//! - `block/block_rq_issue`, only requests with `N` in rwbs — pass-through commands (SG_IO,
//!   NVMe admin) that never become bios;
//! - `writeback/writeback_mark_inode_dirty` and `writeback/writeback_dirty_folio`, filtered by
//!   the disk's bdi — the task that dirtied data the flusher or the journal writes later.
//!
//! diskwatch's own threads are listed in `set_event_notrace_pid` with the `event-fork` option,
//! so neither they nor their children (smartctl) are traced at all.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

/// The events enabled while armed: (subsystem/event, filter kind).
const BIO: &str = "block/block_bio_queue";
const RQ: &str = "block/block_rq_issue";
const DIRTY_INODE: &str = "writeback/writeback_mark_inode_dirty";
const DIRTY_FOLIO: &str = "writeback/writeback_dirty_folio";
/// Instance directory names: `diskwatch-<pid>`.
const PREFIX: &str = "diskwatch-";
/// Bytes read from the pipe per call at most (the rest waits for the next poll).
const READ_MAX: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("tracefs is not mounted at {path} and cannot be mounted: {source}")]
    Mount { path: PathBuf, source: nix::Error },
    #[error("this kernel has no {0} tracepoint")]
    Missing(&'static str),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TraceError + '_ {
    move |source| TraceError::Io { path: path.to_owned(), source }
}

/// What a disk is traced by: its devices (the disk and its partitions) and its bdi name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Armed {
    /// `(major, minor)` of the disk and of each partition.
    pub devs: Vec<(u32, u32)>,
    /// The backing-device name writeback tracepoints carry: the disk's `major:minor`.
    pub bdi: String,
}

/// One parsed trace line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A request to an armed device.
    Block { pid: u32, tgid: Option<u32>, comm: String, dev: (u32, u32), rwbs: String },
    /// A task dirtied an inode or a page on an armed disk's bdi.
    Dirty { pid: u32, tgid: Option<u32>, comm: String, bdi: String, ino: u64 },
}

/// The task part of a line: `comm-pid (tgid)`, the tgid only with `record-tgid`.
fn task(head: &str) -> Option<(String, u32, Option<u32>)> {
    let head = &head[..head.rfind(" [")?];
    let head = head.trim_end();
    let (head, tgid) = match head.strip_suffix(')') {
        Some(h) => {
            let open = h.rfind('(')?;
            (&h[..open], h[open + 1..].trim().parse().ok())
        }
        None => (head, None),
    };
    let (comm, pid) = head.trim().rsplit_once('-')?;
    Some((comm.to_owned(), pid.parse().ok()?, tgid))
}

/// Parses one line of `trace_pipe` (the default text format, `record-tgid` on or off).
pub fn parse_line(line: &str) -> Option<Record> {
    for event in ["block_bio_queue", "block_rq_issue", "writeback_mark_inode_dirty", "writeback_dirty_folio"] {
        let marker = format!(": {event}: ");
        let Some(at) = line.find(&marker) else { continue };
        let (comm, pid, tgid) = task(&line[..at])?;
        let payload = &line[at + marker.len()..];
        if event.starts_with("block") {
            // "7,0 RA 17410 + 512 [cat]" / "8,0 N 0 (85 ..) 0 + 0 none,0,0 [smartctl]"
            let mut words = payload.split_ascii_whitespace();
            let (major, minor) = words.next()?.split_once(',')?;
            let rwbs = words.next()?.to_owned();
            // The bracketed comm is the task's at the event; the header's may be `<...>`.
            let comm = payload
                .rfind('[')
                .and_then(|i| payload[i + 1..].trim_end().strip_suffix(']'))
                .map(str::to_owned)
                .unwrap_or(comm);
            return Some(Record::Block { pid, tgid, comm, dev: (major.parse().ok()?, minor.parse().ok()?), rwbs });
        }
        // "bdi 7:0: ino=13 state=… flags=…" / "bdi 7:0: ino=13 index=0"
        let rest = payload.strip_prefix("bdi ")?;
        let (bdi, rest) = rest.split_once(": ")?;
        let ino = rest.split_ascii_whitespace().find_map(|w| w.strip_prefix("ino="))?.parse().ok()?;
        return Some(Record::Dirty { pid, tgid, comm, bdi: bdi.to_owned(), ino });
    }
    None
}

/// The kernel's `dev_t` as tracepoint filters see it (`MKDEV`: major << 20 | minor).
pub fn kernel_dev(major: u32, minor: u32) -> u64 {
    (u64::from(major) << 20) | u64::from(minor)
}

/// The filters for a set of armed disks: (event, filter), in the order they are written.
pub fn filters(armed: &BTreeMap<String, Armed>) -> Vec<(&'static str, String)> {
    let devs: Vec<String> =
        armed.values().flat_map(|a| a.devs.iter().map(|(ma, mi)| format!("dev == {}", kernel_dev(*ma, *mi)))).collect();
    let bdis: Vec<String> = armed.values().map(|a| format!("name == \"{}\"", a.bdi)).collect();
    let devs = devs.join(" || ");
    let bdis = bdis.join(" || ");
    vec![
        (BIO, devs.clone()),
        (RQ, format!("({devs}) && rwbs ~ \"*N*\"")),
        (DIRTY_INODE, bdis.clone()),
        (DIRTY_FOLIO, bdis),
    ]
}

/// A private trace instance.
pub struct Tracer {
    dir: PathBuf,
    /// `trace_pipe`, non-blocking (None only while dropping: the instance cannot go while open).
    pipe: Option<File>,
    own_pid: u32,
    armed: BTreeMap<String, Armed>,
    /// Whether the tracepoints are on (only while something is armed).
    enabled: bool,
    /// A line cut by the end of the last read.
    partial: String,
}

impl Tracer {
    /// Opens (and mounts, if needed) tracefs at `root` and creates this process's instance,
    /// with nothing enabled.
    pub fn open(root: &Path, proc_root: &Path) -> Result<Self, TraceError> {
        if !root.join("instances").is_dir() {
            nix::mount::mount(Some("tracefs"), root, Some("tracefs"), nix::mount::MsFlags::empty(), None::<&str>)
                .map_err(|source| TraceError::Mount { path: root.to_owned(), source })?;
        }
        let instances = root.join("instances");
        for (path, what) in
            [(BIO, "block_bio_queue"), (RQ, "block_rq_issue"), (DIRTY_INODE, "writeback_mark_inode_dirty")]
        {
            if !root.join("events").join(path).is_dir() {
                return Err(TraceError::Missing(what));
            }
        }
        remove_stale(&instances, proc_root);
        let own_pid = std::process::id();
        let dir = instances.join(format!("{PREFIX}{own_pid}"));
        if !dir.is_dir() {
            std::fs::create_dir(&dir).map_err(io(&dir))?;
        }
        // Before anything is enabled: who is never traced (this process's threads and, through
        // event-fork, everything they start), and the tgid in each line.
        write(&dir.join("options/event-fork"), "1")?;
        write(&dir.join("options/record-tgid"), "1")?;
        let tids = own_threads(proc_root);
        write(&dir.join("set_event_notrace_pid"), &tids.join(" "))?;
        let pipe_path = dir.join("trace_pipe");
        let pipe = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&pipe_path)
            .map_err(io(&pipe_path))?;
        debug!(instance = %dir.display(), threads = tids.len(), "trace instance created");
        Ok(Tracer { dir, pipe: Some(pipe), own_pid, armed: BTreeMap::new(), enabled: false, partial: String::new() })
    }

    /// Disks armed now.
    pub fn armed(&self) -> &BTreeMap<String, Armed> {
        &self.armed
    }

    /// Starts tracing a disk (replaces its devices when already armed).
    pub fn arm(&mut self, id: &str, armed: Armed) -> Result<(), TraceError> {
        if self.armed.get(id) == Some(&armed) {
            return Ok(());
        }
        self.armed.insert(id.to_owned(), armed);
        self.apply()
    }

    /// Stops tracing a disk; the tracepoints go off with the last one.
    pub fn disarm(&mut self, id: &str) -> Result<(), TraceError> {
        if self.armed.remove(id).is_none() {
            return Ok(());
        }
        self.apply()
    }

    fn apply(&mut self) -> Result<(), TraceError> {
        let events = self.dir.join("events");
        if self.armed.is_empty() {
            for (event, _) in
                filters(&BTreeMap::from([(String::new(), Armed { devs: vec![(0, 0)], bdi: String::new() })]))
            {
                write(&events.join(event).join("enable"), "0")?;
            }
            self.enabled = false;
            return Ok(());
        }
        for (event, filter) in filters(&self.armed) {
            let dir = events.join(event);
            if !dir.is_dir() {
                continue; // writeback_dirty_folio is writeback_dirty_page before 5.17
            }
            write(&dir.join("filter"), &filter)?;
            if !self.enabled {
                write(&dir.join("enable"), "1")?;
            }
        }
        self.enabled = true;
        Ok(())
    }

    /// The records waiting in the pipe (never blocks), this process's own left out.
    pub fn read(&mut self) -> Vec<Record> {
        let Some(pipe) = self.pipe.as_mut() else { return Vec::new() };
        let mut buf = vec![0u8; 64 * 1024];
        let mut text = std::mem::take(&mut self.partial);
        while text.len() < READ_MAX {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!(error = %e, "trace_pipe read failed");
                    break;
                }
            }
        }
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        self.partial = text[complete..].to_owned();
        let own = self.own_pid;
        text[..complete]
            .lines()
            .filter_map(parse_line)
            .filter(|r| match r {
                Record::Block { tgid, .. } | Record::Dirty { tgid, .. } => *tgid != Some(own),
            })
            .collect()
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.armed.clear();
        let _ = self.apply();
        self.pipe = None;
        // The instance goes with its buffers; a busy one (a reader elsewhere) is left for the
        // next start to remove.
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            debug!(instance = %self.dir.display(), error = %e, "trace instance not removed");
        }
    }
}

fn write(path: &Path, value: &str) -> Result<(), TraceError> {
    std::fs::write(path, value).map_err(io(path))
}

/// This process's thread ids.
fn own_threads(proc_root: &Path) -> Vec<String> {
    let mut tids: Vec<String> = std::fs::read_dir(proc_root.join("self/task"))
        .map(|d| d.filter_map(Result::ok).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    if tids.is_empty() {
        tids.push(std::process::id().to_string());
    }
    tids
}

/// Removes instances left by diskwatch processes that are gone (killed before their drop ran).
fn remove_stale(instances: &Path, proc_root: &Path) {
    let Ok(dir) = std::fs::read_dir(instances) else { return };
    for entry in dir.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else { continue };
        if pid.parse::<u32>().is_ok() && !proc_root.join(pid).exists() {
            match std::fs::remove_dir(entry.path()) {
                Ok(()) => debug!(instance = %entry.path().display(), "stale trace instance removed"),
                Err(e) => debug!(instance = %entry.path().display(), error = %e, "stale trace instance kept"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as this machine's kernel (6.18) printed them, record-tgid on.
    #[test]
    fn parses_real_lines() {
        let bio =
            "             cat-16326   (  16326) [000] .....  1752.334064: block_bio_queue: 7,0 RA 17410 + 512 [cat]";
        assert_eq!(
            parse_line(bio),
            Some(Record::Block { pid: 16326, tgid: Some(16326), comm: "cat".into(), dev: (7, 0), rwbs: "RA".into() })
        );
        let jbd = "    jbd2/loop0-8-16168   (  16168) [000] .....  1758.211968: block_bio_queue: 7,0 WSM 32796 + 2 [jbd2/loop0-8]";
        assert!(
            matches!(parse_line(jbd), Some(Record::Block { pid: 16168, ref comm, ref rwbs, .. }) if comm == "jbd2/loop0-8" && rwbs == "WSM")
        );
        let rq = "    kworker/1:1H-44      (     44) [001] .....  1758.216436: block_rq_issue: 7,0 FF 0 () 0 + 0 none,0,0 [kworker/1:1H]";
        assert!(matches!(parse_line(rq), Some(Record::Block { pid: 44, ref rwbs, .. }) if rwbs == "FF"));
        let dirty = "             cat-16326   (  16326) [000] .....  1752.360884: writeback_mark_inode_dirty: bdi 7:0: ino=13 state= flags=I_DIRTY_SYNC";
        assert_eq!(
            parse_line(dirty),
            Some(Record::Dirty { pid: 16326, tgid: Some(16326), comm: "cat".into(), bdi: "7:0".into(), ino: 13 })
        );
        let folio = "    jbd2/loop0-8-16168   (  16168) [001] d..3.  1758.217788: writeback_dirty_folio: bdi 7:0: ino=7340032 index=1092";
        assert!(matches!(parse_line(folio), Some(Record::Dirty { ino: 7340032, .. })));
        // A pass-through request (SG_IO) as block_rq_issue prints it: rwbs N, the CDB in ().
        let sg = "        smartctl-9001    (   9001) [001] .....  99.000001: block_rq_issue: 8,0 N 0 (85 06 20 00 00 00 00 00 00 00 00 00 00 40 e5 00) 0 + 0 none,0,0 [smartctl]";
        assert!(matches!(parse_line(sg), Some(Record::Block { pid: 9001, ref rwbs, dev: (8, 0), .. }) if rwbs == "N"));
        // Without record-tgid, and a comm with spaces and dashes; the header's `<...>`.
        let plain = "  (sd-pam) x-77 [000] ..... 1.0: block_bio_queue: 8,16 R 0 + 8 [(sd-pam) x]";
        assert!(
            matches!(parse_line(plain), Some(Record::Block { pid: 77, tgid: None, ref comm, .. }) if comm == "(sd-pam) x")
        );
        let unknown =
            "           <...>-501   (    501) [000] ..... 2.0: writeback_dirty_folio: bdi 8:16: ino=5 index=0";
        assert!(matches!(parse_line(unknown), Some(Record::Dirty { pid: 501, ref comm, .. }) if comm == "<...>"));
        assert_eq!(parse_line("# tracer: nop"), None);
        assert_eq!(parse_line("x-1 [000] ..... 1.0: block_bio_queue: garbage"), None);
    }

    #[test]
    fn filters_name_every_device_and_bdi() {
        let armed = BTreeMap::from([
            ("a".to_owned(), Armed { devs: vec![(7, 0), (259, 1)], bdi: "7:0".into() }),
            ("b".to_owned(), Armed { devs: vec![(8, 16)], bdi: "8:16".into() }),
        ]);
        let f = filters(&armed);
        assert_eq!(f[0], (BIO, "dev == 7340032 || dev == 271581185 || dev == 8388624".to_owned()));
        assert_eq!(f[1].1, "(dev == 7340032 || dev == 271581185 || dev == 8388624) && rwbs ~ \"*N*\"");
        assert_eq!(f[2].1, "name == \"7:0\" || name == \"8:16\"");
    }
}
