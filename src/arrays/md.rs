//! md arrays: the sysfs attributes under `<sysfs>/block/<md>/md/` (Documentation/admin-guide/md.rst)
//! read on top of the `/proc/mdstat` block, and the [`Array`] made of both.
//!
//! `/proc/mdstat` names every array and its members; sysfs, where present, is more precise
//! (member slots and flags, `sync_completed`, `mismatch_cnt`) and wins.

use std::io;
use std::path::{Path, PathBuf};

use super::mdstat::{MdstatArray, MdstatMember};
use super::read::AttrReader;
use crate::model::array::{tolerated_losses, Array, ArrayKind, ArrayMember, ArrayState, MemberRole};

#[derive(Debug, thiserror::Error)]
pub enum MdError {
    #[error("md attribute {path} vanished while the array was read: {source}")]
    Vanished { path: PathBuf, source: io::Error },
    #[error("md attribute {path} has an unexpected value {value:?}")]
    BadValue { path: PathBuf, value: String },
}

/// One `dev-*` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct SysMember {
    pub name: String,
    /// `dev-*/state`, split on commas.
    pub flags: Vec<String>,
    /// The slot from `dev-*/slot`, or from the `rdN` link pointing at it.
    pub slot: Option<u64>,
}

/// What sysfs says about one array.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MdSysfs {
    pub array_state: String,
    pub level: Option<String>,
    pub degraded: Option<u32>,
    pub raid_disks: Option<u32>,
    /// `layout` (raid10: near copies in bits 0–7, far copies in bits 8–15).
    pub layout: Option<u32>,
    pub sync_action: Option<String>,
    /// `sync_completed`: done and total sectors.
    pub sync_completed: Option<(u64, u64)>,
    pub sync_speed_kib: Option<u64>,
    pub mismatch_cnt: Option<u64>,
    pub uuid: Option<String>,
    pub members: Vec<SysMember>,
    /// `<sysfs>/block/<md>/dev`.
    pub dev: Option<String>,
}

/// The directory of an array's md attributes.
pub fn md_dir(sysfs: &Path, name: &str) -> PathBuf {
    sysfs.join("block").join(name).join("md")
}

/// The attributes worth a POLLPRI watch (they notify on change, md.rst).
pub fn polled_attributes(sysfs: &Path, name: &str, members: &[String]) -> Vec<PathBuf> {
    let dir = md_dir(sysfs, name);
    let mut paths: Vec<PathBuf> =
        ["array_state", "degraded", "sync_action"].iter().map(|a| dir.join(a)).filter(|p| p.exists()).collect();
    paths.extend(members.iter().map(|m| dir.join(format!("dev-{m}")).join("state")).filter(|p| p.exists()));
    paths
}

