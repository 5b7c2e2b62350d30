//! Coalescing of change storms per device: the first change is handled at
//! once, later ones within the window collapse into one re-read at its end.
//! Add and remove always pass (and reset the device's window).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::uevent::Props;

#[derive(Debug)]
pub struct Coalescer {
    window: Duration,
    /// When each device was last handled.
    last: HashMap<String, Instant>,
    /// Devices with a deferred re-read: when, and the newest event properties.
    pending: HashMap<String, (Instant, Option<Props>)>,
}

impl Coalescer {
    pub fn new(window: Duration) -> Self {
        Self { window, last: HashMap::new(), pending: HashMap::new() }
    }

    /// A change for `devpath`: true when it is to be handled now; otherwise it is deferred.
    pub fn change(&mut self, devpath: &str, props: Option<Props>, now: Instant) -> bool {
        if let Some(slot) = self.pending.get_mut(devpath) {
            if props.is_some() {
                slot.1 = props;
            }
            return false;
        }
        match self.last.get(devpath) {
            Some(&t) if now.duration_since(t) < self.window => {
                self.pending.insert(devpath.to_owned(), (t + self.window, props));
                false
            }
            _ => {
                self.last.insert(devpath.to_owned(), now);
                true
            }
        }
    }

    /// An add or remove, handled now: a deferred change is superseded by it.
    pub fn passthrough(&mut self, devpath: &str, removed: bool, now: Instant) {
        self.pending.remove(devpath);
        if removed {
            self.last.remove(devpath);
        } else {
            self.last.insert(devpath.to_owned(), now);
        }
    }

    /// The earliest deferred re-read.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|(t, _)| *t).min()
    }

    /// Deferred re-reads that are due, and forgets windows that have passed.
    pub fn due(&mut self, now: Instant) -> Vec<(String, Option<Props>)> {
        let ready: Vec<String> = self.pending.iter().filter(|(_, (t, _))| *t <= now).map(|(p, _)| p.clone()).collect();
        let mut out = Vec::with_capacity(ready.len());
        for path in ready {
            if let Some((_, props)) = self.pending.remove(&path) {
                self.last.insert(path.clone(), now);
                out.push((path, props));
            }
        }
        let window = self.window;
        let pending = &self.pending;
        self.last.retain(|p, t| now.duration_since(*t) < window || pending.contains_key(p));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_becomes_one_immediate_and_one_trailing_read() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = Coalescer::new(ms(50));
        assert!(c.change("/d/sdb", None, t0));
        for i in 1..100 {
            assert!(!c.change("/d/sdb", None, t0 + Duration::from_micros(i * 100)));
        }
        assert_eq!(c.next_deadline(), Some(t0 + ms(50)));
        assert!(c.due(t0 + ms(49)).is_empty());
        let due = c.due(t0 + ms(50));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, "/d/sdb");
        assert_eq!(c.next_deadline(), None);
        // Quiet for a window: the next change goes through at once again.
        assert!(c.change("/d/sdb", None, t0 + ms(200)));
    }

    #[test]
    fn devices_are_independent_and_keep_the_newest_properties() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_millis(50));
        assert!(c.change("/a", None, t0));
        assert!(c.change("/b", None, t0));
        let props = |v: &str| Some([("K".to_string(), v.to_string())].into_iter().collect::<Props>());
        assert!(!c.change("/a", props("1"), t0 + Duration::from_millis(1)));
        assert!(!c.change("/a", props("2"), t0 + Duration::from_millis(2)));
        let due = c.due(t0 + Duration::from_secs(1));
        assert_eq!(due, vec![("/a".to_string(), props("2"))]);
    }

    #[test]
    fn add_and_remove_are_never_held_back() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_millis(50));
        assert!(c.change("/a", None, t0));
        assert!(!c.change("/a", None, t0 + Duration::from_millis(1)));
        c.passthrough("/a", true, t0 + Duration::from_millis(2));
        assert_eq!(c.next_deadline(), None, "the removal supersedes the pending change");
        assert!(c.change("/a", None, t0 + Duration::from_millis(3)), "a re-added device starts fresh");
    }
}
