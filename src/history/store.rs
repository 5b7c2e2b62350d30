//! A fixed-size in-memory time-series store: per object × metric a ring of
//! `retention / resolution` slots, one averaged value per resolution bucket.
//!
//! Values are kept as bfloat16 (the upper half of an f32: full f32 range, ~0.4 % relative
//! precision), two bytes a slot: 200 objects × 3 metrics × 7 days at 5 min is 2.4 MB. That is
//! ample for a sparkline of temperatures, percentages and byte rates; the exact current value
//! lives in the object's own fields.

use std::collections::HashMap;

/// The metrics recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// A mount's used %.
    Usage,
    /// A disk's temperature in °C.
    Temperature,
    /// A disk's read rate, bytes/s.
    ReadRate,
    /// A disk's write rate, bytes/s.
    WriteRate,
}

impl Metric {
    pub const ALL: [Metric; 4] = [Metric::Usage, Metric::Temperature, Metric::ReadRate, Metric::WriteRate];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Usage => "usage",
            Metric::Temperature => "temperature",
            Metric::ReadRate => "read_rate",
            Metric::WriteRate => "write_rate",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(c: u8) -> Option<Metric> {
        Metric::ALL.get(c as usize).copied()
    }
}

/// "No value in this bucket": a bfloat16 NaN pattern no rounding of a real value produces.
pub const EMPTY: u16 = 0x7FC1;

