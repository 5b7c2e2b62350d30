//! The disk rules: which reasons a disk's last SMART reading gives, and how serious each is.
//! One table, mirrored in docs/health.md with the public source of each rule; a test there
//! keeps the two in step ([`RULES`]).
//!
//! The line between `watch` and `failing`: *failing* only where the drive itself says so (its
//! overall assessment, an NVMe critical-warning bit) or sectors cannot be read right now
//! (pending, offline uncorrectable: smartd reports both by default, Backblaze acts on them);
//! everything else that counts damage or risk is *watch*: the drive copes, the owner should
//! know. A rule that cries wolf costs more than a clever one (docs/health.md: the corpus).

use serde_json::json;

use crate::model::attention::Severity;
use crate::model::selftest::{SelfTest, SelfTestResult};
use crate::model::Health;

use super::verdict::Found;

/// Counts first seen for a disk: only a rise above them is a reason (`None`: first reading).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Baselines {
    /// ATA 199 UDMA_CRC_Error_Count.
    pub crc_errors: Option<u64>,
    /// ATA 188 Command_Timeout, decoded.
    pub command_timeouts: Option<u64>,
}

impl Baselines {
    /// The baselines of a first reading: its own counts (nothing has risen yet).
    pub fn of(h: &Health) -> Self {
        Baselines { crc_errors: h.crc_errors, command_timeouts: h.command_timeouts }
    }
}

/// What the rules need besides the reading.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `health.temperature_critical` (°C).
    pub temperature_critical: f64,
}

/// One row of the table: code, severity, what it judges.
pub struct Rule {
    pub code: &'static str,
    pub severity: Severity,
    pub when: &'static str,
}

use Severity::{Failing, Watch};

/// Every rule, in the order reasons are listed.
pub const RULES: &[Rule] = &[
    Rule { code: "smart_failed", severity: Failing, when: "the drive's overall self-assessment is FAILED" },
    Rule { code: "nvme_spare_below_threshold", severity: Failing, when: "NVMe critical warning bit 0" },
    Rule { code: "nvme_temperature", severity: Watch, when: "NVMe critical warning bit 1" },
    Rule { code: "nvme_reliability_degraded", severity: Failing, when: "NVMe critical warning bit 2" },
    Rule { code: "nvme_read_only", severity: Failing, when: "NVMe critical warning bit 3" },
    Rule { code: "nvme_volatile_backup_failed", severity: Failing, when: "NVMe critical warning bit 4" },
    Rule { code: "nvme_pmr_read_only", severity: Failing, when: "NVMe critical warning bit 5" },
    Rule { code: "nvme_critical_warning", severity: Watch, when: "NVMe critical warning bits 6-7 (reserved)" },
    Rule { code: "pending_sectors", severity: Failing, when: "ATA 197 Current_Pending_Sector raw > 0" },
    Rule { code: "offline_uncorrectable", severity: Failing, when: "ATA 198 Offline_Uncorrectable raw > 0" },
    Rule { code: "reallocated_sectors", severity: Watch, when: "ATA 5 Reallocated_Sector_Ct raw > 0" },
    Rule { code: "reported_uncorrect", severity: Watch, when: "ATA 187 Reported_Uncorrect raw > 0" },
    Rule { code: "command_timeouts_rising", severity: Watch, when: "ATA 188 Command_Timeout rose, decoded" },
    Rule { code: "crc_errors_rising", severity: Watch, when: "ATA 199 UDMA_CRC_Error_Count rose" },
    Rule { code: "nvme_media_errors", severity: Watch, when: "NVMe media_errors > 0" },
    Rule { code: "nvme_available_spare", severity: Watch, when: "NVMe available_spare < available_spare_threshold" },
    Rule { code: "nvme_percentage_used", severity: Watch, when: "NVMe percentage_used >= 100" },
    Rule { code: "scsi_grown_defects", severity: Watch, when: "SCSI grown defect list > 0" },
    Rule { code: "scsi_pending_defects", severity: Watch, when: "SCSI pending defects > 0" },
    Rule { code: "scsi_uncorrected_errors", severity: Watch, when: "SCSI uncorrected read/write/verify errors > 0" },
    Rule { code: "self_test_failed", severity: Watch, when: "the newest self-test in the drive's log failed" },
    Rule { code: "temperature_critical", severity: Watch, when: "temperature >= health.temperature_critical" },
    Rule {
        code: "last_self_test_failed",
        severity: Failing,
        when: "the last self-test diskwatch followed (self_test.last) failed; the text names the first failing LBA",
    },
];

fn severity(code: &str) -> Severity {
    RULES.iter().find(|r| r.code == code).map_or(Watch, |r| r.severity)
}

fn found(code: &'static str, text: String, value: serde_json::Value) -> Found {
    Found { code, severity: severity(code), text, value }
}

