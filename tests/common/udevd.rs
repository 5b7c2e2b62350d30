//! Test support for the block-device source: a systemd-udevd started (and
//! stopped by PID) by the test, and helpers around loop devices in /sys.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// systemd-udevd run by a test; stopped by its PID and /run/udev removed on
/// drop. Where the host already runs udevd, that one is used and left alone.
pub struct Udevd {
    child: Option<Child>,
    /// Whether /dev/disk existed before, so we only remove what udevd made.
    had_dev_disk: bool,
}

impl Udevd {
    pub fn start() -> Self {
        if Path::new("/run/udev/control").exists() {
            let this = Self { child: None, had_dev_disk: true };
            this.settle();
            return this;
        }
        let had_dev_disk = Path::new("/dev/disk").exists();
        let child = Command::new("/lib/systemd/systemd-udevd")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /lib/systemd/systemd-udevd (apt package udev)");
        let this = Self { child: Some(child), had_dev_disk };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new("/run/udev/control").exists() {
            assert!(Instant::now() < deadline, "udevd did not create /run/udev/control");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("udevadm").args(["settle", "--timeout=10"]).output();
        this
    }

    /// Waits until udevd has processed every queued event.
    pub fn settle(&self) {
        let _ = Command::new("udevadm").args(["settle", "--timeout=10"]).output();
    }
}

impl Drop for Udevd {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        let _ = std::fs::remove_dir_all("/run/udev");
        if !self.had_dev_disk {
            let _ = std::fs::remove_dir_all("/dev/disk");
        }
    }
}

/// Kernel names of the attached loop devices, from /sys.
pub fn attached_loops() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .expect("read /sys/block")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("loop") && Path::new(&format!("/sys/block/{n}/loop/backing_file")).exists())
        .collect();
    names.sort();
    names
}

/// The filesystem UUID of a device, by a low-level probe (`blkid -p`).
pub fn fs_uuid(device: &str) -> String {
    super::sh("blkid", &["-p", "-s", "UUID", "-o", "value", device])
}
