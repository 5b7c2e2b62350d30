//! SMART self-tests through smartctl: starting one (`-t short|long`) and reading the drive's
//! own self-test log and progress (`-c -l selftest`), for ATA, NVMe and SCSI as smartctl's
//! JSON gives them (smartmontools `ataprint.cpp`, `nvmeprint.cpp`, `scsiprint.cpp`):
//!
//! - ATA: `ata_smart_data.self_test.status` (`value` high nibble 0xF: running,
//!   `remaining_percent`) and `ata_smart_self_test_log.{standard,extended}.table`, newest
//!   first, status nibble 0 passed, 1 aborted by host, 2 interrupted (host reset), 3–8 failed,
//!   0xF in progress, `lba` of the first error;
//! - NVMe: `nvme_self_test_log.current_self_test_operation` (0: none) with
//!   `current_self_test_completion_percent` (done, not left), and `table` with
//!   `self_test_code` 1 short / 2 extended, `self_test_result` 0 passed, 1–4, 8, 9 aborted,
//!   5–7 failed, `power_on_hours`, `lba`;
//! - SCSI: `scsi_self_test_status.{in_progress,completion_percent}` (smartctl ≥ 7.4) and
//!   `scsi_self_test_<n>` (0 newest), `code` 1/5 short, 2/6 long, `result` 0 completed,
//!   1 aborted, 2 aborted by a reset, 3–7 failed, 15 in progress, `lba_first_failure`.
//!
//! Every run carries the `-n` power check of [`super::power`], so a disk in standby answers
//! that and is sent nothing else; only an owner-allowed long test goes without it.

use serde_json::Value;

use super::parse::{interpret_for, Answer};
use super::power::Nocheck;
use super::{RunError, Smartctl};
use crate::model::selftest::{RunningTest, SelfTestKind, SelfTestResult};
use crate::model::PowerState;

/// One finished test of the drive's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// `None` for tests diskwatch does not schedule (conveyance, offline, selective, vendor).
    pub kind: Option<SelfTestKind>,
    pub result: SelfTestResult,
    pub at_hours: Option<u64>,
    pub lba: Option<u64>,
}

/// What the drive says of its self-tests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SelfTestLog {
    /// The test running now. Its kind is `None` when the drive does not say (ATA's status has
    /// no kind; the log's in-progress entry has one when the drive writes it).
    pub running: Option<(Option<SelfTestKind>, Option<u8>)>,
    /// Finished tests, newest first.
    pub entries: Vec<LogEntry>,
    /// The drive's power-on hours now.
    pub power_on_hours: Option<u64>,
    /// Whether the output held any self-test data at all (else the device has none to give).
    pub supported: bool,
    /// How long the drive says its long test takes, in minutes (ATA
    /// `ata_smart_data.self_test.polling_minutes.extended`, SCSI `scsi_extended_self_test_seconds`):
    /// how long a long test holds its array.
    pub long_minutes: Option<u64>,
}

impl SelfTestLog {
    /// The running test with a kind: the drive's, else `assumed` (the one diskwatch started).
    pub fn running_test(&self, assumed: Option<SelfTestKind>) -> Option<RunningTest> {
        let (kind, percent_remaining) = self.running?;
        Some(RunningTest { kind: kind.or(assumed)?, percent_remaining })
    }

    /// The newest finished test of a kind diskwatch schedules.
    pub fn newest(&self) -> Option<&LogEntry> {
        self.entries.iter().find(|e| e.kind.is_some())
    }

    /// The newest test of `kind` that ran to its end (passed or failed).
    pub fn newest_completed(&self, kind: SelfTestKind) -> Option<&LogEntry> {
        self.entries.iter().find(|e| e.kind == Some(kind) && e.result.completed())
    }
}

/// What a log read answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogAnswer {
    Log(SelfTestLog),
    /// The disk is in standby or sleep: nothing was read.
    LowPower(PowerState),
    /// The device has no self-test to offer (or cannot be asked without waking it).
    Unsupported(String),
    /// smartctl failed or printed what could not be read.
    Error(String),
}

/// What a start answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAnswer {
    Started,
    /// The disk is in standby or sleep: nothing was started (the `-n` check).
    LowPower(PowerState),
    /// The drive refused (a test already running, no self-test support), with smartctl's words.
    Refused(String),
}

