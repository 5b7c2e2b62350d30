//! SMART under the packaged units (issue 26): the .deb is installed in a Debian booted with
//! systemd as PID 1 (tests/common/nspawn.rs). The agent (diskwatch.service) keeps only
//! CAP_DAC_READ_SEARCH and asks the smartctl helper over its socket (diskwatch-smartctl.socket,
//! one diskwatch-smartctl@.service per connection), which alone holds CAP_SYS_RAWIO and
//! CAP_SYS_ADMIN and runs a recorder in smartctl's place. The recorder writes down what the
//! helper unit lets smartctl do (its capability sets from /proc/self/status, an open() of the
//! disk node for reading and for writing, and what Debian's real smartctl gets from the kernel
//! for an ATA pass-through and an NVMe admin ioctl on that node), then replays a real drive's
//! `smartctl --json` output. Checked: the agent's snapshot shows that drive's health; the
//! recorder ran with CAP_SYS_RAWIO and CAP_SYS_ADMIN and opened the node read-only; the agent's
//! own process has neither capability; the ioctls reach the driver; every invocation carries
//! `-n standby,2,3` and a disk found in standby gets no command at all; disabling the socket
//! turns SMART off with a note that says how to turn it on.
//!
//! smartctl cannot talk to a loop disk: the loop driver answers SG_IO and NVME_IOCTL_ADMIN_CMD
//! with EINVAL, which is what shows the ioctl passed the sandbox (a seccomp refusal is EPERM).
//! Needs root, debootstrap, systemd-container and smartmontools (scripts/setup).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::nspawn::{self, Container};
use serde_json::Value;

const UNIT: &str = "diskwatch.service";
const SOCKET: &str = "diskwatch-smartctl.socket";
/// The helper's template, and an instance name to ask systemd about its settings.
const HELPER: &str = "diskwatch-smartctl@.service";
const HELPER_INSTANCE: &str = "diskwatch-smartctl@probe.service";
const API: &str = "http://127.0.0.1:8377/api/v1";
/// The recorder lives in the state directory; the helper unit, which writes nowhere, gets a
/// test drop-in that makes this one directory writable and runs the recorder as its smartctl.
const REC: &str = "/var/lib/diskwatch/smartctl-recorder";
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_RAWIO: u32 = 17;
const CAP_SYS_ADMIN: u32 = 21;
/// The drive replayed: a WDC WD140EDFZ, SAT (tests/fixtures/smartctl/README.md).
const FIXTURE: &str = "ata-hdd-wd140edfz.json";

/// Stands in for smartctl in the helper: records, then hands over to tests/fixtures/smartctl/recorder.sh
/// (argv.log, replay per device) in the same process, so with the same credentials.
const WRAPPER: &str = r#"#!/bin/sh
# tests/systemd_smart.rs: what the smartctl started by diskwatch-smartctl@.service may do.
dir=$(dirname "$0")
for dev; do :; done
{
    echo "call $*"
    # Read by this shell itself: the capabilities smartctl would run with.
    while read -r key value; do
        case $key in Cap*) echo "$key $value" ;; esac
    done < /proc/self/status
    if (exec 3<"$dev") 2>/dev/null; then echo "open-read ok"; else echo "open-read failed"; fi
    if (exec 3<>"$dev") 2>/dev/null; then echo "open-write ok"; else echo "open-write failed"; fi
    # Without -n: with it, smartctl takes the failed CHECK POWER MODE for SLEEP and stops (a
    # loop disk, which no command can wake; argv.log, the never-wake record, has only the
    # agent's own invocations).
    "$dir/real-smartctl" -d sat -i "$dev" 2>&1 | grep -i 'failed' | sed 's/^/sat: /'
    "$dir/real-smartctl" -d nvme -i "$dev" 2>&1 | grep -i 'failed' | sed 's/^/nvme: /'
    echo end
} >> "$dir/calls.log"
exec "$dir/recorder.sh" "$@"
"#;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One recorded invocation.
#[derive(Debug, Default, Clone)]
struct Call {
    argv: String,
    cap_eff: u64,
    cap_bnd: u64,
    lines: Vec<String>,
}

