use super::*;
use crate::events::CloudEvent;

fn ev(seq: u64) -> Arc<Published> {
    Arc::new(Published::new(CloudEvent::new(
        seq,
        "diskwatch://t",
        crate::events::EventKind::DiskAdded,
        std::time::SystemTime::UNIX_EPOCH,
        "disk/x".into(),
        serde_json::json!({"n": seq}),
    )))
}

fn options(max_bytes: u64, keep: usize, ring_events: usize) -> JournalOptions {
    JournalOptions { max_bytes, keep, sync: JournalSync::Batch, hwm_block: 100, ring_events, ring_bytes: usize::MAX }
}

fn seqs(events: &[Arc<Published>]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

#[test]
fn survives_torn_and_corrupt_records() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, r) = Journal::open(dir.path(), options(1 << 20, 2, 100)).unwrap();
    assert_eq!((r.last_seq, r.hwm, r.start_after()), (0, 0, 0));
    j.append(&[ev(1), ev(2)]).unwrap();
    drop(j);
    let path = dir.path().join("events.jsonl");
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"garbage\n{\"specversion\":\"1.0\",\"id\":\"3\"").unwrap();
    drop(f);
    let (mut j, r) = Journal::open(dir.path(), options(1 << 20, 2, 100)).unwrap();
    assert_eq!(r.last_seq, 2);
    assert_eq!(r.skipped, 2);
    j.append(&[ev(3)]).unwrap();
    drop(j);
    let (_, r) = Journal::open(dir.path(), options(1 << 20, 2, 100)).unwrap();
    assert_eq!(seqs(&r.events), [1, 2, 3]);
    assert_eq!(r.skipped, 1, "only the garbage line remains; the torn tail was cut");
}

#[test]
fn rotates_at_the_cap_and_keeps_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path(), options(2048, 2, 10)).unwrap();
    for seq in 1..=200 {
        j.append(&[ev(seq)]).unwrap();
    }
    drop(j);
    assert!(dir.path().join("events.jsonl.1").exists());
    assert!(dir.path().join("events.jsonl.2").exists());
    assert!(!dir.path().join("events.jsonl.3").exists());
    let total: u64 = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("events.jsonl"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(total <= 3 * 2048, "size capped: {total}");
    let (_, r) = Journal::open(dir.path(), options(2048, 2, 10)).unwrap();
    assert_eq!(r.last_seq, 200);
    assert_eq!(r.events.len(), 10);
    assert_eq!(r.events.last().unwrap().seq, 200);
}

#[test]
fn the_ring_is_loaded_within_its_byte_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path(), options(1 << 20, 1, 100)).unwrap();
    j.append(&(1..=50).map(ev).collect::<Vec<_>>()).unwrap();
    drop(j);
    let one = ev(50).held_bytes();
    let (_, r) = Journal::open(dir.path(), JournalOptions { ring_bytes: one * 5, ..options(1 << 20, 1, 100) }).unwrap();
    assert_eq!(seqs(&r.events), (46..=50).collect::<Vec<_>>());
}

#[test]
fn ids_are_reserved_in_blocks_and_never_reissued() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path(), options(1 << 20, 1, 10)).unwrap();
    j.reserve(1).unwrap();
    assert_eq!(fs::read_to_string(dir.path().join(HWM_FILE)).unwrap(), "101\n");
    j.reserve(101).unwrap();
    assert_eq!(fs::read_to_string(dir.path().join(HWM_FILE)).unwrap(), "101\n", "within the block: no write");
    j.append(&(1..=101).map(ev).collect::<Vec<_>>()).unwrap();
    j.reserve(102).unwrap();
    assert_eq!(fs::read_to_string(dir.path().join(HWM_FILE)).unwrap(), "202\n");
    // A crash: the journal's tail is lost, the high-water mark is not.
    drop(j);
    let path = dir.path().join("events.jsonl");
    let text = fs::read_to_string(&path).unwrap();
    let cut: usize = text.split_inclusive('\n').take(50).map(str::len).sum();
    fs::write(&path, &text[..cut]).unwrap();
    let (mut j, r) = Journal::open(dir.path(), options(1 << 20, 1, 10)).unwrap();
    assert_eq!((r.last_seq, r.hwm, r.start_after()), (50, 202, 202));
    // A clean stop records the exact end: the next run continues right after it.
    j.reserve(203).unwrap();
    j.append(&[ev(203)]).unwrap();
    j.close(203).unwrap();
    drop(j);
    let (_, r) = Journal::open(dir.path(), options(1 << 20, 1, 10)).unwrap();
    assert_eq!(r.start_after(), 203);
    // Outside damage to the mark: two blocks are skipped rather than risk a reuse.
    fs::write(dir.path().join(HWM_FILE), "zz").unwrap();
    let (_, r) = Journal::open(dir.path(), options(1 << 20, 1, 10)).unwrap();
    assert_eq!(r.start_after(), 203 + 200);
}

