//! A traced request → who woke the disk and how. Pure.
//!
//! - `N` in rwbs: a pass-through command (SG_IO, NVMe admin) — `passthrough`;
//! - a read with `M` (REQ_META: inode tables, directories, as ext4/xfs mark them) — `metadata`;
//! - other reads `read`; writes, discards and flushes `write`;
//! - a write issued by a kernel thread (the flusher `kworker`, `jbd2`, `xfsaild`, …) is done on
//!   someone's behalf: it is attributed to the last task seen dirtying data on that disk while
//!   it was armed. Without one, the kernel thread itself is named.

use crate::model::sleep::WakeOp;

/// The kind of request from rwbs (`blk_fill_rwbs`: optional preflush `F`, then the op letter
/// `R`/`W`/`D`/`E`/`N`, then flags `F` FUA, `A` ahead, `S` sync, `M` meta).
pub fn op_of(rwbs: &str) -> WakeOp {
    if rwbs.contains('N') {
        return WakeOp::Passthrough;
    }
    match rwbs.trim_start_matches('F').chars().next() {
        Some('R') if rwbs.contains('M') => WakeOp::Metadata,
        Some('R') => WakeOp::Read,
        Some('W' | 'D' | 'E') | None => WakeOp::Write,
        Some(_) => WakeOp::Unknown,
    }
}

/// Kernel threads that write on behalf of others, by name (when `/proc` no longer knows the
/// task): the flusher and block workers, journal threads, reclaim.
pub fn kernel_writer_name(comm: &str) -> bool {
    ["kworker/", "jbd2/", "flush-", "kswapd", "xfsaild", "btrfs-", "writeback"].iter().any(|p| comm.starts_with(p))
}

/// A task seen in the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub pid: u32,
    pub comm: String,
}

/// The task to name for a request, and the op: the issuer, or for a kernel thread's write the
/// last dirtier.
pub fn culprit<'a>(rwbs: &str, issuer: &'a Task, kthread: bool, dirtier: Option<&'a Task>) -> (&'a Task, WakeOp) {
    let op = op_of(rwbs);
    match (op, kthread, dirtier) {
        (WakeOp::Write, true, Some(d)) => (d, WakeOp::Write),
        _ => (issuer, op),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_from_rwbs() {
        for (rwbs, op) in [
            ("R", WakeOp::Read),
            ("RA", WakeOp::Read),
            ("RS", WakeOp::Read),
            ("RM", WakeOp::Metadata),
            ("RAM", WakeOp::Metadata),
            ("W", WakeOp::Write),
            ("WS", WakeOp::Write),
            ("FWFSM", WakeOp::Write),
            ("WSM", WakeOp::Write),
            ("FF", WakeOp::Write),
            ("D", WakeOp::Write),
            ("N", WakeOp::Passthrough),
        ] {
            assert_eq!(op_of(rwbs), op, "{rwbs}");
        }
    }

    #[test]
    fn kernel_writes_go_to_the_dirtier() {
        let flusher = Task { pid: 44, comm: "kworker/u8:2".into() };
        let writer = Task { pid: 900, comm: "rsync".into() };
        assert_eq!(culprit("W", &flusher, true, Some(&writer)), (&writer, WakeOp::Write));
        assert_eq!(culprit("W", &flusher, true, None), (&flusher, WakeOp::Write));
        // A user task's own write, or a kernel thread's read, is its own.
        let cat = Task { pid: 7, comm: "cat".into() };
        assert_eq!(culprit("WS", &cat, false, Some(&writer)), (&cat, WakeOp::Write));
        assert_eq!(culprit("R", &flusher, true, Some(&writer)), (&flusher, WakeOp::Read));
        assert!(kernel_writer_name("jbd2/sdb1-8") && kernel_writer_name("kworker/u8:2") && !kernel_writer_name("cat"));
    }
}
