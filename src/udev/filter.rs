//! Kernel-name filter: `udev.include` / `udev.exclude` globs; include wins.

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::error::UdevError;

#[derive(Debug, Clone)]
pub struct NameFilter {
    include: GlobSet,
    exclude: GlobSet,
}

impl NameFilter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, UdevError> {
        Ok(Self { include: build(include)?, exclude: build(exclude)? })
    }

    /// Whether the device with this kernel name is reported.
    pub fn accepts(&self, kernel_name: &str) -> bool {
        self.include.is_match(kernel_name) || !self.exclude.is_match(kernel_name)
    }
}

fn build(globs: &[String]) -> Result<GlobSet, UdevError> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(Glob::new(g).map_err(|source| UdevError::Glob { glob: g.clone(), source })?);
    }
    b.build().map_err(|source| UdevError::Glob { glob: globs.join(","), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_leave_out_ram_and_loop() {
        let f = NameFilter::new(&[], &s(&["ram*", "zram*", "loop*"])).unwrap();
        assert!(f.accepts("sda"));
        assert!(f.accepts("nvme0n1p1"));
        assert!(!f.accepts("loop0"));
        assert!(!f.accepts("zram0"));
    }

    #[test]
    fn include_wins_over_exclude() {
        let f = NameFilter::new(&s(&["loop*"]), &s(&["ram*", "loop*"])).unwrap();
        assert!(f.accepts("loop3"));
        assert!(f.accepts("loop3p1"));
        assert!(!f.accepts("ram0"));
    }

    #[test]
    fn bad_globs_are_errors() {
        assert!(NameFilter::new(&s(&["a[b"]), &[]).is_err());
    }
}
