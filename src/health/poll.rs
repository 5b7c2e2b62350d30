//! One disk's health bookkeeping and the decision of what, if anything, to send it.
//!
//! The rules that keep disks asleep (SPEC §8, issue 10):
//! - a runtime-suspended device (`device/power/runtime_status` = `suspended`) gets nothing:
//!   with runtime PM even CHECK POWER MODE resumes it;
//! - a disk seen in standby gets nothing more until its partitions show I/O again;
//! - every smartctl invocation carries `-n standby,…` (the form the installed smartctl
//!   accepts, `crate::smartctl::power`), so a disk in standby answers the power check and
//!   nothing else, and (smartctl ≥ 7.3) a bridge without CHECK POWER MODE exits instead of
//!   waking the disk;
//! - SMART is read only when the disk has had I/O since the last read (partition counters):
//!   a SMART read resets the drive's idle timer, so polling an idle disk would keep it
//!   spinning forever. An idle disk only gets the power check.

//! - a bridge that answers "standby" while the disk's I/O counters move does not report the
//!   power state: after [`LYING_STANDBY_LIMIT`] such answers its power state is `unknown`, so
//!   it does not flap between standby and active.

use crate::model::{Health, HealthSource, PowerState};
use crate::smartctl::{Answer, Ask};

/// "Standby" answers in a row, each after I/O since the previous one and with no active answer
/// between, that mark a bridge as not reporting the power state.
pub const LYING_STANDBY_LIMIT: u32 = 2;

/// What the poller sends a disk this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Nothing at all: the device is runtime-suspended.
    Suspended,
    /// Nothing at all: the disk was seen in standby and has had no I/O since, so it is still
    /// asleep ("not queried further until it is seen active again", SPEC §8).
    Asleep,
    /// Only CHECK POWER MODE (+ IDENTIFY when active): `smartctl --json -i -n standby,…`.
    PowerCheck,
    /// `smartctl --json -a -n standby,…`: SMART, unless the disk is in standby.
    SmartRead,
}

impl Plan {
    /// What smartctl is asked, for the plans that send anything.
    pub fn ask(self) -> Option<Ask> {
        match self {
            Plan::Suspended | Plan::Asleep => None,
            Plan::PowerCheck => Some(Ask::PowerCheck),
            Plan::SmartRead => Some(Ask::Smart),
        }
    }
}

/// What the poller knows of one disk's health.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthTrack {
    pub power: PowerState,
    pub health: Option<Health>,
    /// Why the health is what it is (`null` after a fresh SMART read): shown in the state.
    pub note: Option<String>,
    /// Activity counter (completed I/Os on the partitions) at the last SMART read.
    read_ios: Option<u64>,
    /// Whether SMART was ever read (or found unsupported) for this disk.
    read_once: bool,
    /// Activity counter when the disk was last seen entering a low-power mode.
    asleep_ios: Option<u64>,
    /// "Standby" answers in a row that followed I/O (see [`LYING_STANDBY_LIMIT`]).
    lying_standby: u32,
    /// The last answer smartctl gave was "standby" (no active answer since).
    last_answer_standby: bool,
    /// The bridge answers standby while the disk does I/O: its power answers are ignored.
    pub power_unreported: bool,
}

impl Default for HealthTrack {
    fn default() -> Self {
        HealthTrack {
            power: PowerState::Unknown,
            health: None,
            note: None,
            read_ios: None,
            read_once: false,
            asleep_ios: None,
            lying_standby: 0,
            last_answer_standby: false,
            power_unreported: false,
        }
    }
}

/// The outcome of applying one answer: what changed, and an error for the source status.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Applied {
    pub changed: bool,
    /// Set when this run went wrong in a way the user should see (bad output, timeout).
    pub error: Option<String>,
    /// Set when smartctl cannot read this device (logged at debug, not an error).
    pub unsupported: Option<String>,
}

impl HealthTrack {
    /// The plan for this round given the runtime-PM flag and the current activity counter.
    pub fn plan(&self, suspended: bool, ios: Option<u64>) -> Plan {
        if suspended {
            return Plan::Suspended;
        }
        if self.power.is_asleep() && ios.is_some() && ios == self.asleep_ios {
            return Plan::Asleep;
        }
        if !self.read_once || ios.is_none() || ios != self.read_ios {
            return Plan::SmartRead;
        }
        Plan::PowerCheck
    }