impl Call {
    fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }

    fn probe(&self, kind: &str) -> String {
        self.lines.iter().filter(|l| l.starts_with(&format!("{kind}: "))).cloned().collect::<Vec<_>>().join(" | ")
    }
}

fn hex(value: &str) -> u64 {
    u64::from_str_radix(value.trim(), 16).unwrap_or_else(|e| panic!("capability mask {value:?}: {e}"))
}

/// The recorded invocations for `node` (the agent also asks about the container's other disks).
fn calls(c: &Container, node: &str) -> Vec<Call> {
    let log = std::fs::read_to_string(c.root().join(&REC[1..]).join("calls.log")).unwrap_or_default();
    let mut calls = Vec::new();
    let mut cur: Option<Call> = None;
    for line in log.lines() {
        if let Some(argv) = line.strip_prefix("call ") {
            cur = Some(Call { argv: argv.to_owned(), ..Call::default() });
        } else if line == "end" {
            calls.extend(cur.take());
        } else if let Some(call) = cur.as_mut() {
            if let Some(v) = line.strip_prefix("CapEff: ") {
                call.cap_eff = hex(v);
            } else if let Some(v) = line.strip_prefix("CapBnd: ") {
                call.cap_bnd = hex(v);
            }
            call.lines.push(line.to_owned());
        }
    }
    calls.retain(|call| call.argv.ends_with(&format!(" {node}")));
    calls
}

/// recorder.sh's log lines for `node`: arguments, or `WOKE <arguments>`.
fn argv_log(c: &Container, node: &str) -> Vec<String> {
    let log = std::fs::read_to_string(c.root().join(&REC[1..]).join("argv.log")).unwrap_or_default();
    log.lines().filter(|l| l.ends_with(&format!(" {node}"))).map(str::to_owned).collect()
}

fn disk(c: &Container, name: &str) -> Option<Value> {
    let snap = c.http_get(&format!("{API}/snapshot"))?;
    snap["disks"].as_array()?.iter().find(|d| d["kernel_name"] == name).cloned()
}

fn restart(c: &Container) {
    c.sh(&format!("systemctl restart {UNIT}"));
    c.wait_for(Duration::from_secs(60), "the service to be active", || {
        (c.property(UNIT, "ActiveState") == "active").then_some(())
    });
    c.wait_for(Duration::from_secs(30), "the API to answer", || c.http_get(&format!("{API}/health")));
}

/// Waits for the next recorded invocation for `node` after the first `seen`.
fn next_call(c: &Container, node: &str, seen: usize) -> Call {
    c.wait_for(Duration::from_secs(30), "a smartctl invocation", || calls(c, node).get(seen).cloned())
}

/// Whether the container's systemd enforces `DevicePolicy=`: a transient unit allowed nothing
/// but /dev/null read-only (`strict`: not even the pseudo devices `closed` adds read-write)
/// tries to open it for writing. (In nspawn on a cgroup v1 host, and with the unified
/// hierarchy too, it does not; on a host's systemd it does.)
fn device_acl_enforced(c: &Container) -> bool {
    let out = c.sh("systemd-run --quiet --wait --pipe -p DevicePolicy=strict -p 'DeviceAllow=/dev/null r' \
         sh -c 'if (exec 3<>/dev/null) 2>/dev/null; then echo opened; else echo refused; fi'");
    out == "refused"
}

fn write_exec(path: &Path, body: &[u8]) {
    std::fs::write(path, body).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "the installed config no longer has {from:?} once");
    text.replace(from, to)
}

