//! Which smartmontools is installed: `smartctl --json --version`, asked once per
//! [`super::Smartctl`]. Versions differ in the `-n` forms they accept (see [`super::power`]) and
//! in their JSON layouts.

use serde_json::Value;

/// A smartmontools release, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32) -> Self {
        Version { major, minor }
    }

    /// The version `--version` printed: JSON `smartctl.version` (smartctl ≥ 7.0 with `--json`),
    /// else the first line of the text form, `smartctl 7.2 2020-12-30 r5155 …`.
    pub fn parse(stdout: &str) -> Option<Version> {
        if let Ok(json) = serde_json::from_str::<Value>(stdout) {
            let v = json.pointer("/smartctl/version")?.as_array()?;
            let major = u32::try_from(v.first()?.as_u64()?).ok()?;
            let minor = u32::try_from(v.get(1)?.as_u64()?).ok()?;
            return Some(Version { major, minor });
        }
        let line = stdout.lines().find(|l| l.starts_with("smartctl "))?;
        let (major, minor) = line.split_whitespace().nth(1)?.split_once('.')?;
        Some(Version {
            major: major.parse().ok()?,
            minor: minor.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok()?,
        })
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_text_forms() {
        let json =
            r#"{"json_format_version":[1,0],"smartctl":{"version":[7,3],"svn_revision":"5338","exit_status":0}}"#;
        assert_eq!(Version::parse(json), Some(Version::new(7, 3)));
        // Debian 11's smartctl 7.2, text form (its first line).
        let text = "smartctl 7.2 2020-12-30 r5155 [x86_64-linux-5.10.0-20-amd64] (local build)\nCopyright (C) 2002-20";
        assert_eq!(Version::parse(text), Some(Version::new(7, 2)));
        assert_eq!(Version::parse("smartctl 6.6 2017-11-05 r4594"), Some(Version::new(6, 6)));
        assert_eq!(Version::parse("Smartctl open device: --version failed"), None);
        assert_eq!(Version::parse(""), None);
        assert!(Version::new(7, 2) < Version::new(7, 3) && Version::new(7, 10) > Version::new(7, 4));
    }
}
