//! The Home Assistant add-on run the way the Supervisor runs it, for tests/addon.rs: its image
//! contents (Debian bookworm, the base of ghcr.io/home-assistant/*-base-debian:bookworm, with the
//! packages the Dockerfile installs, read from the Dockerfile itself), started as its container
//! would be (systemd-nspawn, the run script as PID 1, Docker's default capabilities plus the
//! add-on's `privileged`, the host's network, /dev read-only, /run/udev read-only, /data,
//! /media and /share), with a stub of the Supervisor API on loopback.
//!
//! The root filesystem is made once by scripts/addon-root with debootstrap and reused
//! (`DISKWATCH_ADDON_ROOT`, default /var/lib/diskwatch-test/addon-bookworm); it is built aside
//! and moved into place, so an interrupted build is never taken for a finished one, and a marker
//! names the packages, so a change of the Dockerfile's list rebuilds it. Each run overlays it
//! with a throw-away tmpfs (`--volatile=overlay`, like a container's writable layer), so the
//! cache is never changed.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SUITE: &str = "bookworm";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What the Dockerfile's final stage puts in the image.
#[derive(Debug)]
pub struct Image {
    /// The packages of its `apt-get install` line.
    pub packages: Vec<String>,
    /// `COPY` lines: (source, destination in the image); a `--from=build` source is the
    /// path in the build stage.
    pub copies: Vec<(String, String)>,
    /// The `CMD`, e.g. `["/run.sh"]`.
    pub cmd: Vec<String>,
}

/// Reads packaging/homeassistant/Dockerfile: the instructions after its last `FROM`
/// (continuation lines joined).
pub fn image() -> Image {
    let path = repo().join("packaging/homeassistant/Dockerfile");
    let dockerfile = std::fs::read_to_string(&path).expect("read the Dockerfile");
    let mut instructions: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let last_from = instructions.iter().rposition(|i| i.starts_with("FROM ")).expect("the Dockerfile has a FROM");
    let final_stage = &instructions[last_from + 1..];
    let mut image = Image { packages: Vec::new(), copies: Vec::new(), cmd: Vec::new() };
    for instruction in final_stage {
        let words: Vec<&str> = instruction.split_whitespace().collect();
        match words.first().copied() {
            Some("RUN") => {
                for command in instruction.split("&&") {
                    let tokens: Vec<&str> = command.split_whitespace().collect();
                    if let Some(at) = tokens.windows(2).position(|w| w == ["apt-get", "install"]) {
                        image
                            .packages
                            .extend(tokens[at + 2..].iter().filter(|t| !t.starts_with('-')).map(|t| t.to_string()));
                    }
                }
            }
            Some("COPY") => {
                let args: Vec<&str> = words[1..].iter().copied().filter(|w| !w.starts_with("--")).collect();
                assert_eq!(args.len(), 2, "COPY with one source expected: {instruction}");
                image.copies.push((args[0].to_owned(), args[1].to_owned()));
            }
            Some("CMD") => {
                let json = instruction.trim_start_matches("CMD").trim();
                image.cmd = serde_json::from_str(json).unwrap_or_else(|e| panic!("CMD is not exec form: {e}"));
            }
            _ => {}
        }
    }
    assert!(!image.packages.is_empty(), "no apt-get install in the Dockerfile's final stage");
    image
}