fn u64_at(v: &Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(Value::as_u64)
}

fn percent(n: u64) -> u8 {
    n.min(100) as u8
}

/// ATA log status nibble (ACS "self-test execution status").
fn ata_result(status: u64) -> Option<SelfTestResult> {
    match status >> 4 {
        0x0 => Some(SelfTestResult::Passed),
        0x1 => Some(SelfTestResult::Aborted),
        0x2 => Some(SelfTestResult::Interrupted),
        0x3..=0x8 => Some(SelfTestResult::Failed),
        // 0xF in progress; 9–0xE reserved.
        _ => None,
    }
}

/// ATA self-test types: 1/0x81 short, 2/0x82 extended (captive or not).
fn ata_kind(code: u64) -> Option<SelfTestKind> {
    match code & 0x7F {
        1 => Some(SelfTestKind::Short),
        2 => Some(SelfTestKind::Long),
        _ => None,
    }
}

fn nvme_result(code: u64) -> Option<SelfTestResult> {
    match code {
        0 => Some(SelfTestResult::Passed),
        2 => Some(SelfTestResult::Interrupted),
        1 | 3 | 4 | 8 | 9 => Some(SelfTestResult::Aborted),
        5..=7 => Some(SelfTestResult::Failed),
        _ => None,
    }
}

fn nvme_kind(code: u64) -> Option<SelfTestKind> {
    match code {
        1 => Some(SelfTestKind::Short),
        2 => Some(SelfTestKind::Long),
        _ => None,
    }
}

fn scsi_result(code: u64) -> Option<SelfTestResult> {
    match code {
        0 => Some(SelfTestResult::Passed),
        1 => Some(SelfTestResult::Aborted),
        2 => Some(SelfTestResult::Interrupted),
        3..=7 => Some(SelfTestResult::Failed),
        _ => None,
    }
}

fn scsi_kind(code: u64) -> Option<SelfTestKind> {
    match code {
        1 | 5 => Some(SelfTestKind::Short),
        2 | 6 => Some(SelfTestKind::Long),
        _ => None,
    }
}

/// Reads the self-test parts of a smartctl JSON output (`-a`, `-x` or `-c -l selftest`).
pub fn parse_log(json: &Value) -> SelfTestLog {
    let mut log = SelfTestLog {
        power_on_hours: u64_at(json, "/power_on_time/hours")
            .or_else(|| u64_at(json, "/nvme_smart_health_information_log/power_on_hours")),
        long_minutes: u64_at(json, "/ata_smart_data/self_test/polling_minutes/extended")
            .or_else(|| u64_at(json, "/scsi_extended_self_test_seconds").map(|s| s.div_ceil(60))),
        ..SelfTestLog::default()
    };
    // ATA: the status of the test running now, then the log (the extended log when printed).
    if let Some(status) = json.pointer("/ata_smart_data/self_test/status") {
        log.supported = true;
        if u64_at(status, "/value").is_some_and(|v| v >> 4 == 0xF) {
            log.running = Some((None, u64_at(status, "/remaining_percent").map(percent)));
        }
    }
    let ata_table = json
        .pointer("/ata_smart_self_test_log/extended/table")
        .or_else(|| json.pointer("/ata_smart_self_test_log/standard/table"))
        .and_then(Value::as_array);
    if let Some(table) = ata_table {
        log.supported = true;
        for t in table {
            let Some(status) = u64_at(t, "/status/value") else { continue };
            let kind = u64_at(t, "/type/value").and_then(ata_kind);
            match ata_result(status) {
                Some(result) => log.entries.push(LogEntry {
                    kind,
                    result,
                    at_hours: u64_at(t, "/lifetime_hours"),
                    lba: if result == SelfTestResult::Failed { u64_at(t, "/lba") } else { None },
                }),
                None if status >> 4 == 0xF => {
                    // The in-progress entry names the kind the status lacks.
                    let remaining = u64_at(t, "/status/remaining_percent").map(percent);
                    let (_, from_status) = log.running.unwrap_or((None, None));
                    log.running = Some((kind, from_status.or(remaining)));
                }
                None => {}
            }
        }
    }
    // NVMe.
    if let Some(nvme) = json.get("nvme_self_test_log") {
        log.supported = true;
        let op = u64_at(nvme, "/current_self_test_operation/value").unwrap_or(0);
        if op != 0 {
            let done = u64_at(nvme, "/current_self_test_completion_percent");
            log.running = Some((nvme_kind(op), done.map(|d| 100 - percent(d))));
        }
        for t in nvme.get("table").and_then(Value::as_array).into_iter().flatten() {
            let Some(result) = u64_at(t, "/self_test_result/value").and_then(nvme_result) else { continue };
            log.entries.push(LogEntry {
                kind: u64_at(t, "/self_test_code/value").and_then(nvme_kind),
                result,
                at_hours: u64_at(t, "/power_on_hours"),
                lba: if result == SelfTestResult::Failed { u64_at(t, "/lba") } else { None },
            });
        }
    }
    // SCSI: the status (7.4+), then scsi_self_test_0, _1, … (0 is the newest).
    if let Some(status) = json.get("scsi_self_test_status") {
        log.supported = true;
        if status.get("in_progress").and_then(Value::as_bool) == Some(true) {
            let done = u64_at(status, "/completion_percent");
            log.running = Some((None, done.map(|d| 100 - percent(d))));
        }
    }
    for n in 0..20 {
        let Some(t) = json.get(format!("scsi_self_test_{n}")) else { break };
        log.supported = true;
        let kind = u64_at(t, "/code/value").and_then(scsi_kind);
        let code = u64_at(t, "/result/value");
        if code == Some(15) || t.get("self_test_in_progress").and_then(Value::as_bool) == Some(true) {
            let (_, percent) = log.running.unwrap_or((None, None));
            log.running = Some((kind, percent));
            continue;
        }
        let Some(result) = code.and_then(scsi_result) else { continue };
        log.entries.push(LogEntry {
            kind,
            result,
            at_hours: u64_at(t, "/power_on_time/hours"),
            lba: if result == SelfTestResult::Failed { u64_at(t, "/lba_first_failure/value") } else { None },
        });
    }
    log
}

