//! The machine as actions see it: the `/proc`, `/sys` and `/dev` roots (arguments, so sysfs
//! lookups can be tested on a copy of a real tree), the host's mount namespace, the mount
//! table, and the small sysfs and ioctl helpers the operations share.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::model::Holder;
use crate::mounts::mountinfo::{self, Entry};

/// Mount points whose loss takes the system (or the agent) down with it: never unmounted,
/// and a disk holding one is never ejected.
pub const SYSTEM_MOUNTS: &[&str] = &["/", "/usr", "/var", "/boot", "/boot/efi", "/efi", "/home", "/var/lib", "/etc"];

/// Where the operations find the kernel's interfaces.
#[derive(Debug, Clone)]
pub struct Machine {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub dev: PathBuf,
}

impl Default for Machine {
    fn default() -> Self {
        Self { proc: "/proc".into(), sys: "/sys".into(), dev: "/dev".into() }
    }
}

/// Why an action failed: a stable code, a sentence, and for `busy` who holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: &'static str,
    pub message: String,
    pub holders: Vec<Holder>,
}

impl Failure {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self { reason, message: message.into(), holders: Vec::new() }
    }

    /// A failed system call: `permission` for EPERM/EACCES (a missing capability), else `error`.
    pub fn os(what: &str, e: &io::Error) -> Self {
        let reason = match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => "permission",
            _ => "error",
        };
        Self::new(reason, format!("{what}: {e}"))
    }
}

/// What an operation did, kept when a later step fails.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub unmounted: Vec<String>,
    pub mount_point: Option<String>,
}

impl Machine {
    /// Moves the calling thread into PID 1's mount namespace, as udisks (which runs there)
    /// acts. Under systemd the agent has a namespace of its own (ProtectSystem=, PrivateTmp=):
    /// an unmount there would unmount nothing for the rest of the machine. Only for a thread
    /// of its own (it leaves the process's shared filesystem context first). Nothing to do
    /// when the agent already shares PID 1's namespace.
    pub fn enter_host_mounts(&self) -> Result<(), Failure> {
        let host = self.proc.join("1/ns/mnt");
        let own = self.proc.join("thread-self/ns/mnt");
        let own_meta = std::fs::metadata(&own).map_err(|e| Failure::os(&format!("stat {}", own.display()), &e))?;
        let same = match std::fs::metadata(&host) {
            Ok(h) => h.ino() == own_meta.ino() && h.dev() == own_meta.dev(),
            // PID 1 out of reach (a container whose init has capabilities we lack): we act
            // in our own namespace, unless systemd started us: there that namespace is the
            // service's private one, and acting in it would change nothing for the machine.
            Err(e) if std::env::var_os("INVOCATION_ID").is_none() => {
                tracing::debug!(error = %e, "PID 1's mount namespace is out of reach: acting in our own");
                true
            }
            Err(e) => {
                return Err(Failure::new(
                    "permission",
                    format!(
                        "cannot reach PID 1's mount namespace ({}: {e}); install the unit's actions drop-in \
                         (CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_SYS_CHROOT)",
                        host.display()
                    ),
                ))
            }
        };
        if same {
            return Ok(());
        }
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
            .map_err(|e| Failure::os("unshare(CLONE_FS)", &io::Error::from(e)))?;
        let ns = File::open(&host).map_err(|e| Failure::os(&format!("open {}", host.display()), &e))?;
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(|e| Failure::os("setns into PID 1's mount namespace", &io::Error::from(e)))
    }

    /// The mount table of the calling thread's namespace.
    pub fn mount_table(&self) -> Result<Vec<Entry>, Failure> {
        let path = self.proc.join("thread-self/mountinfo");
        let text = std::fs::read_to_string(&path).map_err(|e| Failure::os(&format!("read {}", path.display()), &e))?;
        Ok(mountinfo::parse(&text).0)
    }

    /// `/sys/class/block/<name>`.
    pub fn block(&self, name: &str) -> PathBuf {
        self.sys.join("class/block").join(name)
    }

    /// `major:minor` of a block device from sysfs.
    pub fn block_dev(&self, name: &str) -> Option<String> {
        read_trimmed(&self.block(name).join("dev"))
    }

    /// Kernel names of the partitions of `disk`.
    pub fn partitions(&self, disk: &str) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.block(disk))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("partition").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    /// What holds a block device in sysfs (md arrays, device-mapper devices).
    pub fn sysfs_holders(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.block(name).join("holders"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    pub fn node(&self, name: &str) -> PathBuf {
        self.dev.join(name)
    }
}

pub fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// `major:minor` of a device node (`None` when it is not a block device).
pub fn rdev_of(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    meta.file_type()
        .is_block_device()
        .then(|| format!("{}:{}", nix::sys::stat::major(meta.rdev()), nix::sys::stat::minor(meta.rdev())))
}

/// `major:minor` of the block device an open file is (`None` when it is not one).
pub fn file_dev(file: &File) -> Option<String> {
    let meta = file.metadata().ok()?;
    meta.file_type()
        .is_block_device()
        .then(|| format!("{}:{}", nix::sys::stat::major(meta.rdev()), nix::sys::stat::minor(meta.rdev())))
}

impl Machine {
    /// Checks, right before acting, that `name` is still the device `dev` the action was asked
    /// about: in sysfs, and its device node (a name is reused when a disk goes and another
    /// comes). Reason `changed` when not.
    pub fn same_device(&self, name: &str, dev: &str) -> Result<(), Failure> {
        match self.block_dev(name) {
            None => return Err(Failure::new("not_found", format!("{name} is gone"))),
            Some(now) if now != dev => {
                return Err(Failure::new("changed", format!("{name} is now another device ({now}, was {dev})")))
            }
            Some(_) => {}
        }
        match rdev_of(&self.node(name)) {
            Some(now) if now == dev => Ok(()),
            now => Err(Failure::new(
                "changed",
                format!(
                    "{} is not the device {dev} (it is {})",
                    self.node(name).display(),
                    now.as_deref().unwrap_or("none")
                ),
            )),
        }
    }
}

/// Whether a mount-table entry is a filesystem on one of `devs` (`major:minor`): by its
/// device number, or by its source node (btrfs reports an anonymous device number).
pub fn entry_on(entry: &Entry, devs: &[String]) -> bool {
    devs.contains(&entry.dev)
        || (entry.source.starts_with('/') && rdev_of(Path::new(&entry.source)).is_some_and(|d| devs.contains(&d)))
}

/// Opens a block device exclusively: fails with EBUSY while anything (a mount in any
/// namespace, md, device-mapper, btrfs) holds it. Retries briefly: udev's probes open
/// devices for a moment after they change.
pub fn open_exclusive(path: &Path) -> io::Result<File> {
    let mut tries = 0;
    loop {
        match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_EXCL | libc::O_CLOEXEC).open(path) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Writes dirty buffers of a block device and drops its buffer cache (`blockdev --flushbufs`).
pub fn flush(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    file.sync_all()?;
    // BLKFLSBUF = _IO(0x12, 97).
    const BLKFLSBUF: libc::c_ulong = 0x1261;
    // SAFETY: BLKFLSBUF takes no argument; the descriptor is open for the call's duration.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKFLSBUF as _, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `path` is gone, at most `limit`.
pub fn wait_gone(path: &Path, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while path.exists() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}
