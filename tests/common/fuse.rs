//! A tiny FUSE filesystem spoken over raw /dev/fuse, whose statfs answer can be held back:
//! a stand-in for a dead network server that makes statvfs block.
//!
//! It answers INIT, GETATTR of the root and STATFS, and ENOSYS to everything else. Frozen
//! ([`BlockingFuse::freeze`]), it stops reading requests at all, like a stopped daemon: any call
//! into it (stat, open) waits. Such a waiting call can still be killed (the kernel drops a request
//! the daemon never read), whereas a request read and held back, as `hang` does, keeps its
//! caller in the kernel until answered, even through SIGKILL.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const FUSE_GETATTR: u32 = 3;
const FUSE_FORGET: u32 = 2;
const FUSE_STATFS: u32 = 17;
const FUSE_INIT: u32 = 26;
const FUSE_INTERRUPT: u32 = 36;
const FUSE_BATCH_FORGET: u32 = 42;
const ENOSYS: i32 = 38;
const IN_HEADER: usize = 40;

#[derive(Default)]
struct Control {
    hang: AtomicBool,
    /// Read no requests at all.
    frozen: AtomicBool,
    stop: AtomicBool,
    /// STATFS requests received while hanging and not answered yet.
    pending: Mutex<Vec<u64>>,
    /// STATFS requests received in all.
    statfs_seen: AtomicUsize,
}

/// A mounted test FUSE filesystem; unmounted (lazily) and its daemon stopped on drop.
pub struct BlockingFuse {
    pub target: PathBuf,
    /// A second handle on the connection, to see whether requests wait unread.
    dev: File,
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl BlockingFuse {
    /// Mounts at `target` (created if missing) as type `fuse.diskwatchtest`.
    pub fn mount(target: &Path) -> Self {
        std::fs::create_dir_all(target).expect("create FUSE mount point");
        let dev = File::options().read(true).write(true).open("/dev/fuse").expect("open /dev/fuse");
        let options = format!("fd={},rootmode=40000,user_id=0,group_id=0", dev.as_raw_fd());
        nix::mount::mount(
            Some("diskwatch-fuse"),
            target,
            Some("fuse.diskwatchtest"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .expect("mount the test FUSE filesystem");
        let control = Arc::new(Control::default());
        let c = control.clone();
        let watch = dev.try_clone().expect("dup /dev/fuse");
        let thread = std::thread::spawn(move || serve(dev, &c));
        Self { target: target.to_path_buf(), dev: watch, control, thread: Some(thread) }
    }

    /// From now on statfs requests are held back.
    pub fn hang(&self) {
        self.control.hang.store(true, Ordering::SeqCst);
    }

    /// From now on no request is read (after the mount's INIT, which came first).
    pub fn freeze(&self) {
        self.control.frozen.store(true, Ordering::SeqCst);
    }

    /// Whether a request waits unread (only while frozen does one stay).
    pub fn request_waiting(&self) -> bool {
        let mut fds = [nix::poll::PollFd::new(self.dev.as_fd(), nix::poll::PollFlags::POLLIN)];
        matches!(nix::poll::poll(&mut fds, 0u16), Ok(n) if n > 0)
    }

    /// Answers the held-back requests and every later one.
    pub fn release(&self) {
        self.control.frozen.store(false, Ordering::SeqCst);
        self.control.hang.store(false, Ordering::SeqCst);
    }

    /// Requests being held back now.
    pub fn pending(&self) -> usize {
        self.control.pending.lock().unwrap().len()
    }

    pub fn statfs_seen(&self) -> usize {
        self.control.statfs_seen.load(Ordering::SeqCst)
    }
}

impl Drop for BlockingFuse {
    fn drop(&mut self) {
        self.release();
        // Give the daemon a moment to answer what it held, then detach the mount.
        std::thread::sleep(Duration::from_millis(100));
        let _ = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH);
        self.control.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reply(dev: &mut File, unique: u64, error: i32, body: &[u8]) {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&((16 + body.len()) as u32).to_le_bytes());
    out.extend_from_slice(&(-error).to_le_bytes());
    out.extend_from_slice(&unique.to_le_bytes());
    out.extend_from_slice(body);
    // ENOENT: the request was interrupted meanwhile; nothing to do.
    let _ = dev.write_all(&out);
}

fn statfs_body() -> Vec<u8> {
    let mut b = Vec::with_capacity(80);
    for v in [1000u64, 500, 500, 100, 50] {
        b.extend_from_slice(&v.to_le_bytes()); // blocks, bfree, bavail, files, ffree
    }
    for v in [4096u32, 255, 4096, 0] {
        b.extend_from_slice(&v.to_le_bytes()); // bsize, namelen, frsize, padding
    }
    b.extend_from_slice(&[0u8; 24]);
    b
}

fn init_body() -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    for v in [7u32, 31, 0, 0] {
        b.extend_from_slice(&v.to_le_bytes()); // major, minor, max_readahead, flags
    }
    b.extend_from_slice(&1u16.to_le_bytes()); // max_background
    b.extend_from_slice(&1u16.to_le_bytes()); // congestion_threshold
    b.extend_from_slice(&4096u32.to_le_bytes()); // max_write
    b.extend_from_slice(&1u32.to_le_bytes()); // time_gran
    b.extend_from_slice(&[0u8; 64 - 28]); // max_pages, map_alignment, flags2, unused
    b
}

fn attr_body() -> Vec<u8> {
    let mut b = Vec::with_capacity(104);
    b.extend_from_slice(&1u64.to_le_bytes()); // attr_valid
    b.extend_from_slice(&[0u8; 8]); // attr_valid_nsec, dummy
    b.extend_from_slice(&1u64.to_le_bytes()); // ino
    b.extend_from_slice(&[0u8; 8 * 5 + 4 * 3]); // size, blocks, times
    for v in [0o40755u32, 2, 0, 0, 0, 4096, 0] {
        b.extend_from_slice(&v.to_le_bytes()); // mode, nlink, uid, gid, rdev, blksize, flags
    }
    b
}

fn serve(mut dev: File, control: &Control) {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if control.stop.load(Ordering::SeqCst) {
            return;
        }
        if control.frozen.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        if !control.hang.load(Ordering::SeqCst) {
            let held: Vec<u64> = std::mem::take(&mut *control.pending.lock().unwrap());
            for unique in held {
                reply(&mut dev, unique, 0, &statfs_body());
            }
        }
        let mut fds = [nix::poll::PollFd::new(dev.as_fd(), nix::poll::PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, 50u16) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let n = match dev.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc_enoent()) => continue,
            // ENODEV: unmounted or aborted.
            Err(_) => return,
        };
        if n < IN_HEADER {
            continue;
        }
        let opcode = u32::from_le_bytes(buf[4..8].try_into().unwrap());
        let unique = u64::from_le_bytes(buf[8..16].try_into().unwrap());
        match opcode {
            FUSE_INIT => reply(&mut dev, unique, 0, &init_body()),
            FUSE_GETATTR => reply(&mut dev, unique, 0, &attr_body()),
            FUSE_STATFS => {
                control.statfs_seen.fetch_add(1, Ordering::SeqCst);
                if control.hang.load(Ordering::SeqCst) {
                    control.pending.lock().unwrap().push(unique);
                } else {
                    reply(&mut dev, unique, 0, &statfs_body());
                }
            }
            FUSE_FORGET | FUSE_BATCH_FORGET | FUSE_INTERRUPT => {}
            _ => reply(&mut dev, unique, ENOSYS, &[]),
        }
    }
}

fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}
