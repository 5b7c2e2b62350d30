//! The on-disk journal: every event as one JSON line in `events.jsonl` under
//! state_dir, rotated to `events.jsonl.1`, `.2`, … at a size cap, plus the
//! sequence high-water mark in `events.hwm`.
//!
//! Durability (docs/reliability.md, "Journal"):
//! - each batch is one `write` with no user-space buffering, so a killed
//!   process leaves every earlier batch and at most one torn line, which
//!   loading cuts off;
//! - data reaches stable storage per batch or at a fixed interval
//!   ([`JournalSync`]), which bounds what a power loss can take;
//! - ids are reserved in blocks: `events.hwm` (atomically replaced, fsynced)
//!   always holds an id at or above every id issued, and a restart continues
//!   after it, so an id lost from the journal's tail is never issued again;
//! - a failed write or reopen (ENOSPC, EMFILE) is retried on every following
//!   batch; while it fails the journal reports itself failing (health
//!   `degraded`) and the events live on in the ring and the streams only.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tracing::{debug, info, warn};

use super::history::{complete_len, for_each_line, JournalFiles};
use super::Published;
use crate::fsutil;

/// File holding the sequence high-water mark.
pub const HWM_FILE: &str = "events.hwm";

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
    #[error("cannot persist the sequence high-water mark {path}: {source}")]
    Hwm { path: PathBuf, source: io::Error },
}

/// When journal writes are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalSync {
    /// After every batch, before its events reach any client: nothing a client saw is lost.
    Batch,
    /// At most this long after a write (in the background): a power loss takes at most
    /// this much history, plus the time one fsync takes.
    Interval(Duration),
}

impl Serialize for JournalSync {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Batch => s.serialize_str("batch"),
            Self::Interval(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for JournalSync {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "batch" {
            return Ok(Self::Batch);
        }
        match humantime::parse_duration(&text) {
            Ok(d) if !d.is_zero() => Ok(Self::Interval(d)),
            _ => Err(serde::de::Error::custom(format!(
                "{text:?} is neither \"batch\" nor a duration above zero such as \"1s\""
            ))),
        }
    }
}

/// How the journal is kept.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// Size of the current file at which it is rotated.
    pub max_bytes: u64,
    /// Rotated files kept besides the current one.
    pub keep: usize,
    pub sync: JournalSync,
    /// Ids reserved per high-water-mark write (a crash skips at most this many).
    pub hwm_block: u64,
    /// Newest events loaded back for the ring, by count and bytes.
    pub ring_events: usize,
    pub ring_bytes: usize,
}

/// What loading the journal found.
pub struct Recovered {
    /// The newest events within the ring's bounds, oldest first.
    pub events: Vec<Arc<Published>>,
    /// The highest sequence number in any journal file (0 for a fresh journal).
    pub last_seq: u64,
    /// The persisted high-water mark (0 when none was written).
    pub hwm: u64,
    /// Lines that could not be parsed and were skipped.
    pub skipped: usize,
}

impl Recovered {
    /// Every id at or below this may have been issued: this run's ids come after it.
    pub fn start_after(&self) -> u64 {
        self.last_seq.max(self.hwm)
    }
}

/// The background fsync's shared state.
#[derive(Debug, Default)]
struct SyncState {
    in_flight: AtomicBool,
    /// Highest id known to be on stable storage.
    synced_seq: AtomicU64,
    failed: AtomicBool,
}

pub struct Journal {
    files: Arc<JournalFiles>,
    /// `None` after a failed open or an unrecoverable write: reopened on the next batch.
    file: Option<File>,
    size: u64,
    options: JournalOptions,
    /// Persisted high-water mark: no id above it has been issued.
    hwm: u64,
    /// Highest id written to the current file.
    written_seq: u64,
    sync: Arc<SyncState>,
    /// Why the journal cannot write, while it cannot.
    failing: Option<String>,
}

