//! Per-object history (SPEC §8): mount usage %, disk temperature and disk read/write rates at
//! `[history] resolution` for `[history] retention`, in a fixed-size in-memory store that is
//! persisted to state_dir and served by `GET /api/v1/history?metric=&object=&since=`.
//!
//! - [`store`]: the rings.
//! - [`config`]: the `[history]` section.
//! - [`recorder`]: the task that samples and saves.
//! - [`persist`]: the file in state_dir.
//!
//! The recorder reads the core's current objects (it never reads the event log), so what is
//! recorded is exactly what clients see in the snapshot.

pub mod config;
pub mod persist;
pub mod recorder;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::model::{Disk, Mount};
pub use config::HistoryConfig;
pub use store::{Metric, Store};

/// The file under state_dir.
pub const FILE: &str = "history.bin";

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The shared history: the store and where it is saved.
pub struct History {
    store: Mutex<Store>,
    path: Option<PathBuf>,
    /// The `checked_at` of the last temperature recorded per disk: a kept (standby) reading is
    /// not recorded again as if it were new.
    temp_seen: Mutex<HashMap<String, String>>,
}

/// One answer of the history API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Series {
    pub object: String,
    pub metric: String,
    pub resolution_seconds: u64,
    /// `[unix seconds at the start of the bucket, value]`, oldest first.
    #[schema(value_type = Vec<Vec<f64>>)]
    pub points: Vec<(u64, f32)>,
}

impl History {
    /// A history saved to `state_dir/history.bin` (`None`: memory only); loads what is there.
    pub fn open(config: &HistoryConfig, state_dir: Option<PathBuf>) -> (Self, Option<persist::PersistError>) {
        let mut store = Store::new(config.resolution.as_secs().max(1), config.slots());
        let path = state_dir.map(|d| d.join(FILE));
        let mut error = None;
        if let Some(p) = &path {
            match persist::load(&mut store, p) {
                Ok(_) => {}
                Err(e) => error = Some(e),
            }
        }
        (History { store: Mutex::new(store), path, temp_seen: Mutex::new(HashMap::new()) }, error)
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one sample of every disk and mount at `unix_s`.
    pub fn record(&self, disks: &[Disk], mounts: &[Mount], unix_s: u64) {
        let mut seen = self.temp_seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut store = self.store();
        for d in disks {
            if let Some(h) = &d.health {
                if let Some(t) = h.temperature_c {
                    if seen.get(&d.id) != Some(&h.checked_at) {
                        seen.insert(d.id.clone(), h.checked_at.clone());
                        store.add(&d.id, Metric::Temperature, unix_s, t);
                    }
                }
            }
            if let Some(io) = &d.io {
                store.add(&d.id, Metric::ReadRate, unix_s, io.read_bytes_per_s);
                store.add(&d.id, Metric::WriteRate, unix_s, io.write_bytes_per_s);
            }
        }
        for m in mounts {
            if let Some(u) = &m.usage {
                store.add(&m.id, Metric::Usage, unix_s, u.percent);
            }
        }
        seen.retain(|id, _| disks.iter().any(|d| &d.id == id));
    }

    /// The series of `object` × `metric` since `since_unix_s`.
    pub fn query(&self, object: &str, metric: Metric, since_unix_s: u64) -> Series {
        let store = self.store();
        Series {
            object: object.to_owned(),
            metric: metric.as_str().to_owned(),
            resolution_seconds: store.resolution_s(),
            points: store.query(object, metric, since_unix_s),
        }
    }

    /// Expires old series and writes the store to state_dir.
    pub fn save(&self) -> Result<(), persist::PersistError> {
        let mut store = self.store();
        store.expire(unix_now());
        match &self.path {
            Some(p) => persist::save(&mut store, p),
            None => Ok(()),
        }
    }

    pub fn series_count(&self) -> usize {
        self.store().len()
    }
}

/// Parses `since`: RFC 3339, unix seconds, or a duration back from now (`24h`, `7days`).
pub fn parse_since(since: &str, now_unix_s: u64) -> Option<u64> {
    if let Ok(secs) = since.parse::<u64>() {
        return Some(secs);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(since) {
        return t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs());
    }
    humantime::parse_duration(since).ok().map(|d| now_unix_s.saturating_sub(d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        assert_eq!(parse_since("1000", 5000), Some(1000));
        assert_eq!(parse_since("24h", 100_000), Some(100_000 - 86_400));
        assert_eq!(parse_since("1970-01-01T00:16:40Z", 0), Some(1000));
        assert_eq!(parse_since("yesterday", 0), None);
    }

    #[test]
    fn config_checks() {
        let mut p = Vec::new();
        HistoryConfig::default().validate(&mut p);
        assert!(p.is_empty());
        assert_eq!(HistoryConfig::default().slots(), 2016);
        let bad = HistoryConfig { retention: std::time::Duration::from_secs(1), ..Default::default() };
        bad.validate(&mut p);
        assert_eq!(p.len(), 1);
    }
}
