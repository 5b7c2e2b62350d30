//! Per-mount usage points for forecasts: one averaged `(time, used bytes)` point per
//! `[forecast] resolution`, kept for `[forecast] window`, in exact integers (the history
//! store's bfloat16 percentages are too coarse: 0.25 % of a 10 TB volume is 25 GB), and saved
//! to `state_dir/forecast.json` so days of history survive restarts.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A change of the filesystem's size by more than this share starts the series over (another
/// filesystem on the mount point, or a resize: the old points no longer say how fast it fills).
const RESIZE_FRACTION: f64 = 0.01;

/// One mount's points.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MountSeries {
    /// The filesystem's size at the last sample.
    pub total_bytes: u64,
    /// `(mean sample time, mean used bytes)` per finished point, oldest first.
    pub points: VecDeque<(u64, u64)>,
    /// The point being filled: its bucket, the sums of times and used bytes, the sample count.
    #[serde(default)]
    open: Option<Open>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Open {
    bucket: u64,
    t_sum: u128,
    used_sum: u128,
    n: u64,
}

impl Open {
    fn point(&self) -> (u64, u64) {
        ((self.t_sum / self.n as u128) as u64, (self.used_sum / self.n as u128) as u64)
    }
}

/// Every mount's points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Seconds per point.
    pub resolution: u64,
    /// Seconds of points kept.
    pub window: u64,
    pub mounts: BTreeMap<String, MountSeries>,
}

impl Series {
    pub fn new(resolution: u64, window: u64) -> Self {
        Series { resolution: resolution.max(1), window, mounts: BTreeMap::new() }
    }

    /// Adds a sample; true when it closed a point of that mount (a new forecast is due).
    pub fn add(&mut self, mount: &str, unix_s: u64, used: u64, total: u64) -> bool {
        let s = self.mounts.entry(mount.to_owned()).or_default();
        if s.total_bytes != 0 && (s.total_bytes.abs_diff(total) as f64) > s.total_bytes as f64 * RESIZE_FRACTION {
            *s = MountSeries::default();
        }
        s.total_bytes = total;
        let bucket = unix_s / self.resolution;
        let mut closed = false;
        match &mut s.open {
            Some(o) if o.bucket == bucket => {
                o.t_sum += unix_s as u128;
                o.used_sum += used as u128;
                o.n += 1;
            }
            open => {
                if let Some(o) = open.take() {
                    s.points.push_back(o.point());
                    closed = true;
                }
                *open = Some(Open { bucket, t_sum: unix_s as u128, used_sum: used as u128, n: 1 });
            }
        }
        let oldest = unix_s.saturating_sub(self.window);
        while s.points.front().is_some_and(|p| p.0 < oldest) {
            s.points.pop_front();
        }
        closed
    }

    /// Drops mounts with no sample within the window (unplugged long ago).
    pub fn expire(&mut self, unix_s: u64) {
        let oldest = unix_s.saturating_sub(self.window);
        self.mounts
            .retain(|_, s| s.open.map(|o| o.point().0).or(s.points.back().map(|p| p.0)).is_some_and(|t| t >= oldest));
    }

    /// A mount's finished points and its size.
    pub fn points(&self, mount: &str) -> Option<(Vec<(u64, u64)>, u64)> {
        let s = self.mounts.get(mount)?;
        Some((s.points.iter().copied().collect(), s.total_bytes))
    }

    /// Writes the series to `path` (atomically).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let data = serde_json::to_vec(self).map_err(io::Error::other)?;
        crate::fsutil::write_atomic(path, &data)
    }

    /// The series saved at `path` with this resolution and window; `Ok(None)` when there is
    /// no file. Saved with another resolution, the points are kept (forecasts take any spacing).
    pub fn load(path: &Path, resolution: u64, window: u64) -> io::Result<Option<Self>> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut s: Series = serde_json::from_slice(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        s.resolution = resolution.max(1);
        s.window = window;
        for m in s.mounts.values_mut() {
            m.open = None;
        }
        Ok(Some(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_average_into_points() {
        let mut s = Series::new(10, 1000);
        assert!(!s.add("m", 100, 10, 1000));
        assert!(!s.add("m", 105, 20, 1000));
        assert!(s.add("m", 110, 40, 1000));
        let (pts, total) = s.points("m").unwrap();
        assert_eq!(pts, vec![(102, 15)]);
        assert_eq!(total, 1000);
    }

    #[test]
    fn window_and_resize() {
        let mut s = Series::new(10, 100);
        for t in (0..300).step_by(10) {
            s.add("m", t, t, 1000);
        }
        let (pts, _) = s.points("m").unwrap();
        assert!(pts.first().unwrap().0 >= 190, "{pts:?}");
        // Another filesystem (twice the size): the series starts over.
        s.add("m", 300, 5, 2000);
        s.add("m", 310, 5, 2000);
        assert_eq!(s.points("m").unwrap().0, vec![(300, 5)]);
        s.expire(1000);
        assert!(s.points("m").is_none());
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forecast.json");
        assert!(Series::load(&path, 10, 100).unwrap().is_none());
        let mut s = Series::new(10, 100);
        for t in (0..50).step_by(5) {
            s.add("m", t, t * 2, 1000);
        }
        s.save(&path).unwrap();
        let back = Series::load(&path, 10, 100).unwrap().unwrap();
        assert_eq!(back.points("m"), s.points("m"));
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(Series::load(&path, 10, 100).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
