//! Text helpers shared by several sources: kernel escapes, kernel-name globs (a leaf: it imports nothing of the crate).

use std::borrow::Cow;

/// Undoes the kernel's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash).
/// A backslash not followed by three octal digits is kept as it is.
pub fn unescape(field: &str) -> Cow<'_, str> {
    if !field.contains('\\') {
        return Cow::Borrowed(field);
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    // Paths are bytes on Linux; a non-UTF-8 name is shown with replacement characters.
    Cow::Owned(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// A glob of an include/exclude list that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid filter glob {glob:?}: {source}")]
pub struct GlobError {
    pub glob: String,
    #[source]
    pub source: globset::Error,
}

/// Kernel-name include/exclude globs (include wins): `udev`, `health` and the self-tests.
#[derive(Debug, Clone)]
pub struct KernelNameFilter {
    include: globset::GlobSet,
    exclude: globset::GlobSet,
}

impl KernelNameFilter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, GlobError> {
        let build = |globs: &[String]| -> Result<globset::GlobSet, GlobError> {
            let mut b = globset::GlobSetBuilder::new();
            for g in globs {
                b.add(globset::Glob::new(g).map_err(|source| GlobError { glob: g.clone(), source })?);
            }
            b.build().map_err(|source| GlobError { glob: globs.join(","), source })
        };
        Ok(KernelNameFilter { include: build(include)?, exclude: build(exclude)? })
    }

    /// Whether the device with this kernel name is kept (reported, polled).
    pub fn keeps(&self, kernel_name: &str) -> bool {
        self.include.is_match(kernel_name) || !self.exclude.is_match(kernel_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unescape_undoes_the_kernels_octal_escapes() {
        assert_eq!(unescape(r"/mnt/my\040disk\134x"), "/mnt/my disk\\x");
        assert_eq!(unescape(r"/a\9b"), r"/a\9b");
        assert!(matches!(unescape("/plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn defaults_leave_out_ram_and_loop() {
        let f = KernelNameFilter::new(&[], &s(&["ram*", "zram*", "loop*"])).unwrap();
        assert!(f.keeps("sda"));
        assert!(f.keeps("nvme0n1p1"));
        assert!(!f.keeps("loop0"));
        assert!(!f.keeps("zram0"));
    }

    #[test]
    fn include_wins_over_exclude() {
        let f = KernelNameFilter::new(&s(&["loop*"]), &s(&["ram*", "loop*"])).unwrap();
        assert!(f.keeps("loop3"));
        assert!(f.keeps("loop3p1"));
        assert!(!f.keeps("ram0"));
    }

    #[test]
    fn a_bad_glob_is_an_error_naming_it() {
        let e = KernelNameFilter::new(&s(&["sd*", "a[b"]), &[]).unwrap_err();
        assert_eq!(e.glob, "a[b");
        assert!(e.to_string().starts_with("invalid filter glob \"a[b\""), "{e}");
    }
}
