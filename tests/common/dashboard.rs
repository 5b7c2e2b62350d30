//! Dashboard test support: a headless Chromium driven through
//! tests/browser/driver.mjs (playwright-core), and fake topologies to feed an
//! in-process agent as facts.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use diskwatch::model::{Disk, Mount, Partition, Usage};

/// A Chromium instance; the driver process is ended on drop.
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where tests put screenshots (gitignored).
pub fn artifacts_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create test-artifacts");
    dir
}

impl Browser {
    pub fn launch() -> Self {
        assert!(
            browser_dir().join("node_modules/playwright-core").is_dir(),
            "playwright-core is not installed: run scripts/setup (npm ci in tests/browser)"
        );
        assert!(std::path::Path::new("/usr/bin/chromium").exists(), "chromium is not installed: run scripts/setup");
        let mut child = Command::new("node")
            .arg(browser_dir().join("driver.mjs"))
            .current_dir(browser_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run node (apt package nodejs)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Self { child, stdin, stdout }
    }

    /// Sends one driver command; `Ok(value)` or `Err(message)`.
    pub fn try_cmd(&mut self, line: &str) -> Result<String, String> {
        writeln!(self.stdin, "{line}").expect("write to the driver");
        self.stdin.flush().expect("flush");
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).expect("read from the driver");
        let answer = answer.trim_end();
        match answer.split_once(' ').unwrap_or((answer, "")) {
            ("ok", value) => Ok(value.to_owned()),
            ("error", message) => Err(message.to_owned()),
            _ => Err(format!("the driver died or answered {answer:?}")),
        }
    }

    /// Sends a command that must succeed.
    pub fn cmd(&mut self, line: &str) -> String {
        self.try_cmd(line).unwrap_or_else(|e| panic!("browser: `{line}` failed: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // Only the driver this guard started, by its own handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fake disk `sd<suffix>` with the given major:minor.
pub fn disk(n: usize) -> Disk {
    let name = format!("sd{}", suffix(n));
    Disk {
        id: format!("ata-FAKE_DISK_{n:04}"),
        stable: true,
        kernel_name: name.clone(),
        devpath: format!("/devices/fake/{name}"),
        devnode: format!("/dev/{name}"),
        dev: format!("8:{}", n * 16),
        vendor: Some("ATA".into()),
        model: Some(format!("FAKE DISK {n}")),
        serial: Some(format!("SN{n:06}")),
        firmware: None,
        wwn: None,
        bus: Some("ata".into()),
        size_bytes: 4 << 40,
        removable: n % 5 == 0,
        rotational: true,
        read_only: false,
        partition_table: Some("gpt".into()),
        fs_type: None,
        fs_label: None,
        fs_uuid: None,
        members: vec![],
        holders: vec![],
        partitions: vec![],
        mounts: vec![],
        power_state: None,
        health: None,
        health_note: None,
        io: None,
        sleep: None,
        self_test: None,
        arrays: Vec::new(),
        attention: None,
    }
}

fn suffix(n: usize) -> String {
    // a..z, then aa, ab, ... like the kernel names disks.
    let mut n = n;
    let mut s = Vec::new();
    loop {
        s.push(b'a' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).expect("ascii")
}

/// Partition `number` of `disk`.
pub fn partition(disk: &Disk, number: u32) -> Partition {
    let (major, minor) = disk.dev.split_once(':').expect("major:minor");
    let minor: u32 = minor.parse().expect("minor");
    Partition {
        id: format!("{}-part{number}", disk.id),
        stable: true,
        kernel_name: format!("{}{number}", disk.kernel_name),
        devpath: format!("{}/{}{number}", disk.devpath, disk.kernel_name),
        devnode: format!("{}{number}", disk.devnode),
        dev: format!("{major}:{}", minor + number),
        disk_id: disk.id.clone(),
        number,
        size_bytes: 2 << 40,
        read_only: false,
        fs_type: Some("ext4".into()),
        fs_label: Some(format!("data{number}")),
        fs_uuid: None,
        part_label: None,
        part_uuid: None,
        mounts: vec![],
        arrays: Vec::new(),
    }
}

/// A mount of `partition` at `mount_point`.
pub fn mount(partition: &Partition, mount_point: &str) -> Mount {
    Mount {
        id: diskwatch::model::mount_id(mount_point),
        mount_point: mount_point.into(),
        source: partition.devnode.clone(),
        dev: partition.dev.clone(),
        fs_type: "ext4".into(),
        options: vec!["rw".into(), "relatime".into()],
        super_options: vec!["rw".into()],
        read_only: false,
        root: "/".into(),
        network: false,
        partition_id: None,
        disk_id: None,
        shares: vec![],
        usage: None,
        stale: false,
        forecast: None,
        array_id: None,
        attention: None,
    }
}

/// A usage sample of `percent` on 1 TiB.
pub fn usage(percent: f64) -> Usage {
    let total: u64 = 1 << 40;
    let used = (total as f64 * percent / 100.0) as u64;
    Usage {
        total_bytes: total,
        used_bytes: used,
        available_bytes: total - used,
        percent,
        inodes_total: 1_000_000,
        inodes_used: 1000,
        inodes_free: 999_000,
    }
}

/// `disks` disks with two partitions each and `mounts` mounts spread over the
/// partitions (bind-style: several mount points per partition), with usage.
pub fn topology(disks: usize, mounts: usize) -> (Vec<Disk>, Vec<Partition>, Vec<Mount>) {
    let disks: Vec<Disk> = (0..disks).map(disk).collect();
    let partitions: Vec<Partition> = disks.iter().flat_map(|d| [partition(d, 1), partition(d, 2)]).collect();
    let mounts = (0..mounts)
        .map(|i| {
            let mut m = mount(&partitions[i % partitions.len()], &format!("/srv/volume{i:03}"));
            m.usage = Some(usage((i * 7 % 100) as f64));
            m
        })
        .collect();
    (disks, partitions, mounts)
}
