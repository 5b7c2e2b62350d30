//! Parser of `/proc/<pid>/mountinfo` (proc(5)): one line per mount, octal escapes undone.
//!
//! Line format: `id parent major:minor root mount_point options [optional…] - fstype source super_options`.

use crate::text::unescape;
use std::borrow::Cow;
use std::collections::HashMap;

use crate::model::{mount_id, Mount};

/// One line of mountinfo, escapes undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub mount_id: u32,
    pub parent_id: u32,
    /// `major:minor`.
    pub dev: String,
    pub root: String,
    pub mount_point: String,
    pub options: Vec<String>,
    /// Tagged fields before the `-` separator (`shared:1`, `master:2`, …).
    pub optional: Vec<String>,
    pub fs_type: String,
    pub source: String,
    pub super_options: Vec<String>,
}

/// Why a line could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("field {field} is not a number: {value:?}")]
    NotANumber { field: &'static str, value: String },
    #[error("bad major:minor {0:?}")]
    BadDev(String),
    #[error("no '-' separator before the filesystem type")]
    NoSeparator,
}

fn split_options(field: &str) -> Vec<String> {
    if field.is_empty() {
        Vec::new()
    } else {
        field.split(',').map(|o| unescape(o).into_owned()).collect()
    }
}

/// One line of mountinfo as slices of the text: nothing is copied unless it had escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRef<'a> {
    pub mount_id: u32,
    pub parent_id: u32,
    pub dev: &'a str,
    pub root: Cow<'a, str>,
    pub mount_point: Cow<'a, str>,
    /// Raw, comma-separated (escapes still in).
    pub options: &'a str,
    /// Raw, space-separated tags.
    pub optional: &'a str,
    pub fs_type: Cow<'a, str>,
    pub source: Cow<'a, str>,
    /// Raw, comma-separated (escapes still in).
    pub super_options: &'a str,
}

/// Parses one mountinfo line without copying it.
pub fn parse_line_ref(line: &str) -> Result<LineRef<'_>, LineError> {
    let mut rest = line;
    let mut next = |name: &'static str| -> Result<&str, LineError> {
        let (field, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        rest = tail;
        if field.is_empty() {
            Err(LineError::Missing(name))
        } else {
            Ok(field)
        }
    };
    let number = |field: &'static str, value: &str| {
        value.parse::<u32>().map_err(|_| LineError::NotANumber { field, value: value.to_owned() })
    };
    let mount_id = number("mount id", next("mount id")?)?;
    let parent_id = number("parent id", next("parent id")?)?;
    let dev = next("major:minor")?;
    match dev.split_once(':') {
        Some((a, b)) if a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok() => {}
        _ => return Err(LineError::BadDev(dev.to_owned())),
    }
    let root = unescape(next("root")?);
    let mount_point = unescape(next("mount point")?);
    let options = next("options")?;
    // The optional fields end at a lone "-"; every field before it is a tag.
    let (optional, tail) = if let Some(tail) = rest.strip_prefix("- ") {
        ("", tail)
    } else if rest == "-" {
        ("", "")
    } else {
        match rest.find(" - ") {
            Some(i) => (&rest[..i], &rest[i + 3..]),
            None if rest.ends_with(" -") => (&rest[..rest.len() - 2], ""),
            None => return Err(LineError::NoSeparator),
        }
    };
    let mut tail = tail.splitn(3, ' ');
    let fs_type = tail.next().filter(|f| !f.is_empty()).ok_or(LineError::Missing("filesystem type"))?;
    // The source may be empty on some pseudo filesystems.
    let source = tail.next().ok_or(LineError::Missing("source"))?;
    let super_options = tail.next().unwrap_or("");
    Ok(LineRef {
        mount_id,
        parent_id,
        dev,
        root,
        mount_point,
        options,
        optional: optional.trim(),
        fs_type: unescape(fs_type),
        source: unescape(source),
        super_options,
    })
}

