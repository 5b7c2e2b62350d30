//! The smartctl helper's contract: the one request the agent may send over the helper's socket
//! (`diskwatch smartctl-helper`, started per connection by `diskwatch-smartctl.socket`), the
//! allow-list it is checked against, and the answer.
//!
//! The helper alone holds `CAP_SYS_RAWIO` and `CAP_SYS_ADMIN` (docs/health.md, "SMART under
//! the systemd unit"); the agent, which faces the network, keeps neither. So the allow-list
//! is the boundary: with it an agent taken over can still only ask for smartctl's read forms
//! and the self-test commands, of a whole disk's block node, never an arbitrary SG_IO or NVMe
//! admin command (`-s`, `--set`, `-r`, firmware, another device, another program).
//!
//! Wire format: one JSON line each way. Request `{"args": [...], "timeout_ms": N}`; answer
//! `{"outcome": "exited", "status": N, "stdout": "...", "stderr": "..."}` or one of the other
//! [`Response`] outcomes. The server side is [`super::helper_serve`], the client
//! [`super::helper_client`].

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The longest request line read (args of a few dozen short words, and the timeout).
pub const MAX_REQUEST: u64 = 64 * 1024;

/// One request: smartctl's arguments (the device node last) and how long the run may take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub args: Vec<String>,
    pub timeout_ms: u64,
}

/// The helper's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Response {
    /// smartctl ran and exited with `status`.
    Exited { status: i32, stdout: String, stderr: String },
    /// smartctl was ended by a signal.
    Signalled,
    /// The request is not on the allow-list (or not a request at all); nothing was run.
    Rejected { reason: String },
    /// smartctl could not be started (the helper's `--smartctl` is missing, say).
    Spawn { message: String },
    /// smartctl took longer than the request's timeout (or the helper's cap) and was killed;
    /// the answer is sent once the process is gone.
    Timeout,
}

/// A form smartctl may be asked for: the option words that say what is asked.
#[derive(Debug, Clone, Copy)]
pub struct Form {
    pub words: &'static [&'static str],
    /// Whether the form is about a disk (the device node last, `-n`/`-d` allowed) or about
    /// smartctl itself (nothing else allowed).
    pub device: bool,
    /// Who sends it, and why it is safe.
    pub why: &'static str,
}

/// **The allow-list.** Everything the agent sends smartctl; a new use adds a row here.
pub const FORMS: &[Form] = &[
    Form { words: &["--version"], device: false, why: "version detection (smartctl::version)" },
    Form { words: &["-i"], device: true, why: "power check and identity (smartctl::power, Ask::PowerCheck)" },
    Form { words: &["-a"], device: true, why: "SMART data (smartctl::power, Ask::Smart)" },
    Form { words: &["-c"], device: true, why: "capabilities: self-test durations (self-tests)" },
    Form { words: &["-l", "selftest"], device: true, why: "the self-test log (self-tests)" },
    Form { words: &["-t", "short"], device: true, why: "start a short self-test (self-tests)" },
    Form { words: &["-t", "long"], device: true, why: "start a long self-test (self-tests)" },
    Form { words: &["-X"], device: true, why: "abort a running self-test (self-tests)" },
];

/// `-n` values: the never-wake forms of smartctl::power (`standby,2` up to 7.2, `standby,2,3`).
pub const NOCHECK: &[&str] = &["standby,2", "standby,2,3"];

/// `-n never`: no power check, so it may spin a disk up. Allowed only with `-t long` alone:
/// the overdue long test an owner allowed to wake the disk (`health.self_test.wake_for_long`).
pub const NOCHECK_NEVER: &str = "never";

/// `-d` values (`[health] device_type`): the types that address the node itself. RAID
/// controller types (`megaraid,N`, `cciss,N`, `areca,N`, …) reach other disks behind the
/// node and are not allowed.
pub const DEVICE_TYPES: &[&str] = &[
    "auto",
    "ata",
    "scsi",
    "nvme",
    "sat",
    "sat,auto",
    "sat,12",
    "sat,16",
    "usbcypress",
    "usbjmicron",
    "usbprolific",
    "usbsunplus",
    "sntasmedia",
    "sntjmicron",
    "sntrealtek",
];