/// Reads an array's sysfs attributes; `Ok(None)` when the array has no md directory (sysfs
/// not mounted, or the array stopped since mdstat was read).
pub fn read_sysfs(sysfs: &Path, name: &str, reader: &mut dyn AttrReader) -> Result<Option<MdSysfs>, MdError> {
    let dir = md_dir(sysfs, name);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(None) };
    let mut names: Vec<String> =
        entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let required = |reader: &mut dyn AttrReader, attr: &str| -> Result<String, MdError> {
        let path = dir.join(attr);
        reader.read(&path).map(|s| s.trim().to_owned()).map_err(|source| MdError::Vanished { path, source })
    };
    // Listed a moment ago: an attribute that cannot be read now vanished mid-read.
    let optional = |reader: &mut dyn AttrReader, attr: &str, names: &[String]| -> Result<Option<String>, MdError> {
        if names.iter().any(|n| n == attr) {
            required(reader, attr).map(Some)
        } else {
            Ok(None)
        }
    };
    let mut sys = MdSysfs { array_state: required(reader, "array_state")?, ..Default::default() };
    sys.level = optional(reader, "level", &names)?.filter(|l| !l.is_empty());
    sys.degraded = parse_num(&dir, "degraded", optional(reader, "degraded", &names)?)?;
    sys.raid_disks = optional(reader, "raid_disks", &names)?
        // `11 (10)` while a reshape changes the count: the first is the new one.
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()));
    sys.layout = optional(reader, "layout", &names)?.and_then(|v| v.parse().ok());
    sys.sync_action = optional(reader, "sync_action", &names)?;
    sys.sync_completed = optional(reader, "sync_completed", &names)?.and_then(|v| {
        let (done, total) = v.split_once('/')?;
        Some((done.trim().parse().ok()?, total.trim().parse().ok()?))
    });
    sys.sync_speed_kib = optional(reader, "sync_speed", &names)?.and_then(|v| v.parse().ok());
    sys.mismatch_cnt = parse_num(&dir, "mismatch_cnt", optional(reader, "mismatch_cnt", &names)?)?;
    sys.uuid = optional(reader, "uuid", &names)?.filter(|u| !u.is_empty());
    let mut slots_by_link: Vec<(String, u64)> = Vec::new();
    for entry in &names {
        if let Some(slot) = entry.strip_prefix("rd").and_then(|n| n.parse::<u64>().ok()) {
            if let Ok(target) = std::fs::read_link(dir.join(entry)) {
                let target = target.to_string_lossy();
                if let Some(member) = target.rsplit('/').next().and_then(|t| t.strip_prefix("dev-")) {
                    slots_by_link.push((member.to_owned(), slot));
                }
            }
        }
    }
    for entry in &names {
        let Some(member) = entry.strip_prefix("dev-") else { continue };
        let state = required(reader, &format!("{entry}/state"))?;
        let slot_file = dir.join(entry).join("slot");
        let slot = match reader.read(&slot_file) {
            Ok(v) => v.trim().parse().ok(),
            Err(_) => slots_by_link.iter().find(|(m, _)| m == member).map(|(_, s)| *s),
        };
        let flags = state.split(',').map(str::trim).filter(|f| !f.is_empty()).map(str::to_owned).collect();
        sys.members.push(SysMember { name: member.to_owned(), flags, slot });
    }
    sys.dev = reader.read(&sysfs.join("block").join(name).join("dev")).ok().map(|d| d.trim().to_owned());
    Ok(Some(sys))
}

fn parse_num<T: std::str::FromStr>(dir: &Path, attr: &str, value: Option<String>) -> Result<Option<T>, MdError> {
    match value {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| MdError::BadValue { path: dir.join(attr), value: v }),
    }
}

/// md's word for a `/proc/mdstat` progress kind.
fn sync_word(mdstat_action: &str) -> &str {
    match mdstat_action {
        "recovery" => "recover",
        other => other,
    }
}

