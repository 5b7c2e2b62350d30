//! Configuration of the action engine (`[actions]`): off unless turned on, and then only
//! the actions listed.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::ActionKind;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsConfig {
    /// Unmount, eject, spin down, mount: off unless turned on.
    pub enabled: bool,
    /// Which actions, e.g. `["unmount", "eject", "spin_down"]`.
    pub allow: Vec<ActionKind>,
    /// Where `mount` mounts partitions (`<mount_root>/<label or id>`).
    pub mount_root: PathBuf,
    /// Longest an action may take before it is reported failed (`timeout`); the object
    /// stays locked until the kernel call really returns.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Let `mount` mount read-write when asked (`{"read_write": true}`); read-only otherwise.
    pub mount_read_write: bool,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            allow: Vec::new(),
            mount_root: PathBuf::from("/media/diskwatch"),
            timeout: Duration::from_secs(60),
            mount_read_write: false,
        }
    }
}

impl ActionsConfig {
    /// Adds one line per invalid value to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if !self.mount_root.is_absolute() {
            problems.push(format!("actions.mount_root: {:?} must be an absolute path", self.mount_root));
        }
        if self.mount_root == std::path::Path::new("/") {
            problems.push("actions.mount_root: must not be /".to_owned());
        }
        if self.timeout.is_zero() {
            problems.push("actions.timeout: must be longer than 0s".to_owned());
        }
    }

    /// Whether `kind` may run.
    pub fn allows(&self, kind: ActionKind) -> bool {
        self.enabled && self.allow.contains(&kind)
    }

    /// The actions that may run, in a fixed order (for Home Assistant buttons).
    pub fn allowed(&self) -> Vec<ActionKind> {
        ActionKind::ALL.into_iter().filter(|k| self.allows(*k)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::{Format, Toml};

    #[allow(clippy::result_large_err)] // figment::Error is what extract returns
    fn load(toml: &str) -> Result<ActionsConfig, figment::Error> {
        figment::Figment::from(figment::providers::Serialized::defaults(ActionsConfig::default()))
            .merge(Toml::string(toml))
            .extract()
    }

    #[test]
    fn off_by_default_and_allow_takes_only_known_actions() {
        let c = load("").unwrap();
        assert!(!c.enabled && c.allow.is_empty());
        assert!(c.allowed().is_empty());
        let c = load("enabled = true\nallow = [\"eject\", \"spin_down\"]\n").unwrap();
        assert_eq!(c.allowed(), [ActionKind::Eject, ActionKind::SpinDown]);
        assert!(!c.allows(ActionKind::Unmount));
        let e = load("allow = [\"ejekt\"]").unwrap_err().to_string();
        assert!(e.contains("unknown variant") && e.contains("spin_down"), "{e}");
        // Listed but not enabled: nothing runs.
        assert!(load("allow = [\"eject\"]").unwrap().allowed().is_empty());
        let mut problems = Vec::new();
        ActionsConfig { mount_root: "media".into(), timeout: Duration::ZERO, ..Default::default() }
            .validate(&mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
