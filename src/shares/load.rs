//! Reading the configured Samba and NFS files from disk into one share set, and the set of
//! paths whose change means the share set must be read again.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::model::{Protocol, Share};

use super::exports::{self, Export};
use super::smbconf::{self, IncludeResolver, SmbShare};
use super::text::read_text;
use super::ShareError;

/// What one reading of the configuration gave.
pub struct Loaded {
    /// The share set, or the first problem that made the configuration unusable.
    pub shares: Result<Vec<Share>, ShareError>,
    /// What to watch, also when reading failed (so the fix is noticed).
    pub watch: WatchSet,
    /// Problems Samba would only warn about.
    pub warnings: Vec<String>,
}

/// The paths whose change matters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchSet {
    /// Configured files, included files and includes looked for but missing.
    pub files: BTreeSet<PathBuf>,
    /// Directories whose `*.exports` files are read.
    pub export_dirs: BTreeSet<PathBuf>,
}

impl WatchSet {
    /// Whether a change to `path` can change the share set.
    pub fn is_relevant(&self, path: &Path) -> bool {
        self.files.contains(path)
            || self.export_dirs.contains(path)
            || (path.parent().is_some_and(|p| self.export_dirs.contains(p)) && is_exports_file(path))
    }

    /// The directories to watch: the parent of every file (so rename-over and files that appear
    /// later are seen), every exports directory and its parent; a directory that does not exist
    /// is replaced by its nearest existing ancestor, so its creation is seen.
    pub fn directories(&self) -> BTreeSet<PathBuf> {
        let mut out = BTreeSet::new();
        let parents = self.files.iter().chain(&self.export_dirs).filter_map(|p| p.parent());
        for dir in parents.chain(self.export_dirs.iter().map(PathBuf::as_path)) {
            let mut dir = dir;
            while !dir.is_dir() {
                match dir.parent() {
                    Some(parent) => dir = parent,
                    None => break,
                }
            }
            if dir.is_dir() {
                out.insert(dir.to_path_buf());
            }
        }
        out
    }
}

/// `name.exports`, not hidden, as exportfs reads them.
fn is_exports_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| !n.starts_with('.') && n.len() > ".exports".len() && n.ends_with(".exports"))
}

