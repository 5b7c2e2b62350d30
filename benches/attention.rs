//! Attention benchmark (issue 20's figures), over the real outputs of
//! tests/fixtures/smartctl/corpus:
//! - the verdict per disk per round: the rule table plus the verdict (acknowledgements,
//!   `since`, level) for every reading of the corpus, in µs per disk (target ≤ 50 µs);
//! - 1 000 unchanged rounds over 24 disks through `State::apply` (each round a new
//!   `checked_at`, the same values; a quarter of the disks damaged): repeated
//!   `disk.attention_changed` events (target 0), and the cost of a `DiskHealth` fact.
//!
//! `cargo bench --bench attention`.

use std::path::Path;
use std::time::{Instant, SystemTime};

use diskwatch::attention::disk::{Baselines, Limits};
use diskwatch::attention::{assess, Acks};
use diskwatch::model::{Disk, Health, PowerState};
use diskwatch::smartctl::{interpret, Answer};
use diskwatch::state::{Fact, State, StateConfig};

fn corpus() -> Vec<Health> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smartctl/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(p).expect("read");
            let json: serde_json::Value = serde_json::from_str(&text).expect("json");
            let status = json.pointer("/smartctl/exit_status").and_then(|v| v.as_i64()).unwrap_or(0) as i32;
            match interpret(status, &text) {
                Answer::Reading(r) => Some(r.into_health("2026-12-03T10:00:00.000Z".into())),
                _ => None,
            }
        })
        .collect()
}

fn disk(n: usize) -> Disk {
    serde_json::from_value(serde_json::json!({
        "id": format!("wwn-0x5000c500{n:08x}"), "stable": true, "kernel_name": format!("sd{n}"),
        "devpath": format!("/devices/x/sd{n}"), "devnode": format!("/dev/sd{n}"), "dev": format!("8:{}", n * 16),
        "vendor": null, "model": null, "serial": null, "wwn": null, "bus": "ata", "size_bytes": 1u64 << 40,
        "removable": false, "rotational": true, "read_only": false, "partition_table": null,
        "fs_type": null, "fs_label": null, "fs_uuid": null, "members": [], "holders": []
    }))
    .expect("disk")
}

fn main() {
    let readings = corpus();
    let limits = Limits { temperature_critical: 60.0 };
    let acks = Acks::new();

    // 1. The verdict per disk.
    let rounds = 200;
    let start = Instant::now();
    let mut not_ok = 0usize;
    for _ in 0..rounds {
        for h in &readings {
            let found = diskwatch::attention::disk::reasons(h, Baselines::of(h), limits);
            let a = assess(found, h.unreadable_since.as_deref(), &acks, None, &h.checked_at);
            not_ok += usize::from(a.level != diskwatch::model::attention::Level::Ok);
        }
    }
    let per_disk = start.elapsed().as_secs_f64() * 1e6 / (rounds * readings.len()) as f64;
    println!(
        "attention per disk per round: {per_disk:.2} µs (rules + verdict, {} real readings x {rounds} rounds; {} not ok per round; target <= 50 µs)",
        readings.len(),
        not_ok / rounds
    );

    // 2. 1 000 unchanged rounds over 24 disks through State::apply.
    let damaged: Vec<&Health> = readings
        .iter()
        .filter(|h| {
            let found = diskwatch::attention::disk::reasons(h, Baselines::of(h), limits);
            !found.is_empty()
        })
        .collect();
    let healthy: Vec<&Health> = readings.iter().filter(|h| !damaged.contains(h)).collect();
    let chosen: Vec<Health> = (0..24)
        .map(|i| if i % 4 == 0 { damaged[i % damaged.len()] } else { healthy[i % healthy.len()] }.clone())
        .collect();
    let mut state = State::new(StateConfig::default(), 0);
    let disks: Vec<Disk> = (0..24).map(disk).collect();
    state.apply(Fact::BlockDevices { disks: disks.clone(), partitions: vec![], initial: true }, SystemTime::now());
    let mut first_round = 0usize;
    let mut repeated = 0usize;
    let mut facts = 0usize;
    let start = Instant::now();
    for round in 0..=1000 {
        for (d, h) in disks.iter().zip(&chosen) {
            let mut h = h.clone();
            h.checked_at = format!("2026-12-03T10:{:02}:{:02}.000Z", round / 60 % 60, round % 60);
            let power = if round % 7 == 3 { PowerState::Standby } else { PowerState::Active };
            let fact = Fact::DiskHealth { id: d.id.clone(), power_state: power, health: Some(h), note: None };
            let events = state.apply(fact, SystemTime::now());
            facts += 1;
            let n = events.iter().filter(|e| e.kind == "disk.attention_changed").count();
            if round == 0 {
                first_round += n;
            } else {
                repeated += n;
            }
        }
    }
    let per_fact = start.elapsed().as_secs_f64() * 1e6 / facts as f64;
    println!(
        "1000 unchanged rounds over 24 disks ({} damaged): {first_round} disk.attention_changed in the first round, {repeated} repeated after it (target 0); State::apply of a DiskHealth fact {per_fact:.1} µs",
        chosen.iter().filter(|h| damaged.contains(h)).count()
    );
    assert_eq!(repeated, 0, "an unchanged value raised an event again");
}
