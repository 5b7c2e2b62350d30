//! What `/proc/<pid>` says of the task behind a request: its thread group and name, whether it
//! is a kernel thread, its cgroup and the systemd unit or container scope that cgroup names,
//! and a file on the woken disk it holds open. All reads are of procfs (no disk I/O); a task
//! that has already exited yields what the trace line carried, nothing more.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `PF_KTHREAD` in `/proc/<pid>/stat`'s flags (include/linux/sched.h).
const PF_KTHREAD: u64 = 0x0020_0000;

/// What is known of a task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcInfo {
    pub tgid: Option<u32>,
    /// The thread group leader's name.
    pub comm: Option<String>,
    pub kthread: bool,
    pub cgroup: Option<String>,
    pub unit: Option<String>,
}

/// Reads what `/proc/<pid>` holds (empty when the task is gone).
pub fn describe(proc_root: &Path, pid: u32) -> ProcInfo {
    let dir = proc_root.join(pid.to_string());
    let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    let tgid = status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok());
    let kthread = std::fs::read_to_string(dir.join("stat"))
        .ok()
        .and_then(|s| stat_flags(&s))
        .is_some_and(|f| f & PF_KTHREAD != 0);
    let leader = proc_root.join(tgid.unwrap_or(pid).to_string());
    let comm =
        std::fs::read_to_string(leader.join("comm")).ok().map(|c| c.trim_end().to_owned()).filter(|c| !c.is_empty());
    let cgroup = std::fs::read_to_string(leader.join("cgroup")).ok().and_then(|c| cgroup_path(&c));
    let unit = cgroup.as_deref().and_then(unit_of);
    ProcInfo { tgid, comm, kthread, cgroup, unit }
}

/// The flags field (the 9th) of `/proc/<pid>/stat`; the name in parentheses may hold spaces.
pub fn stat_flags(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_ascii_whitespace().nth(6)?.parse().ok()
}

/// The cgroup v2 path (`0::/…`), else the first v1 line's path; `/` is none.
pub fn cgroup_path(text: &str) -> Option<String> {
    let v2 = text.lines().find_map(|l| l.strip_prefix("0::"));
    let path = v2.or_else(|| text.lines().next().and_then(|l| l.splitn(3, ':').nth(2)))?.trim();
    (!path.is_empty() && path != "/").then(|| path.to_owned())
}

/// The systemd unit or container scope a cgroup path names: its deepest `.service` or `.scope`
/// component (`docker-<id>.scope`, `libpod-<id>.scope`, `session-3.scope`), else its last one.
pub fn unit_of(cgroup: &str) -> Option<String> {
    let parts: Vec<&str> = cgroup.split('/').filter(|p| !p.is_empty()).collect();
    parts
        .iter()
        .rev()
        .find(|p| p.ends_with(".service") || p.ends_with(".scope"))
        .or(parts.last())
        .map(|p| (*p).to_owned())
}

/// `(major, minor)` of a `dev_t` as userspace sees it (glibc's `major`/`minor`).
pub fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// A file on one of `devs` that the process holds open (a regular file first, else the device
/// node itself). Only procfs and in-memory inodes of open files are looked at.
pub fn open_file_on(proc_root: &Path, pid: u32, devs: &[(u32, u32)]) -> Option<String> {
    let fds = std::fs::read_dir(proc_root.join(pid.to_string()).join("fd")).ok()?;
    let mut node = None;
    for fd in fds.filter_map(Result::ok) {
        let Ok(meta) = std::fs::metadata(fd.path()) else { continue };
        let target = || std::fs::read_link(fd.path()).ok().map(|t| t.to_string_lossy().into_owned());
        if meta.is_file() && devs.contains(&split_dev(meta.dev())) {
            return target();
        }
        if node.is_none() && meta.file_type().is_block_device_like() && devs.contains(&split_dev(meta.rdev())) {
            node = target();
        }
    }
    node
}

trait BlockLike {
    fn is_block_device_like(&self) -> bool;
}

impl BlockLike for std::fs::FileType {
    fn is_block_device_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_block_device(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_from_cgroups() {
        assert_eq!(cgroup_path("0::/system.slice/plex.service\n").as_deref(), Some("/system.slice/plex.service"));
        assert_eq!(cgroup_path("0::/\n"), None);
        assert_eq!(cgroup_path("12:pids:/docker/abc\n").as_deref(), Some("/docker/abc"));
        assert_eq!(unit_of("/system.slice/plex.service").as_deref(), Some("plex.service"));
        assert_eq!(unit_of("/system.slice/docker-0123abcd.scope").as_deref(), Some("docker-0123abcd.scope"));
        assert_eq!(unit_of("/user.slice/user-0.slice/session-3.scope").as_deref(), Some("session-3.scope"));
        assert_eq!(unit_of("/system.slice/foo.service/worker").as_deref(), Some("foo.service"));
        assert_eq!(unit_of("/machine.slice/libpod-9f.scope/container").as_deref(), Some("libpod-9f.scope"));
        assert_eq!(unit_of("/docker/abc").as_deref(), Some("abc"));
        // A unit of a container's own systemd, seen from the host (tests/wake_unit.rs measured
        // `/payload/system.slice/wake-reader.service` with nspawn on a host without systemd;
        // under a host's systemd nspawn's own unit comes first): the container's unit wins.
        let nested = "/machine.slice/systemd-nspawn@deb.service/payload/system.slice/wake-reader.service";
        assert_eq!(unit_of(nested).as_deref(), Some("wake-reader.service"));
        assert_eq!(unit_of("/payload/system.slice/wake-reader.service").as_deref(), Some("wake-reader.service"));
        // A container without its own systemd: the container's unit on the host.
        let bare = "/machine.slice/systemd-nspawn@deb.service/payload";
        assert_eq!(unit_of(bare).as_deref(), Some("systemd-nspawn@deb.service"));
    }

    #[test]
    fn stat_flags_and_devs() {
        // /proc/2/stat of kthreadd and a user process with a spaced name.
        let k = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 4 0 0";
        assert_eq!(stat_flags(k).map(|f| f & PF_KTHREAD != 0), Some(true));
        let u = "77 (tmux: server) S 1 77 77 0 -1 4194560 120 0 0 0 1 0 0 0 20 0 1 0 9 0 0";
        assert_eq!(stat_flags(u).map(|f| f & PF_KTHREAD != 0), Some(false));
        assert_eq!(split_dev(0x0700), (7, 0));
        assert_eq!(split_dev(0x10300), (259, 0));
        assert_eq!(split_dev(0x0811), (8, 17));
    }

    #[test]
    fn this_process_is_described() {
        let me = describe(Path::new("/proc"), std::process::id());
        assert_eq!(me.tgid, Some(std::process::id()));
        assert!(!me.kthread);
        assert!(me.comm.is_some());
        let kthreadd = describe(Path::new("/proc"), 2);
        assert!(kthreadd.kthread, "{kthreadd:?}");
    }
}