    /// Marks the disk runtime-suspended (nothing was sent).
    pub fn suspended(&mut self) -> bool {
        let before = (self.power, self.note.clone());
        self.power = PowerState::Sleeping;
        self.note = Some("runtime-suspended by the kernel: nothing sent, last health kept".to_owned());
        before != (self.power, self.note.clone())
    }

    /// I/O was seen on a disk believed asleep: it is spinning again (no command needed).
    pub fn woke(&mut self) -> bool {
        if self.power.is_asleep() {
            self.power = PowerState::Active;
            self.note = Some("I/O seen: awake again, SMART read at the next round".to_owned());
            return true;
        }
        false
    }

    /// Applies a run's answer. `hwmon_c` is the hwmon temperature read alongside a SMART
    /// read; `ios` the activity counter at the time; `now` the RFC 3339 time.
    pub fn apply(&mut self, plan: Plan, answer: Answer, hwmon_c: Option<f64>, ios: Option<u64>, now: &str) -> Applied {
        let before = (self.power, self.health.clone(), self.note.clone());
        let mut applied = Applied::default();
        // A power check asked only for identity (`-i`): whatever it printed, the disk is up.
        let answer = match answer {
            Answer::Reading(_) if plan == Plan::PowerCheck => Answer::Active,
            other => other,
        };
        match answer {
            Answer::Reading(r) => {
                let mut health = r.into_health(now.to_owned());
                if hwmon_c.is_some() {
                    health.temperature_c = hwmon_c;
                }
                self.health = Some(health);
                self.power = PowerState::Active;
                self.note = None;
                self.read_ios = ios;
                self.read_once = true;
                self.lying_standby = 0;
                self.last_answer_standby = false;
            }
            Answer::LowPower(_) if self.power_unreported => {
                self.power = PowerState::Unknown;
                self.note = Some(UNREPORTED_NOTE.to_owned());
            }
            Answer::LowPower(p) => {
                // Standby again after I/O since the last standby answer, with no active answer
                // between: once is a disk that spun down again, twice is a bridge that says so.
                if self.last_answer_standby && self.asleep_ios.is_some() && ios.is_some() && ios != self.asleep_ios {
                    self.lying_standby += 1;
                }
                self.last_answer_standby = true;
                if self.lying_standby >= LYING_STANDBY_LIMIT {
                    self.power_unreported = true;
                    self.power = PowerState::Unknown;
                    self.note = Some(UNREPORTED_NOTE.to_owned());
                    applied.changed = before != (self.power, self.health.clone(), self.note.clone());
                    return applied;
                }
                self.power = p;
                self.asleep_ios = ios;
                self.note = Some(match &self.health {
                    Some(h) => format!("{}: SMART not read, health of {} kept", p.as_str(), h.checked_at),
                    None => format!("{}: SMART not read yet", p.as_str()),
                });
            }
            Answer::PowerCheckUnsupported => {
                self.power = PowerState::Unknown;
                self.note = Some(
                    "the device cannot report its power mode (no CHECK POWER MODE): SMART not read, so it is never woken"
                        .to_owned(),
                );
            }
            Answer::Active if plan == Plan::PowerCheck => {
                self.power = PowerState::Active;
                self.lying_standby = 0;
                self.last_answer_standby = false;
                self.note =
                    Some("no I/O since the last SMART read: not read again, so the disk can spin down".to_owned());
            }
            Answer::Active => {
                self.power = PowerState::Active;
                self.lying_standby = 0;
                self.last_answer_standby = false;
                self.health = hwmon_c.map(|t| Health {
                    temperature_c: Some(t),
                    checked_at: now.to_owned(),
                    source: HealthSource::Hwmon,
                    ..Health::default()
                });
                self.note = Some("smartctl reported no SMART data for this device".to_owned());
                self.read_ios = ios;
                self.read_once = true;
            }
            Answer::Unsupported(why) if self.has_reading() => {
                // Read before, cannot now (an open failure, a bridge reset): a gap, not a device
                // without SMART. The last reading stays, so a rise across the gap is still news.
                self.power = PowerState::Unknown;
                self.mark_unreadable(now);
                self.note = Some(format!("SMART unavailable now ({why}); last health kept"));
                applied.unsupported = Some(why);
            }
            Answer::Unsupported(why) => {
                self.power = PowerState::Unknown;
                self.health = None;
                self.note = Some(format!("SMART unavailable: {why}"));
                self.read_ios = ios;
                self.read_once = true;
                applied.unsupported = Some(why);
            }
            Answer::Invalid(why) | Answer::BadCommandLine(why) => {
                self.mark_unreadable(now);
                self.note = Some(format!("smartctl failed: {why}; last health kept"));
                applied.error = Some(why);
            }
        }
        applied.changed = before != (self.power, self.health.clone(), self.note.clone());
        applied
    }

