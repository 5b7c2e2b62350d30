//! Time to full from a mount's usage history: pure, over `(unix seconds, used bytes)` points.
//!
//! The rules (docs/forecast.md):
//! - the basis starts after the last cleanup (used space falling more than
//!   [`CLEANUP_FRACTION`] of the filesystem below everything of the day before), so a deleted
//!   download does not make the following fill look like a shrink, while temporary files
//!   deleted again (a nightly backup's staging) do not restart it;
//! - no forecast below `min_basis` of history;
//! - the rate is the rise of the lower envelope (trailing minimum over [`ENVELOPE_SECONDS`])
//!   over the basis: a fill by downloads is a step function, and each step counts once
//!   ([`envelope_rate`]);
//! - whether it grows at all, and the 95 % interval for `low_seconds`/`high_seconds`, are
//!   Theil–Sen's over the basis (at most [`MAX_POINTS`] averaged points, pairs at least half
//!   the basis apart), widened to hold the rate;
//! - `full_in_seconds` is null when the filesystem is not provably growing (the interval's
//!   lower slope is ≤ 0: flat or shrinking) or would take longer than [`HORIZON_SECONDS`].

use crate::model::Forecast;

use super::trend::{envelope_rate, theil_sen, Trend};

/// A drop of more than this share of the filesystem between two points is a cleanup.
pub const CLEANUP_FRACTION: f64 = 0.01;
/// Points the trend is fitted over at most (consecutive points are averaged down to this).
pub const MAX_POINTS: usize = 288;
/// The lower envelope's trailing window (at most a quarter of the basis): longer than what a
/// nightly job stages and deletes again, short against days of history.
pub const ENVELOPE_SECONDS: f64 = 12.0 * 3600.0;
/// Beyond ten years a forecast is not a forecast: null, like a flat mount.
pub const HORIZON_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;

/// The forecast for a filesystem of `total_bytes` from `points` (oldest first), made at `now`;
/// `None` while the basis is shorter than `min_basis_s` (or the points do not make a line).
pub fn forecast(points: &[(u64, u64)], total_bytes: u64, now: u64, min_basis_s: u64) -> Option<Forecast> {
    let (&(_, last_used), _) = points.split_last()?;
    let basis = &points[basis_start(points, total_bytes)..];
    let first_t = basis.first()?.0;
    let basis_seconds = now.saturating_sub(first_t);
    if basis_seconds < min_basis_s.max(1) || basis.len() < 3 {
        return None;
    }
    let pts = downsample(basis, now);
    let sen = theil_sen(&pts, 0.0, basis_seconds as f64 / 2.0)?;
    // The central rate is the rise of the lower envelope (the fill is a step function);
    // whether it is growing at all, and the interval, are Sen's.
    let window = ENVELOPE_SECONDS.min(basis_seconds as f64 / 4.0);
    let slope = envelope_rate(&pts, window).unwrap_or(sen.slope);
    let trend = Trend { slope, slope_low: sen.slope_low.min(slope), slope_high: sen.slope_high.max(slope), ..sen };
    let remaining = total_bytes.saturating_sub(last_used) as f64;
    let seconds = |slope: f64| -> Option<u64> {
        if slope <= 0.0 {
            return None;
        }
        let s = remaining / slope;
        (s <= HORIZON_SECONDS).then_some(s.round() as u64)
    };
    let growing = trend.slope_low > 0.0 && trend.slope > 0.0;
    let full_in_seconds = if growing { seconds(trend.slope) } else { None };
    Some(Forecast {
        full_in_seconds,
        low_seconds: full_in_seconds.and(seconds(trend.slope_high)),
        high_seconds: full_in_seconds.and(seconds(trend.slope_low)),
        basis_seconds,
        bytes_per_day: (trend.slope * 86_400.0).round() as i64,
    })
}

/// How far back a drop is compared: below everything of the last day is a cleanup; back to
/// where it was a few hours ago (a nightly backup's staging files deleted) is not.
const CLEANUP_LOOKBACK_SECONDS: u64 = 86_400;

/// The index where the basis starts: just after the last cleanup, a point more than
/// [`CLEANUP_FRACTION`] of the filesystem below every point of the day before it.
fn basis_start(points: &[(u64, u64)], total_bytes: u64) -> usize {
    let threshold = (total_bytes as f64 * CLEANUP_FRACTION) as u64;
    let mut start = 0;
    let mut window: std::collections::VecDeque<(u64, u64)> = std::collections::VecDeque::new();
    for (i, &(t, used)) in points.iter().enumerate() {
        while window.front().is_some_and(|&(wt, _)| wt + CLEANUP_LOOKBACK_SECONDS < t) {
            window.pop_front();
        }
        if window.iter().map(|p| p.1).min().is_some_and(|low| low > used.saturating_add(threshold)) {
            start = i;
            window.clear();
        }
        window.push_back((t, used));
    }
    start
}