/// What a request asks, once its words are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The device node, when a device form is asked.
    pub devnode: Option<String>,
}

/// Checks the words of a request against the allow-list: `--json` at most once, one or more
/// distinct [`FORMS`] (`--version` only alone), at most one `-n` from [`NOCHECK`] and one `-d`
/// from [`DEVICE_TYPES`], and for device forms exactly one device node `/dev/<kernel name>`,
/// last. Anything else is refused. The node itself is checked by [`check_node`].
pub fn check_args(args: &[String]) -> Result<Checked, String> {
    let mut json = false;
    let mut forms: Vec<&Form> = Vec::new();
    let mut nocheck = false;
    let mut never = false;
    let mut device_type = false;
    let mut devnode: Option<&str> = None;
    let mut i = 0;
    while i < args.len() {
        let word = args[i].as_str();
        if devnode.is_some() {
            return Err(format!("{word:?} after the device node"));
        }
        if word == "--json" {
            if json {
                return Err("--json twice".to_owned());
            }
            json = true;
            i += 1;
            continue;
        }
        if word == "-n" || word == "-d" {
            let value = args.get(i + 1).ok_or_else(|| format!("{word} without a value"))?;
            let (seen, table) = if word == "-n" { (&mut nocheck, NOCHECK) } else { (&mut device_type, DEVICE_TYPES) };
            if *seen {
                return Err(format!("{word} twice"));
            }
            let is_never = word == "-n" && value == NOCHECK_NEVER;
            if !table.contains(&value.as_str()) && !is_never {
                return Err(format!("{word} {value:?} is not allowed"));
            }
            *seen = true;
            never |= is_never;
            i += 2;
            continue;
        }
        if let Some(form) = FORMS.iter().find(|f| starts_with_words(&args[i..], f.words)) {
            if forms.iter().any(|f| f.words[0] == form.words[0]) {
                return Err(format!("{} twice", form.words[0]));
            }
            forms.push(form);
            i += form.words.len();
            continue;
        }
        if word.starts_with("/dev/") {
            devnode = Some(word);
            i += 1;
            continue;
        }
        return Err(format!("{word:?} is not allowed"));
    }
    if forms.is_empty() {
        return Err("no smartctl form asked".to_owned());
    }
    let about_device = forms[0].device;
    if forms.iter().any(|f| f.device != about_device) {
        return Err("--version goes alone".to_owned());
    }
    if !about_device {
        if nocheck || device_type || devnode.is_some() {
            return Err("--version takes no device, -n or -d".to_owned());
        }
        return Ok(Checked { devnode: None });
    }
    if never && !(forms.len() == 1 && forms[0].words == ["-t", "long"]) {
        return Err("-n never only with -t long alone (an overdue long test allowed to wake)".to_owned());
    }
    let node = devnode.ok_or_else(|| "no device node".to_owned())?;
    let name = &node["/dev/".len()..];
    let plain = !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !plain {
        return Err(format!("{node:?} is not /dev/<kernel name>"));
    }
    Ok(Checked { devnode: Some(node.to_owned()) })
}

fn starts_with_words(rest: &[String], words: &[&str]) -> bool {
    rest.len() >= words.len() && rest.iter().zip(words).all(|(a, b)| a == b)
}

/// Checks that `node` (already `/dev/<kernel name>`) is a block device node itself (not a
/// symlink, not a character device, not a file) of a whole disk the kernel knows: its
/// `<sys>/dev/block/<major>:<minor>` exists and has no `partition` attribute.
pub fn check_node(node: &Path, sys: &Path) -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::symlink_metadata(node).map_err(|e| format!("{}: {e}", node.display()))?;
    if !meta.file_type().is_block_device() {
        return Err(format!("{} is not a block device node", node.display()));
    }
    let rdev = meta.rdev();
    is_whole_disk(sys, libc::major(rdev), libc::minor(rdev)).map_err(|why| format!("{}: {why}", node.display()))
}

