//! Forecast accuracy over usage series (docs/forecast.md): `cargo bench --bench forecast`.
//!
//! Each scenario is a 1 TB filesystem simulated for 60 days at one sample a minute from 10
//! seeded generators (steady fill, bursty downloads, a one-off cleanup, a nightly backup
//! staging area, flat, shrinking). The samples go through the agent's own `Series` (10-min
//! points, the default window) and `predict::forecast` (6 h minimum basis) every 6 hours of
//! simulated time; each forecast is compared with when that same simulated future really
//! fills the filesystem. Printed per scenario: forecasts made, median and p90 relative error
//! for true horizons over 24 h, and the alerts the mount attention rule raises (watch: fills
//! within a week, failing: within a day, both by the slow end of the interval) while the
//! filesystem was in truth more than 7 days (resp. 24 h) from full ("early"; 98 % used is
//! failing by its own rule and not counted).
//! Also the cost of one forecast over a full 14-day window.

use std::time::Instant;

use diskwatch::attention::objects::{severity, FULL_PERCENT};
use diskwatch::forecast::predict::forecast;
use diskwatch::forecast::series::Series;
use diskwatch::model::attention::Severity;

const GB: f64 = 1e9;
const TOTAL: u64 = 1_000_000_000_000;
const MINUTE: u64 = 60;
const DAY: u64 = 86_400;
const DAYS: u64 = 60;

/// A small deterministic generator (SplitMix64): the bench prints the same figures each run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.next()).ln()
    }
}

/// Used bytes at every minute of the scenario (`DAYS` days, then on until full or 3 years).
fn scenario(name: &str, seed: u64) -> Vec<u64> {
    let mut rng = Rng(seed);
    let minutes = 3 * 365 * DAY / MINUTE;
    let mut used = 400.0 * GB;
    let mut out = Vec::with_capacity(minutes as usize);
    for m in 0..minutes {
        let minute_of_day = m % 1440;
        let noise = (rng.next() - 0.5) * 0.2 * GB;
        let temp = match name {
            // 30 GB staged between 02:00 and 04:00 every night, then deleted.
            "nightly backup staging" if (120..240).contains(&minute_of_day) => 30.0 * GB,
            _ => 0.0,
        };
        match name {
            "steady fill" | "nightly backup staging" => used += 5.0 * GB / 1440.0,
            // About 2 downloads a day, 5 GB each on average: 10 GB/day in steps.
            "bursty downloads" => {
                if rng.next() < 2.0 / 1440.0 {
                    used += rng.exp(5.0 * GB);
                }
            }
            "cleanup" => {
                used += 8.0 * GB / 1440.0;
                if m == 10 * 1440 {
                    used -= 150.0 * GB;
                }
            }
            "flat" => {}
            "shrinking" => used -= 2.0 * GB / 1440.0,
            _ => unreachable!("unknown scenario {name}"),
        }
        let v = (used + noise + temp).clamp(0.0, TOTAL as f64);
        out.push(v as u64);
        if v >= TOTAL as f64 {
            break;
        }
    }
    out
}

/// Minutes from `m` until the series is full (the last sample counts as full when it is).
fn true_full_in(series: &[u64], m: usize) -> Option<u64> {
    series[m..].iter().position(|&u| u >= TOTAL).map(|i| i as u64 * MINUTE)
}

struct Figures {
    forecasts: usize,
    errors: Vec<f64>,
    /// Errors of forecasts made from at least 3 days of history.
    errors_3d: Vec<f64>,
    false_watch: usize,
    false_failing: usize,
    nulls: usize,
}

/// The default `[forecast] window`, so the bench follows the configuration.
fn window() -> u64 {
    diskwatch::forecast::ForecastConfig::default().window.as_secs()
}

/// Seeds per scenario: one realisation of a random process says little.
const SEEDS: u64 = 10;

/// The bursty scenario's true mean rate (2 downloads a day of 5 GB on average), in bytes/s.
const BURSTY_RATE: f64 = 10.0 * GB / 86_400.0;

fn run_all(name: &str, first_seed: u64, seeds: u64, known_rate: Option<f64>) -> Figures {
    let mut all =
        Figures { forecasts: 0, errors: Vec::new(), errors_3d: Vec::new(), false_watch: 0, false_failing: 0, nulls: 0 };
    for seed in first_seed * 100..first_seed * 100 + seeds {
        let f = run(name, seed, known_rate);
        all.forecasts += f.forecasts;
        all.errors.extend(f.errors);
        all.errors_3d.extend(f.errors_3d);
        all.false_watch += f.false_watch;
        all.false_failing += f.false_failing;
        all.nulls += f.nulls;
    }
    all.errors.sort_by(f64::total_cmp);
    all.errors_3d.sort_by(f64::total_cmp);
    all
}

