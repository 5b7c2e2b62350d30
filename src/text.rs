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

/// Kernel-name include/exclude globs (include wins).
#[derive(Debug, Clone)]
pub struct KernelNameFilter {
    include: globset::GlobSet,
    exclude: globset::GlobSet,
}

impl KernelNameFilter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, globset::Error> {
        let build = |globs: &[String]| -> Result<globset::GlobSet, globset::Error> {
            let mut b = globset::GlobSetBuilder::new();
            for g in globs {
                b.add(globset::Glob::new(g)?);
            }
            b.build()
        };
        Ok(KernelNameFilter { include: build(include)?, exclude: build(exclude)? })
    }

    pub fn keeps(&self, kernel_name: &str) -> bool {
        self.include.is_match(kernel_name) || !self.exclude.is_match(kernel_name)
    }
}