/// The Array made of an mdstat block and, where present, its sysfs attributes.
pub fn array_from(stat: &MdstatArray, sys: Option<&MdSysfs>) -> Array {
    let uuid = sys.and_then(|s| s.uuid.clone());
    let mut array = Array::new(ArrayKind::Md, &stat.name, uuid);
    array.level = sys.and_then(|s| s.level.clone()).or_else(|| stat.personality.clone());
    array.raid_disks = sys.and_then(|s| s.raid_disks).or(stat.raid_disks);
    array.size_bytes = stat.blocks.map(|b| b * 1024);
    array.devnode = Some(format!("/dev/{}", stat.name));
    array.dev = sys.and_then(|s| s.dev.clone());
    let raw_state = sys.map(|s| s.array_state.clone()).unwrap_or_else(|| {
        if stat.active {
            "active".to_owned()
        } else {
            "inactive".to_owned()
        }
    });
    array.read_only = stat.read_only || matches!(raw_state.as_str(), "readonly" | "read-auto");
    let sync_action = match sys.and_then(|s| s.sync_action.as_deref()) {
        Some("idle") | Some("frozen") => None,
        Some(action) => Some(action.to_owned()),
        // The mdstat line counts where sysfs has no sync_action (raid0, linear, or no sysfs).
        None => stat.sync.as_ref().map(|s| sync_word(&s.action).to_owned()),
    };
    let sync_running = sync_action.is_some();
    array.sync_percent = if sync_running {
        match sys.and_then(|s| s.sync_completed) {
            Some((done, total)) if total > 0 => Some(round1(done as f64 * 100.0 / total as f64)),
            _ => stat.sync.as_ref().and_then(|s| s.percent),
        }
    } else {
        None
    };
    array.sync_eta_seconds = if sync_running {
        stat.sync.as_ref().and_then(|s| s.finish_seconds).or_else(|| {
            let s = sys?;
            let (done, total) = s.sync_completed?;
            let speed = s.sync_speed_kib.filter(|v| *v > 0)?;
            Some(total.saturating_sub(done) / 2 / speed)
        })
    } else {
        None
    };
    array.sync_action = sync_action;
    array.mismatch_count = sys.and_then(|s| s.mismatch_cnt);
    let from_sysfs = sys.is_some_and(|s| !s.members.is_empty());
    array.members = match sys {
        Some(sys) if from_sysfs => members_from_sysfs(sys, array.sync_action.as_deref()),
        _ => members_from_mdstat(stat, array.sync_action.as_deref()),
    };
    add_missing_slots(&mut array.members, array.raid_disks, stat);
    let missing = array.members.iter().filter(|m| m.role == MemberRole::Missing).count() as u32;
    let faulty_in_slot = array.members.iter().filter(|m| m.role == MemberRole::Faulty && m.slot.is_some()).count();
    array.degraded_count =
        sys.and_then(|s| s.degraded).or_else(|| stat.degraded()).unwrap_or(missing + faulty_in_slot as u32);
    let level = array.level.clone().unwrap_or_default();
    // md's own word first (md.rst `array_state`): `inactive`/`clear` is not started, `broken`
    // is a running array that lost more than it can (kernel ≥ 5.18 for raid0/1/4/5/6/10/linear).
    // Otherwise the array runs, and whether it still holds all data is decided from which
    // slots are up, as mdadm's `enough()` does (a raid10 survives one loss per mirror set).
    let inactive = !stat.active || matches!(raw_state.as_str(), "inactive" | "clear");
    let layout = sys.and_then(|s| s.layout).or(stat.raid10_layout);
    let failed = raw_state == "broken"
        || (!inactive
            && match slots_up(&array.members, array.raid_disks, stat, from_sysfs) {
                Some(up) => !enough(&level, layout, &up),
                // No slot is known: the count against the level's tolerance.
                None => array.degraded_count > tolerated_losses(&level, array.raid_disks.unwrap_or(0)),
            });
    array.state = if inactive {
        ArrayState::Inactive
    } else if failed {
        ArrayState::Failed
    } else if array.degraded_count > 0 && array.sync_action.as_deref() == Some("recover") {
        ArrayState::Recovering
    } else if array.degraded_count > 0 {
        ArrayState::Degraded
    } else {
        match array.sync_action.as_deref() {
            Some("resync") | Some("reshape") | Some("recover") => ArrayState::Resyncing,
            Some("check") | Some("repair") => ArrayState::Checking,
            _ => ArrayState::Clean,
        }
    };
    array.raw_state = Some(raw_state);
    array
}

/// Which of the array's `raid_disks` slots hold a working member: from the members' slots
/// (sysfs), else mdstat's `[UU_]` (its `[n]` are descriptor numbers, not slots); `None` when
/// neither tells.
fn slots_up(
    members: &[ArrayMember],
    raid_disks: Option<u32>,
    stat: &MdstatArray,
    from_sysfs: bool,
) -> Option<Vec<bool>> {
    let n = raid_disks? as usize;
    if n == 0 {
        return None;
    }
    if from_sysfs && members.iter().any(|m| m.slot.is_some()) {
        let mut up = vec![false; n];
        for m in members.iter().filter(|m| m.role == MemberRole::Active && !m.rebuilding) {
            if let Some(slot) = m.slot.map(|s| s as usize).filter(|s| *s < n) {
                up[slot] = true;
            }
        }
        return Some(up);
    }
    (stat.slots_up.len() == n).then(|| stat.slots_up.clone())
}

/// Whether the slots that are `up` still hold every block of a `level` array: the rule of
/// mdadm's `enough()` (util.c). raid10 keeps `near × far` copies of each chunk on
/// consecutive slots, the sets starting every `near` slots: it survives as long as every set
/// has a slot up. The layout defaults to md's `n2` (2 near copies) when unknown.
pub fn enough(level: &str, layout: Option<u32>, up: &[bool]) -> bool {
    let n = up.len();
    let working = up.iter().filter(|u| **u).count();
    match level {
        "raid10" => {
            let layout = layout.unwrap_or(0x102);
            let near = (layout & 0xff).max(1) as usize;
            let copies = near * ((layout >> 8) & 0xff).max(1) as usize;
            let mut first = 0;
            loop {
                if !(0..copies).any(|i| up[(first + i) % n]) {
                    return false;
                }
                first = (first + near) % n;
                if first == 0 {
                    return true;
                }
            }
        }
        "raid1" | "multipath" => working >= 1,
        "raid4" | "raid5" => working + 1 >= n,
        "raid6" => working + 2 >= n,
        // raid0, linear: every member holds data of its own.
        _ => working == n,
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).floor() / 10.0
}

