//! The parser of `/proc/mdstat` (drivers/md/md.c `md_seq_show`): one block per array, the
//! member list with slots and flags, the `[n/m] [UU_]` status and the sync progress line.
//!
//! A text that does not end with the `unused devices:` line is truncated (a read cut short),
//! and the whole text is refused, so the caller keeps its last good state.

/// Personalities the kernel registers (`Personalities :` line); anything else is refused.
const PERSONALITIES: &[&str] =
    &["linear", "multipath", "raid0", "raid1", "raid4", "raid5", "raid6", "raid10", "faulty"];

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MdstatError {
    #[error("mdstat is truncated: no `unused devices:` line at the end")]
    Truncated,
    #[error("mdstat array {array}: unknown personality {personality:?}")]
    UnknownPersonality { array: String, personality: String },
    #[error("mdstat array {array} lists no member devices")]
    NoMembers { array: String },
    #[error("mdstat line {line}: {reason}: {text:?}")]
    BadLine { line: usize, reason: &'static str, text: String },
}

/// One member as `/proc/mdstat` lists it: `sdb1[2](F)`.
#[derive(Debug, Clone, PartialEq)]
pub struct MdstatMember {
    pub name: String,
    /// The descriptor number in brackets (not the slot in the array).
    pub number: u32,
    pub faulty: bool,
    pub spare: bool,
    pub write_mostly: bool,
    pub replacement: bool,
    pub journal: bool,
}

/// A running or pending sync: `recovery = 12.6% (37043392/292945152) finish=127.5min`.
#[derive(Debug, Clone, PartialEq)]
pub struct MdstatSync {
    /// recovery, resync, reshape, check or repair.
    pub action: String,
    /// Percent done; `None` for `resync=DELAYED` / `PENDING`.
    pub percent: Option<f64>,
    pub finish_seconds: Option<u64>,
    /// `DELAYED` or `PENDING` when the sync waits.
    pub waiting: Option<String>,
}

/// One array block.
#[derive(Debug, Clone, PartialEq)]
pub struct MdstatArray {
    pub name: String,
    pub active: bool,
    /// `(read-only)` or `(auto-read-only)`.
    pub read_only: bool,
    pub personality: Option<String>,
    pub members: Vec<MdstatMember>,
    /// Size in 1 KiB blocks.
    pub blocks: Option<u64>,
    /// `[raid_disks/working]`.
    pub raid_disks: Option<u32>,
    pub working_disks: Option<u32>,
    /// `[UU_]`: one flag per slot, true when the slot is up.
    pub slots_up: Vec<bool>,
    /// raid10's layout in md's encoding (near copies in bits 0–7, far copies in bits 8–15,
    /// bit 16 for the offset form), from `2 near-copies` / `2 far-copies` / `2 offset-copies`.
    pub raid10_layout: Option<u32>,
    pub sync: Option<MdstatSync>,
}

impl MdstatArray {
    /// Members missing from their slots (`_` in the status), from the status line.
    pub fn degraded(&self) -> Option<u32> {
        match (self.raid_disks, self.working_disks) {
            (Some(n), Some(w)) => Some(n.saturating_sub(w)),
            _ => None,
        }
    }
}

/// Parses a whole `/proc/mdstat` text.
pub fn parse(text: &str) -> Result<Vec<MdstatArray>, MdstatError> {
    let lines: Vec<&str> = text.lines().collect();
    if !lines.iter().rev().find(|l| !l.trim().is_empty()).is_some_and(|l| l.starts_with("unused devices:")) {
        return Err(MdstatError::Truncated);
    }
    let mut arrays: Vec<MdstatArray> = Vec::new();
    for (index, raw) in lines.iter().enumerate() {
        let line = raw.trim();
        let number = index + 1;
        if line.is_empty() || line.starts_with("Personalities") || line.starts_with("unused devices:") {
            continue;
        }
        if !raw.starts_with(char::is_whitespace) && line.contains(" : ") {
            arrays.push(parse_head(line, number)?);
            continue;
        }
        let Some(array) = arrays.last_mut() else {
            return Err(bad(number, "detail line before any array", line));
        };
        parse_detail(array, line, number)?;
    }
    for array in &arrays {
        if array.members.is_empty() {
            return Err(MdstatError::NoMembers { array: array.name.clone() });
        }
        if array.blocks.is_none() {
            // Every array block has its size line; a block without one was cut short.
            return Err(MdstatError::Truncated);
        }
    }
    Ok(arrays)
}

fn bad(line: usize, reason: &'static str, text: &str) -> MdstatError {
    MdstatError::BadLine { line, reason, text: text.to_owned() }
}

/// `md6 : active (auto-read-only) raid1 sdb2[2](F) sdc[1](S) sda2[0]`
fn parse_head(line: &str, number: usize) -> Result<MdstatArray, MdstatError> {
    let (name, rest) = line.split_once(" : ").ok_or_else(|| bad(number, "no ` : ` after the name", line))?;
    let name = name.trim();
    if !name.starts_with("md") {
        return Err(bad(number, "array name does not start with md", line));
    }
    let mut words = rest.split_whitespace().peekable();
    let active = match words.next() {
        Some("active") => true,
        Some("inactive") => false,
        _ => return Err(bad(number, "neither active nor inactive", line)),
    };
    let mut array = MdstatArray {
        name: name.to_owned(),
        active,
        read_only: false,
        personality: None,
        members: Vec::new(),
        blocks: None,
        raid_disks: None,
        working_disks: None,
        slots_up: Vec::new(),
        raid10_layout: None,
        sync: None,
    };
    while let Some(word) = words.peek() {
        if word.starts_with('(') && word.ends_with(')') {
            array.read_only |= word.contains("read-only");
            words.next();
        } else {
            break;
        }
    }
    for word in words {
        if let Some(member) = parse_member(word) {
            array.members.push(member);
        } else if array.personality.is_none() && array.members.is_empty() {
            if !PERSONALITIES.contains(&word) {
                return Err(MdstatError::UnknownPersonality { array: array.name, personality: word.to_owned() });
            }
            array.personality = Some(word.to_owned());
        } else {
            return Err(bad(number, "not a member device", word));
        }
    }
    Ok(array)
}

/// `sdb2[2](F)` → member; `None` when the word has no `[n]`.
fn parse_member(word: &str) -> Option<MdstatMember> {
    let open = word.find('[')?;
    let close = word[open..].find(']')? + open;
    let number = word[open + 1..close].parse().ok()?;
    let flags = &word[close + 1..];
    Some(MdstatMember {
        name: word[..open].to_owned(),
        number,
        faulty: flags.contains("(F)"),
        spare: flags.contains("(S)"),
        write_mostly: flags.contains("(W)"),
        replacement: flags.contains("(R)"),
        journal: flags.contains("(J)"),
    })
}

fn parse_detail(array: &mut MdstatArray, line: &str, number: usize) -> Result<(), MdstatError> {
    if let Some(blocks) = line.split_once(" blocks").map(|(b, _)| b) {
        if let Ok(blocks) = blocks.trim().parse() {
            array.blocks = Some(blocks);
            parse_status(array, line);
            return Ok(());
        }
    }
    if line.starts_with("bitmap:") {
        return Ok(());
    }
    for action in ["recovery", "resync", "reshape", "check", "repair"] {
        if let Some(sync) = parse_sync(line, action) {
            array.sync = Some(sync);
            return Ok(());
        }
    }
    Err(bad(number, "unrecognised detail line", line))
}

/// `[2/1] [U_]` at the end of the size line.
fn parse_status(array: &mut MdstatArray, line: &str) {
    let words: Vec<&str> = line.split_whitespace().collect();
    for pair in words.windows(2) {
        // raid10's status (drivers/md/raid10.c raid10_status): `2 near-copies`, `2 far-copies`
        // or `2 offset-copies`.
        let Ok(copies) = pair[0].parse::<u32>() else { continue };
        array.raid10_layout = match pair[1] {
            "near-copies" => Some(copies | 1 << 8),
            "far-copies" => Some(1 | copies << 8),
            "offset-copies" => Some(1 | copies << 8 | 1 << 16),
            _ => continue,
        };
    }
    for part in words {
        let Some(inner) = part.strip_prefix('[').and_then(|p| p.strip_suffix(']')) else { continue };
        if let Some((n, w)) = inner.split_once('/') {
            if let (Ok(n), Ok(w)) = (n.parse(), w.parse()) {
                array.raid_disks = Some(n);
                array.working_disks = Some(w);
            }
        } else if !inner.is_empty() && inner.chars().all(|c| c == 'U' || c == '_') {
            array.slots_up = inner.chars().map(|c| c == 'U').collect();
        }
    }
}

/// `[=>....]  recovery =  8.5% (16775552/195310144) finish=17.0min speed=259783K/sec`,
/// or `resync=DELAYED`.
fn parse_sync(line: &str, action: &str) -> Option<MdstatSync> {
    let at = line.find(action)?;
    let rest = line[at + action.len()..].trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    if rest.starts_with("DELAYED") || rest.starts_with("PENDING") {
        let waiting = rest.split_whitespace().next().map(str::to_owned);
        return Some(MdstatSync { action: action.to_owned(), percent: None, finish_seconds: None, waiting });
    }
    let percent = rest.split('%').next()?.trim().parse().ok()?;
    let finish_seconds = rest
        .split_whitespace()
        .find_map(|w| w.strip_prefix("finish="))
        .and_then(|f| f.strip_suffix("min"))
        .and_then(|m| m.parse::<f64>().ok())
        .map(|minutes| (minutes * 60.0).round() as u64);
    Some(MdstatSync { action: action.to_owned(), percent: Some(percent), finish_seconds, waiting: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mdstat");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture")
    }

    #[test]
    fn clean_raid1_pair() {
        let arrays = parse(&fixture("pymdstat/mdstat.04")).expect("parses");
        assert_eq!(arrays.len(), 4);
        let md1 = &arrays[0];
        assert_eq!(md1.name, "md1");
        assert!(md1.active);
        assert_eq!(md1.personality.as_deref(), Some("raid1"));
        assert_eq!(md1.members.len(), 2);
        assert_eq!((md1.raid_disks, md1.working_disks), (Some(2), Some(2)));
        assert_eq!(md1.slots_up, vec![true, true]);
        assert_eq!(md1.blocks, Some(136448));
        assert_eq!(md1.sync, None);
    }

    #[test]
    fn degraded_raid5_recovering() {
        let arrays = parse(&fixture("pymdstat/mdstat.05")).expect("parses");
        let md = &arrays[0];
        assert_eq!(md.name, "md127");
        assert_eq!(md.degraded(), Some(1));
        let sync = md.sync.as_ref().expect("sync line");
        assert_eq!(sync.action, "recovery");
        assert_eq!(sync.percent, Some(12.6));
        assert_eq!(sync.finish_seconds, Some(7650));
    }

    #[test]
    fn faulty_and_inactive_members() {
        let arrays = parse(&fixture("pymdstat/mdstat.07")).expect("parses");
        let faulty: Vec<_> = arrays[0].members.iter().filter(|m| m.faulty).map(|m| m.name.as_str()).collect();
        assert_eq!(faulty, vec!["sde1"]);
        assert_eq!(arrays[0].degraded(), Some(2));
        let arrays = parse(&fixture("pymdstat/mdstat.09")).expect("parses");
        let md2 = &arrays[2];
        assert!(!md2.active);
        assert_eq!(md2.personality, None);
        assert!(md2.members.iter().all(|m| m.spare));
    }

    #[test]
    fn node_exporter_sample_with_every_sync_kind() {
        let arrays = parse(&fixture("procfs/proc/mdstat")).expect("parses");
        assert_eq!(arrays.len(), 18);
        let by_name = |n: &str| arrays.iter().find(|a| a.name == n).expect("array");
        assert_eq!(by_name("md6").sync.as_ref().map(|s| s.action.as_str()), Some("recovery"));
        assert_eq!(by_name("md8").sync.as_ref().map(|s| s.action.as_str()), Some("resync"));
        assert_eq!(by_name("md201").sync.as_ref().map(|s| s.action.as_str()), Some("check"));
        assert_eq!(by_name("md42").sync.as_ref().map(|s| s.action.as_str()), Some("reshape"));
        assert_eq!(by_name("md9").sync.as_ref().and_then(|s| s.waiting.as_deref()), Some("DELAYED"));
        assert!(by_name("md11").read_only);
        assert!(by_name("md101").read_only);
        assert_eq!(by_name("md120").personality.as_deref(), Some("linear"));
    }

    #[test]
    fn every_collected_sample_parses() {
        for entry in std::fs::read_dir(format!("{FIXTURES}/pymdstat")).expect("dir") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            if path.ends_with("mdstat.16") {
                // Collected without its last line: a real truncated sample.
                assert_eq!(parse(&text), Err(MdstatError::Truncated));
                continue;
            }
            parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }

    #[test]
    fn truncated_text_is_refused() {
        let text = fixture("pymdstat/mdstat.05");
        let cut = &text[..text.find("recovery").expect("line")];
        assert_eq!(parse(cut), Err(MdstatError::Truncated));
        // Cut right after the head line: the size line is gone too.
        let head_only = "Personalities : [raid1]\nmd0 : active raid1 sdb1[1] sda1[0]\n";
        assert_eq!(parse(head_only), Err(MdstatError::Truncated));
    }

    #[test]
    fn unknown_personality_and_no_members_are_refused() {
        let text = fixture("pymdstat/mdstat.04").replace("active raid5", "active raid7");
        assert!(
            matches!(parse(&text), Err(MdstatError::UnknownPersonality { personality, .. }) if personality == "raid7")
        );
        let text = fixture("pymdstat/mdstat.04").replace("md1 : active raid1 sdb2[1] sda2[0]", "md1 : active raid1");
        assert_eq!(parse(&text), Err(MdstatError::NoMembers { array: "md1".into() }));
    }

    #[test]
    fn empty_mdstat_has_no_arrays() {
        assert_eq!(parse(&fixture("pymdstat/mdstat.01")), Ok(Vec::new()));
    }
}
