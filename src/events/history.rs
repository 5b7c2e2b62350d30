//! Reading history back from the journal files while the core keeps
//! appending: locate an id by binary search over byte offsets (lines are
//! ordered by id), then read forward in bounded chunks.
//!
//! Readers never take the core's locks. They open the files under the
//! rotation lock only (held by the writer while it renames files), then read
//! from their own descriptors: a rotation or deletion after that point does
//! not disturb them.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::Published;

/// Name of the current journal file; rotated ones get `.1`, `.2`, …
pub const FILE_NAME: &str = "events.jsonl";
/// Below this span the binary search gives way to a forward scan.
const SCAN_SPAN: u64 = 64 * 1024;

/// The journal's files as readers and the writer share them.
#[derive(Debug)]
pub struct JournalFiles {
    dir: PathBuf,
    keep: usize,
    /// Held by the writer while it renames files, by readers while they open them.
    rotation: Mutex<()>,
}

/// How much one read returns at most.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimit {
    pub events: usize,
    pub bytes: usize,
}

impl JournalFiles {
    pub fn new(dir: &Path, keep: usize) -> Self {
        Self { dir: dir.to_path_buf(), keep, rotation: Mutex::new(()) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn keep(&self) -> usize {
        self.keep
    }

    pub fn current(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    pub fn rotated(&self, n: usize) -> PathBuf {
        self.dir.join(format!("{FILE_NAME}.{n}"))
    }

    /// Every journal file's path, oldest first.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = (1..=self.keep).rev().map(|n| self.rotated(n)).collect();
        paths.push(self.current());
        paths
    }

    /// Held by the writer across a rotation.
    pub fn rotation_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic while holding it leaves nothing inconsistent.
        self.rotation.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Events with `after < seq < before`, oldest first, within `limit`.
    /// Unreadable lines (a torn tail, corruption) are skipped; the caller sees
    /// any hole as a jump in the sequence.
    pub fn read_range(&self, after: u64, before: u64, limit: ReadLimit) -> io::Result<Vec<Arc<Published>>> {
        let files = {
            let _guard = self.rotation_guard();
            let mut files = Vec::new();
            for path in self.paths() {
                match File::open(&path) {
                    Ok(f) => files.push(f),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            files
        };
        // The newest file whose first event is at or before the one wanted holds it
        // (or, when every file starts later, the oldest holds the first event after it).
        let mut firsts = Vec::with_capacity(files.len());
        for file in &files {
            firsts.push(first_seq(file)?);
        }
        let start = firsts.iter().rposition(|f| f.is_some_and(|f| f <= after + 1)).unwrap_or(0);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (i, file) in files.iter().enumerate().skip(start) {
            let offset = if i == start { locate(file, after)? } else { 0 };
            let mut reader = BufReader::with_capacity(64 * 1024, file);
            reader.seek(SeekFrom::Start(offset))?;
            let mut line = Vec::with_capacity(1024);
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line)? == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                line.pop();
                let Some(event) = Published::from_json(&line) else { continue };
                if event.seq <= after {
                    continue;
                }
                if event.seq >= before {
                    return Ok(out);
                }
                bytes += event.held_bytes();
                out.push(Arc::new(event));
                if out.len() >= limit.events || bytes >= limit.bytes {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
}

/// The id of a file's first readable event.
fn first_seq(file: &File) -> io::Result<Option<u64>> {
    Ok(next_line(file, 0)?.map(|(_, seq)| seq))
}

/// The first readable line starting at or after `pos` (a line start, or inside a
/// line whose rest is skipped): its start offset and id.
fn next_line(file: &File, pos: u64) -> io::Result<Option<(u64, u64)>> {
    let mut reader = BufReader::with_capacity(8 * 1024, file);
    let mut start = pos;
    let mut line = Vec::with_capacity(1024);
    // Back up one byte: if `pos` is a line start, the byte before it is the newline.
    reader.seek(SeekFrom::Start(pos.saturating_sub(1)))?;
    if pos > 0 {
        start = pos - 1 + reader.read_until(b'\n', &mut line)? as u64;
    }
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(None);
        }
        if let Some(seq) = line_seq(&line[..n - 1]) {
            return Ok(Some((start, seq)));
        }
        start += n as u64;
    }
}

/// A journal line's id, without parsing its data.
fn line_seq(line: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
    }
    serde_json::from_slice::<Id<'_>>(line).ok()?.id.parse().ok()
}

/// A line start at or before the first line of `file` whose id is above `after`.
fn locate(file: &File, after: u64) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let (mut lo, mut hi) = (0u64, len);
    // Invariant: `lo` is a line start whose id is at most `after` (or 0), and the wanted
    // line starts before `hi` or does not exist.
    while hi.saturating_sub(lo) > SCAN_SPAN {
        let mid = lo + (hi - lo) / 2;
        match next_line(file, mid)? {
            Some((start, seq)) if seq <= after => lo = start,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// Reads a whole journal file line by line (at start-up).
pub fn for_each_line(path: &Path, mut f: impl FnMut(Option<Published>)) -> io::Result<u64> {
    let file = File::open(path)?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut line = Vec::with_capacity(1024);
    let mut complete = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(complete);
        }
        complete += n as u64;
        f(Published::from_json(&line[..n - 1]));
    }
}

/// Length of the complete lines of a file: where a torn tail starts.
pub fn complete_len(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = [0u8; 4096];
    while end > 0 {
        let from = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            return Ok(from + i as u64 + 1);
        }
        end = from;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::CloudEvent;
    use std::io::Write;

    fn line(seq: u64, pad: usize) -> String {
        let e = CloudEvent::new(
            seq,
            "diskwatch://t",
            crate::events::EventKind::DiskChanged,
            std::time::SystemTime::UNIX_EPOCH,
            "disk/x".into(),
            serde_json::json!({"pad": "x".repeat(pad)}),
        );
        format!("{}\n", Published::new(e).json())
    }

    fn write(path: &Path, seqs: impl Iterator<Item = u64>) {
        let mut f = File::create(path).unwrap();
        for s in seqs {
            f.write_all(line(s, (s % 7 * 300) as usize).as_bytes()).unwrap();
        }
    }

    fn seqs(v: &[Arc<Published>]) -> Vec<u64> {
        v.iter().map(|e| e.seq).collect()
    }

    const ALL: ReadLimit = ReadLimit { events: usize::MAX, bytes: usize::MAX };

    #[test]
    fn finds_every_id_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = JournalFiles::new(dir.path(), 2);
        write(&files.rotated(2), 10..=500);
        write(&files.rotated(1), 501..=1200);
        write(&files.current(), 1201..=1500);
        for after in [0, 9, 10, 11, 250, 499, 500, 501, 777, 1200, 1201, 1497, 1499] {
            let got = files.read_range(after, u64::MAX, ReadLimit { events: 3, bytes: usize::MAX }).unwrap();
            let first = after.max(9) + 1;
            assert_eq!(seqs(&got), (first..=(first + 2).min(1500)).collect::<Vec<_>>(), "after {after}");
        }
        assert!(files.read_range(1500, u64::MAX, ALL).unwrap().is_empty());
        assert_eq!(seqs(&files.read_range(495, 505, ALL).unwrap()), (496..505).collect::<Vec<_>>());
        let all = files.read_range(0, u64::MAX, ALL).unwrap();
        assert_eq!(seqs(&all), (10..=1500).collect::<Vec<_>>());
        let capped = files.read_range(0, u64::MAX, ReadLimit { events: usize::MAX, bytes: 10_000 }).unwrap();
        assert!(capped.len() < 20 && !capped.is_empty());
    }

    #[test]
    fn skips_corrupt_lines_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let files = JournalFiles::new(dir.path(), 1);
        let mut text = String::new();
        for s in 1..=2000 {
            text.push_str(&line(s, 200));
            if s % 100 == 0 {
                text.push_str("garbage\n");
            }
        }
        text.push_str(&line(2001, 10)[..40]);
        std::fs::write(files.current(), &text).unwrap();
        assert_eq!(seqs(&files.read_range(1999, u64::MAX, ALL).unwrap()), [2000]);
        for after in [0, 99, 100, 1000, 1998] {
            let got = files.read_range(after, u64::MAX, ReadLimit { events: 2, bytes: usize::MAX }).unwrap();
            assert_eq!(seqs(&got), [after + 1, after + 2]);
        }
        assert!(files.read_range(2000, u64::MAX, ALL).unwrap().is_empty());
        let mut f = File::open(files.current()).unwrap();
        assert_eq!(complete_len(&mut f).unwrap(), text.rfind('\n').unwrap() as u64 + 1);
    }
}