fn positive(v: Option<u64>) -> Option<u64> {
    v.filter(|n| *n > 0)
}

/// NVMe critical-warning bits (NVMe Base Specification, SMART / Health Information log, byte 0).
const NVME_BITS: [(u64, &str, &str); 6] = [
    (0x01, "nvme_spare_below_threshold", "available spare is below the drive's threshold"),
    (0x02, "nvme_temperature", "temperature is outside the drive's limits"),
    (0x04, "nvme_reliability_degraded", "reliability is degraded by media or internal errors"),
    (0x08, "nvme_read_only", "the drive has put its media in read-only mode"),
    (0x10, "nvme_volatile_backup_failed", "the volatile memory backup device has failed"),
    (0x20, "nvme_pmr_read_only", "the persistent memory region has become read-only or unreliable"),
];

/// The reasons a reading gives; `base` holds the counts first seen for this disk (only a rise
/// above them is a reason).
pub fn reasons(h: &Health, base: Baselines, limits: Limits) -> Vec<Found> {
    let mut out = Vec::new();
    if h.passed == Some(false) {
        out.push(found("smart_failed", "the drive's own SMART assessment is FAILED".into(), json!(false)));
    }
    if let Some(mask) = positive(h.nvme_critical_warning) {
        for (bit, code, text) in NVME_BITS {
            if mask & bit != 0 {
                out.push(found(code, format!("NVMe critical warning: {text}"), json!(mask)));
            }
        }
        if mask & !0x3F != 0 {
            out.push(found(
                "nvme_critical_warning",
                format!("NVMe critical warning 0x{mask:02x} (reserved bits)"),
                json!(mask),
            ));
        }
    }
    let scsi = h.protocol.as_deref() == Some("SCSI");
    if scsi {
        if let Some(n) = positive(h.reallocated_sectors) {
            out.push(found(
                "scsi_grown_defects",
                format!("{n} grown defects (sectors remapped by the drive)"),
                json!(n),
            ));
        }
        if let Some(n) = positive(h.pending_sectors) {
            out.push(found("scsi_pending_defects", format!("{n} pending defects"), json!(n)));
        }
        if let Some(n) = positive(h.uncorrectable) {
            out.push(found("scsi_uncorrected_errors", format!("{n} uncorrected read/write/verify errors"), json!(n)));
        }
    } else {
        if let Some(n) = positive(h.pending_sectors) {
            out.push(found(
                "pending_sectors",
                format!("{n} sectors cannot be read now (pending reallocation)"),
                json!(n),
            ));
        }
        if let Some(n) = positive(h.offline_uncorrectable) {
            out.push(found(
                "offline_uncorrectable",
                format!("{n} sectors found unreadable by the offline scan"),
                json!(n),
            ));
        }
        if let Some(n) = positive(h.reallocated_sectors) {
            out.push(found("reallocated_sectors", format!("{n} sectors reallocated"), json!(n)));
        }
        if let Some(n) = positive(h.reported_uncorrect) {
            out.push(found(
                "reported_uncorrect",
                format!("{n} errors the drive could not correct were reported"),
                json!(n),
            ));
        }
        if let (Some(now), Some(was)) = (h.command_timeouts, base.command_timeouts) {
            if now > was {
                out.push(found(
                    "command_timeouts_rising",
                    format!("{} more commands timed out (now {now})", now - was),
                    json!(now),
                ));
            }
        }
        if let (Some(now), Some(base)) = (h.crc_errors, base.crc_errors) {
            if now > base {
                out.push(found(
                    "crc_errors_rising",
                    format!("{} new interface CRC errors (now {now}): check the cable or connector", now - base),
                    json!(now),
                ));
            }
        }
    }
    if let Some(n) = positive(h.nvme_media_errors) {
        out.push(found("nvme_media_errors", format!("{n} media errors (data the drive could not recover)"), json!(n)));
    }
    if let (Some(spare), Some(threshold)) = (h.nvme_available_spare, h.nvme_available_spare_threshold) {
        if threshold > 0 && spare < threshold {
            out.push(found(
                "nvme_available_spare",
                format!("available spare {spare}% is below {threshold}%"),
                json!(spare),
            ));
        }
    }
    if let Some(used) = h.nvme_percentage_used.filter(|u| *u >= 100) {
        out.push(found("nvme_percentage_used", format!("{used}% of the rated endurance used"), json!(used)));
    }
    if h.self_test_failed == Some(true) {
        out.push(found("self_test_failed", "the newest self-test in the drive's log failed".into(), json!(true)));
    }
    if let Some(t) = h.temperature_c.filter(|t| *t >= limits.temperature_critical) {
        out.push(found(
            "temperature_critical",
            format!("{t} °C, at or above the critical {} °C: check the cooling", limits.temperature_critical),
            json!(t),
        ));
    }
    out
}

