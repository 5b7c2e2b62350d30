//! udisks2 and the agent (kernel mode, udev mode) side by side, on the same changes made with
//! the syscalls themselves: LOOP_SET_FD, two BLKPG partition adds, mount(2), umount2(2). Each
//! step is timed from the syscall's return to the observer's notification, and the kernel's
//! own notification (a raw NETLINK_KOBJECT_UEVENT socket; POLLPRI on /proc/self/mountinfo) is
//! recorded as the floor: the figures are each observer's overhead over the kernel. Prints
//! p50/p99 per step, ratios against udisks2, resident memory before and after the cycles and
//! idle CPU. Run as root with `cargo bench --bench side_by_side` (apt packages udisks2, dbus);
//! `-- --cycles N` for longer plug-cycle runs, `--only kernel` (or udev, udisks2) for one observer,
//! `--only floor` for the measuring's own noise (a second reader of the kernel's notifications).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

use common::udevd::Udevd;
use common::{machine_lock, sh};

/// Plug cycles per observer unless `--cycles N` says otherwise.
const CYCLES: usize = 40;

/// `--cycles N` (default [`CYCLES`]) and `--only NAME` (floor, kernel, udev or udisks2; repeatable).
struct Args {
    cycles: usize,
    only: Vec<String>,
}

impl Args {
    fn parse() -> Self {
        let mut args = Args { cycles: CYCLES, only: Vec::new() };
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            match a.as_str() {
                "--cycles" => args.cycles = it.next().and_then(|n| n.parse().ok()).expect("--cycles N"),
                "--only" => args.only.push(it.next().expect("--only floor|kernel|udev|udisks2")),
                _ => {} // `--bench`, passed by cargo
            }
        }
        args
    }

    fn runs(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}
const WAIT: Duration = Duration::from_secs(10);
const IMAGE_MIB: u64 = 64;
/// The partitions, as (start, length) in MiB: what the image's GPT says and BLKPG adds.
const PARTS: [(u64, u64); 2] = [(1, 20), (21, 20)];

/// A notification: when it came and what it says (`disk:loop3`, `part:loop3p1`, `mount:loop3p1`,
/// `umount:loop3p1`).
type Note = (Instant, String);

/// The notes of one source, kept until a step asks for them.
struct Notes {
    rx: Receiver<Note>,
    seen: Vec<Note>,
}

impl Notes {
    fn new(rx: Receiver<Note>) -> Self {
        Self { rx, seen: Vec::new() }
    }

    /// The first note `key` at or after `since`.
    fn wait(&mut self, key: &str, since: Instant) -> Option<Instant> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((t, _)) = self.seen.iter().find(|(t, k)| *t >= since && k == key) {
                return Some(*t);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(n) => self.seen.push(n),
                Err(_) => return None,
            }
        }
    }

    fn clear(&mut self) {
        self.seen.clear();
        while self.rx.try_recv().is_ok() {}
    }
}

/// Children killed by PID (SIGTERM, then SIGKILL) when dropped, even on a panic.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in self.0.iter_mut().rev() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while !matches!(child.try_wait(), Ok(Some(_))) {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

// The loop and BLKPG ioctls (linux/loop.h, linux/blkpg.h).
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const BLKPG: libc::c_ulong = 0x1269;
const BLKPG_ADD_PARTITION: libc::c_int = 1;
const BLKPG_DEL_PARTITION: libc::c_int = 2;

#[repr(C)]
struct BlkpgPartition {
    start: libc::c_longlong,
    length: libc::c_longlong,
    pno: libc::c_int,
    devname: [u8; 64],
    volname: [u8; 64],
}

#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

