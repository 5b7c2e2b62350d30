//! Renders a snapshot as the readable tables `diskwatch snapshot` prints.

use std::fmt::Write;

use crate::model::Snapshot;

/// `1.5 GiB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// Left-aligned columns separated by two spaces, with a header row.
fn table(out: &mut String, title: &str, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "{title} ({})", rows.len());
    if rows.is_empty() {
        out.push_str("  (none)\n\n");
        return;
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from(" ");
        for (cell, w) in cells.iter().zip(&widths) {
            let _ = write!(s, " {cell:<w$} ");
        }
        s.trim_end().to_owned() + "\n"
    };
    out.push_str(&line(header.to_vec()));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out.push('\n');
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".to_owned())
}

fn yes(flag: bool, word: &str) -> String {
    if flag {
        word.to_owned()
    } else {
        String::new()
    }
}

/// `ok`, `FAILING`, `ok, 8 realloc` (counts that are not zero), or `-` when not read.
fn health_cell(d: &crate::model::Disk) -> String {
    let Some(h) = &d.health else { return "-".to_owned() };
    let mut cell = match h.passed {
        Some(true) => "ok".to_owned(),
        Some(false) => "FAILING".to_owned(),
        None => "?".to_owned(),
    };
    for (n, what) in [
        (h.reallocated_sectors, "realloc"),
        (h.pending_sectors, "pending"),
        (h.uncorrectable, "uncorr"),
        (h.nvme_media_errors, "media err"),
    ] {
        if let Some(n) = n.filter(|n| *n > 0) {
            let _ = write!(cell, ", {n} {what}");
        }
    }
    if h.nvme_critical_warning.is_some_and(|w| w != 0) {
        cell.push_str(", critical warning");
    }
    cell
}

