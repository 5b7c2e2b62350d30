//! The attention verdict (SPEC §9): does an object (disk, mount, array) need its owner, and
//! why. The same shape for every object; the rules that fill it are in `crate::attention`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How much an object needs its owner, worst first: `failing` > `unknown` > `watch` > `ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing unacknowledged needs the owner.
    #[default]
    Ok,
    /// Something to look at when convenient: a counter the drive copes with, a cable.
    Watch,
    /// It was assessed before and cannot be now: never taken for ok.
    Unknown,
    /// Act now: back up, replace.
    Failing,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Ok, Level::Watch, Level::Unknown, Level::Failing];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Watch => "watch",
            Level::Unknown => "unknown",
            Level::Failing => "failing",
        }
    }
}

/// How serious one reason is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Watch,
    Failing,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Watch => "watch",
            Severity::Failing => "failing",
        }
    }
}

/// One reason an object needs attention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reason {
    /// Stable code of the rule (docs/health.md lists them), e.g. `pending_sectors`.
    pub code: String,
    pub severity: Severity,
    /// One sentence for people.
    pub text: String,
    /// The value the rule judged (a count, a bit mask, a flag); an acknowledgement holds
    /// while it stays the same.
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
    /// When this reason (with any value) was first seen (RFC 3339).
    pub since: String,
    /// The owner acknowledged this reason at this value: it does not count towards `level`.
    pub acknowledged: bool,
}

/// The verdict on one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attention {
    /// The worst severity among the unacknowledged reasons (`unknown` when the object cannot
    /// be assessed now but was before).
    pub level: Level,
    pub reasons: Vec<Reason>,
    /// When the verdict was last computed from fresh data (RFC 3339).
    pub assessed_at: String,
}

impl Attention {
    /// The reasons not acknowledged, as (code, value) pairs: what makes a change news.
    pub fn unacknowledged(&self) -> Vec<(&str, &serde_json::Value)> {
        self.reasons.iter().filter(|r| !r.acknowledged).map(|r| (r.code.as_str(), &r.value)).collect()
    }
}