/// Interprets a log read the way health reads are (standby, open failures, bad output).
pub fn interpret_log(status: i32, stdout: &str, status2: bool) -> LogAnswer {
    match interpret_for(status, stdout, status2) {
        Answer::LowPower(p) => LogAnswer::LowPower(p),
        Answer::PowerCheckUnsupported => {
            LogAnswer::Unsupported("the device cannot report its power mode: never asked, so never woken".into())
        }
        Answer::Unsupported(why) => LogAnswer::Unsupported(why),
        Answer::Invalid(why) | Answer::BadCommandLine(why) => LogAnswer::Error(why),
        Answer::Reading(_) | Answer::Active => {
            let Ok(json) = serde_json::from_str::<Value>(stdout) else {
                return LogAnswer::Error("output is not JSON".into());
            };
            let log = parse_log(&json);
            if log.supported {
                LogAnswer::Log(log)
            } else {
                LogAnswer::Unsupported("smartctl reported no self-test log for this device".into())
            }
        }
    }
}

/// Interprets a start: standby (nothing sent), refused (exit bit 2, "a command to the disk
/// failed", as when a test already runs), or started.
pub fn interpret_start(status: i32, stdout: &str, status2: bool) -> StartAnswer {
    match interpret_for(status, stdout, status2) {
        Answer::LowPower(p) => StartAnswer::LowPower(p),
        Answer::PowerCheckUnsupported => {
            StartAnswer::Refused("the device cannot report its power mode: not started, so never woken".into())
        }
        Answer::Unsupported(why) | Answer::Invalid(why) | Answer::BadCommandLine(why) if status != 0 => {
            StartAnswer::Refused(why)
        }
        _ if status & 0b100 != 0 => StartAnswer::Refused(format!("the drive refused the test (exit status {status})")),
        _ => StartAnswer::Started,
    }
}

/// `--json -c -l selftest -n … [-d type] dev`.
pub fn log_args(nocheck: Nocheck, devnode: &str, device_type: Option<&str>) -> Vec<String> {
    let mut a: Vec<String> = ["--json", "-c", "-l", "selftest", "-n"].map(str::to_owned).to_vec();
    a.push(nocheck.arg());
    push_device(&mut a, devnode, device_type);
    a
}