/// The whole snapshot: disks, partitions, mounts and shares.
pub fn render(s: &Snapshot) -> String {
    let mut out = format!("node {}  last event {}\n\n", s.node_id, s.last_event_id);
    let mut disks: Vec<_> = s.disks.iter().collect();
    disks.sort_by(|a, b| a.kernel_name.cmp(&b.kernel_name));
    let rows: Vec<Vec<String>> = disks
        .iter()
        .map(|d| {
            let model = [d.vendor.as_deref(), d.model.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
            let flags = [yes(d.read_only, "ro"), yes(d.removable, "removable")]
                .into_iter()
                .filter(|f| !f.is_empty())
                .collect::<Vec<_>>()
                .join(",");
            vec![
                d.kernel_name.clone(),
                human_bytes(d.size_bytes),
                opt(&d.bus),
                if model.is_empty() { "-".to_owned() } else { model },
                d.partitions.len().to_string(),
                health_cell(d),
                d.health.as_ref().and_then(|h| h.temperature_c).map_or("-".to_owned(), |t| format!("{t:.0}°C")),
                d.power_state.map_or("-".to_owned(), |p| p.as_str().to_owned()),
                if flags.is_empty() { "-".to_owned() } else { flags },
                d.id.clone(),
            ]
        })
        .collect();
    table(
        &mut out,
        "DISKS",
        &["NAME", "SIZE", "BUS", "MODEL", "PARTS", "HEALTH", "TEMP", "POWER", "FLAGS", "ID"],
        &rows,
    );

    let mut parts: Vec<_> = s.partitions.iter().collect();
    parts.sort_by(|a, b| a.kernel_name.cmp(&b.kernel_name));
    let rows: Vec<Vec<String>> = parts
        .iter()
        .map(|p| {
            vec![
                p.kernel_name.clone(),
                human_bytes(p.size_bytes),
                opt(&p.fs_type),
                opt(&p.fs_label),
                p.mounts.join(",").chars().take(40).collect::<String>(),
                p.id.clone(),
            ]
        })
        .map(|mut r| {
            if r[4].is_empty() {
                r[4] = "-".to_owned();
            }
            r
        })
        .collect();
    table(&mut out, "PARTITIONS", &["NAME", "SIZE", "FS", "LABEL", "MOUNTS", "ID"], &rows);

    let mut mounts: Vec<_> = s.mounts.iter().collect();
    mounts.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    let rows: Vec<Vec<String>> = mounts
        .iter()
        .map(|m| {
            let (size, used, avail, pct) = match (&m.usage, m.stale) {
                (_, true) => ("stale".to_owned(), "-".to_owned(), "-".to_owned(), "-".to_owned()),
                (Some(u), false) => (
                    human_bytes(u.total_bytes),
                    human_bytes(u.used_bytes),
                    human_bytes(u.available_bytes),
                    format!("{:.0}%", u.percent),
                ),
                (None, false) => ("-".to_owned(), "-".to_owned(), "-".to_owned(), "-".to_owned()),
            };
            vec![
                m.mount_point.clone(),
                m.source.clone(),
                m.fs_type.clone(),
                size,
                used,
                avail,
                pct,
                if m.read_only { "ro".to_owned() } else { "rw".to_owned() },
            ]
        })
        .collect();
    table(&mut out, "MOUNTS", &["MOUNT POINT", "SOURCE", "FS", "SIZE", "USED", "AVAIL", "USE%", "MODE"], &rows);

    let mut shares: Vec<_> = s.shares.iter().collect();
    shares.sort_by(|a, b| a.id.cmp(&b.id));
    let rows: Vec<Vec<String>> = shares
        .iter()
        .map(|sh| {
            vec![
                sh.protocol.as_str().to_owned(),
                sh.name.clone(),
                sh.path.clone(),
                if sh.available { "yes".to_owned() } else { "no".to_owned() },
                if sh.enabled { "yes".to_owned() } else { "no".to_owned() },
                if sh.read_only { "ro".to_owned() } else { "rw".to_owned() },
                opt(&sh.mount_id),
            ]
        })
        .collect();
    table(&mut out, "SHARES", &["PROTO", "NAME", "PATH", "AVAILABLE", "ENABLED", "MODE", "MOUNT"], &rows);

    let failed: Vec<_> = s.sources.iter().filter(|src| src.status == crate::model::SourceState::Failed).collect();
    for src in failed {
        let _ = writeln!(out, "warning: source {} failed: {}", src.name, src.message.as_deref().unwrap_or("-"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Mount, Usage};

    #[test]
    fn disk_health_columns() {
        let mut d: crate::model::Disk = serde_json::from_value(serde_json::json!({
            "id": "wwn-1", "stable": true, "kernel_name": "sdb", "devpath": "/d", "devnode": "/dev/sdb",
            "dev": "8:16", "vendor": null, "model": "WD40EFRX", "serial": null, "wwn": null, "bus": "ata",
            "size_bytes": 4000000000000u64, "removable": false, "rotational": true, "read_only": false,
            "partition_table": null, "fs_type": null, "fs_label": null, "fs_uuid": null,
            "members": [], "holders": [], "power_state": "standby",
            "health": {"passed": false, "temperature_c": 41.0, "power_on_hours": 1, "power_cycles": 1,
                "reallocated_sectors": 8, "pending_sectors": 0, "uncorrectable": null, "nvme_percentage_used": null,
                "nvme_critical_warning": null, "nvme_media_errors": null, "checked_at": "t", "source": "smartctl"}
        }))
        .unwrap();
        let snap = Snapshot {
            node_id: "n".into(),
            last_event_id: 0,
            disks: vec![d.clone()],
            partitions: vec![],
            mounts: vec![],
            shares: vec![],
            arrays: vec![],
            sources: vec![],
        };
        let text = render(&snap);
        let header = text.lines().find(|l| l.contains("HEALTH")).unwrap();
        assert!(header.contains("TEMP") && header.contains("POWER"), "{text}");
        let row = text.lines().find(|l| l.trim_start().starts_with("sdb")).unwrap();
        assert!(row.contains("FAILING, 8 realloc") && row.contains("41°C") && row.contains("standby"), "{row}");
        d.health = None;
        d.power_state = None;
        assert_eq!(health_cell(&d), "-");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(64 << 30), "64 GiB");
    }

    #[test]
    fn mounts_table_lines_up() {
        let mount = Mount {
            id: "mnt_data".into(),
            mount_point: "/mnt/data".into(),
            source: "/dev/sdb1".into(),
            dev: "8:17".into(),
            fs_type: "ext4".into(),
            options: vec!["ro".into()],
            super_options: vec![],
            read_only: true,
            root: "/".into(),
            network: false,
            partition_id: None,
            disk_id: None,
            shares: vec![],
            usage: Some(Usage {
                total_bytes: 100 << 30,
                used_bytes: 25 << 30,
                available_bytes: 75 << 30,
                percent: 25.0,
                inodes_total: 0,
                inodes_used: 0,
                inodes_free: 0,
            }),
            stale: false,
            attention: None,
            forecast: None,
            array_id: None,
        };
        let snap = Snapshot {
            node_id: "nas".into(),
            last_event_id: 7,
            disks: vec![],
            partitions: vec![],
            mounts: vec![mount],
            shares: vec![],
            sources: vec![],
            arrays: vec![],
        };
        let text = render(&snap);
        assert!(text.starts_with("node nas  last event 7\n"), "{text}");
        assert!(text.contains("DISKS (0)\n  (none)"), "{text}");
        let lines: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("MOUNTS")).take(3).collect();
        assert_eq!(lines[0], "MOUNTS (1)");
        assert_eq!(lines[1].find("SOURCE"), lines[2].find("/dev/sdb1"), "{text}");
        assert!(lines[2].contains("100 GiB") && lines[2].contains("25%") && lines[2].ends_with("ro"), "{text}");
    }
}
