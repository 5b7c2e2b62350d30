//! A disk's SMART self-test record (SPEC §9): the test running now, the last one finished and
//! when the next is due. Filled by the self-test source (`crate::selftest`), applied by the state.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which self-test: `short` (minutes: electrical, mechanical and a read sample) or `long`
/// (the extended test: the whole surface is read, hours on a big disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SelfTestKind {
    Short,
    Long,
}

impl SelfTestKind {
    pub const ALL: [SelfTestKind; 2] = [SelfTestKind::Short, SelfTestKind::Long];

    /// The wire name, also smartctl's `-t` argument.
    pub const fn as_str(self) -> &'static str {
        match self {
            SelfTestKind::Short => "short",
            SelfTestKind::Long => "long",
        }
    }
}

/// How a finished self-test ended (the drive's own log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SelfTestResult {
    Passed,
    /// The drive found a fault (read, electrical, servo, handling damage, a failed segment).
    Failed,
    /// Stopped by a command (the host's abort, a spin-down, a format, a sanitize).
    Aborted,
    /// Stopped by a reset of the host or the link ("Interrupted (host reset)").
    Interrupted,
}

impl SelfTestResult {
    pub const fn as_str(self) -> &'static str {
        match self {
            SelfTestResult::Passed => "passed",
            SelfTestResult::Failed => "failed",
            SelfTestResult::Aborted => "aborted",
            SelfTestResult::Interrupted => "interrupted",
        }
    }

    /// Whether the test ran to its end (its verdict counts; an aborted one is retried).
    pub const fn completed(self) -> bool {
        matches!(self, SelfTestResult::Passed | SelfTestResult::Failed)
    }
}

/// The test running now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunningTest {
    pub kind: SelfTestKind,
    /// What the drive says is left (ATA in steps of 10 %, NVMe and SCSI by the percent);
    /// `null` when the drive does not say.
    pub percent_remaining: Option<u8>,
}

/// The newest finished test in the drive's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LastTest {
    pub kind: SelfTestKind,
    pub result: SelfTestResult,
    /// The drive's power-on hours when it ended.
    pub at_hours: Option<u64>,
    /// The first LBA that failed to read (ATA, NVMe, SCSI report it with a failure).
    pub lba_first_error: Option<u64>,
}

/// `self_test` of a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub struct SelfTest {
    pub running: Option<RunningTest>,
    pub last: Option<LastTest>,
    /// RFC 3339: when the next scheduled test is due (`null` with both kinds off). A due test
    /// waits for the disk to be awake (docs/selftest.md).
    pub next_due: Option<String>,
}

/// What a self-test fact reports besides the record: the news an event is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelfTestNews {
    /// A test was started; `by` is `schedule` or who asked (`token:<name>`, `mqtt`).
    Started {
        kind: SelfTestKind,
        by: String,
        woke: bool,
    },
    Finished(LastTest),
}
