//! Helpers for the share tests: a share-configuration directory written the two ways tools do it
//! (rename-over and in-place), and a minimal test-only mount-table source.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use diskwatch::model::{mount_id, Mount};
use diskwatch::sources::{Source, SourceContext, SourceFuture};
use diskwatch::state::Fact;

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

/// Test-only stand-in for the mounts source: sends the mount table from `/proc/self/mountinfo`
/// whenever it changes (polled). Replace by `config.mounts.enabled = true` once the real one is merged.
pub struct MountinfoSource;

impl Source for MountinfoSource {
    fn name(&self) -> &'static str {
        "test-mountinfo"
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(async move {
            let mut last = String::new();
            let mut initial = true;
            loop {
                let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
                if text != last {
                    let mounts = parse_mountinfo(&text);
                    let _ = ctx.facts.send(Fact::Mounts { mounts, initial }).await;
                    initial = false;
                    last = text;
                }
                tokio::select! {
                    _ = ctx.token.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        })
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok()) {
            Some(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 6 || r.len() < 3 {
            continue;
        }
        let point = unescape(l[4]);
        let options: Vec<String> = l[5].split(',').map(str::to_owned).collect();
        let mount = Mount {
            id: mount_id(&point),
            read_only: options.iter().any(|o| o == "ro"),
            mount_point: point,
            source: unescape(r[1]),
            dev: l[2].to_owned(),
            fs_type: r[0].to_owned(),
            options,
            super_options: r[2].split(',').map(str::to_owned).collect(),
            root: unescape(l[3]),
            network: false,
            partition_id: None,
            disk_id: None,
            shares: Vec::new(),
            usage: None,
            stale: false,
        };
        // The top mount of a mount point wins.
        mounts.retain(|m| m.id != mount.id);
        mounts.push(mount);
    }
    mounts
}
