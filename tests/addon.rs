//! The Home Assistant add-on started the way the Supervisor starts it (tests/common/addon.rs):
//! the image's contents (Debian bookworm with the Dockerfile's packages, the built agent at the
//! Dockerfile's path, run.sh as CMD), in a container with Docker's default capabilities plus the
//! add-on's `privileged`, Docker's device cgroup plus the add-on's granted `devices`, the host's
//! network, /dev and /run/udev read-only, /data with the
//! options, /media and /share (with the Supervisor's slave propagation), the Supervisor API
//! stubbed on loopback with its bearer token, the test's Mosquitto as the MQTT service, and a
//! real loop disk. What a user sees after one click: it starts, reads its options and the
//! MQTT service, announces the disk to Home Assistant, sees a disk mounted below /media later,
//! serves the ingress page to the ingress proxy only, and stops cleanly on `docker stop`.
//!
//! Needs root, debootstrap and systemd-container (scripts/setup); with CI=true it fails when it
//! cannot run. Prints figures: start to MQTT discovery of the disk, the agent's RSS (with the
//! release build: `DISKWATCH_ADDON_BIN=target/release/diskwatch cargo test --test addon`).

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::addon::{self, AddonContainer, ContainerSpec, HassioNet, SharedDir, SupervisorStub};
use common::mosquitto::{self, Mosquitto, Recorder};
use serde_json::{json, Value};

