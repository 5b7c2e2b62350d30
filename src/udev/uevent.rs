//! Parsing of kernel uevents: netlink messages (`add@/devices/...\0KEY=VALUE\0...`)
//! and sysfs `uevent` files (`KEY=VALUE` lines).

use std::collections::BTreeMap;

/// Device properties by name, as in a uevent or the udev database.
pub type Props = BTreeMap<String, String>;

/// What happened to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Add,
    Remove,
    Change,
    /// move, online, offline, bind, unbind: re-read like a change.
    Other,
}

impl Action {
    pub fn parse(s: &str) -> Self {
        match s {
            "add" => Action::Add,
            "remove" => Action::Remove,
            "change" => Action::Change,
            _ => Action::Other,
        }
    }
}

/// One block-device event, from the kernel or from udevd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    pub action: Action,
    /// Path below /sys, e.g. `/devices/virtual/block/loop0`.
    pub devpath: String,
    /// Kernel name (last component of devpath).
    pub kernel_name: String,
    pub props: Props,
}

impl Uevent {
    pub fn subsystem(&self) -> Option<&str> {
        self.props.get("SUBSYSTEM").map(String::as_str)
    }
}

/// Parses one kernel netlink message. Returns None for messages that are not
/// kernel uevents (udevd's `libudev` messages, garbage) or lack ACTION/DEVPATH.
pub fn parse_kernel_message(buf: &[u8]) -> Option<Uevent> {
    let mut fields = buf.split(|b| *b == 0);
    let header = std::str::from_utf8(fields.next()?).ok()?;
    // A kernel message starts with `<action>@<devpath>`; udevd's start with `libudev`.
    if !header.contains('@') {
        return None;
    }
    let mut props = Props::new();
    for field in fields {
        let Ok(field) = std::str::from_utf8(field) else { continue };
        if let Some((k, v)) = field.split_once('=') {
            props.insert(k.to_owned(), v.to_owned());
        }
    }
    from_props(props)
}

/// Builds an event from a complete property set (needs ACTION and DEVPATH).
pub fn from_props(props: Props) -> Option<Uevent> {
    let action = Action::parse(props.get("ACTION")?);
    let devpath = props.get("DEVPATH")?.clone();
    let kernel_name = devpath.rsplit('/').next().unwrap_or_default().to_owned();
    if kernel_name.is_empty() {
        return None;
    }
    Some(Uevent { action, devpath, kernel_name, props })
}

/// Parses a sysfs `uevent` file or a udev database's `E:` lines into properties.
pub fn parse_uevent_file(text: &str) -> Props {
    text.lines()
        .filter_map(|line| line.strip_prefix("E:").unwrap_or(line).split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim_end().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_kernel_message() {
        let msg = b"change@/devices/virtual/block/loop3\0ACTION=change\0DEVPATH=/devices/virtual/block/loop3\0\
SUBSYSTEM=block\0MAJOR=7\0MINOR=3\0DEVNAME=loop3\0DEVTYPE=disk\0DISK_MEDIA_CHANGE=1\0SEQNUM=4242\0";
        let ev = parse_kernel_message(msg).unwrap();
        assert_eq!(ev.action, Action::Change);
        assert_eq!(ev.devpath, "/devices/virtual/block/loop3");
        assert_eq!(ev.kernel_name, "loop3");
        assert_eq!(ev.subsystem(), Some("block"));
        assert_eq!(ev.props["DISK_MEDIA_CHANGE"], "1");
        assert_eq!(ev.props["SEQNUM"], "4242");
    }

    #[test]
    fn rejects_udevd_messages_and_incomplete_ones() {
        assert!(parse_kernel_message(b"libudev\0\xfe\xed\xca\xfe").is_none());
        assert!(parse_kernel_message(b"add@/devices/x\0SUBSYSTEM=block\0").is_none());
        assert!(parse_kernel_message(b"").is_none());
    }

    #[test]
    fn actions() {
        assert_eq!(Action::parse("add"), Action::Add);
        assert_eq!(Action::parse("remove"), Action::Remove);
        assert_eq!(Action::parse("move"), Action::Other);
    }

    #[test]
    fn parses_uevent_files_and_udev_db() {
        let p = parse_uevent_file("MAJOR=259\nMINOR=1\nDEVNAME=nvme0n1p1\nDEVTYPE=partition\nPARTN=1\n");
        assert_eq!(p["DEVTYPE"], "partition");
        assert_eq!(p["PARTN"], "1");
        let db = parse_uevent_file("S:disk/by-uuid/abc\nI:123\nE:ID_FS_TYPE=ext4\nE:ID_FS_LABEL=data one\nG:systemd\n");
        assert_eq!(db["ID_FS_TYPE"], "ext4");
        assert_eq!(db["ID_FS_LABEL"], "data one");
        assert!(!db.contains_key("S:disk/by-uuid/abc"));
    }
}