fn blkpg(dev: &File, op: libc::c_int, pno: i32, start_mib: u64, len_mib: u64) -> std::io::Result<()> {
    let mut part = BlkpgPartition {
        start: (start_mib << 20) as i64,
        length: (len_mib << 20) as i64,
        pno,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as i32,
        data: &mut part as *mut BlkpgPartition as *mut libc::c_void,
    };
    // SAFETY: `arg` points at a live blkpg_partition of the size given, as linux/blkpg.h lays out.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), BLKPG, &mut arg) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// An attached loop device: its partitions deleted and the device detached when dropped.
struct Loop {
    name: String,
    dev: File,
}

impl Loop {
    fn free() -> (String, File) {
        let ctl = File::options().read(true).write(true).open("/dev/loop-control").expect("open /dev/loop-control");
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a loop number.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        assert!(n >= 0, "LOOP_CTL_GET_FREE: {}", std::io::Error::last_os_error());
        let name = format!("loop{n}");
        let dev = File::options().read(true).write(true).open(format!("/dev/{name}")).expect("open the loop node");
        (name, dev)
    }

    /// LOOP_SET_FD; returns the device and the instant the ioctl returned.
    fn attach(name: String, dev: File, image: &File) -> (Self, Instant) {
        // SAFETY: LOOP_SET_FD takes the backing file's descriptor, open for the call's length.
        let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_FD, image.as_raw_fd()) };
        let returned = Instant::now();
        assert!(r == 0, "LOOP_SET_FD: {}", std::io::Error::last_os_error());
        (Self { name, dev }, returned)
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        for (i, _) in PARTS.iter().enumerate().rev() {
            // EBUSY while an observer still has the partition open (probing it): try again.
            let deadline = Instant::now() + Duration::from_secs(2);
            while let Err(e) = blkpg(&self.dev, BLKPG_DEL_PARTITION, i as i32 + 1, 0, 0) {
                if e.raw_os_error() != Some(libc::EBUSY) || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // SAFETY: LOOP_CLR_FD takes no argument.
        unsafe { libc::ioctl(self.dev.as_raw_fd(), LOOP_CLR_FD, 0) };
    }
}

/// A mount made with mount(2): detached when dropped if still mounted.
struct Mounted(PathBuf, bool);

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.1 {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The kernel's uevents as notes: `disk:` for a whole disk's change (an attach), `part:` for
/// a partition's add.
fn kernel_uevents(tx: Sender<Note>) {
    use nix::sys::socket::{
        bind, recv, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
    };
    let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkKObjectUEvent)
        .expect("uevent socket");
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 1)).expect("bind the uevent socket");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16384];
        while let Ok(n) = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            let now = Instant::now();
            let fields: Vec<&[u8]> = buf[..n].split(|b| *b == 0).collect();
            let get =
                |k: &str| fields.iter().find_map(|f| f.strip_prefix(k.as_bytes()).and_then(|v| v.strip_prefix(b"=")));
            let text = |v: Option<&[u8]>| v.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
            let (action, devtype, devname) = (text(get("ACTION")), text(get("DEVTYPE")), text(get("DEVNAME")));
            let key = match (action.as_str(), devtype.as_str()) {
                ("change", "disk") => format!("disk:{devname}"),
                ("add", "partition") => format!("part:{devname}"),
                _ => continue,
            };
            if tx.send((now, key)).is_err() {
                return;
            }
        }
    });
}

/// Mount sources (device kernel names) of the mount table.
fn mounted_devices(file: &mut File) -> HashSet<String> {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    text.lines()
        .filter_map(|l| l.split_once(" - ").and_then(|(_, rest)| rest.split_whitespace().nth(1)))
        .filter_map(|s| s.strip_prefix("/dev/"))
        .map(str::to_owned)
        .collect()
}

/// The mount table's changes as notes, from POLLPRI on /proc/self/mountinfo.
fn kernel_mounts(tx: Sender<Note>) {
    std::thread::spawn(move || {
        let Ok(mut file) = File::open("/proc/self/mountinfo") else { return };
        let mut before = mounted_devices(&mut file);
        loop {
            let mut pfd = libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLPRI, revents: 0 };
            // SAFETY: one pollfd, valid for the call.
            if unsafe { libc::poll(&mut pfd, 1, -1) } < 0 {
                return;
            }
            let now = Instant::now();
            let after = mounted_devices(&mut file);
            let notes = after
                .difference(&before)
                .map(|d| format!("mount:{d}"))
                .chain(before.difference(&after).map(|d| format!("umount:{d}")));
            for key in notes.collect::<Vec<_>>() {
                if tx.send((now, key)).is_err() {
                    return;
                }
            }
            before = after;
        }
    });
}

