//! When each kind of test last ran to its end, per disk, in `state_dir/selftest.json`, so a
//! restart neither forgets a due test nor repeats a fresh one (the drive's own log fills in
//! for disks without a record, `engine::Engine::observe`).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use super::engine::Clocks;

/// The file under `state_dir`.
pub const FILE: &str = "selftest.json";

/// The clocks saved at `path`; empty when there is no file.
pub fn load(path: &Path) -> io::Result<BTreeMap<String, Clocks>> {
    match std::fs::read(path) {
        Ok(data) => serde_json::from_slice(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

pub fn save(path: &Path, clocks: &BTreeMap<String, Clocks>) -> io::Result<()> {
    let data = serde_json::to_vec_pretty(clocks).map_err(io::Error::other)?;
    crate::fsutil::write_atomic(path, &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        assert!(load(&path).unwrap().is_empty());
        let clocks = BTreeMap::from([("wwn-1".to_owned(), Clocks { short: Some(10), long: None })]);
        save(&path, &clocks).unwrap();
        assert_eq!(load(&path).unwrap(), clocks);
        std::fs::write(&path, b"{nope").unwrap();
        assert_eq!(load(&path).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