impl LineRef<'_> {
    pub fn into_entry(self) -> Entry {
        Entry {
            mount_id: self.mount_id,
            parent_id: self.parent_id,
            dev: self.dev.to_owned(),
            root: self.root.into_owned(),
            mount_point: self.mount_point.into_owned(),
            options: split_options(self.options),
            optional: self.optional.split(' ').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
            fs_type: self.fs_type.into_owned(),
            source: self.source.into_owned(),
            super_options: split_options(self.super_options),
        }
    }

    /// Whether `mount` (built from an earlier line) still describes this line.
    pub fn same_as(&self, mount: &Mount) -> bool {
        fn same_options(raw: &str, parsed: &[String]) -> bool {
            if raw.is_empty() {
                return parsed.is_empty();
            }
            let mut n = 0;
            for (a, b) in raw.split(',').zip(parsed) {
                if unescape(a) != b.as_str() {
                    return false;
                }
                n += 1;
            }
            n == parsed.len() && raw.split(',').count() == n
        }
        mount.dev == self.dev
            && mount.mount_point == self.mount_point
            && mount.root == self.root
            && mount.fs_type == self.fs_type
            && mount.source == self.source
            && same_options(self.options, &mount.options)
            && same_options(self.super_options, &mount.super_options)
    }
}

/// Parses one mountinfo line.
pub fn parse_line(line: &str) -> Result<Entry, LineError> {
    parse_line_ref(line).map(LineRef::into_entry)
}

/// Every line of a mountinfo text: the entries that parsed, and the lines that did not (with why).
pub fn parse(text: &str) -> (Vec<Entry>, Vec<(String, LineError)>) {
    let mut entries = Vec::new();
    let mut bad = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(e) => entries.push(e),
            Err(e) => bad.push((line.to_owned(), e)),
        }
    }
    (entries, bad)
}

/// Filesystem types that live on another machine.
pub fn is_network(fs_type: &str) -> bool {
    matches!(fs_type, "nfs" | "nfs4" | "cifs" | "smb3" | "smbfs" | "sshfs" | "9p" | "ceph" | "glusterfs")
        || fs_type.starts_with("fuse.")
}

impl Entry {
    /// The mount as the model shows it; `id` is the plain [`mount_id`] (see [`to_mounts`] for clashes).
    pub fn into_mount(self) -> Mount {
        let has = |opts: &[String], o: &str| opts.iter().any(|x| x == o);
        Mount {
            id: mount_id(&self.mount_point),
            // A filesystem the kernel turned read-only (ext4 errors=remount-ro) keeps "rw" in the
            // per-mount options and shows "ro" only in the superblock options.
            read_only: has(&self.options, "ro") || has(&self.super_options, "ro"),
            network: is_network(&self.fs_type),
            mount_point: self.mount_point,
            source: self.source,
            dev: self.dev,
            fs_type: self.fs_type,
            options: self.options,
            super_options: self.super_options,
            root: self.root,
            partition_id: None,
            disk_id: None,
            shares: Vec::new(),
            usage: None,
            stale: false,
            array_id: None,
            attention: None,
            forecast: None,
        }
    }
}