/// With `known_rate`, every forecast's time to full is the remaining space at that rate (the
/// forecasts made and the alerts stay the agent's): the error no estimator can go below.
fn run(name: &str, seed: u64, known_rate: Option<f64>) -> Figures {
    let used = scenario(name, seed);
    let mut series = Series::new(600, window());
    let mut f =
        Figures { forecasts: 0, errors: Vec::new(), errors_3d: Vec::new(), false_watch: 0, false_failing: 0, nulls: 0 };
    let end = (DAYS * 1440) as usize;
    for (m, &u) in used.iter().enumerate().take(end) {
        let now = m as u64 * MINUTE;
        series.add("m", now, u, TOTAL);
        if m == 0 || now % (6 * 3600) != 0 {
            continue;
        }
        let (pts, total) = series.points("m").expect("the mount has points");
        let Some(mut fc) = forecast(&pts, total, now, 6 * 3600) else { continue };
        if let Some(rate) = known_rate {
            fc.full_in_seconds = Some((TOTAL.saturating_sub(u) as f64 / rate) as u64);
        }
        f.forecasts += 1;
        let truth = true_full_in(&used, m);
        match fc.full_in_seconds {
            None => f.nulls += 1,
            Some(pred) => {
                if let Some(t) = truth.filter(|&t| t > DAY) {
                    let e = (pred as f64 - t as f64).abs() / t as f64;
                    f.errors.push(e);
                    if fc.basis_seconds >= 3 * DAY {
                        f.errors_3d.push(e);
                    }
                }
                // What the owner would be told (the mount attention rule), against the truth.
                let far = |limit: u64| truth.is_none_or(|t| t > limit);
                let percent = 100.0 * u as f64 / TOTAL as f64;
                // (≥ 98 % used is failing by its own rule, whatever the trend: not counted.)
                match severity(Some(&fc), percent) {
                    Some(Severity::Watch) if far(7 * DAY) => f.false_watch += 1,
                    Some(Severity::Failing) if far(DAY) && percent < FULL_PERCENT => f.false_failing += 1,
                    _ => {}
                }
            }
        }
    }
    f.errors.sort_by(f64::total_cmp);
    f.errors_3d.sort_by(f64::total_cmp);
    f
}

fn pct(v: &[f64], q: f64) -> String {
    if v.is_empty() {
        return "-".into();
    }
    format!("{:.1} %", 100.0 * v[((v.len() - 1) as f64 * q).round() as usize])
}

fn main() {
    println!(
        "forecast accuracy: 1 TB, 400 GB used at start, {DAYS} simulated days x {SEEDS} seeds per scenario, forecast every 6 h, window {} days",
        window() / DAY
    );
    println!(
        "{:<24} {:>9} {:>5} {:>13} {:>10} {:>17} {:>12} {:>14}",
        "scenario",
        "forecasts",
        "null",
        "median error",
        "p90 error",
        "median (basis≥3d)",
        "early watch",
        "early failing"
    );
    // The bursty median moves by about ±1.5 points from one set of 10 seeds to the next: it is
    // also given over 40 (the first 10 included), and with the true rate known.
    for (name, seed, seeds, known_rate) in [
        ("steady fill", 1, SEEDS, None),
        ("bursty downloads", 2, SEEDS, None),
        ("bursty (40 seeds)", 2, 4 * SEEDS, None),
        ("bursty (rate known)", 2, 4 * SEEDS, Some(BURSTY_RATE)),
        ("cleanup", 3, SEEDS, None),
        ("nightly backup staging", 4, SEEDS, None),
        ("flat", 5, SEEDS, None),
        ("shrinking", 6, SEEDS, None),
    ] {
        let scenario_name = if name.starts_with("bursty") { "bursty downloads" } else { name };
        let f = run_all(scenario_name, seed, seeds, known_rate);
        println!(
            "{:<24} {:>9} {:>5} {:>13} {:>10} {:>17} {:>12} {:>14}",
            name,
            f.forecasts,
            f.nulls,
            pct(&f.errors, 0.5),
            pct(&f.errors, 0.9),
            pct(&f.errors_3d, 0.5),
            f.false_watch,
            f.false_failing
        );
    }
    // Cost: one forecast over a full window (2016 points, averaged down to 288).
    let mut series = Series::new(600, 14 * DAY);
    for m in 0..(14 * 1440) {
        series.add("m", m * MINUTE, 400_000_000_000 + m * 3_000_000, TOTAL);
    }
    let (pts, total) = series.points("m").expect("points");
    let now = 14 * DAY;
    let rounds = 200;
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(forecast(std::hint::black_box(&pts), total, now, 6 * 3600));
    }
    println!(
        "cost: {:.0} µs per forecast over {} points (14 days at 10 min)",
        t.elapsed().as_secs_f64() * 1e6 / rounds as f64,
        pts.len()
    );
}
