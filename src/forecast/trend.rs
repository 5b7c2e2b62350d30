//! A robust linear trend: the Theil–Sen slope (the median of all pairwise slopes) with Sen's
//! rank-based confidence interval (Sen 1968, "Estimates of the regression coefficient based on
//! Kendall's tau", JASA 63; the interval's order statistics follow Hollander & Wolfe,
//! "Nonparametric Statistical Methods", §9.3). One burst moves it little, where a least-squares
//! fit over the last hour (what netdata does) follows every download.

/// A fitted trend over `(t, y)` points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// Units of `y` per unit of `t`.
    pub slope: f64,
    /// The slope's lower and upper confidence bounds.
    pub slope_low: f64,
    pub slope_high: f64,
    /// The fitted value at `t = at`: the median of `y - slope * t`, carried to `at`.
    pub level_at: f64,
}

/// The two-sided normal quantile for the interval (95 %).
const Z_95: f64 = 1.959_964;

/// Fits a Theil–Sen line through `points` (any order) and returns it with its fitted level at
/// `at`; `None` with fewer than 3 points or when every `t` is equal.
///
/// Only pairs at least `min_lag` apart count. Filling by downloads is a step function: over a
/// short lag most pairs see no step, and the median of all pairwise slopes then sits well
/// below the real rate (a bias of 30 % measured in benches/forecast.rs). Pairs half the
/// basis apart each span many steps. The interval's ranks are scaled by the share of
/// pairs kept.
pub fn theil_sen(points: &[(f64, f64)], at: f64, min_lag: f64) -> Option<Trend> {
    let n = points.len();
    if n < 3 {
        return None;
    }
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    for (i, &(ti, yi)) in points.iter().enumerate() {
        for &(tj, yj) in &points[i + 1..] {
            let dt = tj - ti;
            if dt != 0.0 && dt.abs() >= min_lag {
                slopes.push((yj - yi) / dt);
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_unstable_by(f64::total_cmp);
    let slope = median_sorted(&slopes);
    // Sen's interval: with N slopes and C = z·sqrt(Var(Kendall's S)), the bounds are the
    // slopes of rank (N − C)/2 and (N + C)/2 + 1 (1-based). Ties are ignored in the variance:
    // it makes the interval a little wider, never narrower.
    let nf = n as f64;
    let big_n = slopes.len() as f64;
    let kept = big_n / (nf * (nf - 1.0) / 2.0);
    let c = kept * Z_95 * (nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0).sqrt();
    let lo_rank = ((big_n - c) / 2.0).floor().max(1.0) as usize;
    let hi_rank = (((big_n + c) / 2.0).ceil() as usize + 1).min(slopes.len());
    let slope_low = slopes[lo_rank - 1];
    let slope_high = slopes[hi_rank - 1];
    let mut residuals: Vec<f64> = points.iter().map(|&(t, y)| y - slope * t).collect();
    residuals.sort_unstable_by(f64::total_cmp);
    let intercept = median_sorted(&residuals);
    Some(Trend { slope, slope_low, slope_high, level_at: intercept + slope * at })
}

/// The rate of a fill made of steps (downloads, copies) that temporary files ride on: the rise
/// of the lower envelope (the trailing minimum over `window`) from its first full window to the
/// last point, over that time. `None` with fewer than two envelope points.
///
/// For a process that grows by random steps the mean rate is the whole rise over the whole
/// time: every step counts once. The median of pairwise slopes instead sees a typical
/// sub-interval and, the step sizes being skewed, sits below the mean (benches/forecast.rs:
/// bursty downloads). The trailing minimum drops what is deleted again within `window` (a
/// nightly backup's staging files) and the sample noise at both ends alike; its lag of
/// `window` on a steady fill is the same at both ends, so the rate is not biased by it.
pub fn envelope_rate(points: &[(f64, f64)], window: f64) -> Option<f64> {
    let (first_t, _) = *points.first()?;
    let mut from = 0;
    let mut envelope = Vec::with_capacity(points.len());
    for (i, &(t, _)) in points.iter().enumerate() {
        while points[from].0 < t - window {
            from += 1;
        }
        if t >= first_t + window {
            let low = points[from..=i].iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            envelope.push((t, low));
        }
    }
    let (&(t0, y0), &(t1, y1)) = (envelope.first()?, envelope.last()?);
    (t1 > t0).then(|| (y1 - y0) / (t1 - t0))
}

fn median_sorted(v: &[f64]) -> f64 {
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize, slope: f64, intercept: f64) -> Vec<(f64, f64)> {
        (0..n).map(|i| (i as f64, intercept + slope * i as f64)).collect()
    }

    #[test]
    fn exact_line() {
        let t = theil_sen(&line(50, 2.0, 10.0), 49.0, 0.0).unwrap();
        assert_eq!(t.slope, 2.0);
        assert_eq!(t.slope_low, 2.0);
        assert_eq!(t.slope_high, 2.0);
        assert!((t.level_at - 108.0).abs() < 1e-9);
    }

    #[test]
    fn a_passing_spike_barely_moves_the_slope() {
        // A steady 1/step fill with a 500 temporary file near the end for 5 steps (a download
        // unpacked and deleted): least squares follows it, Theil–Sen stays near 1.
        let mut pts = line(100, 1.0, 0.0);
        for p in pts.iter_mut().skip(85).take(5) {
            p.1 += 500.0;
        }
        let t = theil_sen(&pts, 99.0, 0.0).unwrap();
        assert!(t.slope >= 1.0 && t.slope < 1.1, "slope {}", t.slope);
        let mut xs = 0.0;
        let mut ys = 0.0;
        let mut xy = 0.0;
        let mut xx = 0.0;
        for &(x, y) in &pts {
            xs += x;
            ys += y;
            xy += x * y;
            xx += x * x;
        }
        let n = pts.len() as f64;
        let ols = (n * xy - xs * ys) / (n * xx - xs * xs);
        assert!(ols > 1.5, "least squares follows the spike: {ols}");
    }

    #[test]
    fn interval_contains_the_slope_and_widens_with_noise() {
        let mut seed = 7u64;
        let mut noise = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        };
        let quiet: Vec<(f64, f64)> = (0..60).map(|i| (i as f64, i as f64 + 0.1 * noise())).collect();
        let loud: Vec<(f64, f64)> = (0..60).map(|i| (i as f64, i as f64 + 20.0 * noise())).collect();
        let q = theil_sen(&quiet, 0.0, 0.0).unwrap();
        let l = theil_sen(&loud, 0.0, 0.0).unwrap();
        for t in [q, l] {
            assert!(t.slope_low <= t.slope && t.slope <= t.slope_high);
        }
        assert!(l.slope_high - l.slope_low > 10.0 * (q.slope_high - q.slope_low));
        assert!(q.slope_low > 0.95 && q.slope_high < 1.05);
    }

    #[test]
    fn flat_noise_interval_straddles_zero() {
        let pts: Vec<(f64, f64)> = (0..40).map(|i| (i as f64, if i % 2 == 0 { 5.0 } else { 6.0 })).collect();
        let t = theil_sen(&pts, 0.0, 0.0).unwrap();
        assert!(t.slope_low <= 0.0 && t.slope_high >= 0.0, "{t:?}");
    }

    #[test]
    fn too_few_or_degenerate() {
        assert!(theil_sen(&[(0.0, 1.0), (1.0, 2.0)], 0.0, 0.0).is_none());
        assert!(theil_sen(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)], 0.0, 0.0).is_none());
    }
}