/// Installs the .deb and waits for the agent and the helper's socket.
fn install(c: &Container, deb: &Path) {
    std::fs::copy(deb, c.root().join("root/diskwatch.deb")).expect("copy the .deb into the container");
    c.sh("dpkg -i /root/diskwatch.deb && rm /root/diskwatch.deb");
    c.wait_for(Duration::from_secs(60), "the installed service to be active", || {
        (c.property(UNIT, "ActiveState") == "active").then_some(())
    });
    assert_eq!(c.property(SOCKET, "ActiveState"), "active", "the package did not start {SOCKET}");
    assert_eq!(c.sh(&format!("systemctl is-enabled {SOCKET}")), "enabled");
}

/// The recorder (with Debian's real smartctl beside it) in the container's state directory, and
/// the helper drop-in that runs it as smartctl and lets it write its log there.
fn recorder(c: &Container) -> PathBuf {
    let real_smartctl = Path::new("/usr/sbin/smartctl");
    assert!(real_smartctl.exists(), "smartctl is missing (scripts/setup installs smartmontools)");
    let rec = c.root().join(&REC[1..]);
    std::fs::create_dir_all(&rec).expect("create the recorder directory");
    write_exec(&rec.join("smartctl"), WRAPPER.as_bytes());
    let fixtures = repo().join("tests/fixtures/smartctl");
    write_exec(&rec.join("recorder.sh"), &std::fs::read(fixtures.join("recorder.sh")).expect("read recorder.sh"));
    for f in [FIXTURE, "standby-smartctl-7.3.txt"] {
        std::fs::copy(fixtures.join(f), rec.join(f)).expect("copy a fixture");
    }
    std::fs::copy(real_smartctl, rec.join("real-smartctl")).expect("copy smartctl into the container");
    std::fs::write(rec.join("map"), "").expect("write the map");
    c.set_dropin(
        HELPER,
        "recorder",
        Some(&format!(
            "ExecStart=\nExecStart=/usr/bin/diskwatch smartctl-helper --smartctl {REC}/smartctl --max-timeout 300\n\
             ReadWritePaths={REC}"
        )),
    );
    rec
}

/// A loop disk with `partitions`, its nodes made in the container's /dev (its own tmpfs: the
/// nodes udev would make on a real system).
fn loop_disk(c: &Container, size_mib: u64, partitions: &[u64]) -> common::LoopDevice {
    let disk = common::LoopDevice::new(size_mib, partitions);
    let mut nodes = vec![(disk.device.clone(), disk.dev())];
    for n in 1..=partitions.len() as u32 {
        let part = disk.partition(n);
        let name = Path::new(&part).file_name().expect("partition name").to_string_lossy().into_owned();
        let dev = std::fs::read_to_string(format!("/sys/class/block/{name}/dev")).expect("partition dev");
        nodes.push((part, dev.trim().to_owned()));
    }
    for (node, dev) in nodes {
        let (major, minor) = dev.split_once(':').expect("major:minor");
        c.sh(&format!("mknod -m 0660 {node} b {major} {minor}"));
    }
    disk
}

/// The installed config, edited: loop disks watched, health every `interval`, `smartctl` for
/// the agent's own runs (unused when the socket is set), `extra` appended.
fn configure(c: &Container, interval: &str, smartctl: &str, extra: &str) {
    let config_path = c.root().join("etc/diskwatch/config.toml");
    let mut config = std::fs::read_to_string(&config_path).expect("read the installed config");
    config = replace_once(&config, "\ninclude = []\nreceive_buffer", "\ninclude = [\"loop*\"]\nreceive_buffer");
    config = replace_once(&config, "\nsmartctl = \"smartctl\"", &format!("\nsmartctl = \"{smartctl}\""));
    config = replace_once(&config, "\ninterval = \"30min\"", &format!("\ninterval = \"{interval}\""));
    config =
        replace_once(&config, "\ninclude = []                       # wins over exclude", "\ninclude = [\"loop*\"]");
    config.push_str(extra);
    std::fs::write(&config_path, config).expect("write the config");
}

