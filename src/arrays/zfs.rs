//! ZFS pools from `zpool status -j --json-int` (OpenZFS ≥ 2.3, cmd/zpool/zpool_main.c
//! `status_callback`): pool state, the vdev tree with each leaf's read/write/checksum errors,
//! and the scrub/resilver progress in `scan_stats`.
//!
//! Numbers are integers with `--json-int` and strings without it (`"0"`, or human sizes such
//! as `"62.6G"`); both are accepted.

use serde_json::{Map, Value};

use crate::model::array::{Array, ArrayKind, ArrayMember, ArrayState, ErrorCounts, MemberRole};

#[derive(Debug, thiserror::Error)]
pub enum ZfsError {
    #[error("zpool status output is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("zpool status output has no `pools` object")]
    NoPools,
}

/// The vdev groups of a pool besides its data vdevs (under the root vdev).
const GROUPS: &[&str] = &["dedup", "special", "logs", "l2cache", "spares"];

/// Parses the whole output into one Array per pool; `resolve` turns a vdev path into a kernel
/// name (following `/dev/disk/by-*` links on a live system).
pub fn parse(text: &str, resolve: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Array>, ZfsError> {
    let doc: Value = serde_json::from_str(text)?;
    let pools = doc.get("pools").and_then(Value::as_object).ok_or(ZfsError::NoPools)?;
    Ok(pools.iter().map(|(key, pool)| pool_array(key, pool, resolve)).collect())
}

/// An integer, a decimal string, or a human size (`62.6G`, 1024-based).
pub fn number(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse() {
                return Some(n);
            }
            let (digits, suffix) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
            let base: f64 = digits.parse().ok()?;
            let power = match suffix.chars().next()? {
                'K' => 1,
                'M' => 2,
                'G' => 3,
                'T' => 4,
                'P' => 5,
                'E' => 6,
                _ => return None,
            };
            Some((base * 1024f64.powi(power)) as u64)
        }
        _ => None,
    }
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn pool_array(key: &str, pool: &Value, resolve: &dyn Fn(&str) -> Option<String>) -> Array {
    let name = text(pool, "name").unwrap_or(key);
    // `pool_guid` in released versions, `guid` in the manual's example.
    let guid = pool.get("pool_guid").or_else(|| pool.get("guid")).and_then(|g| number(Some(g))).map(|g| g.to_string());
    let mut array = Array::new(ArrayKind::Zfs, name, guid);
    let pool_state = text(pool, "state").unwrap_or("UNKNOWN").to_owned();
    let empty = Map::new();
    let root = pool.get("vdevs").and_then(Value::as_object).and_then(|v| v.values().next());
    let top: &Map<String, Value> = root.and_then(|r| r.get("vdevs")).and_then(Value::as_object).unwrap_or(&empty);
    array.size_bytes = root.and_then(|r| number(r.get("total_space")));
    let mut levels: Vec<String> = Vec::new();
    let mut degraded = 0u32;
    for (vname, vdev) in top {
        let level = match text(vdev, "vdev_type") {
            Some("disk") | Some("file") => "stripe".to_owned(),
            // `raidz1-0`: the name carries the parity the type leaves out.
            Some(_) => vname.split('-').next().unwrap_or(vname).to_owned(),
            None => continue,
        };
        if !levels.contains(&level) {
            levels.push(level);
        }
        collect_leaves(vdev, false, resolve, &mut array.members, &mut degraded);
    }
    for group in GROUPS {
        if let Some(vdevs) = pool.get(*group).and_then(Value::as_object) {
            for vdev in vdevs.values() {
                let mut ignored = 0;
                collect_leaves(vdev, *group == "spares", resolve, &mut array.members, &mut ignored);
            }
        }
    }
    array.level = (!levels.is_empty()).then(|| levels.join("+"));
    array.raid_disks = Some(array.members.iter().filter(|m| m.role != MemberRole::Spare).count() as u32);
    array.degraded_count = degraded;
    let mut total = ErrorCounts::default();
    for member in &array.members {
        if let Some(e) = &member.errors {
            total.add(e);
        }
    }
    array.errors = Some(total);
    let scan = pool.get("scan_stats");
    let scanning = scan.and_then(|s| text(s, "state")) == Some("SCANNING");
    let function = scan.and_then(|s| text(s, "function")).map(str::to_ascii_lowercase);
    if scanning {
        array.sync_action = function.clone();
        let to_examine = scan.and_then(|s| number(s.get("to_examine"))).unwrap_or(0);
        let issued = scan.and_then(|s| number(s.get("issued")).or_else(|| number(s.get("examined")))).unwrap_or(0);
        if to_examine > 0 {
            array.sync_percent = Some(((issued as f64 * 1000.0 / to_examine as f64).floor() / 10.0).min(100.0));
        }
    }
    let resilvering = scanning && function.as_deref() == Some("resilver");
    array.state = match pool_state.as_str() {
        // A resilver on a pool with every vdev online copies onto a new disk while the old
        // copies stay (`zpool replace` of a healthy disk, `zpool attach`): redundancy is
        // intact, as in md's resync.
        "ONLINE" | "HEALTHY" if resilvering => ArrayState::Resyncing,
        "ONLINE" | "HEALTHY" if scanning => ArrayState::Checking,
        "ONLINE" | "HEALTHY" => ArrayState::Clean,
        "DEGRADED" if resilvering => ArrayState::Recovering,
        "DEGRADED" => ArrayState::Degraded,
        "OFFLINE" | "EXPORTED" => ArrayState::Inactive,
        _ => ArrayState::Failed,
    };
    if array.state.lost_redundancy() && array.degraded_count == 0 {
        array.degraded_count = 1;
    }
    array.raw_state = Some(pool_state);
    array
}

