//! The baselines of the rising rules (CRC errors, command timeouts: only a rise above the
//! count first seen is a reason) kept across restarts in `state_dir/attention-baselines.json`,
//! disk id → counts. Without them a restart would take the risen count for the new baseline
//! and forget the rise (or, had the disk been read in between, re-alert). Written whole
//! (temporary file, fsync, rename) whenever the state's baselines change; read once at start.
//! A bad file is logged and replaced: the baselines start over, nothing else is lost.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::disk::Baselines;

/// The file's name in the state directory.
pub const FILE: &str = "attention-baselines.json";

/// The baselines in `path`; a missing file is none, an unreadable one too (with a warning).
pub fn load(path: &Path) -> BTreeMap<String, Baselines> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return BTreeMap::new(),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "attention baselines unreadable: starting without (a rise before this start is not seen)");
            return BTreeMap::new();
        }
    };
    match serde_json::from_slice::<BTreeMap<String, Baselines>>(&bytes) {
        Ok(all) => {
            info!(path = %path.display(), disks = all.len(), "attention baselines loaded");
            all
        }
        Err(e) => {
            warn!(path = %path.display(), error = %e, "attention baselines file is not valid: starting without (a rise before this start is not seen)");
            BTreeMap::new()
        }
    }
}

/// Writes `baselines` to `path` atomically.
pub fn save(path: &Path, baselines: &BTreeMap<String, Baselines>) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(baselines).map_err(io::Error::other)?;
    crate::fsutil::write_atomic(path, &bytes)
}

/// Saves the state's baselines to `path` each time they change: `read` gives them with their
/// generation; `changed` wakes it (the core's topology generation, which moves with every
/// health reading). Saves a last time when `token` is cancelled.
pub async fn keep(
    path: PathBuf,
    mut changed: watch::Receiver<u64>,
    token: CancellationToken,
    read: impl Fn() -> (u64, BTreeMap<String, Baselines>) + Send + 'static,
) {
    // What was loaded is on disk already.
    let mut saved = read().0;
    loop {
        let stop = tokio::select! {
            _ = token.cancelled() => true,
            c = changed.changed() => c.is_err(),
        };
        let (generation, baselines) = read();
        if generation != saved {
            let file = path.clone();
            let disks = baselines.len();
            match tokio::task::spawn_blocking(move || save(&file, &baselines)).await {
                Ok(Ok(())) => debug!(disks, "attention baselines saved"),
                Ok(Err(e)) => warn!(path = %path.display(), error = %e, "cannot save the attention baselines"),
                Err(e) => warn!(error = %e, "attention baselines save task failed"),
            }
            saved = generation;
        }
        if stop {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_and_loaded_back_and_a_bad_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        assert!(load(&path).is_empty());
        let all: BTreeMap<String, Baselines> =
            [("wwn-1".to_owned(), Baselines { crc_errors: Some(3), command_timeouts: None })].into();
        save(&path, &all).unwrap();
        assert_eq!(load(&path), all);
        std::fs::write(&path, b"{\"wwn-1\": {\"crc_errors\": \"three\"").unwrap();
        assert!(load(&path).is_empty());
    }
}