/// The agent's SSE stream as notes (HTTP/1.0: the body is the stream, unchunked).
fn agent_events(port: u16, tx: Sender<Note>) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the agent");
    write!(
        stream,
        "GET /api/v1/events/stream?types=disk.added,partition.added,mount.* HTTP/1.0\r\nhost: localhost\r\n\r\n"
    )
    .expect("request the stream");
    std::thread::spawn(move || {
        let mut event = String::new();
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            let now = Instant::now();
            if let Some(e) = line.strip_prefix("event: ") {
                event = e.to_owned();
            } else if let Some(d) = line.strip_prefix("data: ") {
                let v: serde_json::Value = serde_json::from_str(d).unwrap_or_default();
                let data = &v["data"];
                let key = match event.as_str() {
                    "disk.added" => format!("disk:{}", data["disk"]["kernel_name"].as_str().unwrap_or_default()),
                    "partition.added" => {
                        format!("part:{}", data["partition"]["kernel_name"].as_str().unwrap_or_default())
                    }
                    "mount.mounted" | "mount.unmounted" => {
                        let source = data["mount"]["source"].as_str().unwrap_or_default();
                        let verb = if event == "mount.mounted" { "mount" } else { "umount" };
                        format!("{verb}:{}", source.trim_start_matches("/dev/"))
                    }
                    _ => continue,
                };
                if tx.send((now, key)).is_err() {
                    return;
                }
            }
        }
    });
}