impl Journal {
    /// Opens (creating) the journal in `dir` and loads its newest events.
    pub fn open(dir: &Path, options: JournalOptions) -> Result<(Self, Recovered), JournalError> {
        fs::create_dir_all(dir).map_err(|source| JournalError::CreateDir { path: dir.to_path_buf(), source })?;
        let files = Arc::new(JournalFiles::new(dir, options.keep));
        let current = files.current();
        let mut recovered = Recovered { events: Vec::new(), last_seq: 0, hwm: 0, skipped: 0 };
        // Newest file first: the ring wants the newest events, and the newest file holds the
        // last id; older files are read only while the ring still has room.
        let mut ring: VecDeque<Arc<Published>> = VecDeque::new();
        let mut ring_bytes = 0usize;
        for path in files.paths().iter().rev().filter(|p| p.exists()) {
            let room = options.ring_events.saturating_sub(ring.len());
            let room_bytes = options.ring_bytes.saturating_sub(ring_bytes);
            if recovered.last_seq > 0 && (room == 0 || room_bytes == 0) && *path != current {
                break;
            }
            let mut part: VecDeque<Arc<Published>> = VecDeque::new();
            let mut part_bytes = 0usize;
            let complete = for_each_line(path, |event| {
                let Some(event) = event else {
                    recovered.skipped += 1;
                    return;
                };
                recovered.last_seq = recovered.last_seq.max(event.seq);
                if room == 0 || part.back().is_some_and(|last| last.seq >= event.seq) {
                    return;
                }
                part_bytes += event.held_bytes();
                part.push_back(Arc::new(event));
                // As in the ring itself, the newest event stays whatever its size.
                while part.len() > room || part_bytes > room_bytes && !(part.len() == 1 && ring.is_empty()) {
                    match part.pop_front() {
                        Some(old) => part_bytes -= old.held_bytes(),
                        None => break,
                    }
                }
            })
            .map_err(|source| JournalError::Read { path: path.clone(), source })?;
            if *path == current {
                let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                if len > complete {
                    warn!(path = %path.display(), bytes = len - complete, "journal ends in a torn record; cutting it off");
                    recovered.skipped += 1;
                    truncate(path, complete)?;
                }
            }
            for event in part.into_iter().rev() {
                if ring.front().is_some_and(|first| first.seq <= event.seq) {
                    continue;
                }
                ring_bytes += event.held_bytes();
                ring.push_front(event);
            }
        }
        if recovered.skipped > 0 {
            warn!(skipped = recovered.skipped, "journal had unreadable records");
        }
        recovered.events = ring.into_iter().collect();
        recovered.hwm = read_hwm(&dir.join(HWM_FILE), recovered.last_seq, options.hwm_block);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&current)
            .map_err(|source| JournalError::Open { path: current.clone(), source })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let start = recovered.start_after();
        let journal = Self {
            files,
            file: Some(file),
            size,
            options,
            hwm: recovered.hwm,
            written_seq: recovered.last_seq,
            sync: Arc::new(SyncState { synced_seq: AtomicU64::new(recovered.last_seq), ..Default::default() }),
            failing: None,
        };
        debug!(start_after = start, hwm = recovered.hwm, "journal opened");
        Ok((journal, recovered))
    }

    /// When writes are forced to stable storage.
    pub fn sync_policy(&self) -> JournalSync {
        self.options.sync
    }

    /// The files, for readers of history.
    pub fn files(&self) -> Arc<JournalFiles> {
        self.files.clone()
    }

    /// Why the journal cannot write, while it cannot (health shows it `degraded`).
    pub fn failing(&self) -> Option<&str> {
        self.failing.as_deref().or_else(|| {
            self.sync.failed.load(Ordering::Relaxed).then_some("the last background fsync of the journal failed")
        })
    }

    /// Highest id known to be on stable storage.
    pub fn synced_seq(&self) -> u64 {
        self.sync.synced_seq.load(Ordering::Relaxed)
    }

    /// Makes sure ids up to `last` may be issued: when `last` passes the persisted
    /// high-water mark, persists a new one a block ahead first (atomic, fsynced).
    pub fn reserve(&mut self, last: u64) -> Result<(), JournalError> {
        if last <= self.hwm {
            return Ok(());
        }
        let hwm = last + self.options.hwm_block.max(1);
        let path = self.files.dir().join(HWM_FILE);
        fsutil::write_atomic(&path, format!("{hwm}\n").as_bytes())
            .map_err(|source| JournalError::Hwm { path: path.clone(), source })?;
        debug!(hwm, "sequence high-water mark persisted");
        self.hwm = hwm;
        Ok(())
    }

    /// Appends a batch of events, rotating first when the file would grow past the cap.
    pub fn append(&mut self, events: &[Arc<Published>]) -> Result<(), JournalError> {
        let result = self.try_append(events);
        match &result {
            Ok(()) => {
                if let Some(was) = self.failing.take() {
                    info!(failure = %was, "journal writes again");
                }
            }
            Err(e) => self.failing = Some(e.to_string()),
        }
        result
    }

    fn try_append(&mut self, events: &[Arc<Published>]) -> Result<(), JournalError> {
        let Some(last) = events.last() else { return Ok(()) };
        let mut buf = Vec::with_capacity(events.iter().map(|e| e.json().len() + 1).sum());
        for event in events {
            buf.extend_from_slice(event.json().as_bytes());
            buf.push(b'\n');
        }
        let mut rotation = Ok(());
        if self.file.is_some() && self.size > 0 && self.size + buf.len() as u64 > self.options.max_bytes {
            // A rotation that cannot rename leaves the current file in place: the batch is
            // still written (past the cap), the failure reported, and the next batch retries.
            rotation = self.rotate();
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let path = self.files.current();
        let Some(file) = self.file.as_mut() else { return Ok(()) };
        if let Err(source) = file.write_all(&buf) {
            // Cut the part that made it, so the next batch starts on a fresh line;
            // if even that fails, reopen (which cuts a torn tail) on the next batch.
            if file.set_len(self.size).is_err() {
                self.file = None;
            }
            return Err(JournalError::Write { path, source });
        }
        self.size += buf.len() as u64;
        self.written_seq = last.seq;
        if self.options.sync == JournalSync::Batch {
            if let Some(file) = &self.file {
                file.sync_data().map_err(|source| JournalError::Write { path, source })?;
                self.sync.synced_seq.store(last.seq, Ordering::Relaxed);
                debug!(target: "diskwatch::journal_sync", synced_through = last.seq, "journal synced");
            }
        }
        rotation
    }

    /// Starts a background fsync of what was written since the last one (the interval
    /// policy's tick); does nothing while one is still running.
    pub fn sync_in_background(&mut self) {
        let target = self.written_seq;
        if target <= self.synced_seq() || self.sync.in_flight.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(file) = self.file.as_ref().and_then(|f| f.try_clone().ok()) else {
            self.sync.in_flight.store(false, Ordering::Release);
            return;
        };
        let state = self.sync.clone();
        tokio::task::spawn_blocking(move || {
            match file.sync_data() {
                Ok(()) => {
                    state.synced_seq.fetch_max(target, Ordering::Relaxed);
                    state.failed.store(false, Ordering::Relaxed);
                    debug!(target: "diskwatch::journal_sync", synced_through = target, "journal synced");
                }
                Err(e) => {
                    state.failed.store(true, Ordering::Relaxed);
                    warn!(error = %e, "journal fsync failed");
                }
            }
            state.in_flight.store(false, Ordering::Release);
        });
    }

    /// Forces the journal to stable storage and records the exact high-water mark
    /// (at shutdown: a clean restart then continues right after the last id).
    pub fn close(&mut self, last: u64) -> Result<(), JournalError> {
        let path = self.files.current();
        if let Some(file) = &self.file {
            file.sync_data().map_err(|source| JournalError::Write { path, source })?;
            self.sync.synced_seq.store(self.written_seq, Ordering::Relaxed);
        }
        if self.written_seq >= last && last > 0 {
            let path = self.files.dir().join(HWM_FILE);
            fsutil::write_atomic(&path, format!("{last}\n").as_bytes())
                .map_err(|source| JournalError::Hwm { path, source })?;
            self.hwm = last;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), JournalError> {
        let current = self.files.current();
        // The old file's data first, so rotation never loses synced history.
        if let Some(file) = &self.file {
            let _ = file.sync_data();
        }
        {
            let _guard = self.files.rotation_guard();
            let keep = self.files.keep();
            if keep == 0 {
                if let Err(source) = fs::remove_file(&current) {
                    return Err(JournalError::Write { path: current, source });
                }
            } else {
                let _ = fs::remove_file(self.files.rotated(keep));
                for n in (1..keep).rev() {
                    let from = self.files.rotated(n);
                    if from.exists() {
                        if let Err(source) = fs::rename(&from, self.files.rotated(n + 1)) {
                            return Err(JournalError::Write { path: from, source });
                        }
                    }
                }
                if let Err(source) = fs::rename(&current, self.files.rotated(1)) {
                    return Err(JournalError::Write { path: current, source });
                }
            }
        }
        // Renamed: from here on a failure leaves no file open, and the next batch reopens.
        self.file = None;
        self.size = 0;
        self.reopen()?;
        let _ = fsutil::sync_dir(self.files.dir());
        Ok(())
    }

    /// Opens the current file again, cutting a torn tail a failed write may have left.
    fn reopen(&mut self) -> Result<(), JournalError> {
        let current = self.files.current();
        let open = |path: &Path| -> io::Result<(File, u64)> {
            let mut file = OpenOptions::new().create(true).read(true).append(true).open(path)?;
            let complete = complete_len(&mut file)?;
            if complete < file.metadata()?.len() {
                file.set_len(complete)?;
            }
            Ok((file, complete))
        };
        match open(&current) {
            Ok((file, size)) => {
                self.file = Some(file);
                self.size = size;
                Ok(())
            }
            Err(source) => Err(JournalError::Open { path: current, source }),
        }
    }
}

/// The persisted high-water mark. An unreadable file (it is replaced atomically, so
/// only outside damage does that) is taken as two blocks past the journal's end.
fn read_hwm(path: &Path, last_seq: u64, block: u64) -> u64 {
    match fs::read_to_string(path) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            warn!(path = %path.display(), "unreadable sequence high-water mark; skipping two blocks of ids");
            last_seq + 2 * block.max(1)
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the sequence high-water mark; skipping two blocks of ids");
            last_seq + 2 * block.max(1)
        }
    }
}

/// Cuts a torn last record off so the next append starts on a fresh line.
fn truncate(path: &Path, complete: u64) -> Result<(), JournalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|source| JournalError::Open { path: path.to_path_buf(), source })?;
    file.set_len(complete).map_err(|source| JournalError::Write { path: path.to_path_buf(), source })
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