/// The reasons a disk's self-test record gives (docs/selftest.md): a failed last test is
/// `failing`, with the first failing LBA. It stands for `self_test_failed` of the same log.
pub fn self_test_reasons(st: Option<&SelfTest>) -> Vec<Found> {
    let Some(last) = st.and_then(|s| s.last.as_ref()).filter(|l| l.result == SelfTestResult::Failed) else {
        return Vec::new();
    };
    let at = last.at_hours.map(|h| format!(" at power-on hour {h}")).unwrap_or_default();
    let text = match last.lba_first_error {
        Some(lba) => format!("the last {} self-test failed{at}: first error at LBA {lba}", last.kind.as_str()),
        None => format!("the last {} self-test failed{at}", last.kind.as_str()),
    };
    vec![found("last_self_test_failed", text, json!(last.lba_first_error))]
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { temperature_critical: 60.0 };

    fn codes(h: &Health, crc: Option<u64>) -> Vec<(&'static str, Severity)> {
        let base = Baselines { crc_errors: crc, command_timeouts: h.command_timeouts.map(|n| n.saturating_sub(1)) };
        reasons(h, base, LIMITS).into_iter().map(|f| (f.code, f.severity)).collect()
    }

    #[test]
    fn every_rule_is_in_the_table_once() {
        let mut seen = std::collections::BTreeSet::new();
        for r in RULES {
            assert!(seen.insert(r.code), "{} twice", r.code);
        }
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/health.md")).unwrap();
        for r in RULES {
            let row = doc.lines().find(|l| l.starts_with(&format!("| `{}` |", r.code)));
            let row = row.unwrap_or_else(|| panic!("docs/health.md has no row for {}", r.code));
            assert!(row.contains(&format!("| {} |", r.severity.as_str())), "{row}");
        }
    }

    #[test]
    fn healthy_is_quiet_and_each_signal_has_its_severity() {
        let ok = Health { passed: Some(true), reallocated_sectors: Some(0), crc_errors: Some(3), ..Health::default() };
        assert!(codes(&ok, Some(3)).is_empty());
        assert!(codes(&ok, None).is_empty(), "a first CRC count is a baseline, not a rise");
        let cable = Health { crc_errors: Some(5), ..ok.clone() };
        assert_eq!(codes(&cable, Some(3)), [("crc_errors_rising", Watch)]);
        let bad = Health {
            passed: Some(false),
            pending_sectors: Some(8),
            offline_uncorrectable: Some(2),
            reallocated_sectors: Some(1975),
            reported_uncorrect: Some(1),
            command_timeouts: Some(4),
            ..Health::default()
        };
        assert_eq!(
            codes(&bad, None),
            [
                ("smart_failed", Failing),
                ("pending_sectors", Failing),
                ("offline_uncorrectable", Failing),
                ("reallocated_sectors", Watch),
                ("reported_uncorrect", Watch),
                ("command_timeouts_rising", Watch)
            ]
        );
    }

    #[test]
    fn nvme_bits_are_named_and_scsi_has_its_own_codes() {
        let nvme = Health { nvme_critical_warning: Some(0x12), nvme_media_errors: Some(7), ..Health::default() };
        assert_eq!(
            codes(&nvme, None),
            [("nvme_temperature", Watch), ("nvme_volatile_backup_failed", Failing), ("nvme_media_errors", Watch)]
        );
        let sas = Health {
            protocol: Some("SCSI".into()),
            reallocated_sectors: Some(56),
            uncorrectable: Some(2),
            ..Health::default()
        };
        assert_eq!(codes(&sas, None), [("scsi_grown_defects", Watch), ("scsi_uncorrected_errors", Watch)]);
        let hot = Health { temperature_c: Some(61.0), self_test_failed: Some(true), ..Health::default() };
        assert_eq!(codes(&hot, None), [("self_test_failed", Watch), ("temperature_critical", Watch)]);
    }

    #[test]
    fn a_failed_self_test_is_failing_with_its_lba() {
        use crate::model::selftest::{LastTest, SelfTestKind};
        let last = |result| SelfTest {
            last: Some(LastTest {
                kind: SelfTestKind::Short,
                result,
                at_hours: Some(16402),
                lba_first_error: (result == SelfTestResult::Failed).then_some(494591083),
            }),
            ..SelfTest::default()
        };
        let found = self_test_reasons(Some(&last(SelfTestResult::Failed)));
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].code, found[0].severity), ("last_self_test_failed", Failing));
        assert_eq!(
            found[0].text,
            "the last short self-test failed at power-on hour 16402: first error at LBA 494591083"
        );
        assert_eq!(found[0].value, json!(494591083));
        for quiet in [SelfTestResult::Passed, SelfTestResult::Aborted, SelfTestResult::Interrupted] {
            assert!(self_test_reasons(Some(&last(quiet))).is_empty(), "{quiet:?}");
        }
        assert!(self_test_reasons(None).is_empty());
    }
}
