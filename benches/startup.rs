//! Start-up to `READY=1` through the real binary (release): 13 loop disks with one
//! partition each (26 block devices, kernel-mode udev), the machine's mount table and a
//! Samba configuration of nine shares. Prints each run's time from spawn to READY=1 and
//! whether the snapshot at READY equals the snapshot a second later (usage figures and
//! the last event id aside: they move with time, the objects must not).
//!
//! Needs root (loop devices). Run: `cargo bench --bench startup`.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 5;
const DISKS: usize = 13;

struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).output();
    }
}

fn attach(dir: &std::path::Path, i: usize) -> Loop {
    let image = dir.join(format!("disk{i}.img"));
    std::fs::File::create(&image).and_then(|f| f.set_len(16 << 20)).expect("image");
    let mut sfdisk = Command::new("sfdisk")
        .arg("--quiet")
        .arg(&image)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sfdisk");
    sfdisk.stdin.take().expect("stdin").write_all(b"label: gpt\nsize=8MiB\n").expect("script");
    assert!(sfdisk.wait().expect("sfdisk").success());
    let out = Command::new("losetup").args(["-f", "--show", "-P"]).arg(&image).output().expect("losetup");
    assert!(out.status.success(), "losetup: {}", String::from_utf8_lossy(&out.stderr));
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let _ = Command::new("partx").args(["-a", &dev]).output();
    Loop(dev)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn snapshot(port: u16) -> serde_json::Value {
    let out =
        Command::new("curl").args(["-sf", &format!("http://127.0.0.1:{port}/api/v1/snapshot")]).output().expect("curl");
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("snapshot JSON");
    // What moves with time: usage samples and the event id.
    v["last_event_id"] = serde_json::Value::Null;
    for m in v["mounts"].as_array_mut().expect("mounts") {
        m["usage"] = serde_json::Value::Null;
        m["stale"] = serde_json::Value::Null;
    }
    v
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("startup bench: needs root (loop devices)");
        std::process::exit(1);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let loops: Vec<Loop> = (0..DISKS).map(|i| attach(dir.path(), i)).collect();
    let mut smb = String::from("[global]\n   workgroup = WORKGROUP\n\n");
    for i in 1..=9 {
        let path = dir.path().join(format!("share{i}"));
        std::fs::create_dir_all(&path).expect("share dir");
        smb.push_str(&format!("[share{i}]\n   path = {}\n\n", path.display()));
    }
    std::fs::write(dir.path().join("smb.conf"), smb).expect("smb.conf");
    let mut times = Vec::new();
    let mut stable = 0;
    for run in 0..RUNS {
        let state = dir.path().join(format!("state{run}"));
        let port = free_port();
        let config = format!(
            "node_id = \"bench\"\nstate_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[udev]\nsource = \"kernel\"\ninclude = [\"loop*\"]\n\
             [shares]\nsamba = [\"{}\"]\nnfs = []\n[mqtt]\nenabled = false\n",
            state.display(),
            dir.path().join("smb.conf").display()
        );
        let config_path = dir.path().join(format!("config{run}.toml"));
        std::fs::write(&config_path, config).expect("config");
        let socket_path = dir.path().join(format!("notify{run}.sock"));
        let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
        socket.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_diskwatch"))
            .args(["--config", config_path.to_str().expect("path"), "run"])
            .env("NOTIFY_SOCKET", &socket_path)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn diskwatch");
        let mut buf = [0u8; 4096];
        let (ready_after, status) = loop {
            let n = socket.recv(&mut buf).expect("a notification within 30 s");
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.contains("READY=1") {
                break (started.elapsed(), msg);
            }
        };
        let at_ready = snapshot(port);
        std::thread::sleep(Duration::from_secs(1));
        let later = snapshot(port);
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = child.wait();
        let devices =
            at_ready["disks"].as_array().map_or(0, Vec::len) + at_ready["partitions"].as_array().map_or(0, Vec::len);
        let same = at_ready == later;
        if !same {
            // Name what moved, so an unstable start-up can be told from a sampled figure.
            for key in ["disks", "partitions", "mounts", "shares", "arrays"] {
                let (a, b) = (&at_ready[key], &later[key]);
                if a != b {
                    let pairs = a.as_array().into_iter().flatten().zip(b.as_array().into_iter().flatten());
                    if let Some((x, y)) = pairs.into_iter().find(|(x, y)| x != y) {
                        let fields: Vec<&String> = x
                            .as_object()
                            .into_iter()
                            .flatten()
                            .filter(|(k, v)| y.get(k.as_str()) != Some(v))
                            .map(|(k, _)| k)
                            .collect();
                        println!("  changed within a second: {key} {} fields {fields:?}", x["id"]);
                    } else {
                        println!(
                            "  changed within a second: {key} (count {} -> {})",
                            a.as_array().map_or(0, Vec::len),
                            b.as_array().map_or(0, Vec::len)
                        );
                    }
                }
            }
        }
        stable += usize::from(same);
        let status = status.lines().find(|l| l.starts_with("STATUS=")).unwrap_or("").to_owned();
        println!(
            "run {run}: READY=1 after {:.1} ms; {devices} block devices, {} shares; snapshot a second later equal: {same}; {status}",
            ready_after.as_secs_f64() * 1000.0,
            at_ready["shares"].as_array().map_or(0, Vec::len)
        );
        times.push(ready_after);
    }
    times.sort();
    println!(
        "startup to READY=1 ({DISKS} loop disks + partitions, 9 shares, {RUNS} runs): min {:.1} ms, median {:.1} ms, max {:.1} ms; snapshot stable in {stable}/{RUNS} runs",
        times[0].as_secs_f64() * 1000.0,
        times[RUNS / 2].as_secs_f64() * 1000.0,
        times[RUNS - 1].as_secs_f64() * 1000.0
    );
    drop(loops);
}