fn members_from_sysfs(sys: &MdSysfs, sync_action: Option<&str>) -> Vec<ArrayMember> {
    let mut members: Vec<ArrayMember> = sys
        .members
        .iter()
        .map(|m| {
            let has = |f: &str| m.flags.iter().any(|x| x == f);
            let role = if has("faulty") {
                MemberRole::Faulty
            } else if has("in_sync") || has("journal") {
                MemberRole::Active
            } else {
                MemberRole::Spare
            };
            let mut member = ArrayMember::new(Some(m.name.clone()), role, m.slot);
            // A spare that holds a slot is the one being rebuilt onto.
            member.rebuilding = role == MemberRole::Spare && m.slot.is_some() && sync_action == Some("recover");
            if role == MemberRole::Spare && !member.rebuilding {
                member.slot = None;
            }
            member.flags = m.flags.clone();
            member
        })
        .collect();
    members.sort_by_key(|m| (m.slot.unwrap_or(u64::MAX), m.kernel_name.clone()));
    members
}

fn members_from_mdstat(stat: &MdstatArray, sync_action: Option<&str>) -> Vec<ArrayMember> {
    let raid_disks = u64::from(stat.raid_disks.unwrap_or(0));
    let mut members: Vec<ArrayMember> = stat
        .members
        .iter()
        .map(|m: &MdstatMember| {
            let role = if m.faulty {
                MemberRole::Faulty
            } else if m.spare {
                MemberRole::Spare
            } else {
                MemberRole::Active
            };
            let mut member = ArrayMember::new(Some(m.name.clone()), role, None);
            // mdstat shows descriptor numbers; a non-spare past raid_disks is being rebuilt onto.
            if role == MemberRole::Active
                && stat.active
                && sync_action == Some("recover")
                && u64::from(m.number) >= raid_disks
            {
                member.role = MemberRole::Spare;
                member.rebuilding = true;
            } else if role != MemberRole::Spare && u64::from(m.number) < raid_disks {
                member.slot = Some(u64::from(m.number));
            }
            let mut flags = Vec::new();
            for (on, flag) in [
                (m.faulty, "faulty"),
                (m.spare, "spare"),
                (m.write_mostly, "writemostly"),
                (m.replacement, "replacement"),
                (m.journal, "journal"),
            ] {
                if on {
                    flags.push(flag.to_owned());
                }
            }
            member.flags = flags;
            member
        })
        .collect();
    members.sort_by_key(|m| (m.slot.unwrap_or(u64::MAX), m.kernel_name.clone()));
    members
}

/// Slots the array expects that no working, rebuilding or faulty member holds become `Missing`
/// members; a rebuilding member whose slot is unknown (mdstat only) takes the first open one.
fn add_missing_slots(members: &mut Vec<ArrayMember>, raid_disks: Option<u32>, stat: &MdstatArray) {
    let Some(raid_disks) = raid_disks.map(u64::from) else { return };
    if !stat.active {
        return;
    }
    let filled: Vec<u64> = members
        .iter()
        .filter(|m| matches!(m.role, MemberRole::Active | MemberRole::Faulty) || m.rebuilding)
        .filter_map(|m| m.slot)
        .collect();
    let candidates: Vec<u64> = if stat.slots_up.is_empty() {
        (0..raid_disks).collect()
    } else {
        // The `_` positions of `[UU_]` are the empty slots.
        stat.slots_up.iter().enumerate().filter(|(_, up)| !**up).map(|(i, _)| i as u64).collect()
    };
    let mut open: Vec<u64> = candidates.into_iter().filter(|s| *s < raid_disks && !filled.contains(s)).collect();
    for member in members.iter_mut().filter(|m| m.rebuilding && m.slot.is_none()) {
        if !open.is_empty() {
            member.slot = Some(open.remove(0));
        }
    }
    for slot in open {
        members.push(ArrayMember::new(None, MemberRole::Missing, Some(slot)));
    }
}

#[cfg(test)]
mod tests {
    use super::super::mdstat;
    use super::super::read::PlainReader;
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mdstat");

    fn sysfs() -> PathBuf {
        PathBuf::from(FIXTURES).join("procfs/sys")
    }

