//! The history store on disk: one binary file in state_dir, replaced atomically (write to a
//! temporary file, fsync, rename, fsync the directory), so a crash leaves the old or the new
//! file, never a torn one.
//!
//! Layout (little endian): magic `DWH1`, resolution seconds u64, capacity u32, series count
//! u32; per series: object length u16 + UTF-8 bytes, metric code u8, newest bucket u64,
//! `capacity` × u16 bfloat16 slots.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::store::{Metric, Series, Store};

const MAGIC: &[u8; 4] = b"DWH1";

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a diskwatch history file or truncated")]
    Format { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io { path: path.to_owned(), source }
}

fn write_store(w: &mut impl Write, store: &Store) -> std::io::Result<()> {
    w.write_all(MAGIC)?;
    w.write_all(&store.resolution_s().to_le_bytes())?;
    w.write_all(&(store.capacity() as u32).to_le_bytes())?;
    w.write_all(&(store.len() as u32).to_le_bytes())?;
    let mut slots = Vec::with_capacity(store.capacity() * 2);
    for (object, metric, series) in store.iter() {
        let name = object.as_bytes();
        let len = name.len().min(u16::MAX as usize);
        w.write_all(&(len as u16).to_le_bytes())?;
        w.write_all(&name[..len])?;
        w.write_all(&[metric.code()])?;
        w.write_all(&series.newest.to_le_bytes())?;
        slots.clear();
        for s in series.slots.iter() {
            slots.extend_from_slice(&s.to_le_bytes());
        }
        w.write_all(&slots)?;
    }
    Ok(())
}

/// Writes the store to `path` atomically. Pending buckets are flushed first.
pub fn save(store: &mut Store, path: &Path) -> Result<(), PersistError> {
    store.flush();
    let tmp = path.with_extension("tmp");
    {
        let file = File::create(&tmp).map_err(io(&tmp))?;
        let mut w = BufWriter::new(file);
        write_store(&mut w, store).map_err(io(&tmp))?;
        let file = w.into_inner().map_err(|e| PersistError::Io { path: tmp.clone(), source: e.into_error() })?;
        file.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    Ok(())
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Some(a)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
    }
}

/// Loads `path` into `store`. A missing file is an empty history; a file written with another
/// resolution or capacity is ignored (returns `Ok(false)`), its series would not line up.
pub fn load(store: &mut Store, path: &Path) -> Result<bool, PersistError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut bytes).map_err(io(path))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(path)(e)),
    };
    let bad = || PersistError::Format { path: path.to_owned() };
    let mut r = Reader { buf: &bytes };
    if r.take(4) != Some(MAGIC.as_slice()) {
        return Err(bad());
    }
    let resolution = r.u64().ok_or_else(bad)?;
    let capacity = r.u32().ok_or_else(bad)? as usize;
    let count = r.u32().ok_or_else(bad)?;
    if resolution != store.resolution_s() || capacity != store.capacity() {
        return Ok(false);
    }
    for _ in 0..count {
        let len = r.u16().ok_or_else(bad)? as usize;
        let object = std::str::from_utf8(r.take(len).ok_or_else(bad)?).map_err(|_| bad())?.to_owned();
        let metric = r.take(1).and_then(|b| Metric::from_code(b[0])).ok_or_else(bad)?;
        let newest = r.u64().ok_or_else(bad)?;
        let raw = r.take(capacity * 2).ok_or_else(bad)?;
        let slots: Box<[u16]> = raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        store.insert(&object, metric, Series::from_parts(newest, slots));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.bin");
        let mut s = Store::new(300, 16);
        s.add("disk-a", Metric::Temperature, 3000, 35.0);
        s.add("mnt_data", Metric::Usage, 3300, 42.5);
        save(&mut s, &path).unwrap();
        assert!(!dir.path().join("history.tmp").exists());
        let mut back = Store::new(300, 16);
        assert!(load(&mut back, &path).unwrap());
        assert_eq!(back.query("disk-a", Metric::Temperature, 0), vec![(3000, 35.0)]);
        assert_eq!(back.query("mnt_data", Metric::Usage, 0), vec![(3300, 42.5)]);
        let mut other = Store::new(60, 16);
        assert!(!load(&mut other, &path).unwrap());
        assert!(other.is_empty());
        assert!(!load(&mut other, &dir.path().join("none.bin")).unwrap());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(matches!(load(&mut Store::new(300, 16), &path), Err(PersistError::Format { .. })));
    }
}