/// FNV-1a: a hash that is the same in every run and on every machine, for id suffixes.
fn stable_hash(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The ids of a set of distinct mount points, in the same order: [`mount_id`], except that
/// for mount points whose ids clash one keeps the plain id (preferably one in which only
/// slashes were replaced, then the smallest path) and the others get a suffix of a hash of the
/// path. The choice depends on the set, not on its order.
pub fn assign_ids(points: &[&str]) -> Vec<String> {
    let plain: Vec<String> = points.iter().map(|p| mount_id(p)).collect();
    let pairs: Vec<(&str, &str)> = points.iter().copied().zip(plain.iter().map(String::as_str)).collect();
    assign_ids_from(&pairs).into_iter().map(Cow::into_owned).collect()
}

/// Whether `id` is `point` with only its slashes replaced (and the leading one dropped).
fn only_slashes_replaced(point: &str, id: &str) -> bool {
    let point = point.trim_start_matches('/');
    point.len() == id.len() && point.bytes().zip(id.bytes()).all(|(p, i)| p == i || (p == b'/' && i == b'_'))
}

/// [`assign_ids`] for mount points whose plain [`mount_id`]s are already known; ids that need
/// no suffix are borrowed.
pub fn assign_ids_from<'a>(points: &[(&'a str, &'a str)]) -> Vec<Cow<'a, str>> {
    let mut keeper: super::fxhash::FxHashMap<&str, (bool, &str)> =
        super::fxhash::FxHashMap::with_capacity_and_hasher(points.len(), Default::default());
    let mut clash = false;
    for (point, id) in points {
        let key = (!only_slashes_replaced(point, id), *point);
        match keeper.get_mut(id) {
            Some(best) => {
                clash = true;
                if key < *best {
                    *best = key;
                }
            }
            None => {
                keeper.insert(id, key);
            }
        }
    }
    points
        .iter()
        .map(|(point, id)| {
            if clash && keeper.get(id).is_some_and(|(_, keep)| keep != point) {
                Cow::Owned(format!("{id}-{:08x}", stable_hash(point)))
            } else {
                Cow::Borrowed(*id)
            }
        })
        .collect()
}

/// Turns entries (in table order) into mounts: for stacked mounts on one mount point the
/// topmost (listed last) wins; clashing ids are made distinct by [`assign_ids`].
pub fn to_mounts(entries: impl IntoIterator<Item = Entry>) -> Vec<Mount> {
    let mut by_point: HashMap<String, usize> = HashMap::new();
    let mut mounts: Vec<Mount> = Vec::new();
    for entry in entries {
        let mount = entry.into_mount();
        match by_point.get(mount.mount_point.as_str()) {
            Some(&i) => mounts[i] = mount,
            None => {
                by_point.insert(mount.mount_point.clone(), mounts.len());
                mounts.push(mount);
            }
        }
    }
    let points: Vec<&str> = mounts.iter().map(|m| m.mount_point.as_str()).collect();
    let ids = assign_ids(&points);
    for (m, id) in mounts.iter_mut().zip(ids) {
        m.id = id;
    }
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro
40 28 8:17 / /mnt/my\\040data rw,noatime shared:30 master:2 - ext4 /dev/sdb1 rw
41 28 8:17 /photos /srv/photos ro,relatime shared:30 - ext4 /dev/sdb1 rw
42 28 0:50 / /mnt/nas rw,relatime - nfs4 nas:/export\\040a rw,vers=4.2
43 28 0:51 / /tmp/x rw - tmpfs tmpfs rw,size=1024k
44 43 0:52 / /tmp/x rw - tmpfs tmpfs rw,size=2048k
";

    #[test]
    fn parses_fields_and_optional_tags() {
        let (entries, bad) = parse(SAMPLE);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(entries.len(), 7);
        let root = &entries[1];
        assert_eq!((root.mount_id, root.parent_id), (28, 1));
        assert_eq!(root.dev, "8:2");
        assert_eq!(root.mount_point, "/");
        assert_eq!(root.optional, ["shared:1"]);
        assert_eq!(root.super_options, ["rw", "errors=remount-ro"]);
        let data = &entries[2];
        assert_eq!(data.mount_point, "/mnt/my data");
        assert_eq!(data.optional, ["shared:30", "master:2"]);
        assert_eq!(data.options, ["rw", "noatime"]);
        let nfs = &entries[4];
        assert!(nfs.optional.is_empty());
        assert_eq!(nfs.source, "nas:/export a");
        assert_eq!(nfs.fs_type, "nfs4");
    }

    #[test]
    fn escapes_are_undone() {
        assert_eq!(unescape("a\\040b\\011c\\012d\\134e"), "a b\tc\nd\\e");
        assert_eq!(unescape("plain"), "plain");
        // Not an escape: kept as it is.
        assert_eq!(unescape("a\\9bc"), "a\\9bc");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
        assert_eq!(unescape("\\"), "\\");
        // UTF-8 written as octal bytes.
        assert_eq!(unescape("caf\\303\\251"), "café");
    }

    #[test]
    fn bind_mount_keeps_its_root_and_same_device_twice() {
        let (entries, _) = parse(SAMPLE);
        let mounts = to_mounts(entries.clone());
        let data = mounts.iter().find(|m| m.mount_point == "/mnt/my data").unwrap();
        let photos = mounts.iter().find(|m| m.mount_point == "/srv/photos").unwrap();
        assert_eq!(data.dev, photos.dev);
        assert_eq!(data.id, "mnt_my_data");
        assert_eq!(photos.id, "srv_photos");
        assert_eq!(photos.root, "/photos");
        assert_eq!(data.root, "/");
        assert!(photos.read_only);
        assert!(!data.read_only);
    }

    #[test]
    fn mount_over_mount_topmost_wins() {
        let (entries, _) = parse(SAMPLE);
        let mounts = to_mounts(entries.clone());
        let x: Vec<_> = mounts.iter().filter(|m| m.mount_point == "/tmp/x").collect();
        assert_eq!(x.len(), 1);
        assert_eq!(x[0].dev, "0:52");
        assert_eq!(x[0].super_options, ["rw", "size=2048k"]);
    }

    #[test]
    fn network_and_read_only_flags() {
        let (entries, _) = parse(SAMPLE);
        let mounts = to_mounts(entries.clone());
        assert!(mounts.iter().find(|m| m.id == "mnt_nas").unwrap().network);
        assert!(!mounts.iter().find(|m| m.id == "root").unwrap().network);
        assert!(is_network("fuse.sshfs") && is_network("cifs") && is_network("smb3") && is_network("nfs"));
        assert!(!is_network("fuse") && !is_network("fuseblk") && !is_network("ext4"));
        let e = parse_line("50 28 8:33 / /mnt/failing rw,relatime - ext4 /dev/sdc1 ro,errors=remount-ro").unwrap();
        assert!(e.into_mount().read_only, "superblock ro counts");
    }

    #[test]
    fn clashing_ids_are_made_distinct_deterministically() {
        let text = "\
60 28 0:60 / /mnt/a\\040b rw - tmpfs tmpfs rw
61 28 0:61 / /mnt/a_b rw - tmpfs tmpfs rw
62 28 0:62 / /mnt/a.b rw - tmpfs tmpfs rw
";
        let (entries, _) = parse(text);
        let mounts = to_mounts(entries.clone());
        let ids: Vec<&str> = mounts.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids[1], "mnt_a_b");
        assert!(ids[0].starts_with("mnt_a_b-") && ids[2].starts_with("mnt_a_b-"));
        assert_ne!(ids[0], ids[2]);
        // Same result whatever the order of the table.
        let reversed: Vec<Entry> = entries.iter().rev().cloned().collect();
        let again = to_mounts(reversed);
        for m in &mounts {
            assert_eq!(again.iter().find(|o| o.mount_point == m.mount_point).unwrap().id, m.id);
        }
        assert!(mounts.iter().all(|m| crate::model::sanitize_id(&m.id) == m.id));
    }

    #[test]
    fn bad_lines_are_reported_not_fatal() {
        let text =
            "garbage\n70 28 x / /a rw - tmpfs t rw\n71 28 0:1 / /b rw shared:1\n72 28 0:1 / /c rw - tmpfs t rw\n";
        let (entries, bad) = parse(text);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].mount_point, "/c");
        assert_eq!(bad.len(), 3);
        assert_eq!(bad[1].1, LineError::BadDev("x".into()));
        assert_eq!(bad[2].1, LineError::NoSeparator);
        assert!(matches!(parse_line("").unwrap_err(), LineError::Missing("mount id")));
    }

    #[test]
    fn empty_source_and_super_options() {
        let e = parse_line("80 28 0:70 / /x rw - fusectl  rw").unwrap();
        assert_eq!(e.source, "");
        assert_eq!(e.super_options, ["rw"]);
        let e = parse_line("81 28 0:70 / /y rw - tmpfs tmpfs").unwrap();
        assert!(e.super_options.is_empty());
    }
}