    fn stat_of(file: &str, name: &str) -> MdstatArray {
        let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).expect("fixture");
        mdstat::parse(&text).expect("parses").into_iter().find(|a| a.name == name).expect("array")
    }

    #[test]
    fn sysfs_of_a_clean_raid1() {
        let sys = read_sysfs(&sysfs(), "md1", &mut PlainReader).expect("reads").expect("present");
        assert_eq!(sys.array_state, "clean");
        assert_eq!(sys.level.as_deref(), Some("raid1"));
        assert_eq!(sys.degraded, Some(0));
        assert_eq!(sys.uuid.as_deref(), Some("0fbf5f2c-add2-43c2-bd78-a4be3ab709ef"));
        assert_eq!(
            sys.members.iter().map(|m| (m.name.as_str(), m.slot)).collect::<Vec<_>>(),
            vec![("sdi", Some(0)), ("sdj", Some(1))]
        );
    }

    #[test]
    fn sysfs_recovering_raid6_shows_progress_and_the_rebuilt_spare() {
        let sys = read_sysfs(&sysfs(), "md6", &mut PlainReader).expect("reads").expect("present");
        assert_eq!(sys.sync_completed, Some((1569888, 2093056)));
        let stat = stat_of("procfs/proc/mdstat", "md6");
        let array = array_from(&stat, Some(&sys));
        assert_eq!(array.id, "md-5f529b25-6efd-46e4-99a2-31f6f597be6b");
        assert_eq!(array.state, ArrayState::Recovering);
        assert_eq!(array.sync_action.as_deref(), Some("recover"));
        assert_eq!(array.sync_percent, Some(75.0));
        let rebuilding: Vec<_> =
            array.members.iter().filter(|m| m.rebuilding).map(|m| m.kernel_name.as_deref()).collect();
        assert_eq!(rebuilding, vec![Some("sdt")]);
    }

    #[test]
    fn sysfs_degraded_raid5_with_a_faulty_member_and_a_spare() {
        let sys = read_sysfs(&sysfs(), "md5", &mut PlainReader).expect("reads").expect("present");
        let stat = stat_of("pymdstat/mdstat.03", "md0");
        let array = array_from(&stat, Some(&sys));
        assert_eq!(array.state, ArrayState::Degraded);
        assert_eq!(array.degraded_count, 1);
        let roles: Vec<_> = array.members.iter().map(|m| (m.kernel_name.clone().unwrap_or_default(), m.role)).collect();
        assert!(roles.contains(&("sdp".into(), MemberRole::Faulty)));
        assert!(roles.contains(&("sdaa".into(), MemberRole::Spare)));
        assert_eq!(array.lost_members(), vec!["sdp".to_owned()]);
    }

    #[test]
    fn mdstat_only_arrays() {
        let degraded = array_from(&stat_of("pymdstat/mdstat.03", "md0"), None);
        assert_eq!(degraded.state, ArrayState::Degraded);
        assert_eq!(degraded.lost_members(), vec!["slot 3".to_owned()]);
        let recovering = array_from(&stat_of("pymdstat/mdstat.05", "md127"), None);
        assert_eq!(recovering.state, ArrayState::Recovering);
        assert_eq!(recovering.sync_percent, Some(12.6));
        assert_eq!(recovering.sync_eta_seconds, Some(7650));
        let rebuilding: Vec<_> =
            recovering.members.iter().filter(|m| m.rebuilding).map(|m| m.kernel_name.as_deref()).collect();
        assert_eq!(rebuilding, vec![Some("sdh1")]);
        let failed = array_from(&stat_of("pymdstat/mdstat.07", "md1"), None);
        assert_eq!(failed.state, ArrayState::Degraded, "raid1 of 6 with 2 lost still serves");
        let inactive = array_from(&stat_of("pymdstat/mdstat.08", "md0"), None);
        assert_eq!(inactive.state, ArrayState::Inactive);
        let resync = array_from(&stat_of("procfs/proc/mdstat", "md8"), None);
        assert_eq!(resync.state, ArrayState::Resyncing);
        let check = array_from(&stat_of("procfs/proc/mdstat", "md201"), None);
        assert_eq!(check.state, ArrayState::Checking);
        let raid6 = array_from(&stat_of("procfs/proc/mdstat", "md7"), None);
        assert_eq!(raid6.state, ArrayState::Degraded);
    }

    /// The procfs raid10 of four (sdu, sdv | sdw, sdx in two mirror pairs) with `faulty`
    /// members, as md reports them after `mdadm --fail`.
    fn raid10_losing(faulty: &[&str]) -> Array {
        let mut sys = read_sysfs(&sysfs(), "md10", &mut PlainReader).expect("reads").expect("present");
        for m in &mut sys.members {
            if faulty.contains(&m.name.as_str()) {
                m.flags = vec!["faulty".into()];
            }
        }
        sys.degraded = Some(faulty.len() as u32);
        let text = "Personalities : [raid10]\nmd10 : active raid10 sdx[3] sdw[2] sdv[1] sdu[0]\n      \
                    1953260544 blocks super 1.2 512K chunks 2 near-copies [4/4] [UUUU]\n\nunused devices: <none>\n";
        let stat = mdstat::parse(text).expect("parses").remove(0);
        array_from(&stat, Some(&sys))
    }

    #[test]
    fn raid10_one_loss_per_mirror_pair_is_degraded_both_of_a_pair_failed() {
        assert_eq!(raid10_losing(&[]).state, ArrayState::Clean);
        let two_pairs = raid10_losing(&["sdu", "sdw"]);
        assert_eq!(two_pairs.state, ArrayState::Degraded, "each pair keeps a copy");
        assert_eq!(two_pairs.degraded_count, 2);
        assert_eq!(raid10_losing(&["sdv", "sdx"]).state, ArrayState::Degraded);
        assert_eq!(raid10_losing(&["sdu", "sdv"]).state, ArrayState::Failed, "a whole pair gone");
        assert_eq!(raid10_losing(&["sdw", "sdx"]).state, ArrayState::Failed);
    }

    #[test]
    fn md_says_broken_or_inactive_and_is_believed() {
        let mut sys = read_sysfs(&sysfs(), "md10", &mut PlainReader).expect("reads").expect("present");
        sys.array_state = "broken".into();
        let stat = stat_of("procfs/proc/mdstat", "md10");
        assert_eq!(array_from(&stat, Some(&sys)).state, ArrayState::Failed);
        sys.array_state = "inactive".into();
        assert_eq!(array_from(&stat, Some(&sys)).state, ArrayState::Inactive);
    }

    #[test]
    fn enough_follows_mdadm() {
        let up = |s: &str| s.chars().map(|c| c == 'U').collect::<Vec<_>>();
        // raid10 n2 over 4: sets {0,1} {2,3}.
        assert!(enough("raid10", Some(0x102), &up("U_U_")));
        assert!(!enough("raid10", Some(0x102), &up("__UU")));
        // raid10 n2 over 3 (odd count): sets {0,1} {2,0} {1,2}.
        assert!(!enough("raid10", None, &up("U__")));
        assert!(enough("raid10", None, &up("UU_")));
        // raid10 f2 over 4: copies on 2 consecutive slots from every slot.
        assert!(enough("raid10", Some(0x201), &up("U_U_")));
        assert!(!enough("raid10", Some(0x201), &up("_UU_")), "slots 3 and 0 hold the same chunks");
        assert!(enough("raid6", None, &up("U__U")));
        assert!(!enough("raid6", None, &up("U___")));
        assert!(enough("raid5", None, &up("UU_")));
        assert!(!enough("raid5", None, &up("U__")));
        assert!(enough("raid1", None, &up("__U")));
        assert!(!enough("raid0", None, &up("U_")));
    }

    #[test]
    fn raid10_layout_from_mdstat() {
        let text = |copies: &str| {
            format!("md1 : active raid10 sdb[1] sda[0]\n      100 blocks 512K chunks {copies} [2/2] [UU]\n\nunused devices: <none>\n")
        };
        let layout = |c: &str| mdstat::parse(&text(c)).expect("parses")[0].raid10_layout;
        assert_eq!(layout("2 near-copies"), Some(0x102));
        assert_eq!(layout("2 far-copies"), Some(0x201));
        assert_eq!(layout("2 offset-copies"), Some(0x10201));
    }

    #[test]
    fn a_vanished_attribute_is_an_error() {
        struct Vanishing;
        impl AttrReader for Vanishing {
            fn read(&mut self, path: &Path) -> io::Result<String> {
                if path.ends_with("degraded") {
                    return Err(io::Error::from(io::ErrorKind::NotFound));
                }
                std::fs::read_to_string(path)
            }
        }
        let err = read_sysfs(&sysfs(), "md1", &mut Vanishing).expect_err("vanished");
        assert!(err.to_string().contains("degraded"), "{err}");
    }
}