/// Walks a vdev down to its leaves (disks and files).
fn collect_leaves(
    vdev: &Value,
    spare: bool,
    resolve: &dyn Fn(&str) -> Option<String>,
    out: &mut Vec<ArrayMember>,
    degraded: &mut u32,
) {
    if let Some(children) = vdev.get("vdevs").and_then(Value::as_object) {
        for child in children.values() {
            collect_leaves(child, spare, resolve, out, degraded);
        }
        return;
    }
    let state = text(vdev, "state").unwrap_or("UNKNOWN").to_owned();
    let path = text(vdev, "path").or_else(|| text(vdev, "name")).unwrap_or_default();
    let kernel_name = resolve(path).or_else(|| path.rsplit('/').next().map(str::to_owned));
    let role = match state.as_str() {
        _ if spare => MemberRole::Spare,
        "ONLINE" | "HEALTHY" | "DEGRADED" => MemberRole::Active,
        "OFFLINE" | "REMOVED" | "UNAVAIL" => MemberRole::Missing,
        _ => MemberRole::Faulty,
    };
    if !spare && role != MemberRole::Active {
        *degraded += 1;
    }
    let mut member = ArrayMember::new(kernel_name, role, None);
    member.rebuilding = spare && state == "INUSE";
    member.errors = Some(ErrorCounts {
        read: number(vdev.get("read_errors")).unwrap_or(0),
        write: number(vdev.get("write_errors")).unwrap_or(0),
        corruption: number(vdev.get("checksum_errors")).unwrap_or(0),
        ..Default::default()
    });
    member.flags.push(state);
    out.push(member);
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/arrays/zfs");

    fn no_links(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_manuals_raidz1_pool() {
        let text = std::fs::read_to_string(format!("{FIXTURES}/zpool-status-manpage.json")).expect("fixture");
        let arrays = parse(&text, &no_links).expect("parses");
        assert_eq!(arrays.len(), 1);
        let tank = &arrays[0];
        assert_eq!(tank.id, "zfs-3920273586464696295");
        assert_eq!(tank.name, "tank");
        assert_eq!(tank.level.as_deref(), Some("raidz1"));
        assert_eq!(tank.state, ArrayState::Clean);
        // Three raidz1 disks, two dedup mirror disks, one special disk.
        assert_eq!(tank.members.len(), 6);
        assert!(tank.members.iter().all(|m| m.role == MemberRole::Active));
        assert!(tank.members.iter().any(|m| m.kernel_name.as_deref() == Some("ca1eb824-c371-491d-ac13-37637e35c683")));
        assert_eq!(tank.size_bytes, number(Some(&Value::String("15.0T".into()))));
        assert_eq!(tank.errors, Some(ErrorCounts::default()));
    }

    /// The manual's pool with `scan_stats` as `zpool status -j` prints a running scan
    /// (zpool_main.c `scan_status_nvlist`: function, state, to_examine, issued) and the pool
    /// state given.
    fn scanning(function: &str, pool_state: &str) -> Array {
        let text = std::fs::read_to_string(format!("{FIXTURES}/zpool-status-manpage.json")).expect("fixture");
        let mut doc: Value = serde_json::from_str(&text).expect("json");
        let pool = doc["pools"].as_object_mut().and_then(|p| p.values_mut().next()).expect("pool");
        pool["state"] = Value::String(pool_state.into());
        pool["scan_stats"] = serde_json::json!({
            "function": function, "state": "SCANNING", "to_examine": "1000", "examined": "500", "issued": "250"
        });
        parse(&doc.to_string(), &no_links).expect("parses").remove(0)
    }

    #[test]
    fn a_resilver_of_an_online_pool_is_a_resync_of_a_degraded_one_a_recovery() {
        let online = scanning("RESILVER", "ONLINE");
        assert_eq!(online.state, ArrayState::Resyncing, "replace of a healthy disk, attach");
        assert_eq!(online.degraded_count, 0);
        assert_eq!(online.sync_action.as_deref(), Some("resilver"));
        assert_eq!(online.sync_percent, Some(25.0));
        let degraded = scanning("RESILVER", "DEGRADED");
        assert_eq!(degraded.state, ArrayState::Recovering);
        assert_eq!(degraded.degraded_count, 1);
        assert_eq!(scanning("SCRUB", "ONLINE").state, ArrayState::Checking);
    }

    #[test]
    fn human_numbers() {
        assert_eq!(number(Some(&Value::String("0".into()))), Some(0));
        assert_eq!(number(Some(&Value::String("1.5K".into()))), Some(1536));
        assert_eq!(number(Some(&serde_json::json!(42))), Some(42));
        assert_eq!(number(Some(&Value::String("-".into()))), None);
    }

    #[test]
    fn not_json_is_an_error() {
        assert!(parse("cannot open 'tank': no such pool", &no_links).is_err());
        assert!(matches!(parse("{}", &no_links), Err(ZfsError::NoPools)));
    }
}
