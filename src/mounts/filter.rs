//! Which mounts diskwatch reports: pseudo filesystems and system paths are left out by default;
//! `mounts.include_*` / `exclude_*` in the config adjust that.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::mounts::config::MountsConfig;

/// Kernel-internal and virtual filesystems: they hold no user data.
pub const PSEUDO_FS_TYPES: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "devtmpfs",
    "mqueue",
    "debugfs",
    "tracefs",
    "bpf",
    "securityfs",
    "pstore",
    "configfs",
    "fusectl",
    "autofs",
    "nsfs",
    "binfmt_misc",
    "hugetlbfs",
    "efivarfs",
    "rpc_pipefs",
    "nfsd",
    "squashfs",
    "overlay",
    "ramfs",
    "selinuxfs",
    "sockfs",
    "pipefs",
    "anon_inodefs",
    "cpuset",
    "resctrl",
    "ipathfs",
    "xenfs",
    "devfs",
];

/// System mount points left out whatever their type (the tmpfs under /run, /dev/shm,
/// /sys/fs/cgroup, …). /run/media and /run/mount stay in: udisks2 mounts USB drives there.
pub const SYSTEM_PATHS: &[&str] = &[
    "/proc",
    "/proc/**",
    "/sys",
    "/sys/**",
    "/dev",
    "/dev/**",
    "/run",
    "/run/lock",
    "/run/user/**",
    "/run/credentials/**",
    "/run/snapd/**",
    "/run/netns/**",
    "/run/docker/**",
    "/run/containerd/**",
    "/snap/**",
    "/var/lib/docker/**",
    "/var/lib/containers/**",
];

/// A glob set that failed to build.
#[derive(Debug, thiserror::Error)]
#[error("{key}: invalid glob {glob:?}: {source}")]
pub struct FilterError {
    pub key: &'static str,
    pub glob: String,
    #[source]
    pub source: globset::Error,
}

/// The compiled filter.
#[derive(Debug, Clone)]
pub struct Filter {
    include_fs: Vec<String>,
    exclude_fs: Vec<String>,
    include_paths: GlobSet,
    exclude_paths: GlobSet,
}

/// `*` stops at `/`, `**` crosses it.
pub fn path_globs<'a>(key: &'static str, globs: impl IntoIterator<Item = &'a str>) -> Result<GlobSet, FilterError> {
    let mut builder = GlobSetBuilder::new();
    for g in globs {
        let glob = GlobBuilder::new(g).literal_separator(true).build().map_err(|source| FilterError {
            key,
            glob: g.to_owned(),
            source,
        })?;
        builder.add(glob);
    }
    builder.build().map_err(|source| FilterError { key, glob: String::new(), source })
}

impl Filter {
    pub fn new(config: &MountsConfig) -> Result<Self, FilterError> {
        let exclude = SYSTEM_PATHS.iter().copied().chain(config.exclude_paths.iter().map(String::as_str));
        Ok(Self {
            include_fs: config.include_fs_types.clone(),
            exclude_fs: PSEUDO_FS_TYPES
                .iter()
                .map(|s| (*s).to_owned())
                .chain(config.exclude_fs_types.clone())
                .collect(),
            include_paths: path_globs("mounts.include_paths", config.include_paths.iter().map(String::as_str))?,
            exclude_paths: path_globs("mounts.exclude_paths", exclude)?,
        })
    }

    /// Whether a mount of `fs_type` at `mount_point` is reported. An include wins over an
    /// exclude of the same kind; a mount must pass both the type and the path test.
    pub fn keeps(&self, fs_type: &str, mount_point: &str) -> bool {
        let type_ok = self.include_fs.iter().any(|t| t == fs_type) || !self.exclude_fs.iter().any(|t| t == fs_type);
        type_ok && (!self.exclude_paths.is_match(mount_point) || self.include_paths.is_match(mount_point))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(f: impl FnOnce(&mut MountsConfig)) -> Filter {
        let mut c = MountsConfig::default();
        f(&mut c);
        Filter::new(&c).unwrap()
    }

    #[test]
    fn defaults() {
        let f = filter(|_| {});
        assert!(f.keeps("ext4", "/"));
        assert!(f.keeps("tmpfs", "/tmp/test mount"));
        assert!(f.keeps("nfs4", "/mnt/nas"));
        assert!(f.keeps("fuse.sshfs", "/home/u/remote"));
        assert!(f.keeps("vfat", "/run/media/u/USB"));
        assert!(!f.keeps("proc", "/proc"));
        assert!(!f.keeps("cgroup2", "/sys/fs/cgroup"));
        assert!(!f.keeps("squashfs", "/snap/core/1"));
        assert!(!f.keeps("overlay", "/var/lib/docker/overlay2/x/merged"));
        assert!(!f.keeps("tmpfs", "/run"));
        assert!(!f.keeps("tmpfs", "/dev/shm"));
        assert!(!f.keeps("tmpfs", "/run/user/1000"));
        assert!(!f.keeps("tmpfs", "/run/lock"));
    }

    #[test]
    fn includes_win_over_excludes() {
        let f = filter(|c| {
            c.include_fs_types = vec!["squashfs".into()];
            c.exclude_fs_types = vec!["tmpfs".into()];
            c.include_paths = vec!["/dev/shm".into()];
            c.exclude_paths = vec!["/mnt/*".into()];
        });
        assert!(f.keeps("squashfs", "/opt/image"));
        assert!(!f.keeps("tmpfs", "/tmp"));
        assert!(!f.keeps("ext4", "/mnt/backup"));
        // `*` does not cross a slash.
        assert!(f.keeps("ext4", "/mnt/backup/inner"));
        assert!(f.keeps("ext4", "/dev/shm"));
        // A path include does not lift a type exclusion.
        assert!(!f.keeps("proc", "/dev/shm"));
    }

    #[test]
    fn bad_glob_names_the_key() {
        let c = MountsConfig { exclude_paths: vec!["/mnt/[".into()], ..Default::default() };
        let e = Filter::new(&c).unwrap_err().to_string();
        assert!(e.starts_with("mounts.exclude_paths: invalid glob \"/mnt/[\""), "{e}");
    }
}