/// `CapEff` and `CapBnd` of the agent's main process.
fn agent_caps(c: &Container) -> (u64, u64) {
    let pid = c.property(UNIT, "MainPID");
    let status = c.sh(&format!("cat /proc/{pid}/status"));
    let field = |key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)).map(hex).unwrap_or_else(|| panic!("no {key} in:\n{status}"))
    };
    (field("CapEff:"), field("CapBnd:"))
}

#[test]
fn smart_under_the_packaged_unit() {
    if !common::require_root("smart_under_the_packaged_unit") {
        return;
    }
    // Slow and touching nothing shared: before the machine lock.
    let deb = nspawn::build_deb();
    let (rootfs, made) = nspawn::rootfs();
    if let Some(t) = made {
        eprintln!("rootfs: debootstrapped in {:.1} s", t.as_secs_f64());
    }
    let _lock = common::machine_lock();
    // nspawn leaves CAP_SYS_RAWIO out of a container's bounding set; a host's systemd has it.
    let c = Container::boot(&rootfs, &["--capability=CAP_SYS_RAWIO"]);
    install(&c, &deb);

    // --- what the installed units grant ------------------------------------------------------
    let bounding = c.property(UNIT, "CapabilityBoundingSet");
    assert_eq!(bounding, "cap_dac_read_search", "the agent's bounding set");
    let helper_bounding = c.property(HELPER_INSTANCE, "CapabilityBoundingSet");
    let mut helper_caps: Vec<&str> = helper_bounding.split_whitespace().collect();
    helper_caps.sort_unstable();
    assert_eq!(helper_caps, ["cap_sys_admin", "cap_sys_rawio"], "the helper's bounding set");
    assert_eq!(c.property(HELPER_INSTANCE, "PrivateNetwork"), "yes");
    assert_eq!(c.property(SOCKET, "Accept"), "yes");
    assert_eq!(c.property(SOCKET, "SocketMode"), "0600");
    let (exposure, report) = c.security(UNIT);
    let exposed: Vec<&str> = report.lines().filter(|l| l.starts_with('✗')).collect();
    eprintln!("systemd-analyze security {UNIT} (PID 1): {exposure}\n{}", exposed.join("\n"));
    assert!(exposure <= 2.3, "exposure {exposure}:\n{report}");
    let (helper_exposure, helper_report) = c.security(HELPER_INSTANCE);
    let exposed: Vec<&str> = helper_report.lines().filter(|l| l.starts_with('✗')).collect();
    eprintln!("systemd-analyze security {HELPER_INSTANCE} (PID 1): {helper_exposure}\n{}", exposed.join("\n"));
    assert!(helper_exposure < exposure, "the helper ({helper_exposure}) is not stricter than the agent ({exposure})");
    // RestrictAddressFamilies=none (systemctl show prints it empty) and no IP: no network at all.
    for check in ["RestrictAddressFamilies=", "IPAddressDeny=", "PrivateNetwork="] {
        assert!(!exposed.iter().any(|l| l.contains(check)), "the helper is exposed on {check}:\n{helper_report}");
    }

    // --- the recorder in smartctl's place, a loop disk the agent watches -------------------------
    let rec = recorder(&c);
    let disk_dev = loop_disk(&c, 64, &[]);
    let name = disk_dev.name();
    let node = disk_dev.device.clone();
    std::fs::write(rec.join("map"), format!("{node} {FIXTURE}\n")).expect("write the map");
    // The agent's own smartctl points nowhere: health can only come through the helper.
    configure(&c, "2s", "/nonexistent/agent-runs-no-smartctl", "");
    restart(&c);

    // --- the agent shows the replayed drive's health ----------------------------------------------
    let start = Instant::now();
    let shown = c.wait_for(Duration::from_secs(30), "the replayed health in /api/v1/snapshot", || {
        disk(&c, &name).filter(|d| d["health"]["passed"] == true)
    });
    eprintln!("health in the snapshot {:.2} s after the restart: {}", start.elapsed().as_secs_f64(), shown["health"]);
    assert_eq!(shown["health"]["temperature_c"], 32.0);
    assert_eq!(shown["health"]["power_on_hours"], 1730);
    assert_eq!(shown["health"]["source"], "smartctl");
    assert_eq!(shown["power_state"], "active");

    // --- what the recorder could do, and what the agent cannot ---------------------------------
    let first = next_call(&c, &node, 0);
    eprintln!("recorder: {first:#?}");
    assert!(first.argv.ends_with(&node), "{first:?}");
    let smart = (1u64 << CAP_SYS_RAWIO) | (1 << CAP_SYS_ADMIN);
    for (bit, cap) in [(CAP_SYS_RAWIO, "CAP_SYS_RAWIO"), (CAP_SYS_ADMIN, "CAP_SYS_ADMIN")] {
        assert!(first.cap_eff & (1 << bit) != 0, "smartctl ran without {cap} effective: {first:?}");
    }
    assert_eq!(first.cap_bnd, smart, "smartctl's bounding set is not exactly the two: {first:?}");
    assert!(first.has("open-read ok"), "the disk node could not be opened for reading: {first:?}");
    let (agent_eff, agent_bnd) = agent_caps(&c);
    eprintln!("agent: CapEff {agent_eff:016x} CapBnd {agent_bnd:016x}");
    assert_eq!(agent_bnd, 1 << CAP_DAC_READ_SEARCH, "the agent's bounding set");
    assert_eq!(agent_eff & smart, 0, "the agent holds a SMART capability: {agent_eff:x}");
    assert_eq!(c.property(HELPER_INSTANCE, "DevicePolicy"), "closed");
    // "<device> <access>" pairs: block devices read-only (char-rtc r comes with ProtectClock).
    let allow = c.property(HELPER_INSTANCE, "DeviceAllow");
    let words: Vec<&str> = allow.split_whitespace().collect();
    assert!(words.chunks(2).any(|p| p == ["block-*", "r"]), "DeviceAllow: {allow}");
    assert!(words.chunks(2).all(|p| p.len() == 2 && p[1] == "r" && !p[0].contains("nvme")), "DeviceAllow: {allow}");
    if device_acl_enforced(&c) {
        assert!(first.has("open-write failed"), "the disk node could be opened for writing: {first:?}");
    } else {
        eprintln!("this container's systemd cannot enforce device ACLs (no device cgroup/BPF): write open not checked");
    }
    // EINVAL from the loop driver: the ioctl passed seccomp and the device policy.
    for kind in ["sat", "nvme"] {
        let probe = first.probe(kind);
        assert!(probe.contains("Invalid argument"), "{kind} pass-through did not reach the driver: {probe:?}");
        assert!(!probe.contains("not permitted") && !probe.contains("denied"), "{kind}: {probe:?}");
    }

    // --- never wake: the power check on every call, nothing to a disk in standby ------------------
    let checked_at = shown["health"]["checked_at"].clone();
    let mut map = std::fs::read_to_string(rec.join("map")).expect("read the map");
    map.push_str(&format!("{node} standby\n"));
    std::fs::write(rec.join("map"), map).expect("write the map");
    let slept = c.wait_for(Duration::from_secs(30), "power_state standby", || {
        disk(&c, &name).filter(|d| d["power_state"] == "standby")
    });
    assert_eq!(slept["health"]["checked_at"], checked_at, "the last health is kept in standby: {slept}");
    assert_eq!(slept["health"]["passed"], true);
    let asleep = argv_log(&c, &node).len();
    // Three rounds (interval 2 s) in standby without I/O: not even a power check.
    std::thread::sleep(Duration::from_secs(7));
    let argv = argv_log(&c, &node);
    eprintln!("smartctl invocations: {} ({} after standby was seen)", argv.len(), argv.len() - asleep);
    assert_eq!(argv.len(), asleep, "commands sent to a disk in standby: {:?}", &argv[asleep..]);
    assert!(!argv.is_empty());
    for line in &argv {
        assert!(!line.starts_with("WOKE"), "a call without the power check woke the disk: {line}");
        assert!(line.contains("-n standby,2,3"), "a call without -n standby: {line}");
    }

    // --- no SMART wanted: the socket disabled, a note that says how to turn it on ---------------
    c.sh(&format!("systemctl disable --now {SOCKET}"));
    assert!(!c.root().join("run/diskwatch/smartctl.sock").exists(), "the socket file outlived the socket unit");
    let mut map = std::fs::read_to_string(rec.join("map")).expect("read the map");
    map.push_str(&format!("{node} {FIXTURE}\n"));
    std::fs::write(rec.join("map"), map).expect("write the map");
    let seen = calls(&c, &node).len();
    restart(&c);
    let noted = c.wait_for(Duration::from_secs(30), "a health note about the helper", || {
        disk(&c, &name).filter(|d| d["health_note"].as_str().is_some_and(|n| n.contains(SOCKET)))
    });
    eprintln!("with {SOCKET} disabled: {}", noted["health_note"]);
    assert!(noted["health_note"].as_str().is_some_and(|n| n.contains("systemctl enable --now")), "{noted}");
    assert_eq!(calls(&c, &node).len(), seen, "smartctl ran with the socket disabled");
    c.sh(&format!("systemctl enable --now {SOCKET}"));
    drop(disk_dev);
    drop(c);
}

