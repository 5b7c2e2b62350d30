//! Wake attribution benchmark (issue 24's cost figures):
//! - CPU with 24 disks armed and idle: the trace instance's tracepoints on, filtered to 24 disks
//!   that do no I/O, the pipe read every 250 ms as the sleep source does — agent CPU per minute;
//! - cost per traced request: 4 KiB O_DIRECT reads of a loop device by a process that is not
//!   the benchmark's (started before the instance exists, so not left out as "own"), with the
//!   tracepoints off, on and matching (every request traced), and on but filtered to another
//!   device (what a spinning disk's I/O pays while another disk sleeps); plus the userspace
//!   cost of parsing a trace line.
//!
//! `cargo bench --bench wake` as root (tracefs, a loop device; takes the tests' machine lock).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use diskwatch::wake::trace::{parse_line, Armed, Tracer};

/// User + system CPU of this process in seconds (getrusage: microsecond resolution).
fn cpu_seconds() -> f64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).expect("getrusage");
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(usage.user_time()) + secs(usage.system_time())
}

fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("run");
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A reader started now (before any tracer exists) that waits for a line on stdin, then reads
/// `count` 4 KiB blocks of `dev` with O_DIRECT; returns the seconds that took.
struct Reader(std::process::Child);

impl Reader {
    fn start(dev: &str, count: u32) -> Self {
        let script = format!(
            "read go; s=$(date +%s%N); dd if={dev} of=/dev/null bs=4k count={count} iflag=direct status=none; e=$(date +%s%N); echo $((e - s))"
        );
        Reader(
            Command::new("sh").args(["-c", &script]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("sh"),
        )
    }

    fn run(mut self) -> f64 {
        writeln!(self.0.stdin.take().expect("stdin")).expect("go");
        let out = self.0.wait_with_output().expect("reader");
        String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().expect("ns") / 1e9
    }
}

fn main() {
    assert!(nix::unistd::Uid::effective().is_root(), "run as root: tracefs and a loop device");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/diskwatch-tests.lock")
        .expect("lock file");
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).expect("lock");
    let tracefs = Path::new("/sys/kernel/tracing");
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image).and_then(|f| f.set_len(64 << 20)).expect("image");
    let loopdev = sh("losetup", &["-f", "--show", image.to_str().expect("path")]);
    let name = loopdev.trim_start_matches("/dev/").to_owned();
    let dev = std::fs::read_to_string(format!("/sys/block/{name}/dev")).expect("dev").trim().to_owned();
    let (ma, mi) = dev.split_once(':').expect("major:minor");
    let (ma, mi): (u32, u32) = (ma.parse().expect("major"), mi.parse().expect("minor"));
    const N: u32 = 16384;
    let readers: Vec<Reader> = (0..8).map(|_| Reader::start(&loopdev, N)).collect();
    let mut readers = readers.into_iter();
    let mut next = || readers.next().expect("a reader");

    let mut tracer = Tracer::open(tracefs, Path::new("/proc")).expect("open the trace instance");
    // 24 disks armed and idle (device numbers no disk here has: no request matches).
    for i in 0..24u32 {
        tracer
            .arm(
                &format!("idle{i}"),
                Armed { devs: vec![(240, i * 16), (240, i * 16 + 1)], bdi: format!("240:{}", i * 16) },
            )
            .expect("arm");
    }
    let secs = std::env::var("WAKE_BENCH_IDLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60u64);
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut records = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        records += tracer.read().len();
        std::thread::sleep(Duration::from_millis(250));
    }
    let cpu = cpu_seconds() - cpu0;
    println!(
        "24 disks armed and idle, pipe read every 250 ms for {secs} s: agent CPU {:.5} CPU-s/min ({:.2} ms over the run, getrusage), {records} records",
        cpu * 60.0 / secs as f64,
        cpu * 1000.0
    );

    // Cost per traced request: the same reads with the tracepoints off, on and matching, and on
    // for another device only. Three rounds each, the best kept (a shared, busy machine).
    for id in (0..24).map(|i| format!("idle{i}")) {
        tracer.disarm(&id).expect("disarm");
    }
    let mut best = |label: &str, tracer: &mut Tracer, setup: &dyn Fn(&mut Tracer)| {
        setup(tracer);
        let mut times = Vec::new();
        for _ in 0..2 {
            times.push(next().run());
            tracer.read();
        }
        let t = times.iter().copied().fold(f64::MAX, f64::min);
        println!("{label}: {:.2} µs per 4 KiB O_DIRECT read ({N} reads, best of {})", t * 1e6 / N as f64, times.len());
        t
    };
    let off = best("tracepoints off (no disk asleep)", &mut tracer, &|t| {
        t.disarm("loop").expect("disarm");
        t.disarm("other").expect("disarm");
    });
    let other = best("armed for another device (this disk spins, another sleeps)", &mut tracer, &|t| {
        t.arm("other", Armed { devs: vec![(240, 0)], bdi: "240:0".into() }).expect("arm");
    });
    let traced = best("armed for this device (every request traced, pipe drained after)", &mut tracer, &|t| {
        t.disarm("other").expect("disarm");
        t.arm("loop", Armed { devs: vec![(ma, mi)], bdi: dev.clone() }).expect("arm");
    });
    println!(
        "cost per traced request: {:+.2} µs; per request to a spinning disk while another is armed: {:+.2} µs",
        (traced - off) * 1e6 / N as f64,
        (other - off) * 1e6 / N as f64
    );
    drop(tracer);

    let line = "             cat-16326   (  16326) [000] .....  1752.334064: block_bio_queue: 7,0 RA 17410 + 512 [cat]";
    let n = 200_000;
    let t = Instant::now();
    let mut parsed = 0;
    for _ in 0..n {
        parsed += usize::from(parse_line(std::hint::black_box(line)).is_some());
    }
    println!("parsing a trace line: {:.0} ns ({parsed} lines)", t.elapsed().as_nanos() as f64 / n as f64);
    let _ = Command::new("losetup").args(["-d", &loopdev]).status();
}