/// The cached Debian root with `packages`, made (or reused) by scripts/addon-root, which reads
/// the same Dockerfile line: the marker it writes must list exactly the packages this test read.
/// Returns its path and how long making it took (None when reused).
pub fn rootfs(packages: &[String]) -> (PathBuf, Option<Duration>) {
    let dir = PathBuf::from(
        std::env::var("DISKWATCH_ADDON_ROOT").unwrap_or_else(|_| "/var/lib/diskwatch-test/addon-bookworm".into()),
    );
    let wanted = format!("{SUITE} {}\n", packages.join(","));
    let marker = dir.join(".diskwatch-addon");
    let reused = std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted);
    let start = Instant::now();
    let out = Command::new(repo().join("scripts/addon-root"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/addon-root: {e}"));
    assert!(out.status.success(), "scripts/addon-root failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    let made = std::fs::read_to_string(&marker).unwrap_or_default();
    assert_eq!(made, wanted, "scripts/addon-root and this test read different packages from the Dockerfile");
    (dir, (!reused).then(|| start.elapsed()))
}

/// Linux capability names by number (linux/capability.h), as nspawn and Docker spell them
/// without the CAP_ prefix.
pub const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's default capability set for a container (moby: oci/caps/defaults.go), which the
/// Supervisor extends with the add-on's `privileged` list (supervisor/docker/app.py, cap_add).
pub const DOCKER_DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// The names in a /proc/<pid>/status capability mask such as `CapEff`.
pub fn capability_names(mask: u64) -> BTreeSet<String> {
    CAPABILITIES.iter().enumerate().filter(|(bit, _)| mask & (1 << bit) != 0).map(|(_, n)| n.to_string()).collect()
}

/// A stub of the Supervisor API on 127.0.0.1: answers what the add-on's run script asks,
/// as the Supervisor does (`{"result": "ok", "data": …}`), only with the bearer token it was
/// given (401 otherwise, as the Supervisor's token_validation does); records every request.
pub struct SupervisorStub {
    pub port: u16,
    /// (method and path, whether the bearer token was right), in arrival order.
    pub requests: Arc<Mutex<Vec<(String, bool)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SupervisorStub {
    /// `routes`: path → the `data` answered for a GET of it; other paths get 404.
    pub fn start(token: &str, routes: Vec<(&str, serde_json::Value)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Supervisor stub");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let routes: Vec<(String, serde_json::Value)> = routes.into_iter().map(|(p, v)| (p.to_owned(), v)).collect();
        let thread = {
            let (requests, stop, token) = (requests.clone(), stop.clone(), token.to_owned());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => serve(stream, &token, &routes, &requests),
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Self { port, requests, stop, thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<(String, bool)> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, token: &str, routes: &[(String, serde_json::Value)], log: &Mutex<Vec<(String, bool)>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorized = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorized = value.trim() == format!("Bearer {token}");
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    log.lock().unwrap().push((format!("{method} {path}"), authorized));
    let (status, body) = if !authorized {
        ("401 Unauthorized", "401: Unauthorized".to_owned())
    } else if let Some((_, data)) = routes.iter().find(|(p, _)| p == path).filter(|_| method == "GET") {
        ("200 OK", serde_json::json!({"result": "ok", "data": data}).to_string())
    } else {
        ("404 Not Found", serde_json::json!({"result": "error", "message": "Not found"}).to_string())
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

impl Drop for SupervisorStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The hassio network's addresses on the host's loopback interface (this kernel has no dummy
/// interfaces): 172.30.32.1 (the host's side of the bridge, where a host-network add-on serves
/// ingress) and 172.30.32.2 (the ingress proxy, the only client the add-on's API lets in).
/// Removed on drop.
pub struct HassioNet {
    added: Vec<&'static str>,
}

pub const HASSIO_HOST: &str = "172.30.32.1";
pub const INGRESS_PROXY: &str = "172.30.32.2";

impl HassioNet {
    pub fn create() -> Self {
        let mut this = Self { added: Vec::new() };
        for address in [HASSIO_HOST, INGRESS_PROXY] {
            // A leftover of a killed run.
            let _ = Command::new("ip").args(["addr", "del", &format!("{address}/32"), "dev", "lo"]).output();
            super::sh("ip", &["addr", "add", &format!("{address}/32"), "dev", "lo"]);
            this.added.push(address);
        }
        this
    }
}

impl Drop for HassioNet {
    fn drop(&mut self) {
        for address in &self.added {
            let _ = Command::new("ip").args(["addr", "del", &format!("{address}/32"), "dev", "lo"]).output();
        }
    }
}

/// A directory of the host bind-mounted on itself and made a shared mount, so mounts made
/// below it later reach a container that binds it with slave propagation (as the Supervisor
/// binds /media and /share: rslave). Unmounted on drop.
pub struct SharedDir {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SharedDir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let p = path.to_str().expect("utf-8 path").to_owned();
        super::sh("mount", &["--bind", &p, &p]);
        let this = Self { path, _dir: dir };
        super::sh("mount", &["--make-shared", &p]);
        this
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-R").arg("-l").arg(&self.path).output();
    }
}

/// The device cgroup Docker gives a container (moby's default allowed devices: every node may be
/// created, /dev/null, zero, full, random, urandom, tty, console, ptmx, pts and tun opened),
/// plus one `b major:minor rwm` rule per device the Supervisor grants (its
/// `get_cgroups_rule`). A cgroup v1 `devices` group the container is started in; removed on
/// drop (after the container is gone). None where the host has no cgroup v1 devices controller.
pub struct DeviceCgroup {
    pub dir: PathBuf,
}

const DOCKER_DEVICE_RULES: [&str; 11] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

impl DeviceCgroup {
    pub fn create(granted: &[String]) -> Option<Self> {
        let root = Path::new("/sys/fs/cgroup/devices");
        if !root.join("devices.allow").exists() {
            return None;
        }
        let dir = root.join(format!("diskwatch-addon-test-{}", std::process::id()));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).expect("create the device cgroup");
        let this = Self { dir };
        std::fs::write(this.dir.join("devices.deny"), "a").expect("deny every device");
        for rule in
            DOCKER_DEVICE_RULES.iter().map(|r| r.to_string()).chain(granted.iter().map(|d| format!("b {d} rwm")))
        {
            std::fs::write(this.dir.join("devices.allow"), &rule).unwrap_or_else(|e| panic!("allow {rule}: {e}"));
        }
        Some(this)
    }
}

impl Drop for DeviceCgroup {
    fn drop(&mut self) {
        // Empty once the container's processes are gone; they may take a moment to be reaped.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.dir).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The add-on's container: systemd-nspawn running the image's CMD as PID 1.
pub struct AddonContainer {
    nspawn: Child,
    pub started: Instant,
    log: PathBuf,
}

/// How the container is made.
pub struct ContainerSpec<'a> {
    pub rootfs: &'a Path,
    /// Host hostname-like name of the container (the Supervisor's: `<repository>-<slug>`).
    pub hostname: &'a str,
    /// Capabilities (without CAP_), exactly; everything else is dropped.
    pub capabilities: &'a BTreeSet<String>,
    /// (host path, path in the container, read-only).
    pub binds: Vec<(PathBuf, String, bool)>,
    pub env: Vec<(String, String)>,
    pub cmd: &'a [String],
    /// The device cgroup to start the container in (None: the caller's).
    pub devices: Option<&'a DeviceCgroup>,
}

impl AddonContainer {
    pub fn start(spec: &ContainerSpec) -> Self {
        let log = std::env::temp_dir().join(format!("diskwatch-addon-{}.log", std::process::id()));
        let log_file = File::create(&log).expect("create the container log");
        // Into the device cgroup first (a shell that then execs nspawn), as Docker starts a
        // container in its own.
        let mut cmd = match spec.devices {
            Some(cgroup) => {
                let mut c = Command::new("sh");
                c.args(["-c", "echo $$ > \"$0\" && exec \"$@\""]).arg(cgroup.dir.join("cgroup.procs"));
                c.arg("systemd-nspawn");
                c
            }
            None => Command::new("systemd-nspawn"),
        };
        // No --private-network: the add-on has host_network. --console=pipe: nspawn leaves
        // /dev/console alone, so the host's /dev can be bound over the container's.
        cmd.args(["--quiet", "--register=no", "--keep-unit", "--console=pipe", "--volatile=overlay"])
            .arg(format!("--machine={}", spec.hostname))
            // As `docker stop`: SIGTERM to the container's PID 1.
            .arg("--kill-signal=SIGTERM")
            .arg(format!(
                "--capability={}",
                spec.capabilities.iter().map(|c| format!("CAP_{c}")).collect::<Vec<_>>().join(",")
            ))
            .arg(format!(
                "--drop-capability={}",
                CAPABILITIES
                    .iter()
                    .filter(|c| !spec.capabilities.contains(**c))
                    .map(|c| format!("CAP_{c}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        for (host, target, read_only) in &spec.binds {
            let flag = if *read_only { "--bind-ro" } else { "--bind" };
            cmd.arg(format!("{flag}={}:{target}", host.display()));
        }
        for (k, v) in &spec.env {
            cmd.arg(format!("--setenv={k}={v}"));
        }
        cmd.arg("-D").arg(spec.rootfs).args(spec.cmd);
        let started = Instant::now();
        let nspawn = cmd
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup the log"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run systemd-nspawn (systemd-container, scripts/setup): {e}"));
        Self { nspawn, started, log }
    }

    /// What the container printed (the run script's log, then the agent's).
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        let _ = File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    /// The container's PID 1 as the host numbers it, once it is `comm` (the run script execs
    /// the agent, so PID 1 turns from run.sh into diskwatch).
    pub fn pid1(&mut self, comm: &str, timeout: Duration) -> u32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                panic!("the container exited with {status}:\n{}", self.log_text());
            }
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.nspawn.id())).unwrap_or_default();
            for pid in children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
                if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm) {
                    return pid;
                }
            }
            assert!(Instant::now() < deadline, "no {comm} as the container's PID 1:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the container is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.nspawn.try_wait(), Ok(None))
    }

    /// `docker stop`: SIGTERM (forwarded to PID 1), then the exit status; None when it had to
    /// be killed after `timeout`.
    pub fn stop(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.nspawn.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        None
    }
}

impl Drop for AddonContainer {
    fn drop(&mut self) {
        if self.running() {
            self.stop(Duration::from_secs(10));
        }
        let _ = std::fs::remove_file(&self.log);
    }
}