/// `disk.woken` events of `name` so far.
fn wakes(c: &Container, name: &str) -> Vec<Value> {
    let page = c.http_get(&format!("{API}/events?types=disk.woken&limit=1000")).unwrap_or(Value::Null);
    let events = page["events"].as_array().cloned().unwrap_or_default();
    events.into_iter().filter(|e| e["data"]["disk"]["kernel_name"] == name).collect()
}

/// The wake matrix's systemd row (docs/sleep.md, issue 24): the agent under the shipped unit
/// (its `ReadWritePaths=-/sys/kernel/tracing/instances` and `ProtectProc=default`), SMART through the
/// helper with a recorder saying standby; a process started as the unit wake-reader.service by
/// the container's systemd reads a cold file on the sleeping loop disk; `disk.woken` must name
/// the process and the unit. tracefs is mounted in the container by hand, as a host's systemd
/// mounts it at boot (sys-kernel-tracing.mount); nspawn's /sys has none.
#[test]
fn a_wake_by_a_systemd_unit_is_named_under_the_packaged_unit() {
    if !common::require_root("a_wake_by_a_systemd_unit_is_named_under_the_packaged_unit") {
        return;
    }
    let deb = nspawn::build_deb();
    let (rootfs, _) = nspawn::rootfs();
    let _lock = common::machine_lock();
    let c = Container::boot(&rootfs, &["--capability=CAP_SYS_RAWIO"]);
    // As a host's sys-kernel-tracing.mount does at boot (the container's systemd skips it).
    c.sh("mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing");
    install(&c, &deb);
    let rec = recorder(&c);
    let disk_dev = loop_disk(&c, 96, &[80]);
    let name = disk_dev.name();
    let node = disk_dev.device.clone();
    let part = disk_dev.partition(1);
    // No lazy init: ext4lazyinit would write to the "sleeping" disk in the background.
    common::sh("mkfs.ext4", &["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", &part]);
    c.sh(&format!(
        "mkdir -p /srv/wake && mount -o commit=60 {part} /srv/wake && \
         dd if=/dev/urandom of=/srv/wake/cold bs=64k count=16 status=none && sync && \
         cp /usr/bin/tail /usr/local/bin/coldreader"
    ));
    std::fs::write(rec.join("map"), format!("{node} {FIXTURE}\n")).expect("write the map");
    let activity = "\ninterval = \"10s\"                   # /sys/block/*/stat sampling";
    configure(&c, "1s", "/nonexistent/agent-runs-no-smartctl", "");
    let config_path = c.root().join("etc/diskwatch/config.toml");
    let config = std::fs::read_to_string(&config_path).expect("read the config");
    std::fs::write(&config_path, replace_once(&config, activity, "\ninterval = \"200ms\"")).expect("write the config");
    restart(&c);
    c.wait_for(Duration::from_secs(30), "the replayed health", || {
        disk(&c, &name).filter(|d| d["health"]["passed"] == true)
    });
    let status = c.http_get(&format!("{API}/health")).unwrap_or(Value::Null);
    eprintln!("health: {status}");

    // Asleep: the recorder answers standby; the agent arms the trace for the disk. Nothing dirty
    // or cached is left before (the cold file must be read from the disk).
    c.sh("sync");
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop caches");
    std::thread::sleep(Duration::from_millis(300));
    let mut map = std::fs::read_to_string(rec.join("map")).expect("read the map");
    map.push_str(&format!("{node} standby\n"));
    std::fs::write(rec.join("map"), &map).expect("write the map");
    let slept = c.wait_for(Duration::from_secs(30), "asleep and armed", || {
        disk(&c, &name).filter(|d| d["power_state"] == "standby" && d["sleep"]["standby_since"].is_string())
    });
    eprintln!("asleep: {}", slept["sleep"]);
    std::thread::sleep(Duration::from_millis(400));
    let before = wakes(&c, &name).len();
    c.sh("systemd-run --quiet --unit=wake-reader.service -p StandardOutput=null \
         /usr/local/bin/coldreader -f /srv/wake/cold");
    map.push_str(&format!("{node} {FIXTURE}\n"));
    std::fs::write(rec.join("map"), &map).expect("write the map");
    let woken = c.wait_for(Duration::from_secs(30), "a disk.woken event", || wakes(&c, &name).get(before).cloned());
    let wake = &woken["data"]["last_wake"];
    eprintln!("disk.woken: {wake}");
    // The trace numbers tasks as the init PID namespace does; read that pid's cgroup here, on
    // the host, where those numbers are valid, as the agent reads it on a host.
    let pid = wake["pid"].as_u64().unwrap_or_else(|| panic!("no pid: {wake}"));
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let host_unit =
        diskwatch::wake::process::cgroup_path(&cgroup).as_deref().and_then(diskwatch::wake::process::unit_of);
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).map(|l| l.display().to_string()).ok();
    let agent_pid = c.property(UNIT, "MainPID");
    let own_ns = ns(&format!("{}/root/proc/{agent_pid}", c.leader)).or_else(|| ns(&c.leader.to_string()));
    eprintln!(
        "host /proc/{pid}/cgroup: {} -> {host_unit:?}; agent's PID namespace {own_ns:?}, init's {:?}",
        cgroup.trim(),
        ns("1")
    );
    let _ = c.run(&["systemctl", "stop", "wake-reader.service"]);
    let _ = c.run(&["umount", "/srv/wake"]);
    assert_eq!(wake["comm"], "coldreader", "{wake}");
    assert!(wake["op"] == "read" || wake["op"] == "metadata", "{wake}");
    assert_eq!(host_unit.as_deref(), Some("wake-reader.service"), "the traced pid {pid} is not the unit's process");
    if own_ns == ns("1") {
        assert_eq!(wake["unit"], "wake-reader.service", "{wake}");
    } else {
        // In the container's own PID namespace the agent cannot resolve the trace's pids (the
        // container's /proc numbers its processes differently): no unit, and never a wrong one.
        assert!(wake["unit"].is_null() || wake["unit"] == "wake-reader.service", "a wrong unit: {wake}");
    }
    drop(disk_dev);
    drop(c);
}
