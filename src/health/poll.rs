//! One disk's health bookkeeping and the decision of what, if anything, to send it.
//!
//! The rules that keep disks asleep (SPEC §8, issue 10):
//! - a runtime-suspended device (`device/power/runtime_status` = `suspended`) gets nothing:
//!   with runtime PM even CHECK POWER MODE resumes it;
//! - a disk seen in standby gets nothing more until its partitions show I/O again;
//! - every smartctl invocation carries `-n standby,2,3`, so a disk in standby answers the
//!   power check and nothing else, and a bridge without CHECK POWER MODE exits instead of
//!   waking the disk;
//! - SMART is read only when the disk has had I/O since the last read (partition counters):
//!   a SMART read resets the drive's idle timer, so polling an idle disk would keep it
//!   spinning forever. An idle disk only gets the power check.

use std::path::Path;

use crate::model::{Health, HealthSource, PowerState};

use super::smart::{Answer, STANDBY_EXIT, UNSUPPORTED_EXIT};

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

/// The `-n` argument used on every run.
pub fn nocheck_arg() -> String {
    format!("standby,{STANDBY_EXIT},{UNSUPPORTED_EXIT}")
}

/// smartctl's arguments for a plan; `device_type` is `-d` when configured (autodetection may
/// send commands that spin some drives up, smartctl(8) on `-n`).
pub fn args(plan: Plan, devnode: &str, device_type: Option<&str>) -> Vec<String> {
    let mut a = vec!["--json".to_owned(), if plan == Plan::SmartRead { "-a" } else { "-i" }.to_owned()];
    a.push("-n".to_owned());
    a.push(nocheck_arg());
    if let Some(t) = device_type {
        a.push("-d".to_owned());
        a.push(t.to_owned());
    }
    a.push(devnode.to_owned());
    a
}

/// `true` when `<sys_block>/<disk>/device/power/runtime_status` says `suspended` (or
/// `suspending`): the device is powered down by runtime PM and must not get any command.
pub fn runtime_suspended(sys_block: &Path, disk: &str) -> bool {
    std::fs::read_to_string(sys_block.join(disk).join("device/power/runtime_status"))
        .map(|s| s.trim().starts_with("suspend"))
        .unwrap_or(false)
}

/// What the poller knows of one disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
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
}

impl Default for Tracked {
    fn default() -> Self {
        Tracked {
            power: PowerState::Unknown,
            health: None,
            note: None,
            read_ios: None,
            read_once: false,
            asleep_ios: None,
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

impl Tracked {
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
            }
            Answer::LowPower(p) => {
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
                self.note =
                    Some("no I/O since the last SMART read: not read again, so the disk can spin down".to_owned());
            }
            Answer::Active => {
                self.power = PowerState::Active;
                self.health = hwmon_only(hwmon_c, now);
                self.note = Some("smartctl reported no SMART data for this device".to_owned());
                self.read_ios = ios;
                self.read_once = true;
            }
            Answer::Unsupported(why) => {
                self.power = PowerState::Unknown;
                self.health = hwmon_only(hwmon_c, now);
                self.note = Some(format!("SMART unavailable: {why}"));
                self.read_ios = ios;
                self.read_once = true;
                applied.unsupported = Some(why);
            }
            Answer::Invalid(why) => {
                self.note = Some(format!("smartctl failed: {why}; last health kept"));
                applied.error = Some(why);
            }
        }
        applied.changed = before != (self.power, self.health.clone(), self.note.clone());
        applied
    }

    /// A run that did not finish (timeout, missing binary): keep everything, say why.
    pub fn failed(&mut self, why: &str) -> bool {
        let note = Some(format!("smartctl failed: {why}; last health kept"));
        let changed = self.note != note;
        self.note = note;
        changed
    }
}

fn hwmon_only(hwmon_c: Option<f64>, now: &str) -> Option<Health> {
    hwmon_c.map(|t| Health {
        passed: None,
        temperature_c: Some(t),
        power_on_hours: None,
        power_cycles: None,
        reallocated_sectors: None,
        pending_sectors: None,
        uncorrectable: None,
        nvme_percentage_used: None,
        nvme_critical_warning: None,
        nvme_media_errors: None,
        checked_at: now.to_owned(),
        source: HealthSource::Hwmon,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::smart::Reading;

    fn reading() -> Answer {
        Answer::Reading(Reading { passed: Some(true), temperature_c: Some(30.0), ..Default::default() })
    }

    #[test]
    fn every_invocation_carries_the_power_check() {
        for plan in [Plan::PowerCheck, Plan::SmartRead] {
            let a = args(plan, "/dev/sdb", None);
            let i = a.iter().position(|x| x == "-n").unwrap();
            assert_eq!(a[i + 1], "standby,2,3");
            assert_eq!(a.last().unwrap(), "/dev/sdb");
        }
        assert!(args(Plan::SmartRead, "/dev/sdb", Some("sat")).windows(2).any(|w| w == ["-d", "sat"]));
    }

    #[test]
    fn smart_only_after_io() {
        let mut t = Tracked::default();
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
        let mut t = Tracked::default();
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
        let mut t = Tracked::default();
        let a =
            t.apply(Plan::SmartRead, Answer::Unsupported("Unable to detect device type".into()), None, Some(1), "t");
        assert_eq!(a.unsupported.as_deref(), Some("Unable to detect device type"));
        assert!(a.error.is_none());
        assert_eq!(t.health, None);
        assert_eq!(t.power, PowerState::Unknown);
        let a = t.apply(Plan::SmartRead, Answer::Unsupported("x".into()), Some(35.0), Some(1), "t");
        assert_eq!(t.health.as_ref().unwrap().source, HealthSource::Hwmon);
        assert!(a.changed);
        t.apply(Plan::SmartRead, reading(), None, Some(2), "t1");
        let a = t.apply(Plan::SmartRead, Answer::Invalid("truncated".into()), None, Some(3), "t2");
        assert_eq!(a.error.as_deref(), Some("truncated"));
        assert_eq!(t.health.as_ref().unwrap().checked_at, "t1");
        assert!(t.failed("timeout"));
        assert!(!t.failed("timeout"));
    }

    #[test]
    fn runtime_pm() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sdb/device/power");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("runtime_status"), "suspended\n").unwrap();
        assert!(runtime_suspended(dir.path(), "sdb"));
        std::fs::write(p.join("runtime_status"), "active\n").unwrap();
        assert!(!runtime_suspended(dir.path(), "sdb"));
        assert!(!runtime_suspended(dir.path(), "missing"));
    }
}