/// The agent put in the image: the test's build, or the release build the Dockerfile ships when
/// `DISKWATCH_ADDON_BIN` names it (e.g. target/release/diskwatch, for the RSS figure).
fn agent_binary() -> PathBuf {
    let path = std::env::var_os("DISKWATCH_ADDON_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_diskwatch")), PathBuf::from);
    // nspawn binds absolute paths only.
    path.canonicalize().unwrap_or_else(|e| panic!("the agent binary {}: {e}", path.display()))
}
const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "3b6f0c1e9a5d4f7e8c2b1a0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// config.yaml as JSON (Debian's python3-yaml, installed by scripts/setup).
fn addon_config() -> Value {
    let out = Command::new("python3")
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"])
        .arg(repo().join("packaging/homeassistant/config.yaml"))
        .output()
        .expect("run python3");
    assert!(out.status.success(), "cannot read config.yaml: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("config.yaml as JSON")
}

/// GET on the add-on's ingress port from `source` (curl bound to that address): (status, body).
fn ingress_get(source: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--interface", source, "-w", "\n%{http_code}"])
        .arg(format!("http://{}:8377{path}", addon::HASSIO_HOST))
        .output()
        .expect("run curl");
    let all = text(&out.stdout);
    let (body, status) = all.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read the agent's status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS in kB")
}

fn cap_eff(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read the agent's status");
    let line = status.lines().find(|l| l.starts_with("CapEff:")).expect("CapEff");
    u64::from_str_radix(line.split_whitespace().nth(1).expect("mask"), 16).expect("hex mask")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addon_runs_as_the_supervisor_runs_it() {
    if !common::require_root("addon_runs_as_the_supervisor_runs_it") {
        return;
    }
    // The image: one package list, the Dockerfile's.
    let image = addon::image();
    for needed in ["smartmontools", "jq", "curl", "libudev1", "libblkid1"] {
        assert!(image.packages.iter().any(|p| p == needed), "the Dockerfile does not install {needed}");
    }
    let dest_of = |source_suffix: &str| {
        image.copies.iter().find(|(s, _)| s.ends_with(source_suffix)).map(|(_, d)| d.clone()).unwrap_or_else(|| {
            panic!("the Dockerfile copies no {source_suffix}: {:?}", image.copies);
        })
    };
    let bin_path = dest_of("target/release/diskwatch");
    let script_path = dest_of("packaging/homeassistant/rootfs/run.sh");
    assert_eq!(image.cmd, vec![script_path.clone()], "the image runs the run script");
    // Slow and touching nothing shared: made before the machine lock.
    let (rootfs, made) = addon::rootfs(&image.packages);
    if let Some(took) = made {
        eprintln!("add-on root (Debian bookworm + {}) made in {:.1} s", image.packages.join(" "), took.as_secs_f64());
    }

    // The add-on's manifest decides the container.
    let config = addon_config();
    assert_eq!(config["init"], false, "the run script is PID 1 (no s6 init)");
    assert_eq!(config["host_network"], true, "the container below shares the host's network");
    assert_eq!(config["ingress_port"], 8377);
    let mut capabilities: BTreeSet<String> = addon::DOCKER_DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    for c in config["privileged"].as_array().cloned().unwrap_or_default() {
        capabilities.insert(c.as_str().expect("capability name").to_owned());
    }
    let read_only_map = |kind: &str| {
        let entry = config["map"].as_array().and_then(|m| m.iter().find(|e| e["type"] == kind).cloned());
        entry.map(|e| e["read_only"].as_bool().unwrap_or(true))
    };
    assert_eq!(read_only_map("media"), Some(true), "media mapped read-only");
    assert_eq!(read_only_map("share"), Some(true), "share mapped read-only");
    let mut options = config["options"].clone();
    options["log_level"] = json!("debug");
    options["include_loop_devices"] = json!(true);

    let _lock = common::machine_lock();
    // The host's udevd, as on Home Assistant OS (the add-on reads its database and events).
    let udevd = common::udevd::Udevd::start();
    let _net = HassioNet::create();
    let media = SharedDir::new();
    let share = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::write(data.path().join("options.json"), options.to_string()).expect("write options.json");

    // The disk, there before the add-on starts (mounted below /media later).
    let disk = common::LoopDevice::new(64, &[]);
    common::sh("mkfs.ext4", &["-q", "-F", "-L", "DwAddon", &disk.device]);
    udevd.settle();

    let broker = Mosquitto::start();
    let rec = Recorder::start(broker.port, "addon-test", &["homeassistant/#", "diskwatch/#"]).await;
    let info = json!({
        "slug": "local_diskwatch", "hostname": "local-diskwatch", "protected": true,
        "full_access": config["full_access"].as_bool().unwrap_or(false),
        "privileged": config["privileged"], "ingress_port": 8377, "state": "started",
    });
    let mqtt = json!({
        "addon": "core_mosquitto", "host": "127.0.0.1", "port": broker.port, "ssl": false,
        "protocol": "3.1.1", "username": "addons", "password": "Secr\"et\\pass",
    });
    let stub = SupervisorStub::start(TOKEN, vec![("/addons/self/info", info), ("/services/mqtt", mqtt)]);

    // The device cgroup: Docker's defaults plus what the Supervisor grants for config.yaml's
    // `devices` that exist here (it also withholds a Home Assistant OS system disk; this
    // machine has none).
    let granted: Vec<String> = config["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str())
        .filter(|d| std::path::Path::new(d).exists())
        .map(common::dev_of)
        .collect();
    let device_cgroup = addon::DeviceCgroup::create(&granted);
    if device_cgroup.is_none() {
        eprintln!("no cgroup v1 devices controller: the container gets the caller's device access");
    }
    let udev_run = PathBuf::from("/run/udev");
    let spec = ContainerSpec {
        rootfs: &rootfs,
        hostname: "local-diskwatch",
        capabilities: &capabilities,
        binds: vec![
            (agent_binary(), bin_path.clone(), true),
            (repo().join("packaging/homeassistant/rootfs/run.sh"), script_path.clone(), true),
            (data.path().to_path_buf(), "/data".into(), false),
            (PathBuf::from("/dev"), "/dev".into(), true),
            (udev_run, "/run/udev".into(), true),
            (media.path.clone(), "/media".into(), true),
            (share.path().to_path_buf(), "/share".into(), true),
        ],
        env: vec![
            ("SUPERVISOR_TOKEN".into(), TOKEN.into()),
            ("SUPERVISOR_API".into(), stub.url()),
            ("TZ".into(), "Etc/UTC".into()),
        ],
        cmd: std::slice::from_ref(&script_path),
        devices: device_cgroup.as_ref(),
    };
    let mut container = AddonContainer::start(&spec);

    // It starts: the run script execs the agent as PID 1, with exactly Docker's capabilities
    // plus the add-on's privileged list.
    let pid = container.pid1("diskwatch", WAIT);
    let agent_started = Instant::now();
    if let Some(cgroup) = &device_cgroup {
        let name = cgroup.dir.file_name().and_then(|n| n.to_str()).expect("cgroup name");
        let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("the agent's cgroups");
        assert!(
            membership.lines().any(|l| l.contains(":devices:") && l.ends_with(name)),
            "the agent is not in the container's device cgroup:\n{membership}"
        );
    }
    assert_eq!(
        addon::capability_names(cap_eff(pid)),
        capabilities,
        "the agent's capabilities are Docker's defaults plus config.yaml's privileged"
    );

    // It announces the host and the disk to Home Assistant.
    let name = disk.name();
    let node = {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = rec.all().into_iter().find_map(|m| {
                let rest = m.topic.strip_prefix("diskwatch/")?;
                let node = rest.strip_suffix("/availability")?;
                (!node.contains('/') && m.payload == "online").then(|| node.to_owned())
            });
            if let Some(node) = found {
                break node;
            }
            assert!(Instant::now() < deadline, "the agent never came online:\n{}", container.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let disk_prefix = format!("diskwatch/{node}/disk/");
    let find_disk_id = |messages: &[mosquitto::Received]| {
        messages.iter().find_map(|m| {
            let id = m.topic.strip_prefix(&disk_prefix)?.strip_suffix("/state")?;
            let state: Value = serde_json::from_str(&m.payload).ok()?;
            (state["kernel_name"] == name.as_str()).then(|| id.to_owned())
        })
    };
    rec.wait_for(WAIT, "the loop disk's state", |m| find_disk_id(m).is_some()).await;
    let disk_id = find_disk_id(&rec.all()).expect("the disk's id");
    let disk_config = format!("homeassistant/device/diskwatch_{node}_disk_{disk_id}/config");
    let host_config = format!("homeassistant/device/diskwatch_{node}/config");
    rec.wait_for(WAIT, "the disk's and the host's discovery", |m| {
        m.iter().any(|r| r.topic == disk_config) && m.iter().any(|r| r.topic == host_config)
    })
    .await;
    let messages = rec.all();
    let discovered = messages
        .iter()
        .filter(|m| m.topic == disk_config || m.topic == host_config)
        .map(|m| m.at)
        .max()
        .expect("discovery messages");
    let to_discovery = discovered.duration_since(container.started);
    let rss = vm_rss_kib(pid);
    eprintln!(
        "add-on start (container spawn) to MQTT discovery of the host and the disk: {} ms (run.sh until it \
         execs the agent: {} ms, polled every 10 ms; the agent: {} ms); agent RSS {:.1} MiB ({})",
        to_discovery.as_millis(),
        agent_started.duration_since(container.started).as_millis(),
        discovered.duration_since(agent_started).as_millis(),
        rss as f64 / 1024.0,
        agent_binary().display()
    );
    let held = mosquitto::retained(broker.port, &["homeassistant/#", &format!("diskwatch/{node}/#")]).await;
    let disk_discovery: Value = serde_json::from_str(&held[&disk_config]).expect("discovery JSON");
    assert_eq!(disk_discovery["device"]["via_device"], format!("diskwatch_{node}"), "{disk_discovery:#}");
    assert_eq!(held[&format!("diskwatch/{node}/disk/{disk_id}/availability")], "online");

    // It read its options (debug logging, loop devices included) and the Supervisor's MQTT
    // service, with the token, and logged what the Supervisor granted.
    let log = container.log_text();
    assert!(log.contains("Using the Supervisor's MQTT service at mqtt://127.0.0.1:"), "{log}");
    assert!(log.contains("Supervisor grants: privileged SYS_RAWIO, full_access false, protected true"), "{log}");
    assert!(log.contains("DEBUG"), "log_level debug from options.json:\n{log}");
    let requests = stub.requests();
    for path in ["GET /addons/self/info", "GET /services/mqtt"] {
        assert!(requests.iter().any(|(p, ok)| p == path && *ok), "{path} not asked with the token: {requests:?}");
    }
    assert!(requests.iter().all(|(_, ok)| *ok), "a request without the token: {requests:?}");
    let written = std::fs::read_to_string(data.path().join("diskwatch.toml")).expect("the written configuration");
    assert!(written.contains(r#"password = "Secr\"et\\pass""#), "{written}");
    assert!(written.contains("[health]\nenabled = true"), "SMART on by default:\n{written}");

    // smartctl is in the image, new enough for the never-wake form `-n standby,2,3` (7.3).
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "-p", "smartctl", "--version"])
        .output()
        .expect("run nsenter");
    let version = text(&out.stdout);
    let number = version.split_whitespace().nth(1).unwrap_or("").to_owned();
    let parts: Vec<u32> = number.split('.').filter_map(|p| p.parse().ok()).collect();
    assert!(parts.len() >= 2 && (parts[0], parts[1]) >= (7, 3), "smartctl in the image: {version}");

    // A filesystem mounted below /media on the host (as the Supervisor mounts USB disks)
    // reaches the add-on and is announced with its usage.
    let usb = media.path.join("usb");
    let _mounted = common::MountGuard::new(&disk.device, &usb, Some("ext4"), None);
    let mount_id = diskwatch::model::mount_id("/media/usb");
    let mount_config = format!("homeassistant/device/diskwatch_{node}_mount_{mount_id}/config");
    let mount_state = format!("diskwatch/{node}/mount/{mount_id}/state");
    rec.wait_for(WAIT, "the /media mount's discovery and usage", |m| {
        m.iter().any(|r| r.topic == mount_config)
            && m.iter().any(|r| {
                r.topic == mount_state
                    && serde_json::from_str::<Value>(&r.payload)
                        .is_ok_and(|s| s["usage"]["total_bytes"].as_u64() > Some(0))
            })
    })
    .await;

    // Ingress: the proxy (172.30.32.2) gets the dashboard and the API; anything else on the
    // hassio network is refused.
    let (status, page) = ingress_get(addon::INGRESS_PROXY, "/");
    assert_eq!(status, 200, "ingress page: {page}");
    assert!(page.contains("<html") && page.contains("diskwatch"), "{page}");
    let (status, body) = ingress_get(addon::INGRESS_PROXY, "/api/v1/snapshot");
    assert_eq!(status, 200, "{body}");
    let snapshot: Value = serde_json::from_str(&body).expect("snapshot JSON");
    assert!(
        snapshot["disks"].as_array().is_some_and(|d| d.iter().any(|d| d["id"] == disk_id.as_str())),
        "{snapshot:#}"
    );
    // The health source ran the image's smartctl for every disk it watches (the default
    // exclusions leave out loop, ram, zram, dm, md, sr and nbd devices): each has a reading or
    // smartctl's own answer, none "cannot run smartctl".
    let excluded = ["loop", "ram", "zram", "dm-", "md", "sr", "nbd"];
    for d in snapshot["disks"].as_array().into_iter().flatten() {
        let kernel = d["kernel_name"].as_str().unwrap_or_default();
        if excluded.iter().any(|p| kernel.starts_with(p)) {
            continue;
        }
        let note = d["health_note"].as_str().unwrap_or_default();
        eprintln!("health of {kernel} in the add-on: {} / {note:?}", d["health"]);
        assert!(!note.contains("cannot run"), "smartctl missing in the image: {kernel}: {note}");
        assert!(!d["health"].is_null() || !note.is_empty(), "no smartctl answer for {kernel}: {d:#}");
    }
    let (status, _) = ingress_get(addon::HASSIO_HOST, "/api/v1/snapshot");
    assert_eq!(status, 403, "another address on the hassio network is refused");

    // `docker stop`: SIGTERM to PID 1, a clean exit, the availability set offline.
    let status = container.stop(Duration::from_secs(20));
    let log = container.log_text();
    if std::env::var_os("DISKWATCH_ADDON_LOG").is_some() {
        eprintln!("--- the add-on's log ---\n{log}--- end ---");
    }
    assert!(status.is_some_and(|s| s.success()), "the add-on did not stop cleanly ({status:?}):\n{log}");
    rec.wait_for(WAIT, "availability offline", |m| {
        m.iter().any(|r| r.topic == format!("diskwatch/{node}/availability") && r.payload == "offline")
    })
    .await;

    // Restarted (or updated: a new container, the same /data), it comes back as the same
    // node, so Home Assistant keeps the same devices.
    drop(container);
    let seen = rec.len();
    let mut container = AddonContainer::start(&spec);
    container.pid1("diskwatch", WAIT);
    rec.wait_for(WAIT, "the same node online again", |m| {
        m[seen..].iter().any(|r| r.topic == format!("diskwatch/{node}/availability") && r.payload == "online")
    })
    .await;
    assert!(
        !rec.all()[seen..].iter().any(|r| r.topic.ends_with("/availability")
            && r.topic.matches('/').count() == 2
            && r.topic != format!("diskwatch/{node}/availability")),
        "a second node appeared after the restart"
    );
    let status = container.stop(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{}", container.log_text());
}

/// Without the token (or with a wrong one) the Supervisor refuses; the add-on still starts,
/// says why it has no MQTT broker, and serves the panel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addon_without_a_valid_token_runs_without_mqtt_and_says_why() {
    if !common::require_root("addon_without_a_valid_token_runs_without_mqtt_and_says_why") {
        return;
    }
    let image = addon::image();
    let (rootfs, _) = addon::rootfs(&image.packages);
    let script = image.cmd.first().cloned().expect("CMD");
    let config = addon_config();
    let mut capabilities: BTreeSet<String> = addon::DOCKER_DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    for c in config["privileged"].as_array().cloned().unwrap_or_default() {
        capabilities.insert(c.as_str().expect("capability name").to_owned());
    }
    let bin_path =
        image.copies.iter().find(|(s, _)| s.ends_with("target/release/diskwatch")).expect("binary").1.clone();

    let _lock = common::machine_lock();
    let _net = HassioNet::create();
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::write(data.path().join("options.json"), config["options"].to_string()).expect("write options.json");
    let stub = SupervisorStub::start(TOKEN, vec![("/services/mqtt", json!({"host": "127.0.0.1", "port": 1}))]);
    let spec = ContainerSpec {
        rootfs: &rootfs,
        hostname: "local-diskwatch",
        capabilities: &capabilities,
        binds: vec![
            (agent_binary(), bin_path, true),
            (repo().join("packaging/homeassistant/rootfs/run.sh"), script.clone(), true),
            (data.path().to_path_buf(), "/data".into(), false),
        ],
        env: vec![("SUPERVISOR_TOKEN".into(), "wrong".into()), ("SUPERVISOR_API".into(), stub.url())],
        cmd: std::slice::from_ref(&script),
        devices: None,
    };
    let mut container = AddonContainer::start(&spec);
    container.pid1("diskwatch", WAIT);
    let deadline = Instant::now() + WAIT;
    while ingress_get(addon::INGRESS_PROXY, "/").0 != 200 {
        assert!(Instant::now() < deadline, "no ingress page:\n{}", container.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = container.log_text();
    assert!(log.contains("No MQTT broker (HTTP 401"), "{log}");
    assert!(log.contains("Cannot read the add-on's info from the Supervisor (HTTP 401"), "{log}");
    let written = std::fs::read_to_string(data.path().join("diskwatch.toml")).expect("the written configuration");
    assert!(written.contains("[mqtt]\nenabled = false"), "{written}");
    assert!(stub.requests().iter().all(|(_, ok)| !ok), "{:?}", stub.requests());
    let status = container.stop(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{}", container.log_text());
}