#[test]
fn a_failed_write_or_rotation_is_retried_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path(), options(2048, 2, 10)).unwrap();
    j.append(&[ev(1)]).unwrap();
    assert!(j.failing().is_none());
    // The file cannot be opened again (a directory stands in its way, as EMFILE or ENOSPC would).
    j.file = None;
    let current = dir.path().join("events.jsonl");
    fs::rename(&current, dir.path().join("saved")).unwrap();
    fs::create_dir(&current).unwrap();
    assert!(matches!(j.append(&[ev(2)]), Err(JournalError::Open { .. })));
    assert!(j.failing().is_some_and(|m| m.contains("cannot open journal")), "{:?}", j.failing());
    assert!(j.append(&[ev(3)]).is_err(), "retried on the next batch, still failing");
    fs::remove_dir(&current).unwrap();
    fs::rename(dir.path().join("saved"), &current).unwrap();
    j.append(&[ev(4)]).unwrap();
    assert!(j.failing().is_none(), "writes again once the file opens");
    // A rotation that cannot rename (a non-empty directory where the oldest file goes).
    fs::create_dir_all(dir.path().join("events.jsonl.2/blocker")).unwrap();
    fs::write(dir.path().join("events.jsonl.1"), "").unwrap();
    let mut failures = 0;
    for seq in 5..=100 {
        if j.append(&[ev(seq)]).is_err() {
            failures += 1;
        }
    }
    assert!(failures > 0, "the rotation failed");
    fs::remove_dir_all(dir.path().join("events.jsonl.2")).unwrap();
    for seq in 101..=120 {
        j.append(&[ev(seq)]).unwrap();
    }
    assert!(j.failing().is_none());
    drop(j);
    let (_, r) = Journal::open(dir.path(), options(2048, 2, 1000)).unwrap();
    assert_eq!(r.last_seq, 120);
    let held = seqs(&r.events);
    assert!(held.windows(2).all(|w| w[0] < w[1]), "ordered, no duplicate: {held:?}");
    assert!(held.ends_with(&(101..=120).collect::<Vec<_>>()));
}

#[test]
fn sync_policy_parses() {
    #[derive(serde::Deserialize)]
    struct T {
        s: JournalSync,
    }
    let parse = |s: &str| serde_json::from_str::<T>(&format!("{{\"s\":{s:?}}}")).map(|t| t.s);
    assert_eq!(parse("batch").unwrap(), JournalSync::Batch);
    assert_eq!(parse("1s").unwrap(), JournalSync::Interval(Duration::from_secs(1)));
    assert_eq!(parse("250ms").unwrap(), JournalSync::Interval(Duration::from_millis(250)));
    assert!(parse("0s").is_err());
    assert!(parse("often").unwrap_err().to_string().contains("neither"));
}

#[test]
fn loading_reads_the_newest_files_first_and_only_as_far_as_the_ring_needs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path(), options(4096, 3, 10)).unwrap();
    for seq in 1..=100 {
        j.append(&[ev(seq)]).unwrap();
    }
    drop(j);
    let mut oldest = OpenOptions::new().append(true).open(dir.path().join("events.jsonl.3")).unwrap();
    oldest.write_all(b"garbage in the oldest file\n").unwrap();
    assert!(fs::read_to_string(dir.path().join("events.jsonl")).unwrap().lines().count() < 30);
    let (_, r) = Journal::open(dir.path(), options(4096, 3, 30)).unwrap();
    assert_eq!(r.last_seq, 100);
    assert_eq!(seqs(&r.events), (71..=100).collect::<Vec<_>>(), "the ring spans files");
    assert_eq!(r.skipped, 0, "the oldest file was not needed, so not read");
}
