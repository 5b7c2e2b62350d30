//! Actions under the packaged unit and a real systemd (the nspawn harness of
//! tests/systemd_unit.rs): without the drop-in an unmount fails with reason `permission` and
//! PID 1's mount stays; with the drop-in installed as docs/actions.md says, the sandboxed agent
//! unmounts a filesystem mounted in PID 1's namespace, names a process holding a busy one, and
//! `systemd-analyze security` inside the container reports the exposure with the drop-in.
//!
//! Needs root, debootstrap, systemd-container and cargo-deb (scripts/setup).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::nspawn::{self, Container};
use serde_json::Value;

const UNIT: &str = "diskwatch.service";
const API: &str = "http://127.0.0.1:8377/api/v1";
const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn build_deb() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(&cargo).args(["deb", "--locked"]).current_dir(repo()).output().expect("run cargo deb");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "cargo deb failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(stdout.lines().rev().find(|l| l.trim().ends_with(".deb")).expect("a .deb path").trim())
}

/// curl in the container's network namespace with the token: (HTTP status, body).
fn curl(c: &Container, method: &str, url: &str) -> (u16, Value) {
    let out = Command::new("nsenter")
        .args(["-t", &c.leader.to_string(), "-n", "curl", "-s", "--max-time", "10", "-X", method])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}"), "-w", "\n%{http_code}", url])
        .output()
        .expect("nsenter curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

fn wait_active(c: &Container) {
    c.wait_for(Duration::from_secs(60), "the service to be active", || {
        (c.property(UNIT, "ActiveState") == "active").then_some(())
    });
    c.wait_for(Duration::from_secs(30), "the API to answer", || c.http_get(&format!("{API}/health")));
}

fn listed(c: &Container, mount_id: &str) -> bool {
    let (_, mounts) = curl(c, "GET", &format!("{API}/mounts"));
    mounts.as_array().is_some_and(|l| l.iter().any(|m| m["id"] == mount_id))
}

/// Unmounts through the API and waits for the outcome event.
fn unmount(c: &Container, mount_id: &str) -> Value {
    c.wait_for(Duration::from_secs(20), "the mount in /api/v1/mounts", || listed(c, mount_id).then_some(()));
    let (status, body) = curl(c, "POST", &format!("{API}/mounts/{mount_id}/unmount"));
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    c.wait_for(Duration::from_secs(30), "the action's outcome", || {
        let (_, page) = curl(c, "GET", &format!("{API}/events?types=action.*&limit=10000"));
        page["events"].as_array()?.iter().find(|e| e["data"]["action"]["id"] == id.as_str()).cloned()
    })
}

fn mounted_in_pid1(c: &Container, point: &str) -> bool {
    c.run(&["findmnt", "-n", point]).status.success()
}

#[test]
fn actions_under_the_real_unit_need_the_drop_in_and_act_in_pid1s_namespace() {
    if !common::require_root("actions_under_the_real_unit_need_the_drop_in_and_act_in_pid1s_namespace") {
        return;
    }
    let deb = build_deb();
    let (rootfs, _) = nspawn::rootfs();
    let _lock = common::machine_lock();
    let c = Container::boot(&rootfs, &[]);
    std::fs::copy(&deb, c.root().join("root/diskwatch.deb")).expect("copy the .deb");
    c.sh("dpkg -i /root/diskwatch.deb && rm /root/diskwatch.deb");
    wait_active(&c);

    // Actions on (unmount), with the token.
    c.sh(&format!("umask 077; printf '{TOKEN}\\n' > /etc/diskwatch/token"));
    let config = c.root().join("etc/diskwatch/config.toml");
    let shipped = std::fs::read_to_string(&config).expect("the installed config");
    let edited = shipped
        .replace("auth_token_file = \"\"", "auth_token_file = \"/etc/diskwatch/token\"")
        .replace("[actions]\nenabled = false\nallow = []", "[actions]\nenabled = true\nallow = [\"unmount\"]");
    assert_ne!(edited, shipped);
    assert!(edited.contains("allow = [\"unmount\"]"), "the [actions] section of config.example.toml moved");
    std::fs::write(&config, edited).expect("write the config");
    c.sh(&format!("systemctl restart {UNIT}"));
    wait_active(&c);
    let journal = c.sh(&format!("journalctl -u {UNIT} --no-pager -o cat -n 50"));
    assert!(journal.contains("lacks capabilities they need"), "no warning about the missing drop-in:\n{journal}");

    // Without the drop-in: refused for lack of permission, the mount stays.
    c.sh("mkdir -p /mnt/dw-act && mount -t tmpfs -o size=1m dw-act /mnt/dw-act");
    let event = unmount(&c, "mnt_dw-act");
    eprintln!("without the drop-in: {}", event["data"]["action"]["message"]);
    assert_eq!(event["type"], "action.failed", "{event:#}");
    assert_eq!(event["data"]["action"]["reason"], "permission", "{event:#}");
    assert!(mounted_in_pid1(&c, "/mnt/dw-act"));

    // The drop-in, installed as docs/actions.md says.
    c.sh("install -D -m 0644 /usr/share/diskwatch/actions.conf /etc/systemd/system/diskwatch.service.d/actions.conf");
    c.sh(&format!("systemctl daemon-reload && systemctl restart {UNIT}"));
    wait_active(&c);

    // Busy: a process of PID 1's world with its working directory inside.
    let sleeper = c.sh("cd /mnt/dw-act && (sleep 600 >/dev/null 2>&1 & echo $!)");
    let event = unmount(&c, "mnt_dw-act");
    assert_eq!(event["data"]["action"]["reason"], "busy", "{event:#}");
    let holders = event["data"]["action"]["holders"].as_array().unwrap().clone();
    assert!(holders.iter().any(|h| h["command"] == "sleep" && h["uses"][0] == "cwd"), "{holders:?}");
    // The holder's pid is as the agent's namespace numbers it; the container's is the same
    // PID namespace (the unit has no PrivatePIDs).
    assert!(
        holders.iter().any(|h| h["pid"].as_u64().map(|p| p.to_string()).as_deref() == Some(sleeper.as_str())),
        "pid {sleeper} not in {holders:?}"
    );
    c.sh(&format!("kill {sleeper}"));

    // Free: unmounted in PID 1's namespace, not only in the service's own.
    let event = unmount(&c, "mnt_dw-act");
    assert_eq!(event["type"], "action.succeeded", "{event:#}");
    assert!(!mounted_in_pid1(&c, "/mnt/dw-act"), "still mounted for PID 1");
    let audit = c.sh(&format!("journalctl -u {UNIT} --no-pager -o cat -n 50"));
    assert!(audit.contains("action succeeded") && audit.contains("token:token"), "{audit}");

    let security = c.sh(&format!("systemd-analyze security --no-pager {UNIT} | tail -1"));
    eprintln!("in the container, with the drop-in: {security}");
}