/// `--json -t short|long -n …|never [-d type] dev`: `wake` drops the power check (an
/// owner-allowed overdue long test, docs/selftest.md).
pub fn start_args(
    kind: SelfTestKind,
    nocheck: Nocheck,
    wake: bool,
    devnode: &str,
    device_type: Option<&str>,
) -> Vec<String> {
    let mut a: Vec<String> = ["--json", "-t", kind.as_str(), "-n"].map(str::to_owned).to_vec();
    a.push(if wake { "never".to_owned() } else { nocheck.arg() });
    push_device(&mut a, devnode, device_type);
    a
}

fn push_device(a: &mut Vec<String>, devnode: &str, device_type: Option<&str>) {
    if let Some(t) = device_type.filter(|t| !t.is_empty()) {
        a.push("-d".to_owned());
        a.push(t.to_owned());
    }
    a.push(devnode.to_owned());
}

/// How long a self-test's smartctl run waits for the disk's slot when a health poll holds it
/// (a few seconds at most on a working drive; a hung one keeps it and the run gives up Busy).
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Smartctl {
    /// Reads `disk`'s self-test log and progress, with the power check.
    pub async fn self_test_log(&self, disk: &str, devnode: &str) -> Result<LogAnswer, RunError> {
        let nocheck = self.nocheck().await;
        let out =
            self.runner.run_waiting(disk, &log_args(nocheck, devnode, self.device_type.as_deref()), SLOT_WAIT).await?;
        Ok(interpret_log(out.status, &out.stdout, nocheck.has_unsupported_exit()))
    }

    /// Starts a self-test on `disk`; with the power check unless `wake`.
    pub async fn start_self_test(
        &self,
        disk: &str,
        devnode: &str,
        kind: SelfTestKind,
        wake: bool,
    ) -> Result<StartAnswer, RunError> {
        let nocheck = self.nocheck().await;
        let args = start_args(kind, nocheck, wake, devnode, self.device_type.as_deref());
        let out = self.runner.run_waiting(disk, &args, SLOT_WAIT).await?;
        Ok(interpret_start(out.status, &out.stdout, nocheck.has_unsupported_exit() && !wake))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(name: &str) -> SelfTestLog {
        let path = format!("{}/tests/fixtures/smartctl/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        parse_log(&serde_json::from_str(&text).unwrap())
    }

    use SelfTestKind::{Long, Short};
    use SelfTestResult::{Aborted, Failed, Passed};

    #[test]
    fn ata_running_with_its_history() {
        // WDC WD140EDFZ: status 241 "in progress, 10% remaining", a log of passed tests.
        let l = log("ata-hdd-wd140edfz.json");
        assert_eq!(l.running, Some((None, Some(10))));
        assert_eq!(l.running_test(Some(Long)), Some(RunningTest { kind: Long, percent_remaining: Some(10) }));
        assert_eq!(l.entries[0], LogEntry { kind: Some(Short), result: Passed, at_hours: Some(1708), lba: None });
        assert_eq!(l.newest_completed(Long).unwrap().at_hours, Some(1624));
        assert_eq!(l.power_on_hours, Some(1730));
        // "polling_minutes": {"extended": 1479}: how long a long test holds its array.
        assert_eq!(l.long_minutes, Some(1479));
    }

    #[test]
    fn ata_read_failure_names_the_lba() {
        // JMicron bridge, Hitachi HDS721050DLE630: an extended test "Completed: read failure".
        let l = log("usb-jmicron-hitachi-failing.json");
        assert_eq!(l.running, None);
        let failed = l.newest_completed(Long).unwrap();
        assert_eq!((failed.result, failed.lba, failed.at_hours), (Failed, Some(104870168), Some(4)));
        assert_eq!(l.newest().unwrap().result, Passed, "newer short tests passed");
    }

    #[test]
    fn ata_aborted_by_host_and_in_progress_entry() {
        let l = log("corpus/scrutiny--smart-megaraid1.json");
        assert_eq!(l.entries[0], LogEntry { kind: Some(Short), result: Aborted, at_hours: Some(35990), lba: None });
        // A vendor test (0xdf) is in the log but not one diskwatch schedules.
        assert!(l.entries.iter().any(|e| e.kind.is_none()));
        // The extended log's in-progress entry names the kind.
        let l = log("corpus/smart-prom-next--sat_xall.json");
        assert_eq!(l.running, Some((Some(Short), Some(90))));
        assert!(l.entries.is_empty());
    }

    #[test]
    fn nvme_and_scsi() {
        let l = log("corpus/telegraf--nvme-response.json");
        assert!(l.supported && l.running.is_none() && l.entries.is_empty());
        assert_eq!(l.power_on_hours, Some(8733));
        let l = log("corpus/telegraf--scsi_extended-response.json");
        assert_eq!(l.entries[0], LogEntry { kind: Some(Long), result: Passed, at_hours: Some(90), lba: None });
        assert_eq!(l.newest_completed(Short).unwrap().at_hours, Some(2));
        // "Reserved(7)" is not a kind diskwatch schedules.
        assert_eq!(l.entries[2].kind, None);
        assert_eq!(l.long_minutes, Some(1340), "scsi_extended_self_test_seconds 80400");
        let l = log("corpus/libblockdev--seagate_st600mp0036.json");
        assert_eq!(l.newest().unwrap().kind, Some(Short));
        assert_eq!(l.long_minutes, Some(56), "3360 s");
        assert_eq!(log("corpus/telegraf--nvme-response.json").long_minutes, None);
    }

    /// NVMe and SCSI shapes as smartmontools writes them (nvmeprint.cpp `print_self_test_log`,
    /// scsiprint.cpp `scsiPrintSelfTest`): no public output of a running or failed NVMe/SCSI
    /// test was found, so these are the source's keys with the drive's fields.
    #[test]
    fn nvme_and_scsi_running_and_failed_by_the_source_keys() {
        let nvme = serde_json::json!({"nvme_self_test_log": {
            "current_self_test_operation": {"value": 2, "string": "Extended self-test in progress"},
            "current_self_test_completion_percent": 30,
            "table": [{"self_test_code": {"value": 1, "string": "Short"},
                       "self_test_result": {"value": 7, "string": "Completed: failed segments"},
                       "power_on_hours": 99, "segment": 2, "lba": 4242}]}});
        let l = parse_log(&nvme);
        assert_eq!(l.running, Some((Some(Long), Some(70))));
        assert_eq!(l.entries[0], LogEntry { kind: Some(Short), result: Failed, at_hours: Some(99), lba: Some(4242) });
        let scsi = serde_json::json!({
            "scsi_self_test_status": {"in_progress": true, "completion_percent": 25},
            "scsi_self_test_0": {"code": {"value": 2, "string": "Background long"},
                "result": {"value": 15, "string": "Self test in progress ..."}, "self_test_in_progress": true},
            "scsi_self_test_1": {"code": {"value": 1, "string": "Background short"},
                "result": {"value": 2, "string": "Aborted (device reset ?)"}, "power_on_time": {"hours": 7}}});
        let l = parse_log(&scsi);
        assert_eq!(l.running, Some((Some(Long), Some(75))));
        assert_eq!(l.entries[0].result, SelfTestResult::Interrupted);
    }

    #[test]
    fn answers() {
        assert_eq!(
            interpret_log(2, "Device is in STANDBY mode, exit(2)\n", true),
            LogAnswer::LowPower(PowerState::Standby)
        );
        assert_eq!(
            interpret_start(2, "Device is in STANDBY mode, exit(2)\n", true),
            StartAnswer::LowPower(PowerState::Standby)
        );
        assert_eq!(interpret_start(0, r#"{"smartctl":{"version":[7,3],"exit_status":0}}"#, true), StartAnswer::Started);
        assert!(matches!(
            interpret_start(4, r#"{"smartctl":{"version":[7,3],"exit_status":4}}"#, true),
            StartAnswer::Refused(_)
        ));
        let no_log = r#"{"smartctl":{"version":[7,3],"exit_status":0},"device":{"protocol":"ATA"}}"#;
        assert!(matches!(interpret_log(0, no_log, true), LogAnswer::Unsupported(_)));
        assert_eq!(
            start_args(Long, Nocheck::WithUnsupportedExit, false, "/dev/sdb", Some("sat")),
            ["--json", "-t", "long", "-n", "standby,2,3", "-d", "sat", "/dev/sdb"]
        );
        assert_eq!(start_args(Long, Nocheck::StandbyOnly, true, "/dev/sdb", None)[4], "never");
        assert_eq!(
            log_args(Nocheck::StandbyOnly, "/dev/sdb", None),
            ["--json", "-c", "-l", "selftest", "-n", "standby,2", "/dev/sdb"]
        );
    }
}