#[cfg(test)]
mod envelope_tests {
    use super::*;

    #[test]
    fn steps_count_whole_and_passing_files_do_not() {
        // Steps of 30 and 60 at points 20 and 40 (90 over 50 points), and a 500 file kept for
        // 3 points just before the end: the rate is the rise over the envelope's span, 90 / 40
        // (its first full window ends at point 10).
        let mut pts: Vec<(f64, f64)> =
            (0..=50).map(|i| (i as f64, [0.0, 0.0, 30.0, 30.0, 90.0, 90.0][(i / 10) as usize])).collect();
        for p in pts.iter_mut().skip(46).take(3) {
            p.1 += 500.0;
        }
        let r = envelope_rate(&pts, 10.0).unwrap();
        assert!((r - 90.0 / 40.0).abs() < 1e-9, "{r}");
        // The median of pairwise slopes sees the typical span, not every step.
        assert!(theil_sen(&pts, 0.0, 0.0).unwrap().slope < r);
        // A steady line: its own slope, whatever the window.
        let line: Vec<(f64, f64)> = (0..100).map(|i| (i as f64, 3.0 + 2.0 * i as f64)).collect();
        assert!((envelope_rate(&line, 7.0).unwrap() - 2.0).abs() < 1e-9);
        assert!(envelope_rate(&line[..5], 10.0).is_none(), "no full window");
    }
}

#[cfg(test)]
mod lag_tests {
    use super::*;

    #[test]
    fn long_lags_see_the_rate_of_a_step_function() {
        // One step of 10 every 10 points: the real rate is 1 per point.
        let pts: Vec<(f64, f64)> = (0..200).map(|i| (i as f64, (i / 10 * 10) as f64)).collect();
        let all = theil_sen(&pts, 0.0, 0.0).unwrap();
        let long = theil_sen(&pts, 0.0, 50.0).unwrap();
        assert!((long.slope - 1.0).abs() < 0.05, "{long:?}");
        assert!(long.slope_low <= long.slope && long.slope <= long.slope_high);
        assert!(all.slope <= long.slope);
    }
}
