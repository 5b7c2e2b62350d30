//! The node id: the name of this agent in event sources, MQTT topics, client ids and Home
//! Assistant unique_ids, so two agents on one broker must never share it.
//!
//! Order: `node_id` from the configuration; else the id remembered in `state_dir/node-id`;
//! else, for an install that already has state from a version that used the bare hostname,
//! that hostname (so its topics and HA entities stay); else the hostname plus eight hex
//! digits of an application-specific hash of the machine id (two boxes both called `nas`
//! differ), or of a random id when the machine has none. Whatever was chosen is written to
//! `state_dir/node-id` at start, so renaming the host later changes nothing.

use std::io::Write;
use std::path::Path;

use crate::model::sanitize_id;

/// Where the remembered id lives inside `state_dir`.
pub const NODE_ID_FILE: &str = "node-id";
/// Where the machine id is looked for (systemd's, then D-Bus's older copy).
pub const MACHINE_ID_FILES: &[&str] = &["/etc/machine-id", "/var/lib/dbus/machine-id"];
/// Files only an install from before the node-id file has in its `state_dir`.
const LEGACY_STATE: &[&str] = &["events.jsonl", "mqtt-objects.json"];
/// The application id of the machine-id hash (as systemd's `sd_id128_get_machine_app_specific`
/// does it: HMAC-SHA256 keyed with the machine id), so the raw machine id never leaves the host.
/// `systemd-id128 machine-id --app-specific=<this>` prints the same first eight hex digits.
pub const APP_ID: [u8; 16] =
    [0x7d, 0x1a, 0x4e, 0x0c, 0x93, 0x5b, 0x4f, 0x21, 0x8e, 0x66, 0x0b, 0xd2, 0x3c, 0x41, 0x9f, 0x57];

/// Where the node id in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Configured,
    Remembered,
    /// An install from before node ids were remembered: its hostname id is kept.
    Legacy,
    MachineId,
    /// No machine id: a random suffix, remembered from then on.
    Random,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeId {
    pub id: String,
    pub origin: Origin,
}

/// The node id in force; reads, never writes.
pub fn resolve(configured: &str, state_dir: &Path, machine_id_files: &[&str]) -> NodeId {
    if !configured.is_empty() {
        return NodeId { id: configured.to_owned(), origin: Origin::Configured };
    }
    if let Some(id) = remembered(state_dir) {
        return NodeId { id, origin: Origin::Remembered };
    }
    let host = hostname();
    if LEGACY_STATE.iter().any(|f| state_dir.join(f).exists()) {
        return NodeId { id: host, origin: Origin::Legacy };
    }
    match machine_id(machine_id_files) {
        Some(machine) => NodeId { id: format!("{host}-{}", app_hash(&machine)), origin: Origin::MachineId },
        None => {
            let suffix: u32 = rand::random();
            NodeId { id: format!("{host}-{suffix:08x}"), origin: Origin::Random }
        }
    }
}

/// Writes the id to `state_dir/node-id` unless it came from the configuration or is already
/// there (atomically: a crash leaves the old file or the new one).
pub fn remember(state_dir: &Path, node: &NodeId) -> std::io::Result<()> {
    if matches!(node.origin, Origin::Configured | Origin::Remembered) {
        return Ok(());
    }
    std::fs::create_dir_all(state_dir)?;
    let tmp = state_dir.join(format!(".{NODE_ID_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(format!("{}\n", node.id).as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, state_dir.join(NODE_ID_FILE))?;
    std::fs::File::open(state_dir)?.sync_all()
}

fn remembered(state_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(state_dir.join(NODE_ID_FILE)).ok()?;
    let id = text.trim();
    (!id.is_empty() && sanitize_id(id) == id).then(|| id.to_owned())
}

/// The sanitised short hostname: the readable part of the id.
pub fn hostname() -> String {
    let host =
        nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".to_owned());
    sanitize_id(host.split('.').next().filter(|h| !h.is_empty()).unwrap_or("localhost"))
}

/// The 128-bit machine id from the first file that holds one (32 hex digits).
fn machine_id(files: &[&str]) -> Option<[u8; 16]> {
    files.iter().find_map(|f| parse_machine_id(&std::fs::read_to_string(f).ok()?))
}

fn parse_machine_id(text: &str) -> Option<[u8; 16]> {
    let hex = text.trim();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    // systemd writes "uninitialized" or all zeros in images that have not booted yet.
    (out != [0; 16]).then_some(out)
}

/// First four bytes of HMAC-SHA256(key = machine id, message = [`APP_ID`]) in hex.
fn app_hash(machine: &[u8; 16]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, machine);
    let tag = ring::hmac::sign(&key, &APP_ID);
    tag.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine_file(dir: &Path, name: &str, id: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, format!("{id}\n")).unwrap();
        p.to_str().unwrap().to_owned()
    }

    #[test]
    fn two_boxes_with_one_hostname_differ_and_each_stays_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = machine_file(dir.path(), "a", "0123456789abcdef0123456789abcdef");
        let b = machine_file(dir.path(), "b", "fedcba9876543210fedcba9876543210");
        let (sa, sb) = (dir.path().join("sa"), dir.path().join("sb"));
        let na = resolve("", &sa, &[&a]);
        let nb = resolve("", &sb, &[&b]);
        assert_eq!(na.origin, Origin::MachineId);
        assert_ne!(na.id, nb.id);
        assert!(na.id.starts_with(&format!("{}-", hostname())), "{}", na.id);
        assert_eq!(sanitize_id(&na.id), na.id);
        // Remembered: a later start (new hostname, other machine id) keeps it.
        remember(&sa, &na).unwrap();
        let again = resolve("", &sa, &[&b]);
        assert_eq!(again, NodeId { id: na.id.clone(), origin: Origin::Remembered });
    }

    #[test]
    fn an_existing_install_keeps_its_hostname_id() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("events.jsonl"), "").unwrap();
        let a = machine_file(dir.path(), "a", "0123456789abcdef0123456789abcdef");
        let node = resolve("", dir.path(), &[&a]);
        assert_eq!(node, NodeId { id: hostname(), origin: Origin::Legacy });
        remember(dir.path(), &node).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join(NODE_ID_FILE)).unwrap(), format!("{}\n", hostname()));
    }

    #[test]
    fn configured_wins_and_missing_machine_id_is_random() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve("nas-1", dir.path(), MACHINE_ID_FILES).origin, Origin::Configured);
        let zeros = machine_file(dir.path(), "z", "00000000000000000000000000000000");
        let node = resolve("", &dir.path().join("s"), &[&zeros, "/nonexistent"]);
        assert_eq!(node.origin, Origin::Random);
        assert_eq!(parse_machine_id("uninitialized"), None);
    }

    /// The hash is systemd's app-specific machine id: the same digits as `systemd-id128`.
    #[test]
    fn hash_matches_systemd_app_specific_id() {
        let Ok(out) = std::process::Command::new("systemd-id128")
            .args(["machine-id", "--app-specific=7d1a4e0c935b4f218e660bd23c419f57"])
            .output()
        else {
            assert!(std::env::var_os("CI").is_none(), "systemd-id128 is needed in CI");
            return;
        };
        let Some(machine) = machine_id(MACHINE_ID_FILES) else { return };
        let printed = String::from_utf8_lossy(&out.stdout).replace('-', "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(&printed[..8], app_hash(&machine));
    }
}
