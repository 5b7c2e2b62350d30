//! The on-disk journal: every event as one JSON line in `events.jsonl` under
//! state_dir, rotated to `events.jsonl.1`, `.2`, … at a size cap.
//!
//! Each batch is written with one `write` call and no user-space buffering,
//! so a process killed at any moment leaves every earlier batch in the file
//! and at most one torn line at its end, which loading skips and cuts off.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use super::{CloudEvent, Published};

const FILE_NAME: &str = "events.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot create state directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot open journal {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read journal {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write journal {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// What loading the journal found.
pub struct Recovered {
    /// The newest events, at most the requested number, oldest first.
    pub events: Vec<Arc<Published>>,
    /// The highest sequence number in any journal file (0 for a fresh journal).
    pub last_seq: u64,
    /// Lines that could not be parsed and were skipped.
    pub skipped: usize,
}

pub struct Journal {
    dir: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: usize,
}

impl Journal {
    /// Opens (creating) the journal in `dir` and loads its newest `keep_events` events.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        keep: usize,
        keep_events: usize,
    ) -> Result<(Self, Recovered), JournalError> {
        fs::create_dir_all(dir).map_err(|source| JournalError::CreateDir { path: dir.to_path_buf(), source })?;
        let current = dir.join(FILE_NAME);
        let mut recovered = Recovered { events: Vec::new(), last_seq: 0, skipped: 0 };
        let mut files: Vec<PathBuf> = (1..=keep.max(1)).rev().map(|n| rotated(dir, n)).collect();
        files.push(current.clone());
        let mut ring = std::collections::VecDeque::with_capacity(keep_events.min(65_536));
        for path in files.iter().filter(|p| p.exists()) {
            let complete = load_file(path, &mut recovered, &mut ring, keep_events)?;
            if *path == current {
                truncate_torn_tail(path, complete)?;
            }
        }
        recovered.events = ring.into_iter().collect();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&current)
            .map_err(|source| JournalError::Open { path: current.clone(), source })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok((Self { dir: dir.to_path_buf(), file, size, max_bytes: max_bytes.max(1024), keep }, recovered))
    }

    /// Appends a batch of events, rotating first when the file would grow past the cap.
    pub fn append(&mut self, events: &[Arc<Published>]) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(events.iter().map(|e| e.json.len() + 1).sum());
        for event in events {
            buf.extend_from_slice(event.json.as_bytes());
            buf.push(b'\n');
        }
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let path = self.dir.join(FILE_NAME);
        self.file.write_all(&buf).map_err(|source| JournalError::Write { path, source })?;
        self.size += buf.len() as u64;
        Ok(())
    }

    /// Forces the journal to stable storage (at shutdown).
    pub fn sync(&mut self) -> Result<(), JournalError> {
        let path = self.dir.join(FILE_NAME);
        self.file.sync_data().map_err(|source| JournalError::Write { path, source })
    }

    fn rotate(&mut self) -> Result<(), JournalError> {
        let current = self.dir.join(FILE_NAME);
        if self.keep == 0 {
            let _ = fs::remove_file(&current);
        } else {
            let _ = fs::remove_file(rotated(&self.dir, self.keep));
            for n in (1..self.keep).rev() {
                let from = rotated(&self.dir, n);
                if from.exists() {
                    fs::rename(&from, rotated(&self.dir, n + 1))
                        .map_err(|source| JournalError::Write { path: from.clone(), source })?;
                }
            }
            fs::rename(&current, rotated(&self.dir, 1))
                .map_err(|source| JournalError::Write { path: current.clone(), source })?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&current)
            .map_err(|source| JournalError::Open { path: current.clone(), source })?;
        self.size = 0;
        Ok(())
    }
}

fn rotated(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("{FILE_NAME}.{n}"))
}

/// Reads one journal file into `ring`; returns the byte length of its complete lines.
fn load_file(
    path: &Path,
    recovered: &mut Recovered,
    ring: &mut std::collections::VecDeque<Arc<Published>>,
    keep_events: usize,
) -> Result<u64, JournalError> {
    let file = File::open(path).map_err(|source| JournalError::Read { path: path.to_path_buf(), source })?;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut complete = 0u64;
    let mut number = 0usize;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| JournalError::Read { path: path.to_path_buf(), source })?;
        if n == 0 {
            break;
        }
        number += 1;
        if line.last() != Some(&b'\n') {
            warn!(path = %path.display(), line = number, "journal ends in a torn record; skipping it");
            recovered.skipped += 1;
            break;
        }
        complete += n as u64;
        match serde_json::from_slice::<CloudEvent>(&line) {
            Ok(event) if event.seq() > 0 => {
                recovered.last_seq = recovered.last_seq.max(event.seq());
                if ring.back().is_some_and(|last: &Arc<Published>| last.seq >= event.seq()) {
                    continue;
                }
                if ring.len() == keep_events {
                    ring.pop_front();
                }
                if keep_events > 0 {
                    ring.push_back(Arc::new(Published::new(event)));
                }
            }
            Ok(_) | Err(_) => {
                warn!(path = %path.display(), line = number, "unreadable journal record; skipping it");
                recovered.skipped += 1;
            }
        }
    }
    Ok(complete)
}

/// Cuts a torn last record off so the next append starts on a fresh line.
fn truncate_torn_tail(path: &Path, complete: u64) -> Result<(), JournalError> {
    let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if len > complete {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|source| JournalError::Open { path: path.to_path_buf(), source })?;
        file.set_len(complete).map_err(|source| JournalError::Write { path: path.to_path_buf(), source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn survives_torn_and_corrupt_records() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, r) = Journal::open(dir.path(), 1 << 20, 2, 100).unwrap();
        assert_eq!(r.last_seq, 0);
        j.append(&[ev(1), ev(2)]).unwrap();
        drop(j);
        let path = dir.path().join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"garbage\n{\"specversion\":\"1.0\",\"id\":\"3\"").unwrap();
        drop(f);
        let (mut j, r) = Journal::open(dir.path(), 1 << 20, 2, 100).unwrap();
        assert_eq!(r.last_seq, 2);
        assert_eq!(r.skipped, 2);
        j.append(&[ev(3)]).unwrap();
        drop(j);
        let (_, r) = Journal::open(dir.path(), 1 << 20, 2, 100).unwrap();
        assert_eq!(r.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(r.skipped, 1, "only the garbage line remains; the torn tail was cut");
    }

    #[test]
    fn rotates_at_the_cap_and_keeps_the_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 2048, 2, 10).unwrap();
        for seq in 1..=200 {
            j.append(&[ev(seq)]).unwrap();
        }
        drop(j);
        assert!(dir.path().join("events.jsonl.1").exists());
        assert!(dir.path().join("events.jsonl.2").exists());
        assert!(!dir.path().join("events.jsonl.3").exists());
        let total: u64 = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(total <= 3 * 2048, "size capped: {total}");
        let (_, r) = Journal::open(dir.path(), 2048, 2, 10).unwrap();
        assert_eq!(r.last_seq, 200);
        assert_eq!(r.events.len(), 10);
        assert_eq!(r.events.last().unwrap().seq, 200);
    }
}