/// `(seconds relative to now, bytes)`, averaged in runs so at most [`MAX_POINTS`] remain.
fn downsample(points: &[(u64, u64)], now: u64) -> Vec<(f64, f64)> {
    let run = points.len().div_ceil(MAX_POINTS);
    points
        .chunks(run)
        .map(|c| {
            let n = c.len() as f64;
            let t = c.iter().map(|p| p.0 as f64 - now as f64).sum::<f64>() / n;
            let y = c.iter().map(|p| p.1 as f64).sum::<f64>() / n;
            (t, y)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1_000_000_000;
    const HOUR: u64 = 3600;

    fn steady(hours: u64, per_hour: u64, start: u64) -> Vec<(u64, u64)> {
        (0..=hours).map(|h| (h * HOUR, start + h * per_hour)).collect()
    }

    #[test]
    fn steady_fill() {
        // 1 TB disk, 400 GB used after 48 h at 1 GB/h: 600 h left.
        let pts = steady(48, GB, 352 * GB);
        let f = forecast(&pts, 1000 * GB, 48 * HOUR, 6 * HOUR).unwrap();
        assert_eq!(f.full_in_seconds, Some(600 * HOUR));
        assert_eq!(f.basis_seconds, 48 * HOUR);
        assert_eq!(f.bytes_per_day, 24 * GB as i64);
        assert!(f.low_seconds.unwrap() <= f.full_in_seconds.unwrap());
        assert!(f.high_seconds.unwrap() >= f.full_in_seconds.unwrap());
    }

    #[test]
    fn too_little_history() {
        let pts = steady(5, GB, 0);
        assert!(forecast(&pts, 1000 * GB, 5 * HOUR, 6 * HOUR).is_none());
        assert!(forecast(&[], 1000 * GB, 0, 1).is_none());
    }

    #[test]
    fn flat_and_shrinking_have_no_time_to_full() {
        let flat: Vec<(u64, u64)> = (0..100).map(|h| (h * HOUR, 500 * GB + (h % 3) * 100_000_000)).collect();
        let f = forecast(&flat, 1000 * GB, 99 * HOUR, 6 * HOUR).unwrap();
        assert_eq!(f.full_in_seconds, None, "{f:?}");
        assert_eq!(f.low_seconds, None);
        let shrink: Vec<(u64, u64)> = (0..100).map(|h| (h * HOUR, 900 * GB - h * 100_000_000)).collect();
        let f = forecast(&shrink, 1000 * GB, 99 * HOUR, 6 * HOUR).unwrap();
        assert_eq!(f.full_in_seconds, None);
        assert!(f.bytes_per_day < 0);
    }

    #[test]
    fn basis_restarts_after_a_cleanup() {
        // 48 h of fill, then 200 GB deleted, then 10 h of fill at the same rate.
        let mut pts = steady(48, GB, 300 * GB);
        let base = pts.last().unwrap().1 - 200 * GB;
        pts.extend((1..=10).map(|h| ((48 + h) * HOUR, base + h * GB)));
        let now = 58 * HOUR;
        let f = forecast(&pts, 1000 * GB, now, 6 * HOUR).unwrap();
        assert_eq!(f.basis_seconds, 9 * HOUR);
        let left = 1000 * GB - (base + 10 * GB);
        assert_eq!(f.full_in_seconds, Some(left / GB * HOUR));
        // With a basis under min_basis after the cleanup: no forecast yet.
        assert!(forecast(&pts, 1000 * GB, now, 12 * HOUR).is_none());
    }

    #[test]
    fn temporary_files_deleted_again_are_no_cleanup() {
        // Steady 1 GB/h; 30 GB staged from hour 26 to 28 and deleted: the basis stays whole.
        let pts: Vec<(u64, u64)> =
            (0..=48).map(|h| (h * HOUR, 300 * GB + h * GB + if (26..28).contains(&h) { 30 * GB } else { 0 })).collect();
        let f = forecast(&pts, 1000 * GB, 48 * HOUR, 6 * HOUR).unwrap();
        assert_eq!(f.basis_seconds, 48 * HOUR);
    }

    #[test]
    fn full_already() {
        let pts = steady(10, GB, 990 * GB);
        let f = forecast(&pts, 1000 * GB, 10 * HOUR, HOUR).unwrap();
        assert_eq!(f.full_in_seconds, Some(0));
    }

    #[test]
    fn thousands_of_points_are_averaged_down() {
        let pts: Vec<(u64, u64)> = (0..4032).map(|i| (i * 300, 100 * GB + i * 10_000_000)).collect();
        assert!(downsample(&pts, 0).len() <= MAX_POINTS);
        let f = forecast(&pts, 1000 * GB, 4031 * 300, 6 * HOUR).unwrap();
        let per_s = 10_000_000.0 / 300.0;
        let expect = (1000 * GB - pts.last().unwrap().1) as f64 / per_s;
        let got = f.full_in_seconds.unwrap() as f64;
        assert!((got - expect).abs() / expect < 0.001, "{got} vs {expect}");
    }
}