/// `Ok` when `<sys>/dev/block/<major>:<minor>` is a disk, not a partition.
pub fn is_whole_disk(sys: &Path, major: u32, minor: u32) -> Result<(), String> {
    let dir = sys.join(format!("dev/block/{major}:{minor}"));
    if !dir.exists() {
        return Err(format!("no block device {major}:{minor} in {}", sys.display()));
    }
    if dir.join("partition").exists() {
        return Err(format!("{major}:{minor} is a partition, not a disk"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument list the agent itself builds passes; the waking form only as allowed.
    #[test]
    fn every_form_the_agent_sends_is_allowed() {
        use crate::model::selftest::SelfTestKind;
        use crate::smartctl::power::{args, Ask, Nocheck};
        use crate::smartctl::selftest::{log_args, start_args};
        for nocheck in [Nocheck::WithUnsupportedExit, Nocheck::StandbyOnly] {
            for device_type in [None, Some("sat")] {
                let mut lists = vec![
                    args(Ask::PowerCheck, nocheck, "/dev/sda", device_type),
                    args(Ask::Smart, nocheck, "/dev/sda", device_type),
                    log_args(nocheck, "/dev/sda", device_type),
                ];
                for kind in [SelfTestKind::Short, SelfTestKind::Long] {
                    lists.push(start_args(kind, nocheck, false, "/dev/sda", device_type));
                }
                lists.push(start_args(SelfTestKind::Long, nocheck, true, "/dev/sda", device_type));
                for list in lists {
                    let checked = check_args(&list).unwrap_or_else(|e| panic!("{list:?} refused: {e}"));
                    assert_eq!(checked.devnode.as_deref(), Some("/dev/sda"));
                }
                let wake_short = start_args(SelfTestKind::Short, nocheck, true, "/dev/sda", device_type);
                assert!(check_args(&wake_short).is_err(), "{wake_short:?}");
            }
        }
        assert!(check_args(&words("--json -a -n never /dev/sda")).is_err());
        assert!(check_args(&words("--json -t long -a -n never /dev/sda")).is_err());
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn ok(s: &str) -> Option<String> {
        check_args(&words(s)).unwrap_or_else(|e| panic!("{s:?} refused: {e}")).devnode
    }

    fn refused(s: &str) -> String {
        match check_args(&words(s)) {
            Ok(c) => panic!("{s:?} allowed: {c:?}"),
            Err(e) => e,
        }
    }

    /// Every argument list the agent itself builds passes (smartctl::power::args, version).
    #[test]
    fn the_agents_own_forms_pass() {
        use crate::smartctl::power::{args, Ask, Nocheck};
        for ask in [Ask::PowerCheck, Ask::Smart] {
            for nocheck in [Nocheck::WithUnsupportedExit, Nocheck::StandbyOnly] {
                for t in [None, Some("sat"), Some("nvme"), Some("sat,12"), Some("")] {
                    let a = args(ask, nocheck, "/dev/sdb", t);
                    assert_eq!(check_args(&a), Ok(Checked { devnode: Some("/dev/sdb".into()) }), "{a:?}");
                }
            }
        }
        assert_eq!(ok("--json --version"), None);
        assert_eq!(ok("--version"), None);
        assert_eq!(ok("--json -a -n standby,2,3 /dev/nvme0n1").as_deref(), Some("/dev/nvme0n1"));
    }

    #[test]
    fn the_self_test_forms_pass() {
        for s in [
            "--json -t short -n standby,2,3 /dev/sda",
            "--json -t long /dev/sda",
            "--json -l selftest -n standby,2 -d sat /dev/sda",
            "--json -c -n standby,2,3 /dev/sda",
            "--json -X /dev/sda",
            "--json -c -l selftest -n standby,2,3 /dev/sda",
            "-d sat --json -n standby,2,3 -t short /dev/sda",
        ] {
            assert_eq!(ok(s).as_deref(), Some("/dev/sda"), "{s}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for s in [
            // Settings and writes.
            "--json -s on /dev/sda",
            "-s on /dev/sda",
            "--json --set=standby,now /dev/sda",
            "--json --set standby,now /dev/sda",
            "--json -o on /dev/sda",
            "--json -S on /dev/sda",
            "--json -t offline /dev/sda",
            "--json -t select,0-100 /dev/sda",
            "--json -t force /dev/sda",
            "--json -l xerror /dev/sda",
            "--json -x /dev/sda",
            "--json -r ioctl,2 -a /dev/sda",
            "--json -a -q silent /dev/sda",
            "-j -a /dev/sda",
            "--json=c -a /dev/sda",
            // Other devices, other forms of the node.
            "--json -a /dev/../etc/shadow",
            "--json -a /dev/disk/by-id/ata-X",
            "--json -a /dev/./sda",
            "--json -a /dev/-sda",
            "--json -a /dev/",
            "--json -a /etc/passwd",
            "--json -a sda",
            "--json -a /dev/sda /dev/sdb",
            "--json -a -d megaraid,0 /dev/sda",
            "--json -a -d cciss,1 /dev/sda",
            "--json -a -d test /dev/sda",
            // Extra, repeated or misplaced words.
            "--json -a /dev/sda -s on",
            "--json -a /dev/sda extra",
            "--json -a -a /dev/sda",
            "--json --json -a /dev/sda",
            "--json -a -n standby,2 -n standby,2,3 /dev/sda",
            "--json -a -n never /dev/sda",
            "--json -a -n standby /dev/sda",
            "--json -a -n",
            "--json -t short -t long /dev/sda",
            "--json -t /dev/sda",
            "--json -l /dev/sda",
            // No form, no device, device where none belongs.
            "--json /dev/sda",
            "--json -a",
            "",
            "--json --version /dev/sda",
            "--json --version -a /dev/sda",
            "--version -n standby,2",
        ] {
            let why = refused(s);
            assert!(!why.is_empty(), "{s}");
        }
        assert!(check_args(&["--json".into(), "-a".into(), "/dev/sd a".into()]).is_err());
        assert!(check_args(&["--json".into(), "-a".into(), "/dev/sda\n".into()]).is_err());
        assert!(check_args(&["--json".into(), "-a".into(), "/dev/sda;reboot".into()]).is_err());
    }

    #[test]
    fn only_block_nodes_of_whole_disks() {
        let sys = tempfile::tempdir().unwrap();
        // /dev/null: a character device; a file; a symlink to a file; a missing node.
        assert!(check_node(Path::new("/dev/null"), sys.path()).unwrap_err().contains("not a block device"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sda");
        std::fs::write(&file, "").unwrap();
        assert!(check_node(&file, sys.path()).unwrap_err().contains("not a block device"));
        let link = dir.path().join("sdb");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(check_node(&link, sys.path()).unwrap_err().contains("not a block device"));
        assert!(check_node(&dir.path().join("missing"), sys.path()).is_err());
        // The sysfs side: a disk passes, a partition and an unknown number do not.
        let disk = sys.path().join("dev/block/8:0");
        let part = sys.path().join("dev/block/8:1");
        std::fs::create_dir_all(&disk).unwrap();
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(part.join("partition"), "1\n").unwrap();
        assert_eq!(is_whole_disk(sys.path(), 8, 0), Ok(()));
        assert!(is_whole_disk(sys.path(), 8, 1).unwrap_err().contains("partition"));
        assert!(is_whole_disk(sys.path(), 8, 16).unwrap_err().contains("no block device"));
    }

    #[test]
    fn wire_format() {
        let r: Request = serde_json::from_str(r#"{"args":["--json","--version"],"timeout_ms":1000}"#).unwrap();
        assert_eq!(r.args, ["--json", "--version"]);
        assert!(serde_json::from_str::<Request>(r#"{"args":[],"timeout_ms":1,"program":"/bin/sh"}"#).is_err());
        let a = Response::Exited { status: 2, stdout: "x".into(), stderr: String::new() };
        let line = serde_json::to_string(&a).unwrap();
        assert_eq!(line, r#"{"outcome":"exited","status":2,"stdout":"x","stderr":""}"#);
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), a);
        assert_eq!(serde_json::to_string(&Response::Timeout).unwrap(), r#"{"outcome":"timeout"}"#);
    }
}