/// Reads every configured file. A configured file that does not exist gives no shares.
pub fn load(samba: &[PathBuf], nfs: &[PathBuf]) -> Loaded {
    let mut watch = WatchSet::default();
    let mut warnings = Vec::new();
    let mut first_error = None;
    let mut shares: Vec<Share> = Vec::new();
    let mut add = |share: Share, warnings: &mut Vec<String>| {
        if let Some(existing) = shares.iter().find(|s| s.id == share.id) {
            warnings.push(format!(
                "{}: share {:?} has the same id {} as {:?} in {}; left out",
                share.config_file, share.name, share.id, existing.name, existing.config_file
            ));
        } else {
            shares.push(share);
        }
    };
    for path in samba {
        watch.files.insert(path.clone());
        let mut resolver = FsResolver::default();
        let result = match resolver.read(path, "") {
            Ok(Some(text)) => smbconf::parse(&text, path, &mut resolver).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        watch.files.extend(resolver.requested);
        match result {
            Ok(Some(conf)) => {
                warnings.extend(conf.warnings);
                for share in conf.shares {
                    add(from_smb(share), &mut warnings);
                }
            }
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    for path in nfs {
        let files = if path.is_dir() {
            watch.export_dirs.insert(path.clone());
            match exports_files(path) {
                Ok(files) => files,
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            }
        } else {
            watch.files.insert(path.clone());
            vec![path.clone()]
        };
        for file in files {
            match read_exports(&file) {
                Ok(list) => {
                    for export in list {
                        add(from_export(export, &file), &mut warnings);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    Loaded { shares: first_error.map_or(Ok(shares), Err), watch, warnings }
}

/// `*.exports` files of `dir`, in name order.
fn exports_files(dir: &Path) -> Result<Vec<PathBuf>, ShareError> {
    let read_err = |source| ShareError::Read { path: dir.to_path_buf(), context: String::new(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if is_exports_file(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The exports in `file`; none when it does not exist.
fn read_exports(file: &Path) -> Result<Vec<Export>, ShareError> {
    match open_regular(file) {
        Ok(f) => exports::parse(&read_text(f, file, "")?, file),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(ShareError::Read { path: file.to_path_buf(), context: String::new(), source }),
    }
}

/// Opens a configuration file for reading, refusing anything but a regular file: opening a FIFO
/// for reading waits for a writer (forever, holding the reader), and a device node may be
/// endless or have side effects on open. The open itself is non-blocking, and the type is checked
/// again on the open file, so a file swapped for a FIFO between the two checks is refused too.
fn open_regular(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let not_regular = |kind: std::fs::FileType| {
        std::io::Error::new(ErrorKind::InvalidInput, format!("not a regular file (a {})", file_type_name(kind)))
    };
    let kind = std::fs::metadata(path)?.file_type();
    if !kind.is_file() {
        return Err(not_regular(kind));
    }
    let file = File::options().read(true).custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits()).open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(not_regular(kind));
    }
    Ok(file)
}

fn file_type_name(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_block_device() {
        "block device"
    } else if kind.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

/// Reads included files from disk and remembers every one it was asked for.
#[derive(Default)]
struct FsResolver {
    requested: Vec<PathBuf>,
}

impl IncludeResolver for FsResolver {
    fn read(&mut self, path: &Path, context: &str) -> Result<Option<String>, ShareError> {
        self.requested.push(path.to_path_buf());
        match open_regular(path) {
            Ok(f) => read_text(f, path, context).map(Some),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ShareError::Read { path: path.to_path_buf(), context: context.to_owned(), source }),
        }
    }
}

/// `path` with symlinks resolved, and whether it exists. For a path that does not exist, its
/// longest existing ancestor is resolved and the rest appended, so a share under a symlink keeps
/// the same resolved path (and mount) while its storage is unmounted. A relative path or one
/// holding a Samba `%` substitution stays as written.
pub fn resolve(path: &str) -> (String, bool) {
    if !path.starts_with('/') || path.contains('%') {
        return (path.to_owned(), false);
    }
    if let Ok(real) = std::fs::canonicalize(path) {
        return (real.to_string_lossy().into_owned(), true);
    }
    let path = Path::new(path);
    let mut ancestor = path.parent();
    while let Some(dir) = ancestor {
        if let Ok(real) = std::fs::canonicalize(dir) {
            // `dir` is a prefix of `path`, since it came from `path.parent()`.
            let rest = path.strip_prefix(dir).unwrap_or(path);
            return (real.join(rest).to_string_lossy().into_owned(), false);
        }
        ancestor = dir.parent();
    }
    (path.to_string_lossy().into_owned(), false)
}

fn from_smb(s: SmbShare) -> Share {
    let (resolved_path, path_exists) = resolve(&s.path);
    Share {
        id: Share::make_id(Protocol::Smb, &s.name),
        protocol: Protocol::Smb,
        name: s.name,
        path: s.path,
        enabled: s.enabled,
        read_only: s.read_only,
        guest_ok: s.guest_ok,
        browseable: s.browseable,
        users: s.users,
        comment: s.comment,
        special: s.special,
        clients: Vec::new(),
        config_file: s.file.to_string_lossy().into_owned(),
        resolved_path,
        path_exists,
        mount_id: None,
        partition_id: None,
        disk_id: None,
        available: false,
    }
}

fn from_export(e: Export, file: &Path) -> Share {
    let (resolved_path, path_exists) = resolve(&e.path);
    Share {
        id: Share::make_id(Protocol::Nfs, &e.path),
        protocol: Protocol::Nfs,
        name: e.path.clone(),
        path: e.path,
        enabled: true,
        read_only: e.read_only,
        // Anyone may mount an export open to the world.
        guest_ok: e.clients.iter().any(|c| c.host == "*"),
        browseable: true,
        users: Vec::new(),
        comment: None,
        special: None,
        clients: e.clients,
        config_file: file.to_string_lossy().into_owned(),
        resolved_path,
        path_exists,
        mount_id: None,
        partition_id: None,
        disk_id: None,
        available: false,
    }
}

/// Re-checks the paths of `shares`; true when any resolved path or existence changed.
pub fn recheck_paths(shares: &mut [Share]) -> bool {
    let mut changed = false;
    for share in shares {
        let (resolved, exists) = resolve(&share.path);
        if resolved != share.resolved_path || exists != share.path_exists {
            share.resolved_path = resolved;
            share.path_exists = exists;
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_samba_and_nfs_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("data")).unwrap();
        std::fs::write(d.join("smb.conf"), format!("[data]\npath = {}/data\ninclude = extra.conf\n", d.display()))
            .unwrap();
        std::fs::write(d.join("extra.conf"), "[gone]\npath = /nonexistent/x\n").unwrap();
        std::fs::create_dir(d.join("exports.d")).unwrap();
        std::fs::write(d.join("exports.d/a.exports"), format!("{}/data h(rw)\n", d.display())).unwrap();
        std::fs::write(d.join("exports.d/.hidden.exports"), "/hidden h\n").unwrap();
        std::fs::write(d.join("exports.d/notes.txt"), "/txt h\n").unwrap();
        let samba = [d.join("smb.conf"), d.join("missing.conf")];
        let nfs = [d.join("exports"), d.join("exports.d")];
        let loaded = load(&samba, &nfs);
        let shares = loaded.shares.unwrap();
        let ids: Vec<&str> = shares.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert_eq!(&ids[..2], ["smb-data", "smb-gone"]);
        let data = &shares[0];
        assert!(data.path_exists);
        assert_eq!(data.resolved_path, std::fs::canonicalize(d.join("data")).unwrap().to_string_lossy());
        assert!(!shares[1].path_exists && shares[1].resolved_path == "/nonexistent/x");
        assert!(!shares[2].read_only && shares[2].protocol == Protocol::Nfs);
        assert!(loaded.watch.is_relevant(&d.join("extra.conf")));
        assert!(loaded.watch.is_relevant(&d.join("missing.conf")));
        assert!(loaded.watch.is_relevant(&d.join("exports")));
        assert!(loaded.watch.is_relevant(&d.join("exports.d/new.exports")));
        assert!(!loaded.watch.is_relevant(&d.join("exports.d/new.txt")));
        assert!(!loaded.watch.is_relevant(&d.join("other")));
        assert_eq!(loaded.watch.directories().into_iter().collect::<Vec<_>>(), [d.to_path_buf(), d.join("exports.d")]);
    }

    #[test]
    fn missing_paths_resolve_through_their_existing_ancestors() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(real.join("disk")).unwrap();
        std::os::unix::fs::symlink(real.join("disk"), real.join("link")).unwrap();
        let missing = format!("{}/link/share/sub", real.display());
        assert_eq!(resolve(&missing), (format!("{}/disk/share/sub", real.display()), false));
        std::fs::create_dir_all(real.join("disk/share/sub")).unwrap();
        assert_eq!(resolve(&missing), (format!("{}/disk/share/sub", real.display()), true));
        assert_eq!(resolve("/srv/%U"), ("/srv/%U".to_owned(), false));
        assert_eq!(resolve(""), (String::new(), false));
        assert_eq!(resolve("relative"), ("relative".to_owned(), false));
    }

    #[test]
    fn failures_keep_the_watch_set() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("smb.conf"), "[a]\npath=/a\ninclude = sub/inc.conf\n").unwrap();
        let loaded = load(&[d.join("smb.conf")], &[]);
        let e = loaded.shares.unwrap_err().to_string();
        assert!(e.contains("smb.conf:3: included file") && e.contains("does not exist"), "{e}");
        assert!(loaded.watch.is_relevant(&d.join("sub/inc.conf")));
        // sub/ does not exist: its nearest existing ancestor is watched.
        assert!(loaded.watch.directories().contains(d));
    }

    #[test]
    fn unreadable_and_garbage_files_fail_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("exports"), b"/a h\n\xff\xfe\n").unwrap();
        let e = load(&[], &[d.join("exports")]).shares.unwrap_err().to_string();
        assert_eq!(e, format!("{}:2: invalid UTF-8", d.join("exports").display()));
        std::fs::create_dir(d.join("smb.conf")).unwrap();
        let e = load(&[d.join("smb.conf")], &[]).shares.unwrap_err().to_string();
        assert!(e.starts_with(&format!("cannot read {}", d.join("smb.conf").display())), "{e}");
    }

    #[test]
    fn a_fifo_or_device_named_as_a_file_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let fifo = d.join("inc.conf");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::write(d.join("smb.conf"), "[a]\npath=/a\ninclude = inc.conf\n").unwrap();
        // Without the check this read waits for a writer of the FIFO forever.
        let (tx, rx) = std::sync::mpsc::channel();
        let (smb, f) = (d.join("smb.conf"), fifo.clone());
        std::thread::spawn(move || {
            let _ = tx.send((load(&[smb], &[]).shares.map(|_| ()), load(&[], &[f]).shares.map(|_| ())));
        });
        let (samba, nfs) = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the reader blocked on a FIFO");
        let e = samba.unwrap_err().to_string();
        assert!(e.contains("inc.conf") && e.contains("not a regular file (a FIFO)"), "{e}");
        let e = nfs.unwrap_err().to_string();
        assert!(e.contains("not a regular file (a FIFO)"), "{e}");
        let e = load(&[], &[PathBuf::from("/dev/null")]).shares.unwrap_err().to_string();
        assert!(e.contains("not a regular file (a character device)"), "{e}");
    }
}