/// udisks2's D-Bus signals, as dbus-monitor prints them, as notes. A message is its header line
/// (`signal time=… path=…; interface=…; member=…`) and the indented lines after it; its time is
/// when its header line came.
fn udisks_signals(monitor: &mut Child, image_name: String, mount_dir: String, tx: Sender<Note>) {
    let out = monitor.stdout.take().expect("dbus-monitor stdout");
    let (lines_tx, lines_rx) = channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    std::thread::spawn(move || {
        let classify = |at: Instant, header: &str, body: &str| -> Option<Note> {
            let path = header.split("path=").nth(1)?.split(';').next()?;
            let object = if path == "/org/freedesktop/UDisks2" {
                body.split("object path \"").nth(1)?.split('"').next()?.to_owned()
            } else {
                path.to_owned()
            };
            let name = object.strip_prefix("/org/freedesktop/UDisks2/block_devices/")?;
            let partition =
                name.trim_start_matches("loop").trim_start_matches(|c: char| c.is_ascii_digit()).starts_with('p');
            let key = if header.contains("member=InterfacesAdded") && partition {
                format!("part:{name}")
            } else if !partition && body.contains("BackingFile") && body.contains(&image_name) {
                format!("disk:{name}")
            } else if body.contains("MountPoints") {
                let verb = if body.contains(&mount_dir) { "mount" } else { "umount" };
                format!("{verb}:{name}")
            } else {
                return None;
            };
            Some((at, key))
        };
        let mut current: Option<(Instant, String, String)> = None;
        loop {
            // A message ends with the next header, or when nothing follows for a moment.
            let next = lines_rx.recv_timeout(Duration::from_millis(20));
            let ended = !matches!(&next, Ok((_, l)) if l.starts_with(' '));
            if ended {
                if let Some((at, header, body)) = current.take() {
                    if let Some(note) = classify(at, &header, &body) {
                        if tx.send(note).is_err() {
                            return;
                        }
                    }
                }
            }
            match next {
                Ok((at, line)) if line.starts_with("signal ") => current = Some((at, line, String::new())),
                Ok((_, line)) => {
                    if let Some((_, _, body)) = current.as_mut() {
                        body.push_str(&line);
                        body.push('\n');
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => return,
            }
        }
    });
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

const STEPS: [&str; 4] = [
    "loop attach -> disk seen",
    "BLKPG add partition -> partition seen",
    "mount(2) -> mount seen",
    "umount2(2) -> unmount seen",
];

/// One observer's figures: per step, overheads over the kernel's notification in ms.
struct Figures {
    name: String,
    steps: [Vec<f64>; 4],
    missed: usize,
    cycles: usize,
    rss_before_kib: u64,
    /// After the first quarter of the cycles (libraries' pages touched, pools grown).
    rss_warm_kib: u64,
    rss_after_kib: u64,
    /// After the 10 idle seconds that follow the cycles.
    rss_idle_kib: u64,
    /// Heap and other private memory / file pages (the binary, libblkid) at the end.
    rss_anon_kib: u64,
    rss_file_kib: u64,
    idle_cpu_percent: f64,
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS:`, `RssAnon:`, `RssFile:`).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = after.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// CPU used by `pid` over 10 idle seconds, in percent of one core.
fn idle_cpu(pid: u32) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(10));
    (cpu_ticks(pid) - before) as f64 / hz / 10.0 * 100.0
}

/// The cycles against one observer (process `pid`, notes `seen`).
fn run_cycles(
    name: &str,
    cycles: usize,
    pid: u32,
    image: &Path,
    mnt: &Path,
    floor: &mut Notes,
    seen: &mut Notes,
) -> Figures {
    let rss_before_kib = rss_kib(pid);
    let mut rss_warm_kib = rss_before_kib;
    let mut steps: [Vec<f64>; 4] = Default::default();
    let mut missed = 0;
    let mut record = |step: usize, key: &str, since: Instant, floor: &mut Notes, seen: &mut Notes| match (
        floor.wait(key, since),
        seen.wait(key, since),
    ) {
        // Signed: under load the floor's own thread can wake after the observer did.
        (Some(k), Some(o)) => steps[step].push(
            o.saturating_duration_since(k).as_secs_f64() * 1e3 - k.saturating_duration_since(o).as_secs_f64() * 1e3,
        ),
        _ => {
            eprintln!("{name}: no {key} seen within {WAIT:?}");
            missed += 1;
        }
    };
    for cycle in 0..cycles {
        if cycle == cycles / 4 {
            rss_warm_kib = rss_kib(pid);
        }
        floor.clear();
        seen.clear();
        let backing = File::options().read(true).write(true).open(image).expect("open the image");
        let (lname, dev) = Loop::free();
        let since = Instant::now();
        let (lo, _) = Loop::attach(lname, dev, &backing);
        record(0, &format!("disk:{}", lo.name), since, floor, seen);
        let mut added = Vec::new();
        for (i, (start, len)) in PARTS.iter().enumerate() {
            let since = Instant::now();
            blkpg(&lo.dev, BLKPG_ADD_PARTITION, i as i32 + 1, *start, *len).expect("BLKPG add partition");
            added.push((format!("{}p{}", lo.name, i + 1), since));
        }
        for (part, since) in &added {
            record(1, &format!("part:{part}"), *since, floor, seen);
        }
        let p1 = &added[0].0;
        let since = Instant::now();
        nix::mount::mount(
            Some(Path::new(&format!("/dev/{p1}"))),
            mnt,
            Some("ext4"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .expect("mount(2)");
        let mut mounted = Mounted(mnt.to_owned(), true);
        record(2, &format!("mount:{p1}"), since, floor, seen);
        // An observer sampling the new mount's usage (statvfs) holds it for microseconds, and an
        // umount2 at that instant fails with EBUSY, as `umount` would: tried again, timed from
        // the call that succeeded, and counted.
        let mut since = Instant::now();
        let mut tries = 0;
        loop {
            match nix::mount::umount2(mnt, nix::mount::MntFlags::empty()) {
                Ok(()) => break,
                Err(nix::errno::Errno::EBUSY) if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(1));
                    since = Instant::now();
                }
                Err(e) => panic!("umount2(2): {e}"),
            }
        }
        if tries > 0 {
            eprintln!(
                "{name}: umount2(2) of {p1} was EBUSY {tries} time(s) (a statvfs of the new mount at that instant)"
            );
        }
        mounted.1 = false;
        record(3, &format!("umount:{p1}"), since, floor, seen);
        drop(lo);
        // Let every observer finish with the detach before the next attach.
        std::thread::sleep(Duration::from_millis(150));
    }
    let rss_after_kib = rss_kib(pid);
    let idle_cpu_percent = idle_cpu(pid);
    let rss_idle_kib = rss_kib(pid);
    Figures {
        rss_idle_kib,
        name: name.to_owned(),
        steps,
        missed,
        cycles,
        rss_before_kib,
        rss_warm_kib,
        rss_after_kib,
        rss_anon_kib: status_kib(pid, "RssAnon:"),
        rss_file_kib: status_kib(pid, "RssFile:"),
        idle_cpu_percent,
    }
}

fn wait_http(port: u16, path: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let ok = std::net::TcpStream::connect(("127.0.0.1", port)).ok().and_then(|mut s| {
            write!(s, "GET {path} HTTP/1.0\r\nhost: localhost\r\n\r\n").ok()?;
            let mut text = String::new();
            s.read_to_string(&mut text).ok()?;
            Some(text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200"))
        });
        if ok == Some(true) {
            return;
        }
        assert!(Instant::now() < deadline, "the agent never answered {path} with 200");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The agent binary in `mode` (`kernel` or `udev`), following loop devices and mounts only.
fn agent(mode: &str, cycles: usize, dir: &Path, port: u16, image: &Path, mnt: &Path, floor: &mut Notes) -> Figures {
    let state = dir.join(format!("state-{mode}"));
    std::fs::create_dir_all(&state).expect("state dir");
    let config = dir.join(format!("agent-{mode}.toml"));
    let text = format!(
        "state_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[udev]\nsource = \"{mode}\"\ninclude = [\"loop*\"]\n\
         [shares]\nenabled = false\n[arrays]\nenabled = false\n[mqtt]\nenabled = false\n[health]\nenabled = false\n",
        state.display()
    );
    std::fs::write(&config, text).expect("write the agent config");
    // DISKWATCH_AGENT_BIN: another build of the agent, to compare builds (before / after a change).
    let bin = std::env::var_os("DISKWATCH_AGENT_BIN").map(PathBuf::from);
    let child = Command::new(bin.unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_diskwatch"))))
        .arg("--config")
        .arg(&config)
        .args(["--log-level", "warn"])
        // The agent reads DISKWATCH_* variables as configuration.
        .env_remove("DISKWATCH_AGENT_BIN")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the agent");
    let pid = child.id();
    let _children = Children(vec![child]);
    wait_http(port, "/api/v1/health");
    let (tx, rx) = channel();
    agent_events(port, tx);
    let mut seen = Notes::new(rx);
    std::thread::sleep(Duration::from_millis(300));
    run_cycles(&format!("diskwatch {mode} mode"), cycles, pid, image, mnt, floor, &mut seen)
}

/// udisksd on a private system bus (unless one runs), observed with dbus-monitor.
fn udisks(dir: &Path, cycles: usize, image: &Path, mnt: &Path, floor: &mut Notes) -> Figures {
    let mut children = Children(Vec::new());
    let address = if Path::new("/run/dbus/system_bus_socket").exists() {
        "unix:path=/run/dbus/system_bus_socket".to_owned()
    } else {
        let conf = dir.join("system-bus.conf");
        let socket = dir.join("system_bus_socket");
        std::fs::write(
            &conf,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig><type>system</type>\
                 <listen>unix:path={}</listen><auth>EXTERNAL</auth><policy context=\"default\">\
                 <allow user=\"*\"/><allow own=\"*\"/><allow send_destination=\"*\" eavesdrop=\"true\"/>\
                 <allow eavesdrop=\"true\"/></policy></busconfig>\n",
                socket.display()
            ),
        )
        .expect("write the bus config");
        let mut bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start dbus-daemon (apt package dbus)");
        let mut line = String::new();
        BufReader::new(bus.stdout.take().expect("dbus-daemon stdout")).read_line(&mut line).expect("bus address");
        children.0.push(bus);
        line.trim().to_owned()
    };
    let daemon = Command::new("/usr/libexec/udisks2/udisksd")
        .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start udisksd (apt package udisks2)");
    let pid = daemon.id();
    children.0.push(daemon);
    let deadline = Instant::now() + WAIT;
    while !Command::new("dbus-send")
        .arg(format!("--bus={address}"))
        .args(["--print-reply", "--dest=org.freedesktop.UDisks2", "/org/freedesktop/UDisks2/Manager"])
        .args(["org.freedesktop.DBus.Properties.Get", "string:org.freedesktop.UDisks2.Manager", "string:Version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(Instant::now() < deadline, "udisksd never answered on the bus");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut monitor = Command::new("stdbuf")
        .args(["-oL", "dbus-monitor", "--address", &address, "type='signal',sender='org.freedesktop.UDisks2'"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dbus-monitor");
    let (tx, rx) = channel();
    let image_name = image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    udisks_signals(&mut monitor, image_name, mnt.display().to_string(), tx);
    children.0.push(monitor);
    let mut seen = Notes::new(rx);
    std::thread::sleep(Duration::from_millis(500));
    run_cycles("udisks2", cycles, pid, image, mnt, floor, &mut seen)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The name of the measuring's own noise in the table (`--only floor`).
const FLOOR_READER: &str = "2nd kernel reader";

fn print(all: &[Figures]) {
    let reference = all.iter().find(|f| f.name == "udisks2");
    println!(
        "\noverhead over the kernel's notification, ms, p50 / p99 ({} cycles; x = udisks2 / this at p50, p99)",
        all.first().map(|f| f.cycles).unwrap_or_default()
    );
    for (i, step) in STEPS.iter().enumerate() {
        println!("{step}:");
        for f in all {
            let mut s = f.steps[i].clone();
            s.sort_by(f64::total_cmp);
            let (p50, p99) = (percentile(&s, 0.5), percentile(&s, 0.99));
            // The noise reader is no observer to compare with udisks2.
            let ratio = reference
                .filter(|_| f.name != FLOOR_READER)
                .map(|r| {
                    let mut rs = r.steps[i].clone();
                    rs.sort_by(f64::total_cmp);
                    format!(" x{:.1} / x{:.1}", percentile(&rs, 0.5) / p50, percentile(&rs, 0.99) / p99)
                })
                .unwrap_or_default();
            println!("  {:<22} n={:<3} p50={p50:.2} p99={p99:.2}{ratio}", f.name, s.len());
        }
    }
    for f in all {
        let mb = |kib: u64| kib as f64 * 1024.0 / 1e6;
        println!(
            "{}: resident memory before={:.2} MB, after {} cycles={:.2} MB, after {}={:.2} MB ({:+.2} MB since cycle {}), 10 s later {:.2} MB (anon {:.2} MB, file {:.2} MB), idle CPU {:.2} % of a core, missed notifications {}",
            f.name,
            mb(f.rss_before_kib),
            f.cycles / 4,
            mb(f.rss_warm_kib),
            f.cycles,
            mb(f.rss_after_kib),
            mb(f.rss_after_kib) - mb(f.rss_warm_kib),
            f.cycles / 4,
            mb(f.rss_idle_kib),
            mb(f.rss_anon_kib),
            mb(f.rss_file_kib),
            f.idle_cpu_percent,
            f.missed
        );
    }
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("side_by_side bench needs root (loop devices, mounts, udevd, udisksd)");
        return;
    }
    let _lock = machine_lock();
    println!("load average at start: {}", load());
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("side_by_side.img");
    File::create(&image).and_then(|f| f.set_len(IMAGE_MIB << 20)).expect("create the image");
    let mut script = String::from("label: gpt\n");
    for (start, len) in PARTS {
        script.push_str(&format!("start={}MiB, size={len}MiB\n", start));
    }
    let mut sfdisk = Command::new("sfdisk")
        .arg("--quiet")
        .arg(&image)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sfdisk");
    sfdisk.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("sfdisk script");
    assert!(sfdisk.wait().expect("sfdisk").success());
    // An ext4 in the first partition's range, made through a loop device over that range only.
    let (start, len) = PARTS[0];
    let range = sh(
        "losetup",
        &[
            "-f",
            "--show",
            "-o",
            &(start << 20).to_string(),
            "--sizelimit",
            &(len << 20).to_string(),
            image.to_str().expect("utf-8"),
        ],
    );
    let made = Command::new("mkfs.ext4").args(["-q", "-F", "-L", "bench", &range]).status();
    sh("losetup", &["-d", &range]);
    assert!(made.is_ok_and(|s| s.success()), "mkfs.ext4 failed");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).expect("mount point");

    let (tx, rx) = channel();
    kernel_uevents(tx.clone());
    kernel_mounts(tx);
    let mut floor = Notes::new(rx);
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port");

    let args = Args::parse();
    let mut all = Vec::new();
    if args.runs("floor") {
        // The measuring's own noise: a second reader of the same kernel notifications, woken by
        // the same uevent or POLLPRI as the floor's. Its p99 is the scheduler's jitter on this
        // machine, under every observer's figures (its memory lines are the bench's own).
        let (tx, rx) = channel();
        kernel_uevents(tx.clone());
        kernel_mounts(tx);
        let mut seen = Notes::new(rx);
        let pid = std::process::id();
        all.push(run_cycles(FLOOR_READER, args.cycles, pid, &image, &mnt, &mut floor, &mut seen));
    }
    if args.runs("kernel") {
        all.push(agent("kernel", args.cycles, dir.path(), port, &image, &mnt, &mut floor));
    }
    if args.runs("udev") || args.runs("udisks2") {
        let udevd = Udevd::start();
        if args.runs("udev") {
            all.push(agent("udev", args.cycles, dir.path(), port, &image, &mnt, &mut floor));
        }
        udevd.settle();
        if args.runs("udisks2") {
            all.insert(0, udisks(dir.path(), args.cycles, &image, &mnt, &mut floor));
        }
        drop(udevd);
    }
    print(&all);
    println!("load average at end: {}", load());
}