/// f32 → bfloat16 with round-to-nearest-even; NaN stays NaN.
pub fn to_bf16(v: f32) -> u16 {
    if v.is_nan() {
        return EMPTY;
    }
    let bits = v.to_bits();
    let round = 0x7FFF + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

pub fn from_bf16(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// One series: the ring and the bucket being filled.
#[derive(Debug, Clone)]
pub struct Series {
    /// Bucket number (unix seconds / resolution) of the newest slot written; slots older than
    /// `newest - capacity` are gone.
    pub newest: u64,
    pub slots: Box<[u16]>,
    /// The current bucket's running sum and count (flushed when a later bucket starts).
    pending: Option<(u64, f64, u32)>,
}

impl Series {
    fn new(capacity: usize) -> Self {
        Series { newest: 0, slots: vec![EMPTY; capacity].into_boxed_slice(), pending: None }
    }

    pub fn from_parts(newest: u64, slots: Box<[u16]>) -> Self {
        Series { newest, slots, pending: None }
    }

    fn cap(&self) -> u64 {
        self.slots.len() as u64
    }

    fn write(&mut self, bucket: u64, value: f64) {
        let cap = self.cap();
        if bucket + cap <= self.newest {
            return; // older than the ring holds
        }
        if bucket > self.newest {
            // Clear the slots skipped between the old newest and this bucket.
            let gap = (bucket - self.newest).min(cap);
            for b in bucket + 1 - gap..=bucket {
                self.slots[(b % cap) as usize] = EMPTY;
            }
            self.newest = bucket;
        }
        self.slots[(bucket % cap) as usize] = to_bf16(value as f32);
    }

    fn flush(&mut self) {
        if let Some((bucket, sum, n)) = self.pending.take() {
            self.write(bucket, sum / n as f64);
        }
    }

    fn add(&mut self, bucket: u64, value: f64) {
        match &mut self.pending {
            Some((b, sum, n)) if *b == bucket => {
                *sum += value;
                *n += 1;
            }
            Some((b, _, _)) if *b > bucket => {} // clock stepped back: drop the sample
            _ => {
                self.flush();
                self.pending = Some((bucket, value, 1));
            }
        }
    }

    /// `(bucket, value)` from bucket `since` on, oldest first, the pending average last.
    fn points(&self, since: u64) -> Vec<(u64, f32)> {
        let cap = self.cap();
        let oldest = (self.newest + 1).saturating_sub(cap).max(since);
        let mut out: Vec<(u64, f32)> = (oldest..=self.newest)
            .filter_map(|b| {
                let v = self.slots[(b % cap) as usize];
                (v != EMPTY && self.newest > 0).then(|| (b, from_bf16(v)))
            })
            .collect();
        if let Some((b, sum, n)) = self.pending {
            if b >= since {
                out.retain(|(x, _)| *x != b);
                out.push((b, (sum / n as f64) as f32));
            }
        }
        out
    }
}

/// The store.
pub struct Store {
    resolution_s: u64,
    capacity: usize,
    series: HashMap<(Box<str>, Metric), Series>,
}

impl Store {
    /// `capacity` = retention / resolution slots per series.
    pub fn new(resolution_s: u64, capacity: usize) -> Self {
        Store { resolution_s: resolution_s.max(1), capacity: capacity.max(1), series: HashMap::new() }
    }

    pub fn resolution_s(&self) -> u64 {
        self.resolution_s
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Adds a sample taken at `unix_s`; samples in one bucket are averaged.
    pub fn add(&mut self, object: &str, metric: Metric, unix_s: u64, value: f64) {
        if !value.is_finite() {
            return;
        }
        let bucket = unix_s / self.resolution_s;
        let cap = self.capacity;
        let series = match self.series.get_mut(&(Box::from(object), metric)) {
            Some(s) => s,
            None => self.series.entry((Box::from(object), metric)).or_insert_with(|| Series::new(cap)),
        };
        series.add(bucket, value);
    }

    /// The series of `object` × `metric` from `since_unix_s` on: `(unix seconds at the bucket's
    /// start, value)`.
    pub fn query(&self, object: &str, metric: Metric, since_unix_s: u64) -> Vec<(u64, f32)> {
        let Some(series) = self.series.get(&(Box::from(object), metric)) else { return Vec::new() };
        series.points(since_unix_s / self.resolution_s).into_iter().map(|(b, v)| (b * self.resolution_s, v)).collect()
    }

    /// Forgets series whose newest value is older than the retention (objects long gone).
    pub fn expire(&mut self, now_unix_s: u64) {
        let horizon = (now_unix_s / self.resolution_s).saturating_sub(self.capacity as u64);
        self.series.retain(|_, s| s.newest.max(s.pending.map_or(0, |p| p.0)) > horizon);
    }

    /// Flushes the pending buckets into the rings (before persisting).
    pub fn flush(&mut self) {
        for s in self.series.values_mut() {
            s.flush();
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Metric, &Series)> {
        self.series.iter().map(|((o, m), s)| (&**o, *m, s))
    }

    /// Puts a loaded series back (persistence).
    pub fn insert(&mut self, object: &str, metric: Metric, series: Series) {
        if series.slots.len() == self.capacity {
            self.series.insert((Box::from(object), metric), series);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_round_trip() {
        for v in [0.0f32, 1.0, 37.5, 99.9, 1.5e9, 123456.0] {
            let back = from_bf16(to_bf16(v));
            assert!((back - v).abs() <= v.abs() * 0.004, "{v} -> {back}");
        }
        assert_eq!(to_bf16(f32::NAN), EMPTY);
    }

    #[test]
    fn buckets_average_and_ring_wraps() {
        let mut s = Store::new(300, 4);
        s.add("sda", Metric::Temperature, 600, 30.0);
        s.add("sda", Metric::Temperature, 650, 32.0);
        s.add("sda", Metric::Temperature, 900, 40.0);
        assert_eq!(s.query("sda", Metric::Temperature, 0), vec![(600, 31.0), (900, 40.0)]);
        // A gap leaves empty buckets; the ring keeps the last 4 buckets only.
        s.add("sda", Metric::Temperature, 1800, 50.0);
        s.add("sda", Metric::Temperature, 2100, 51.0);
        s.flush();
        assert_eq!(s.query("sda", Metric::Temperature, 0), vec![(1800, 50.0), (2100, 51.0)]);
        // `since` inside a bucket includes that bucket.
        assert_eq!(s.query("sda", Metric::Temperature, 2000), vec![(1800, 50.0), (2100, 51.0)]);
        assert_eq!(s.query("sda", Metric::Temperature, 2100), vec![(2100, 51.0)]);
        assert!(s.query("sdb", Metric::Temperature, 0).is_empty());
        assert!(s.query("sda", Metric::Usage, 0).is_empty());
        // Samples older than the ring are dropped, not wrapped over new data.
        s.add("sda", Metric::Temperature, 2400, 52.0);
        s.add("sda", Metric::Temperature, 300, 1.0);
        assert_eq!(s.query("sda", Metric::Temperature, 0).last(), Some(&(2400, 52.0)));
    }

    #[test]
    fn expire_drops_old_series() {
        let mut s = Store::new(60, 10);
        s.add("gone", Metric::Usage, 60, 1.0);
        s.add("here", Metric::Usage, 6000, 1.0);
        s.flush();
        s.expire(6000);
        assert_eq!(s.len(), 1);
    }
}
