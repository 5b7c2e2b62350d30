//! The wake matrix's systemd row as a real install sees it (issue 24, docs/sleep.md): the agent
//! (the real binary) runs on the host, in the initial PID and cgroup namespaces, and the process
//! that wakes the disk is a unit of a real systemd booted as PID 1 in a `systemd-nspawn`
//! container (tests/common/nspawn.rs). The loop disk's mounted ext4 is bound into the container;
//! the container's systemd starts `coldreader` (a copy of tail) as wake-reader.service, which
//! reads a cold file there; the recorder smartctl says standby, so its first request is the wake.
//!
//! tests/systemd_smart.rs has the same row with the agent inside the container, where the
//! trace's host pids cannot be resolved (its PID namespace): `unit` is null there.
//! Needs root, debootstrap and systemd-container (scripts/setup); with CI=true it fails when it
//! cannot run.

mod common;

use common::nspawn::{self, Container};
use common::wake::{describe, drop_caches, provoke, Agent, Fixture, Replay, ACTIVE, WAIT};
use common::{machine_lock, require_root};

const UNIT: &str = "wake-reader.service";

/// `NSpid:` of a host pid: its number in each PID namespace, outermost first.
fn ns_pids(pid: u64) -> Vec<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:")).unwrap_or("");
    line.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_by_a_unit_of_a_containers_systemd_is_named_by_the_host_agent() {
    if !require_root("a_wake_by_a_unit_of_a_containers_systemd_is_named_by_the_host_agent") {
        return;
    }
    // Slow and touching nothing shared: before the machine lock.
    let (rootfs, _) = tokio::task::block_in_place(nspawn::rootfs);
    let _lock = machine_lock();
    let replay = Replay::new();
    // Dropped after the container (declared before it): unmounted and detached last.
    let fx = Fixture::new();
    replay.map(&fx.disk.device, ACTIVE);
    let bind = format!("--bind={}:/srv/wake", fx.mount.target.display());
    let c = tokio::task::block_in_place(|| Container::boot(&rootfs, &[&bind]));
    eprintln!("container booted in {:.1} s ({})", c.boot.as_secs_f64(), c.state);
    std::fs::copy("/usr/bin/tail", c.root().join("usr/local/bin/coldreader")).expect("copy tail into the container");
    assert_eq!(c.sh("test -f /srv/wake/cold && echo bound"), "bound");

    let agent = Agent::start(&replay, "").await;
    let name = fx.disk.name();
    agent
        .wait_disk(&name, "active with a sleep record", |d| d["power_state"] == "active" && d["sleep"].is_object())
        .await;

    drop_caches();
    let wake = provoke(&agent, &replay, &fx, WAIT, || {
        c.sh(&format!(
            "systemd-run --quiet --unit={UNIT} -p StandardOutput=null /usr/local/bin/coldreader -f /srv/wake/cold"
        ));
        None
    })
    .await;
    eprintln!("named: {}", describe(&wake));
    let wake = wake.unwrap_or_else(|| panic!("no disk.woken within {WAIT:?}\n{}", agent.log()));
    eprintln!("disk.woken: {wake}");
    // The traced pid is the unit's main process, as the host numbers it: its number in the
    // container's PID namespace (the innermost) is the one the container's systemd knows.
    let main_pid: u64 = c.property(UNIT, "MainPID").parse().expect("MainPID");
    let pid = wake["pid"].as_u64().unwrap_or_else(|| panic!("no pid: {wake}"));
    let nspid = ns_pids(pid);
    eprintln!("traced pid {pid}: NSpid {nspid:?}, {UNIT}'s MainPID in the container {main_pid}");
    let _ = c.run(&["systemctl", "stop", UNIT]);
    assert_eq!(nspid.len(), 2, "the reader is not in the container's own PID namespace: {nspid:?}");
    assert_eq!(nspid.last(), Some(&main_pid), "the traced process is not {UNIT}'s");

    assert_eq!(wake["comm"], "coldreader", "{wake}");
    assert!(wake["op"] == "read" || wake["op"] == "metadata", "{wake}");
    assert_eq!(wake["unit"], UNIT, "{wake}");
    // The whole path as the host sees it: the container's cgroup, then its systemd's slice.
    let cgroup = wake["cgroup"].as_str().unwrap_or_else(|| panic!("no cgroup: {wake}"));
    assert!(cgroup.ends_with(&format!("/system.slice/{UNIT}")), "{wake}");
    assert_ne!(cgroup, format!("/system.slice/{UNIT}"), "not under the container's cgroup: {wake}");
    drop(agent);
    drop(c);
    drop(fx);
}
