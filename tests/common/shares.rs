//! Helpers for the share tests: a share-configuration directory written the two ways tools do it
//! (rename-over and in-place), and a minimal test-only mount-table source.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a file is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Save {
    /// Write a temporary file next to it and rename it over (editors, Ansible, smbcontrol tools).
    RenameOver,
    /// Truncate and write the file itself (`echo >`, `sed -i` without backup on some systems).
    InPlace,
}

/// Saves `contents` to `path` the way `how` says.
pub fn save(path: &Path, contents: &[u8], how: Save) {
    match how {
        Save::RenameOver => {
            let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().unwrap().to_string_lossy()));
            std::fs::write(&tmp, contents).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        Save::InPlace => {
            let mut f = std::fs::OpenOptions::new().write(true).truncate(true).create(true).open(path).unwrap();
            f.write_all(contents).unwrap();
        }
    }
}

/// A temporary `/etc`-like directory: `smb.conf`, `exports`, `exports.d/`.
pub struct ShareDir {
    pub dir: tempfile::TempDir,
}

impl ShareDir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("exports.d")).unwrap();
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A directory under the temp dir, created, as a string for config files.
    pub fn data(&self, name: &str) -> String {
        let p = self.path(name);
        std::fs::create_dir_all(&p).unwrap();
        p.to_string_lossy().into_owned()
    }

    /// Points the agent's share source at this directory.
    pub fn configure(&self, config: &mut diskwatch::config::Config, debounce: Duration) {
        config.shares.enabled = true;
        config.shares.samba = vec![self.path("smb.conf")];
        config.shares.nfs = vec![self.path("exports"), self.path("exports.d")];
        config.shares.debounce = debounce;
    }
}