    /// A run that did not finish (timeout, missing binary): keep everything, say why.
    pub fn failed(&mut self, why: &str, now: &str) -> bool {
        let before = (self.note.clone(), self.health.clone());
        self.mark_unreadable(now);
        self.note = Some(format!("smartctl failed: {why}; last health kept"));
        before != (self.note.clone(), self.health.clone())
    }

    /// Whether the kept health is a SMART reading (not only an hwmon temperature).
    fn has_reading(&self) -> bool {
        self.health.as_ref().is_some_and(|h| h.source == HealthSource::Smartctl)
    }

    /// The last reading stays, marked as not refreshable now (from the first failure on); the
    /// next round reads SMART again whatever the I/O, so a passing failure does not leave the
    /// disk `unknown` until its next I/O.
    fn mark_unreadable(&mut self, now: &str) {
        if self.has_reading() {
            self.read_ios = None;
        }
        if let Some(h) = self.health.as_mut().filter(|h| h.source == HealthSource::Smartctl) {
            if h.unreadable_since.is_none() {
                h.unreadable_since = Some(now.to_owned());
            }
        }
    }
}

const UNREPORTED_NOTE: &str =
    "the bridge answers standby while the disk's I/O counters move: it does not report the power state";

/// hwmon is read only right after a SMART read of an awake disk (`drivetemp` sends SMART
/// commands of its own, which reset the drive's spin-down timer): never after an answer that
/// read nothing (unsupported, a permission error, standby).
pub fn reads_hwmon(plan: Plan, answer: &Answer) -> bool {
    plan == Plan::SmartRead && matches!(answer, Answer::Reading(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smartctl::Reading;

    fn reading() -> Answer {
        Answer::Reading(Reading { passed: Some(true), temperature_c: Some(30.0), ..Default::default() })
    }

    #[test]
    fn smart_only_after_io() {
        let mut t = HealthTrack::default();
        assert_eq!(t.plan(false, Some(10)), Plan::SmartRead);
        assert_eq!(t.plan(true, Some(10)), Plan::Suspended);
        t.apply(Plan::SmartRead, reading(), None, Some(10), "t1");
        assert_eq!(t.power, PowerState::Active);
        assert_eq!(t.plan(false, Some(10)), Plan::PowerCheck);
        assert_eq!(t.plan(false, Some(11)), Plan::SmartRead);
        // An idle disk's power check keeps the reading and says why it was not refreshed.
        let a = t.apply(Plan::PowerCheck, Answer::Active, None, Some(10), "t2");
        assert!(a.changed);
        assert_eq!(t.health.as_ref().unwrap().checked_at, "t1");
        assert!(t.note.as_deref().unwrap().contains("no I/O"));
    }

    #[test]
    fn standby_keeps_last_health() {
        let mut t = HealthTrack::default();
        t.apply(Plan::SmartRead, reading(), Some(41.5), Some(1), "t1");
        assert_eq!(t.health.as_ref().unwrap().temperature_c, Some(41.5));
        t.apply(Plan::SmartRead, Answer::LowPower(PowerState::Standby), None, Some(2), "t2");
        assert_eq!(t.power, PowerState::Standby);
        assert_eq!(t.health.as_ref().unwrap().checked_at, "t1");
        assert!(t.note.as_deref().unwrap().starts_with("standby"));
        // Asleep and no I/O since: nothing is sent at all.
        assert_eq!(t.plan(false, Some(2)), Plan::Asleep);
        // I/O since: SMART again (still gated by -n standby).
        assert_eq!(t.plan(false, Some(3)), Plan::SmartRead);
        assert!(t.woke());
        assert_eq!(t.power, PowerState::Active);
        assert!(!t.woke());
    }

    #[test]
    fn unsupported_and_invalid() {
        let mut t = HealthTrack::default();
        let a =
            t.apply(Plan::SmartRead, Answer::Unsupported("Unable to detect device type".into()), None, Some(1), "t");
        assert_eq!(a.unsupported.as_deref(), Some("Unable to detect device type"));
        assert!(a.error.is_none());
        assert_eq!(t.health, None);
        assert_eq!(t.power, PowerState::Unknown);
        t.apply(Plan::SmartRead, reading(), None, Some(2), "t1");
        let a = t.apply(Plan::SmartRead, Answer::Invalid("truncated".into()), None, Some(3), "t2");
        assert_eq!(a.error.as_deref(), Some("truncated"));
        assert_eq!(t.health.as_ref().unwrap().checked_at, "t1");
        assert_eq!(t.health.as_ref().unwrap().unreadable_since.as_deref(), Some("t2"));
        assert_eq!(t.plan(false, Some(2)), Plan::SmartRead, "read again after a failure, I/O or not");
        assert!(t.failed("timeout", "t3"));
        assert!(!t.failed("timeout", "t4"));
        assert_eq!(t.health.as_ref().unwrap().unreadable_since.as_deref(), Some("t2"), "from the first failure");
        let a = t.apply(Plan::SmartRead, Answer::BadCommandLine("INVALID ARGUMENT TO -n".into()), None, Some(3), "t");
        assert!(a.error.unwrap().contains("INVALID"), "exit bit 0 is an error, not unsupported");
        t.apply(Plan::SmartRead, reading(), None, Some(4), "t5");
        assert_eq!(t.health.as_ref().unwrap().unreadable_since, None, "a fresh reading clears it");
    }

    /// Before the fix an open failure after a reading replaced the reading with nothing, so the
    /// next reading was compared with nothing and a rise across the gap was never announced.
    #[test]
    fn a_transient_open_failure_keeps_the_last_reading() {
        let mut t = HealthTrack::default();
        let one = Answer::Reading(Reading { passed: Some(true), reallocated_sectors: Some(1), ..Default::default() });
        t.apply(Plan::SmartRead, one, None, Some(1), "t1");
        t.apply(
            Plan::SmartRead,
            Answer::Unsupported("Smartctl open device: /dev/sdb failed".into()),
            None,
            Some(2),
            "t2",
        );
        let h = t.health.as_ref().expect("kept");
        assert_eq!((h.reallocated_sectors, h.unreadable_since.as_deref()), (Some(1), Some("t2")));
        assert!(t.note.as_deref().unwrap().contains("last health kept"));
    }

    /// Before the fix drivetemp was read after an "unsupported" answer too.
    #[test]
    fn hwmon_only_after_a_smart_reading() {
        assert!(reads_hwmon(Plan::SmartRead, &reading()));
        assert!(!reads_hwmon(Plan::SmartRead, &Answer::Unsupported("Permission denied".into())));
        assert!(!reads_hwmon(Plan::SmartRead, &Answer::Active));
        assert!(!reads_hwmon(Plan::PowerCheck, &reading()));
        assert!(!reads_hwmon(Plan::SmartRead, &Answer::LowPower(PowerState::Standby)));
    }

    /// A bridge that answers standby to every check while the disk does I/O: one flap at most,
    /// then its power state is unknown and stays so.
    #[test]
    fn a_bridge_saying_standby_while_io_moves_stops_reporting_power() {
        let mut t = HealthTrack::default();
        t.apply(Plan::SmartRead, Answer::LowPower(PowerState::Standby), None, Some(10), "t1");
        assert_eq!(t.power, PowerState::Standby);
        let mut asleep_flips = 0;
        let mut last = t.power.is_asleep();
        for i in 1..10u64 {
            t.woke();
            let ios = Some(10 + i * 5);
            t.apply(t.plan(false, ios), Answer::LowPower(PowerState::Standby), None, ios, "t");
            asleep_flips += usize::from(t.power.is_asleep() != last);
            last = t.power.is_asleep();
        }
        assert!(t.power_unreported);
        assert_eq!(t.power, PowerState::Unknown);
        assert!(asleep_flips <= 2, "{asleep_flips} flips");
        // A disk that spun down again once after I/O is believed.
        let mut t = HealthTrack::default();
        t.apply(Plan::SmartRead, Answer::LowPower(PowerState::Standby), None, Some(10), "t1");
        t.woke();
        t.apply(Plan::SmartRead, reading(), None, Some(11), "t2");
        t.apply(Plan::PowerCheck, Answer::LowPower(PowerState::Standby), None, Some(20), "t3");
        assert_eq!(t.power, PowerState::Standby);
        assert!(!t.power_unreported);
    }
}
