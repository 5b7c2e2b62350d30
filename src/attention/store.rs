//! Acknowledgements kept across restarts: `state_dir/acknowledged.json`, subject
//! (`disk/<id>`) → reason code → the value acknowledged. Written whole (temporary file,
//! fsync, rename) at every acknowledgement; read once at start.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use tracing::warn;

use super::Acks;

/// The file's name in the state directory.
pub const FILE: &str = "acknowledged.json";

/// Serialises read-merge-write of the file (HTTP and MQTT may acknowledge at once).
static WRITE: Mutex<()> = Mutex::new(());

/// The acknowledgements in `path`; a missing or unreadable file is none (logged).
pub fn load(path: &Path) -> BTreeMap<String, Acks> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            warn!(path = %path.display(), error = %e, "acknowledgements unreadable: starting without");
            BTreeMap::new()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "acknowledgements unreadable: starting without");
            BTreeMap::new()
        }
    }
}

/// Replaces `subject`'s acknowledgements in `path` (an empty set removes it).
pub fn record(path: &Path, subject: &str, acks: &Acks) -> std::io::Result<()> {
    let _guard = WRITE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut all = load(path);
    if acks.is_empty() {
        all.remove(subject);
    } else {
        all.insert(subject.to_owned(), acks.clone());
    }
    let bytes = serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_and_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        assert!(load(&path).is_empty());
        let acks: Acks = [("reallocated_sectors".to_owned(), json!(3))].into();
        record(&path, "disk/a", &acks).unwrap();
        record(&path, "disk/b", &acks).unwrap();
        record(&path, "disk/b", &Acks::new()).unwrap();
        let back = load(&path);
        assert_eq!(back.len(), 1);
        assert_eq!(back["disk/a"]["reallocated_sectors"], json!(3));
        std::fs::write(&path, "not json").unwrap();
        assert!(load(&path).is_empty());
    }
}
